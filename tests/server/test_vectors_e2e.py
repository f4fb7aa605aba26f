"""Notifications really signed by Alipay, posted unchanged through a real server.

Vectors: tests/vectors/README.md and tests/vectors/more/README.md. Each is configured with its
own app id and Alipay public key, and the gateway's clock is set a few minutes after the
vector's notify_time (Beijing wall time, UTC+8).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from tests.oracle import form_body
from tests.server.conftest import Clock, Gateway, StartGateway, app_config, make_settings
from tests.server.notifications import key_label, post

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
BEIJING = timezone(timedelta(hours=8))
DELIVERY_DELAY = timedelta(minutes=3)


@dataclass(frozen=True)
class Vector:
    name: str
    data: dict[str, Any]
    send_raw_body: bool

    @property
    def params(self) -> dict[str, str]:
        params: dict[str, str] = self.data["params"]
        return params

    @property
    def app_id(self) -> str:
        return self.params["app_id"]

    @property
    def public_key(self) -> RSAPublicKey:
        key = serialization.load_der_public_key(base64.b64decode(self.data["alipay_public_key"]))
        assert isinstance(key, RSAPublicKey)
        return key

    @property
    def notified_at(self) -> datetime:
        wall = datetime.strptime(self.params["notify_time"], "%Y-%m-%d %H:%M:%S")
        return wall.replace(tzinfo=BEIJING).astimezone(UTC)

    @property
    def body(self) -> bytes:
        if self.send_raw_body:
            raw: str = self.data["raw_body"]
            return raw.encode("ascii")
        return form_body(self.params, self.data["charset"].lower())


def load(name: str, *, send_raw_body: bool = False) -> Vector:
    return Vector(name, json.loads((VECTORS / name).read_text("utf-8")), send_raw_body)


TRADE_V1 = load("notify_trade_status_sync_v1.json")
SERVICEMARKET_V2 = load("more/notify_servicemarket_order_notify_v2.json")
LEADING_SPACE_V1 = load("more/notify_trade_status_sync_v1_leading_space.json", send_raw_body=True)


async def start_for(
    vector: Vector, tmp_path: Path, start_gateway: StartGateway, *, after: timedelta
) -> Gateway:
    app = app_config(
        vector.app_id, alipay_public_key=vector.data["alipay_public_key"], sign_types=["RSA2"]
    )
    return await start_gateway(
        make_settings(tmp_path, apps=[app]), Clock(now=vector.notified_at + after)
    )


@pytest.mark.parametrize(
    ("vector", "rule"),
    [(TRADE_V1, "V1"), (SERVICEMARKET_V2, "V2"), (LEADING_SPACE_V1, "V1")],
    ids=["trade-status-sync-v1", "servicemarket-order-notify-v2", "leading-space-raw-body-v1"],
)
async def test_a_real_alipay_notification_is_accepted_and_stored_with_its_rule(
    tmp_path: Path, start_gateway: StartGateway, vector: Vector, rule: str
) -> None:
    assert vector.data["rule"] == rule  # as its README documents
    gateway = await start_for(vector, tmp_path, start_gateway, after=DELIVERY_DELAY)

    status, code, body = await post(
        gateway.client, {}, body=vector.body, header_charset=vector.data["charset"]
    )

    assert (status, code, body) == (200, "", b"success")
    stored = await gateway.store.get_notification(vector.app_id, vector.params["notify_id"])
    assert stored is not None
    assert (stored.rule, stored.sign_type, stored.key_label) == (
        rule,
        "RSA2",
        key_label(vector.public_key),
    )
    assert stored.fields == vector.params
    assert stored.raw_body == vector.body
    assert stored.occurred_at == vector.notified_at
    assert gateway.refusals() == {}


async def test_the_leading_space_vector_arrives_with_its_leading_space(
    tmp_path: Path, start_gateway: StartGateway
) -> None:
    gateway = await start_for(LEADING_SPACE_V1, tmp_path, start_gateway, after=DELIVERY_DELAY)

    await post(gateway.client, {}, body=LEADING_SPACE_V1.body)

    stored = await gateway.store.get_notification(
        LEADING_SPACE_V1.app_id, LEADING_SPACE_V1.params["notify_id"]
    )
    assert stored is not None and stored.fields["subject"].startswith(" LEADERS/")


async def test_the_leading_space_vector_with_its_value_trimmed_is_refused(
    tmp_path: Path, start_gateway: StartGateway
) -> None:
    gateway = await start_for(LEADING_SPACE_V1, tmp_path, start_gateway, after=DELIVERY_DELAY)
    trimmed = LEADING_SPACE_V1.body.replace(b"&subject=+LEADERS", b"&subject=LEADERS", 1)
    assert trimmed != LEADING_SPACE_V1.body

    status, code, body = await post(gateway.client, {}, body=trimmed)

    assert (status, code, body) == (403, "bad_signature", b"fail")
    assert await gateway.stored_nothing()
    assert gateway.refusals() == {(LEADING_SPACE_V1.app_id, "bad_signature"): 1}


@pytest.mark.parametrize("vector", [TRADE_V1, SERVICEMARKET_V2], ids=["v1", "v2"])
async def test_a_real_notification_with_one_value_changed_is_refused(
    tmp_path: Path, start_gateway: StartGateway, vector: Vector
) -> None:
    gateway = await start_for(vector, tmp_path, start_gateway, after=DELIVERY_DELAY)
    notify_id = vector.params["notify_id"]
    changed = notify_id[:-1] + ("1" if notify_id.endswith("0") else "0")
    params = {**vector.params, "notify_id": changed}
    assert params != vector.params

    status, code, _ = await post(gateway.client, params)

    assert (status, code) == (403, "bad_signature")
    assert await gateway.stored_nothing()


async def test_a_real_notification_replayed_days_later_is_refused_as_stale(
    tmp_path: Path, start_gateway: StartGateway
) -> None:
    gateway = await start_for(TRADE_V1, tmp_path, start_gateway, after=timedelta(days=2, seconds=1))

    status, code, _ = await post(gateway.client, TRADE_V1.params)

    assert (status, code) == (403, "stale")
    assert await gateway.stored_nothing()
    assert gateway.refusals() == {(TRADE_V1.app_id, "stale"): 1}
