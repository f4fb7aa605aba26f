"""Realistic signed notifications (~1 KB, distinct notify_ids), signed with ``cryptography``.

The benchmark signs its own load independently of Subgate's ``verify`` package. Bodies are cached
under ``bench/.cache`` keyed by the key and count, so repeated runs start fast.
"""

from __future__ import annotations

import base64
import hashlib
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote_plus

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

BEIJING = timezone(timedelta(hours=8))


def notification(index: int, app_id: str, now: datetime) -> dict[str, str]:
    stamp = now.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")
    return {
        "gmt_create": stamp,
        "charset": "utf-8",
        "seller_email": "merchant@example.com",
        "subject": f"Subgate 压测订单 {index} 500人规模",
        "buyer_id": f"2088{index:012d}",
        "invoice_amount": "168.00",
        "notify_id": f"bench{index:020d}{hashlib.sha1(str(index).encode()).hexdigest()[:14]}",  # noqa: S324
        "fund_bill_list": '[{"amount":"168.00","fundChannel":"PCREDIT"}]',
        "notify_type": "trade_status_sync",
        "trade_status": "TRADE_SUCCESS",
        "receipt_amount": "168.00",
        "app_id": app_id,
        "buyer_pay_amount": "168.00",
        "seller_id": "2088031961907583",
        "gmt_payment": stamp,
        "notify_time": stamp,
        "version": "1.0",
        "out_trade_no": f"GP{index:020d}",
        "total_amount": "168.00",
        "trade_no": f"2026112322{index:018d}",
        "auth_app_id": app_id,
        "buyer_logon_id": "qij***@example.com",
        "point_amount": "0.00",
    }


def signed_body(fields: dict[str, str], key: rsa.RSAPrivateKey) -> bytes:
    content = "&".join(f"{k}={fields[k]}" for k in sorted(fields) if fields[k].strip())
    signature = key.sign(content.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    wire = {**fields, "sign_type": "RSA2", "sign": base64.b64encode(signature).decode("ascii")}
    return "&".join(f"{k}={quote_plus(v)}" for k, v in wire.items()).encode("ascii")


def _chunk(args: tuple[bytes, str, int, int, float]) -> list[bytes]:
    pem, app_id, start, stop, timestamp = args
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    now = datetime.fromtimestamp(timestamp, tz=UTC)
    return [signed_body(notification(i, app_id, now), key) for i in range(start, stop)]


def make_bodies(path: Path, count: int, key: rsa.RSAPrivateKey, app_id: str, now: datetime) -> Path:
    """Write ``count`` bodies, one per line, to ``path`` (reused when it already exists)."""
    if path.exists() and sum(1 for _ in path.open("rb")) == count:
        return path
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    step = 2000
    jobs = [(pem, app_id, s, min(s + step, count), now.timestamp()) for s in range(0, count, step)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max_workers=2) as pool, path.open("wb") as out:
        for bodies in pool.map(_chunk, jobs):
            out.write(b"\n".join(bodies) + b"\n")
    return path
