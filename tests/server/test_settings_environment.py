"""Configuration a deployment can use: every table's keys from ``SUBGATE_<TABLE>__<KEY>`` (the
environment wins over the file, every check still applies), and every secret from a file by the
one rule of ``server/settings/secret_files.py``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from server.settings import SettingsError, load_settings, settings_from_mapping, with_environment
from tests.server.conftest import APP_ID, app_config, make_settings
from tests.server.send_fixtures import aes_key_base64

TOKEN = "deploy-token-0123456789abcdef"


def file_data(tmp_path: Path, **tables: Any) -> dict[str, Any]:
    return {
        "server": {"port": 8080, "host": "127.0.0.1"},
        "storage": {"url": f"sqlite:///{tmp_path / 'a.db'}", "pool_max": 4},
        "apps": [app_config()],
        **tables,
    }


def secret_file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


def test_a_variable_overrides_its_key_and_leaves_the_rest_of_the_table(tmp_path: Path) -> None:
    environ = {
        "SUBGATE_SERVER__PORT": "9090",
        "SUBGATE_STORAGE__URL": "postgresql://subgate@db.internal:5432/subgate",
        "SUBGATE_OUTBOX__RETRY_BACKOFF_SECONDS": "[5, 50]",
        "SUBGATE_RECONCILE__INTERVAL_SECONDS": "600",
        "SUBGATE_CONFIG": "/etc/subgate/subgate.toml",  # not a table: left alone
    }

    settings = settings_from_mapping(file_data(tmp_path), base_dir=tmp_path, environ=environ)

    assert (settings.server.port, settings.server.host) == (9090, "127.0.0.1")
    assert settings.storage.url == "postgresql://subgate@db.internal:5432/subgate"
    assert settings.storage.pool_max == 4
    assert settings.outbox.retry_backoff_seconds == [5.0, 50.0]
    assert settings.reconcile.interval_seconds == 600.0


def test_a_list_of_tables_is_set_whole_as_json_and_its_secrets_may_be_files(
    tmp_path: Path,
) -> None:
    token_file = secret_file(tmp_path, "api-token", TOKEN)
    tokens = [{"token": str(token_file), "apps": [APP_ID], "scopes": ["read"]}]
    environ = {"SUBGATE_TOKENS": json.dumps(tokens)}
    data = file_data(
        tmp_path, tokens=[{"token": "file-token-0123456789abcdef", "scopes": ["send"]}]
    )

    settings = settings_from_mapping(data, base_dir=tmp_path, environ=environ)

    assert [(t.token.get_secret_value(), t.scopes) for t in settings.tokens] == [(TOKEN, ["read"])]
    assert [app.app_id for app in settings.apps] == [APP_ID]  # not named: the file's


@pytest.mark.parametrize(
    "value", ['{"token": "x"}', "[1, 2]", '[{"tokn": "typo-0123456789abcdef"}]']
)
def test_a_list_of_tables_that_is_not_one_is_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(SettingsError):
        settings_from_mapping(
            file_data(tmp_path), base_dir=tmp_path, environ={"SUBGATE_TOKENS": value}
        )


def test_without_variables_the_file_is_taken_as_it_is(tmp_path: Path) -> None:
    settings = settings_from_mapping(file_data(tmp_path), base_dir=tmp_path, environ={})

    assert settings.server.port == 8080 and settings.storage.pool_max == 4


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"SUBGATE_SERVER__PROT": "9090"}, "server.prot: unknown key (a typo?)"),
        ({"SUBGATE_SERVER__PORT": "eighty"}, "server.port: Input should be a valid integer"),
        ({"SUBGATE_STORAGE__POOL_MIN": "9"}, "storage: pool_min must not exceed pool_max"),
        ({"SUBGATE_STORAGE__URL": "mysql://u:hunter2@db/x"}, "storage.url: must be sqlite:///"),
    ],
)
def test_a_bad_variable_is_refused_as_a_bad_key_would_be(
    tmp_path: Path, environ: dict[str, str], expected: str
) -> None:
    with pytest.raises(SettingsError) as refused:
        settings_from_mapping(file_data(tmp_path), base_dir=tmp_path, environ=environ)

    assert str(refused.value).startswith(expected)
    assert "hunter2" not in str(refused.value) and "\n" not in str(refused.value)


def test_dev_mode_settings_take_the_environment_too(tmp_path: Path) -> None:
    made = make_settings(tmp_path)

    layered = with_environment(made, {"SUBGATE_SERVER__PORT": "9191"})

    assert layered.server.port == 9191 and layered.apps == made.apps
    assert layered.storage == made.storage


def test_every_secret_can_be_the_path_of_a_file(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    url = f"sqlite:///{tmp_path / 'from-file.db'}"
    data = file_data(
        tmp_path,
        tokens=[{"token": "./secrets/token", "apps": ["*"], "scopes": ["read"]}],
        top_apps=[{"name": "jym", "app_key": "12345678", "app_secret": str(secrets / "top")}],
    )
    data["apps"] = [app_config(encrypt_key="./secrets/aes")]
    secret_file(secrets, "token", TOKEN)
    secret_file(secrets, "top", "top-secret-value")
    secret_file(secrets, "aes", aes_key_base64())
    secret_file(secrets, "db", url)
    environ = {"SUBGATE_STORAGE__URL": str(secrets / "db")}

    settings = settings_from_mapping(data, base_dir=tmp_path, environ=environ)

    assert settings.tokens[0].token.get_secret_value() == TOKEN
    assert settings.top_apps[0].app_secret.get_secret_value() == "top-secret-value"
    [app] = settings.apps
    assert app.encrypt_key is not None
    assert app.encrypt_key.get_secret_value() == aes_key_base64()
    assert settings.storage.url == url


def test_a_secret_given_as_itself_is_kept_as_it_is(tmp_path: Path) -> None:
    data = file_data(tmp_path, tokens=[{"token": TOKEN, "apps": ["*"], "scopes": ["read"]}])
    data["apps"] = [app_config(encrypt_key=aes_key_base64())]

    settings = settings_from_mapping(data, base_dir=tmp_path, environ={})

    assert settings.tokens[0].token.get_secret_value() == TOKEN
    assert settings.apps[0].encrypt_key is not None
    assert settings.apps[0].encrypt_key.get_secret_value() == aes_key_base64()


def test_an_unreadable_secret_file_names_the_key_and_the_path_only(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-token"
    data = file_data(tmp_path, tokens=[{"token": str(missing), "apps": ["*"], "scopes": ["read"]}])
    config = tmp_path / "subgate.toml"
    config.write_text(f'[[apps]]\napp_id = "{APP_ID}"\nalipay_public_key = "x"\n')

    with pytest.raises(SettingsError) as refused:
        settings_from_mapping(data, base_dir=tmp_path, environ={})
    with pytest.raises(SettingsError) as from_file:
        load_settings(config, {"SUBGATE_STORAGE__URL": str(missing)})

    assert str(refused.value) == (
        f"tokens.0.token: cannot read the secret file {missing}: No such file or directory"
    )
    assert str(from_file.value).startswith(f"config {config}: storage.url: cannot read")


def test_a_secret_file_readable_by_others_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = secret_file(tmp_path, "token", TOKEN)
    path.chmod(0o644)
    data = file_data(tmp_path, tokens=[{"token": str(path), "apps": ["*"], "scopes": ["read"]}])

    settings_from_mapping(data, base_dir=tmp_path, environ={})

    assert f"{path} is readable by other users" in caplog.text
    assert TOKEN not in caplog.text
