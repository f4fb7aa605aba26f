"""Console sessions, kept in this process's memory.

A browser holds only a random session key (an HttpOnly, SameSite=Strict cookie); the book keeps
the key's SHA-256 digest, the grant of the token that logged in (never the token) and the
session's CSRF token. A session ends ``session_seconds`` after login, after ``idle_seconds``
without a request, or at logout, and then its key opens nothing, whatever the cookie says.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from server.api.auth import Grant
from server.runtime.clock import Clock
from server.settings import ConsoleSettings


@dataclass
class Session:
    """One operator's login: what the token may do, and the token every POST must carry."""

    grant: Grant
    csrf: str
    opened_at: datetime
    seen_at: datetime


class SessionBook:
    """Every live session of this process, by the digest of its key."""

    def __init__(self, settings: ConsoleSettings, clock: Clock) -> None:
        self._lifetime = timedelta(seconds=settings.session_seconds)
        self._idle = timedelta(seconds=settings.idle_seconds)
        self._limit = settings.max_sessions
        self._clock = clock
        self._sessions: dict[bytes, Session] = {}

    @property
    def lifetime_seconds(self) -> int:
        """How long a session may last: its cookie's Max-Age."""
        return int(self._lifetime.total_seconds())

    def open(self, grant: Grant) -> str:
        """Start a session for ``grant``; return the key its cookie carries."""
        self._forget_expired()
        while len(self._sessions) >= self._limit:
            oldest = min(self._sessions, key=lambda digest: self._sessions[digest].opened_at)
            del self._sessions[oldest]
        key = secrets.token_urlsafe(32)
        now = self._clock()
        self._sessions[_digest(key)] = Session(grant, secrets.token_urlsafe(32), now, now)
        return key

    def find(self, key: str | None) -> Session | None:
        """The live session of this key (its idle time starts again), or None."""
        if not key:
            return None
        digest = _digest(key)
        session = self._sessions.get(digest)
        if session is None:
            return None
        now = self._clock()
        if self._expired(session, now):
            del self._sessions[digest]
            return None
        session.seen_at = now
        return session

    def close(self, key: str | None) -> None:
        """End the session of this key (logout): the key opens nothing from now on."""
        if key:
            self._sessions.pop(_digest(key), None)

    def __len__(self) -> int:
        return len(self._sessions)

    def _expired(self, session: Session, now: datetime) -> bool:
        return now >= session.opened_at + self._lifetime or now >= session.seen_at + self._idle

    def _forget_expired(self) -> None:
        now = self._clock()
        for digest in [d for d, s in self._sessions.items() if self._expired(s, now)]:
            del self._sessions[digest]


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
