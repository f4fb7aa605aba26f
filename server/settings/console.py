"""``[console]``: the operator console at /console (server/console/)."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from server.settings.section import Section


class ConsoleSettings(Section):
    """How long a console session lasts. A session ends at ``session_seconds`` after login, or
    after ``idle_seconds`` without a page, whichever comes first; logging out ends it at once."""

    enabled: bool = True
    session_seconds: int = Field(default=8 * 3600, ge=60, le=7 * 86400)
    idle_seconds: int = Field(default=30 * 60, ge=60, le=7 * 86400)
    max_sessions: int = Field(default=1000, ge=1, le=100_000)

    @model_validator(mode="after")
    def _idle_within_session(self) -> Self:
        if self.idle_seconds > self.session_seconds:
            raise ValueError("console.idle_seconds must not exceed console.session_seconds")
        return self
