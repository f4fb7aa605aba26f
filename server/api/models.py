"""Bodies the /v1 API adds to the consent ledger's views: the one error shape."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str
    message: str
    retry_at: datetime | None = Field(
        default=None, description="weekly_limit: when the next send is allowed."
    )


class ErrorAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    error: ErrorDetail
