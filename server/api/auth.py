"""Bearer tokens for the /v1 API: which apps and scopes each token may use.

Tokens are kept only as SHA-256 digests and every presented token is compared against every
digest with ``hmac.compare_digest`` (no early exit), so timing tells nothing about them.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from server.errors import Forbidden, Unauthorized
from server.settings import TokenSettings

Scope = Literal["read", "write", "send"]


@dataclass(frozen=True, slots=True)
class Grant:
    apps: frozenset[str]  # "*" is every configured app
    scopes: frozenset[str]
    # Who acts, for the record (a settle's evidence): ``token:`` and the first 8 hex digits of
    # the token's SHA-256, which tell the configured tokens apart and reveal nothing of them.
    identity: str = ""

    def require(self, app_id: str, scope: Scope) -> None:
        if not self.covers((app_id,)):
            raise Forbidden("this token may not act for this app")
        self.require_scope(scope)

    def require_scope(self, scope: Scope) -> None:
        """For operations that are no one app's (the destinations): the scope alone."""
        if scope not in self.scopes:
            raise Forbidden(f"this token lacks the {scope!r} scope")

    def covers(self, apps: Iterable[str]) -> bool:
        """May this token act for every one of ``apps``?"""
        return "*" in self.apps or self.apps.issuperset(apps)


class TokenRing:
    def __init__(self, tokens: list[TokenSettings]) -> None:
        digests = [_digest(t.token.get_secret_value()) for t in tokens]
        self._grants = [
            (digest, Grant(frozenset(t.apps), frozenset(t.scopes), f"token:{digest.hex()[:8]}"))
            for digest, t in zip(digests, tokens, strict=True)
        ]

    def authenticate(self, authorization: str | None) -> Grant:
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise Unauthorized("send Authorization: Bearer <token>")
        digest = _digest(presented.strip())
        found: Grant | None = None
        for known, grant in self._grants:
            if hmac.compare_digest(known, digest) and found is None:
                found = grant
        if found is None:
            raise Unauthorized("unknown token")
        return found


def _digest(token: str) -> bytes:
    # A header that is not UTF-8 arrives with surrogate escapes: digest its bytes all the same.
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
