"""``[[destinations]]``: what start-up accepts, what it refuses (with a message naming the key and
never the secret), and the keys a destination signs with."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from server.settings import Settings, SettingsError, load_settings, settings_from_mapping

APP = {"app_id": "2021000000000001", "alipay_public_key": "k"}
KEY = bytes(range(32))
SECRET = "whsec_" + base64.b64encode(KEY).decode()
OTHER_KEY = bytes(range(100, 124))
OTHER_SECRET = "whsec_" + base64.b64encode(OTHER_KEY).decode()


def destination(**overrides: Any) -> dict[str, Any]:
    table: dict[str, Any] = {"name": "orders", "url": "http://127.0.0.1:9/hook", "secret": SECRET}
    table.update(overrides)
    return {k: v for k, v in table.items() if v is not None}


def settings_with(*destinations: dict[str, Any], base_dir: Path = Path(".")) -> Settings:
    return settings_from_mapping(
        {"apps": [APP], "destinations": list(destinations)}, base_dir=base_dir
    )


def test_a_destination_gets_the_documented_defaults() -> None:
    settings = settings_with(destination())

    (orders,) = settings.destinations
    assert (orders.apps, orders.events, orders.kinds) == (None, None, None)
    assert orders.timeout_seconds == 10.0
    assert (orders.retry_initial_seconds, orders.retry_max_seconds) == (5.0, 3600.0)
    assert orders.give_up_after_seconds == 259200.0
    assert (orders.max_response_bytes, orders.concurrency, orders.poll_seconds) == (65536, 8, 1.0)
    assert orders.signing_keys(Path(".")) == (KEY,)


def test_no_destination_is_configured_by_default() -> None:
    assert settings_from_mapping({"apps": [APP]}, base_dir=Path(".")).destinations == []


def test_several_secrets_sign_in_the_order_given() -> None:
    settings = settings_with(destination(secret=[OTHER_SECRET, SECRET]))

    assert settings.destinations[0].signing_keys(Path(".")) == (OTHER_KEY, KEY)


def test_a_secret_may_be_read_from_a_file_beside_the_config(tmp_path: Path) -> None:
    (tmp_path / "orders.secret").write_text(f"# rotated 2026-11\n{OTHER_SECRET}\n{SECRET}\n")
    (tmp_path / "orders.secret").chmod(0o600)
    config = tmp_path / "subgate.toml"
    config.write_text(
        '[[apps]]\napp_id = "2021000000000001"\nalipay_public_key = "k"\n\n'
        '[[destinations]]\nname = "orders"\nurl = "https://orders.internal/alipay-events"\n'
        'secret = "orders.secret"\nevents = ["notification.*"]\n'
    )

    settings = load_settings(config)

    assert settings.destinations[0].signing_keys(settings.base_dir) == (OTHER_KEY, KEY)
    assert settings.destinations[0].events == ["notification.*"]


@pytest.mark.parametrize(
    ("table", "fragment"),
    [
        (destination(url="ftp://orders.internal/hook"), "destinations.0.url"),
        (destination(url="orders.internal/hook"), "http:// or https://"),
        (destination(url="http:///hook"), "with a host"),
        (destination(url="http://orders.internal:99999/hook"), "destinations.0.url"),
        (destination(secret=None), "destinations.0.secret"),
        (destination(secret="whsec_!!!not*base64"), "whsec_ followed by base64"),
        (destination(secret="whsec_" + base64.b64encode(b"short").decode()), "24 to 64 bytes"),
        (destination(secret="whsec_" + base64.b64encode(bytes(65)).decode()), "24 to 64 bytes"),
        (destination(secret=[SECRET, "sk_live_notwebhooks"]), "must start with whsec_"),
        (destination(secret=[]), "at least one"),
        (destination(secret="no-such-file.secret"), "neither a whsec_ secret nor"),
        (destination(name="Orders"), "destinations.0.name"),
        (destination(name="-orders"), "destinations.0.name"),
        (destination(name="orders service"), "destinations.0.name"),
        (destination(events=["notification.recieved"]), "matches no event type"),
        (destination(events=["consent.*", "orders.*"]), "'orders.\\*' matches no event type"),
        (destination(events=[]), "destinations.0.events"),
        (destination(apps=["2021999999999999"]), "names apps that are not configured"),
        (destination(retry_initial_seconds=60, retry_max_seconds=30), "retry_max_seconds"),
        (destination(timeout_seconds=0), "destinations.0.timeout_seconds"),
        (destination(concurrency=0), "destinations.0.concurrency"),
        (destination(event=["consent.changed"]), "destinations.0.event"),
        (destination(kind=["trade_status_sync"]), "destinations.0.kind"),
    ],
)
def test_start_up_refuses_a_destination_that_cannot_work(
    table: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(SettingsError, match=fragment):
        settings_with(table)


def test_destination_names_are_unique() -> None:
    with pytest.raises(SettingsError, match="only once in \\[\\[destinations\\]\\]"):
        settings_with(destination(), destination(url="http://127.0.0.1:10/other"))


def test_an_empty_secret_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty.secret").write_text("# nothing yet\n\n")

    with pytest.raises(SettingsError, match="holds no secret"):
        settings_with(destination(secret="empty.secret"), base_dir=tmp_path)


def test_a_bad_secret_in_a_file_is_refused_without_showing_it(tmp_path: Path) -> None:
    leaked = "whsec_" + base64.b64encode(b"sixteen byte key").decode()
    (tmp_path / "orders.secret").write_text(leaked)

    with pytest.raises(SettingsError, match=r"destinations\.0\.secret") as raised:
        settings_with(destination(secret="orders.secret"), base_dir=tmp_path)

    assert leaked not in str(raised.value) and leaked[6:] not in str(raised.value)


def test_refusals_never_echo_a_secret_or_the_url() -> None:
    malformed = "whsec_" + "s3cr3t-but-not-base64!"
    url = "gopher://user:hunter2hunter2@orders.internal/hook"

    with pytest.raises(SettingsError) as raised:
        settings_with(destination(secret=[SECRET, malformed], url=url))

    message = str(raised.value)
    assert "destinations.0.url" in message and "destinations.0.secret" in message
    assert "s3cr3t" not in message and SECRET[6:] not in message and "hunter2" not in message


def test_secrets_do_not_show_in_reprs() -> None:
    settings = settings_with(destination(secret=[SECRET, OTHER_SECRET]))

    shown = repr(settings) + str(settings) + settings.model_dump_json()

    assert SECRET[6:] not in shown and OTHER_SECRET[6:] not in shown


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://orders.internal/alipay-events", "https://orders.internal/alipay-events"),
        (
            "https://hook:hunter2@orders.internal:9000/alipay-events?token=abc#top",
            "https://orders.internal:9000/alipay-events",
        ),
        ("http://[::1]:8080/hook", "http://[::1]:8080/hook"),
    ],
)
def test_the_url_an_answer_may_show_carries_no_credential(url: str, shown: str) -> None:
    assert settings_with(destination(url=url)).destinations[0].shown_url == shown
