"""The idempotency window: a pruned notification, replayed, is refused as stale."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from server.settings import SettingsError, load_settings, settings_from_mapping
from server.wiring.app import prune_once
from tests.server.conftest import APP_ID, NOW, Clock, StartGateway, app_config
from tests.server.notifications import post, signed, trade_fields

DAY = timedelta(days=1)


def retention_settings(tmp_path: Path, days: float, max_age_days: float = 2) -> Any:
    return settings_from_mapping(
        {
            "server": {"notify_max_age_seconds": int(max_age_days * 86400)},
            "storage": {"url": f"sqlite:///{tmp_path / 'subgate.db'}"},
            "apps": [app_config()],
            "retention": {"notifications_days": days},
        },
        base_dir=tmp_path,
    )


async def test_a_notification_replayed_after_pruning_is_refused_as_stale(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    clock = Clock(NOW)
    gateway = await start_gateway(retention_settings(tmp_path, days=3), clock)
    old, recent = signed(trade_fields(when=NOW)), signed(trade_fields(when=NOW + 2 * DAY))
    assert (await post(gateway.client, old))[0] == 200
    clock.now = NOW + 2 * DAY
    assert (await post(gateway.client, recent))[0] == 200

    clock.now = NOW + 4 * DAY
    pruned = await prune_once(gateway.app, clock)
    replay = await post(gateway.client, old)

    assert pruned == 1
    assert replay == (403, "stale", b"fail")
    assert await gateway.store.count_notifications() == 1
    assert await gateway.store.get_notification(APP_ID, recent["notify_id"]) is not None


@pytest.mark.parametrize("days", [1, 2])
def test_retention_shorter_than_the_freshness_window_is_refused(
    tmp_path: Path, days: float
) -> None:
    with pytest.raises(SettingsError, match=r"retention\.notifications_days"):
        retention_settings(tmp_path, days=days, max_age_days=2)


def test_by_default_nothing_is_ever_pruned(tmp_path: Path) -> None:
    settings = settings_from_mapping({"apps": [app_config()]}, base_dir=tmp_path)

    assert settings.retention.notifications_days == 0


@pytest.mark.parametrize(("mode", "warned"), [(0o644, True), (0o640, True), (0o600, False)])
def test_a_config_readable_by_others_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: int, warned: bool
) -> None:
    config = tmp_path / "subgate.toml"
    config.write_text(f'[[apps]]\napp_id = "{APP_ID}"\nalipay_public_key = "k"\n')
    config.chmod(mode)

    with caplog.at_level(logging.WARNING, logger="server.settings"):
        load_settings(config)

    assert ("chmod 600" in caplog.text) is warned
