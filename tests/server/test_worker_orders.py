"""A worker's orders cross its standard-input pipe as JSON: plain values validated into the
orders type, never an object built by the reader (``server/workers/orders.py``)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from pydantic import ValidationError

from server.settings import settings_from_mapping
from server.workers.call_messages import CallWorkerOrders
from server.workers.orders import decode_orders, encode_orders
from server.workers.relay import WorkerOrders
from server.workers.supervision import worker_settings
from tests.server.conftest import app_config


def settings(tmp_path: Path) -> object:
    data = {
        "server": {"intake_workers": 1, "intake_port": 8099},
        "apps": [app_config(encrypt_key="aGVsbG8gd29ybGQgMTIzNA==")],
    }
    return worker_settings(settings_from_mapping(data, base_dir=tmp_path))


def test_orders_round_trip_with_their_secrets_and_base_dir(tmp_path: Path) -> None:
    orders = WorkerOrders(settings(tmp_path), tmp_path / "relay.sock", 20)  # type: ignore[arg-type]

    line = encode_orders(orders)
    again = decode_orders(WorkerOrders, line)

    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert again == orders
    assert again.settings.base_dir == tmp_path
    app = again.settings.apps[0]
    assert app.encrypt_key is not None
    assert app.encrypt_key.get_secret_value() == "aGVsbG8gd29ybGQgMTIzNA=="


def test_call_worker_orders_round_trip(tmp_path: Path) -> None:
    orders = CallWorkerOrders(settings(tmp_path), 7, 10)  # type: ignore[arg-type]

    assert decode_orders(CallWorkerOrders, encode_orders(orders)) == orders


def test_a_pickle_or_a_wrongly_typed_field_is_refused(tmp_path: Path) -> None:
    orders = CallWorkerOrders(settings(tmp_path), 7, 10)  # type: ignore[arg-type]
    wrong = encode_orders(orders).replace(b'"socket_fd": 7', b'"socket_fd": "7; rm -rf /"')

    with pytest.raises(ValueError):
        decode_orders(CallWorkerOrders, pickle.dumps(orders))
    with pytest.raises(ValidationError):
        decode_orders(CallWorkerOrders, wrong)
