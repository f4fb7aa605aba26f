"""Key material in every form the Alipay console and SDKs hand out, loaded once at start-up."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from server.credentials import load_credentials
from server.settings import SettingsError, settings_from_mapping
from tests.pki import (
    foreign_cert_set,
    make_cert_set,
    pkcs1_base64,
    pkcs8_base64,
    private_pem_pkcs1,
    private_pem_pkcs8,
    public_pem,
    rsa_key,
    spki_base64,
)
from verify import public_key_base64

NOW = datetime(2026, 11, 23, tzinfo=UTC)


def credentials_for(app: dict[str, Any], base_dir: Path) -> Any:
    settings = settings_from_mapping(
        {"apps": [{"app_id": "2021000000000001", **app}]}, base_dir=base_dir
    )
    return load_credentials(settings, NOW)["2021000000000001"]


def alipay_public_forms(tmp_path: Path) -> dict[str, str]:
    key = rsa_key(1).public_key()
    (tmp_path / "alipay.pem").write_text(public_pem(key))
    wrapped = "\n".join(spki_base64(key)[i : i + 64] for i in range(0, len(spki_base64(key)), 64))
    return {
        "console-base64": spki_base64(key),
        "wrapped-base64": wrapped,
        "pem": public_pem(key),
        "relative-path": "alipay.pem",
        "absolute-path": str(tmp_path / "alipay.pem"),
    }


@pytest.mark.parametrize(
    "form", ["console-base64", "wrapped-base64", "pem", "relative-path", "absolute-path"]
)
def test_alipay_public_key_in_every_form(tmp_path: Path, form: str) -> None:
    value = alipay_public_forms(tmp_path)[form]

    creds = credentials_for({"alipay_public_key": value}, tmp_path)

    assert public_key_base64(creds.policy.keys[0].key) == spki_base64(rsa_key(1).public_key())


@pytest.mark.parametrize(
    "encode",
    [pkcs8_base64, pkcs1_base64, private_pem_pkcs8, private_pem_pkcs1],
    ids=["pkcs8-base64", "pkcs1-base64", "pkcs8-pem", "pkcs1-pem"],
)
def test_app_private_key_in_every_form(tmp_path: Path, encode: Any) -> None:
    creds = credentials_for(
        {
            "alipay_public_key": spki_base64(rsa_key(1).public_key()),
            "app_private_key": encode(rsa_key(2)),
        },
        tmp_path,
    )

    assert creds.app_public_key_base64 == spki_base64(rsa_key(2).public_key())
    assert "PRIVATE" not in repr(creds)


def test_rotation_keeps_every_configured_key_in_order(tmp_path: Path) -> None:
    keys = [spki_base64(rsa_key(i).public_key()) for i in (1, 3)]

    creds = credentials_for(
        {"alipay_public_key": keys[0], "alipay_public_keys": [keys[1]]}, tmp_path
    )

    assert [public_key_base64(k.key) for k in creds.policy.keys] == keys


def test_certificate_mode_takes_the_key_from_a_certificate_chained_to_the_root(
    tmp_path: Path,
) -> None:
    certs = make_cert_set()
    (tmp_path / "alipay.crt").write_bytes(certs.alipay_cert_pem)
    (tmp_path / "root.crt").write_bytes(certs.root_bundle_pem)
    (tmp_path / "app.crt").write_bytes(certs.app_cert_pem)

    creds = credentials_for(
        {
            "alipay_cert_path": "alipay.crt",
            "alipay_root_cert_path": "root.crt",
            "app_cert_path": "app.crt",
            "app_private_key": pkcs8_base64(certs.app_leaf_key),
        },
        tmp_path,
    )

    assert creds.policy.keys[0].label == f"cert:{certs.alipay_cert_sn}"
    assert (creds.app_cert_sn, creds.alipay_root_cert_sn) == (certs.app_cert_sn, certs.root_cert_sn)


def test_a_certificate_from_another_hierarchy_stops_start_up(tmp_path: Path) -> None:
    (tmp_path / "alipay.crt").write_bytes(foreign_cert_set().alipay_cert_pem)
    (tmp_path / "root.crt").write_bytes(make_cert_set().root_bundle_pem)

    with pytest.raises(SettingsError, match="app 2021000000000001"):
        credentials_for(
            {"alipay_cert_path": "alipay.crt", "alipay_root_cert_path": "root.crt"}, tmp_path
        )


def test_an_app_certificate_for_another_key_stops_start_up(tmp_path: Path) -> None:
    certs = make_cert_set()
    (tmp_path / "alipay.crt").write_bytes(certs.alipay_cert_pem)
    (tmp_path / "root.crt").write_bytes(certs.root_bundle_pem)
    (tmp_path / "app.crt").write_bytes(certs.app_cert_pem)

    with pytest.raises(SettingsError, match="app_cert_path"):
        credentials_for(
            {
                "alipay_cert_path": "alipay.crt",
                "alipay_root_cert_path": "root.crt",
                "app_cert_path": "app.crt",
                "app_private_key": pkcs8_base64(rsa_key(2)),
            },
            tmp_path,
        )


@pytest.mark.parametrize(
    ("app", "fragment"),
    [
        (
            {"alipay_public_key": "missing-file.pem"},
            "neither PEM, bare base64, nor a readable file",
        ),
        ({"alipay_public_key": "QUJD" * 40}, "app 2021000000000001"),
        (
            {
                "alipay_public_key": spki_base64(rsa_key(1).public_key()),
                "app_private_key": "Zm9v" * 40,
            },
            "private key",
        ),
        (
            {"alipay_public_key": spki_base64(rsa_key(1).public_key()), "encrypt_key": "c2hvcnQ="},
            "AES key",
        ),
    ],
    ids=["missing-file", "garbage-public-key", "garbage-private-key", "short-aes-key"],
)
def test_unusable_key_material_is_named_not_echoed(
    tmp_path: Path, app: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(SettingsError, match=fragment) as raised:
        credentials_for(app, tmp_path)

    for value in app.values():
        if len(value) > 20:
            assert value not in str(raised.value)
