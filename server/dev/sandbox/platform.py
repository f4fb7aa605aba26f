"""What the sandbox plays the platform for: one dev app's keys, one TOP app's secret and the
app's templates, with the record and the clock every gateway of the sandbox shares."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from server.dev.sandbox.record import SandboxRecord
from server.runtime.clock import Clock, utc_now


@dataclass(frozen=True)
class SandboxPlatform:
    """``app_public_key`` checks every request of the app; ``alipay_private_key`` signs every
    answer (the stand-in Alipay key whose public half the app trusts). ``templates``: template
    id -> ``onetime`` or ``longterm``, as the platform's console would know them."""

    app_id: str
    app_public_key: RSAPublicKey
    alipay_private_key: RSAPrivateKey = field(repr=False)
    top_app_key: str
    top_secret: str = field(repr=False)
    templates: Mapping[str, str]
    record: SandboxRecord
    encrypt_key: bytes | None = field(default=None, repr=False)
    clock: Clock = utc_now
