"""Loading the one settings object: discovery order, defaults, clear errors that leak nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.settings import SettingsError, find_config, load_settings, settings_from_mapping
from tests.pki import private_pem_pkcs8, rsa_key, spki_base64

SECRET = "not-a-real-key-but-a-secret-all-the-same"


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "subgate.toml"
    path.write_text(text, "utf-8")
    return path


def test_defaults_are_the_documented_ones(tmp_path: Path) -> None:
    key = spki_base64(rsa_key(1).public_key())
    path = write_config(
        tmp_path, f'[[apps]]\napp_id = "2021000000000001"\nalipay_public_key = "{key}"\n'
    )

    settings = load_settings(path)

    assert (settings.server.host, settings.server.port) == ("127.0.0.1", 8080)
    assert settings.server.max_body_bytes == 65536
    assert settings.server.notify_max_age_seconds == 172800
    assert settings.storage.url == "sqlite:///./data/subgate.db"
    assert settings.storage.synchronous == "FULL"
    assert settings.storage.read_mmap_mb == 2048
    app = settings.apps[0]
    assert app.gateway_url == "https://openapi.alipay.com/gateway.do"
    assert app.sign_types == ["RSA2"]
    assert settings.base_dir == tmp_path.resolve()


def test_config_is_found_by_flag_then_environment_then_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert find_config(None, {}) is None
    write_config(tmp_path, "")
    assert find_config(None, {}) == Path("subgate.toml")
    assert find_config(None, {"SUBGATE_CONFIG": "/etc/subgate.toml"}) == Path("/etc/subgate.toml")
    assert find_config("given.toml", {"SUBGATE_CONFIG": "/etc/x.toml"}) == Path("given.toml")


@pytest.mark.parametrize(
    ("app", "fragment"),
    [
        ({"app_id": "1"}, "either alipay_public_key"),
        ({"app_id": "1", "alipay_public_key": "k", "alipay_cert_path": "c"}, "not both"),
        ({"app_id": "1", "alipay_cert_path": "c"}, "alipay_root_cert_path"),
        ({"app_id": "1", "alipay_public_key": "k", "require_encryption": True}, "encrypt_key"),
        ({"app_id": "bad id!", "alipay_public_key": "k"}, "apps.0.app_id"),
        ({"app_id": "1", "alipay_public_key": "k", "sign_types": ["SM2"]}, "apps.0.sign_types"),
        ({"app_id": "1", "alipay_public_key": "k", "surprise": 1}, "apps.0.surprise"),
    ],
    ids=[
        "no-trust",
        "both-modes",
        "cert-without-root",
        "encryption-without-key",
        "bad-app-id",
        "unknown-sign-type",
        "unknown-key",
    ],
)
def test_invalid_app_settings_name_the_problem(app: dict[str, object], fragment: str) -> None:
    with pytest.raises(SettingsError, match=fragment):
        settings_from_mapping({"apps": [app]}, base_dir=Path("."))


def test_errors_never_echo_a_secret_value() -> None:
    app = {
        "app_id": "1",
        "alipay_public_key": "k",
        "app_private_key": 12345,
        "encrypt_key": SECRET,
        "require_encryption": "definitely",
    }

    with pytest.raises(SettingsError) as raised:
        settings_from_mapping({"apps": [app]}, base_dir=Path("."))

    assert SECRET not in str(raised.value) and "12345" not in str(raised.value)


def test_secrets_do_not_show_in_reprs() -> None:
    settings = settings_from_mapping(
        {
            "apps": [
                {
                    "app_id": "1",
                    "alipay_public_key": "k",
                    "app_private_key": private_pem_pkcs8(rsa_key(2)),
                    "encrypt_key": SECRET,
                }
            ]
        },
        base_dir=Path("."),
    )

    shown = repr(settings) + str(settings) + settings.model_dump_json()

    assert SECRET not in shown and "PRIVATE KEY" not in shown


def test_duplicate_app_ids_are_refused() -> None:
    app = {"app_id": "1", "alipay_public_key": "k"}

    with pytest.raises(SettingsError, match="only once"):
        settings_from_mapping({"apps": [app, app]}, base_dir=Path("."))


@pytest.mark.parametrize(("lease", "refused"), [(10.0, True), (9.5, True), (10.5, False)])
def test_a_lease_must_outlast_a_call(lease: float, refused: bool) -> None:
    mapping = {
        "apps": [{"app_id": "1", "alipay_public_key": "k"}],
        "outbox": {"call_timeout_seconds": 10.0, "lease_seconds": lease},
    }

    if refused:
        with pytest.raises(SettingsError, match="lease_seconds must be greater"):
            settings_from_mapping(mapping, base_dir=Path("."))
    else:
        assert settings_from_mapping(mapping, base_dir=Path(".")).outbox.lease_seconds == lease


def test_broken_toml_and_missing_files_are_clear(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(write_config(tmp_path, "[[apps]\n"))
    with pytest.raises(SettingsError, match="cannot read config"):
        load_settings(tmp_path / "absent.toml")
