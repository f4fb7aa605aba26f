"""What a ``my.requestSubscribeMessage`` result means for the ledger (pure).

The mapping table is docs/subscribe-results.md.

The mini-program reports the callback object exactly as it got it. Each row of the mapping table
in docs/subscribe-results.md is one branch here, in the same order:

  R1  an error code (``errorCode`` / ``error``)     nothing changes; the code is named
  R2  ``behavior: "cancel"`` (the user closed it)   nothing changes
  R3  ``behavior: ""`` or ``success: false``         nothing changes (the call failed)
  R4  ``show: false``                              nothing changes: the user was not asked again
  R5  accepted now                                 ``accept`` (one-time: one more credit)
  R6  rejected now                                 ``reject``
  R7  named but neither accepted nor rejected      nothing changes for that template

"Accepted now" is ``result.currentSubscribedEntityIds`` (newly subscribed in this call) when the
result has it, else the templates whose per-id value is ``"accept"``. "Rejected now" is
``result.unsubscribedEntityIds`` plus per-id ``"reject"``. A template in both is a
contradiction and the whole report is refused. ``keep`` and ``refuse`` travel with every event.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from server.errors import InvalidReport
from storage.models import ConsentAction

MAX_TEMPLATES_PER_REPORT = 3  # the platform's own limit per my.requestSubscribeMessage call
_TEMPLATE_ID = re.compile(r"^[0-9A-Za-z_-]{1,64}$")

# Error codes of my.requestSubscribeMessage, as Alipay lists them (docs/subscribe-results.md).
ERROR_REASONS = {
    "10": "system_error",
    "11": "user_cancelled",
    "15": "panel_already_open",
    "203": "invalid_params",
    "402": "app_cannot_serve",
    "100201": "rate_limited",
    "106002": "mixed_template_types",
    "106008": "invalid_template",
    "-1": "failed",
}


class SubscribeResultDetail(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    subscribeEntityIds: list[str] | None = None  # the platform's own camelCase names
    subscribedEntityIds: list[str] | None = None
    unsubscribedEntityIds: list[str] | None = None
    currentSubscribedEntityIds: list[str] | None = None
    entityList: list[str] | None = None


class SubscribeResult(BaseModel):
    """The callback object, success or fail shape, plus our optional ``reported_at``."""

    model_config = ConfigDict(extra="allow", frozen=True)

    # Strict: pydantic would read "false" as False, which a JavaScript client treats as true.
    success: StrictBool | None = None
    stat: str | None = None
    behavior: str | None = None
    result: SubscribeResultDetail | None = None
    show: StrictBool | None = None
    keep: StrictBool | None = None
    refuse: StrictBool | None = None
    error: int | str | None = None
    errorCode: int | str | None = None
    errorMessage: str | None = Field(default=None, max_length=500)
    reported_at: datetime | None = None

    def per_template_answers(self) -> dict[str, str]:
        """The dynamic ``"<template id>": "accept" | "reject"`` keys."""
        extra = self.model_extra or {}
        return {
            key: value
            for key, value in extra.items()
            if isinstance(value, str)
            and value in ("accept", "reject")
            and _TEMPLATE_ID.fullmatch(key)
        }


@dataclass(frozen=True, slots=True)
class Decision:
    template_id: str
    action: ConsentAction


@dataclass(frozen=True, slots=True)
class Interpretation:
    rule: str  # R1..R7, as in the table
    reason: str  # why nothing was applied, or "applied"
    decisions: tuple[Decision, ...] = ()


def interpret(report: SubscribeResult) -> Interpretation:
    code = report.errorCode if report.errorCode not in (None, "", 0) else report.error
    if code not in (None, "", 0, "0"):
        return Interpretation("R1", ERROR_REASONS.get(str(code), "failed"))
    if report.behavior == "cancel":
        return Interpretation("R2", "user_cancelled")
    if report.behavior != "subscribe" or report.success is False:
        return Interpretation("R3", "failed")
    if report.show is False:
        return Interpretation("R4", "not_shown")
    accepted, rejected = _accepted(report), _rejected(report)
    _check(accepted, rejected)
    decisions = [Decision(t, ConsentAction.ACCEPT) for t in sorted(accepted)]
    decisions += [Decision(t, ConsentAction.REJECT) for t in sorted(rejected)]
    if not decisions:
        return Interpretation("R7", "nothing_decided")
    return Interpretation("R5" if accepted else "R6", "applied", tuple(decisions))


def _accepted(report: SubscribeResult) -> set[str]:
    current = report.result.currentSubscribedEntityIds if report.result else None
    if current is not None:
        return set(current)
    return {t for t, answer in report.per_template_answers().items() if answer == "accept"}


def _rejected(report: SubscribeResult) -> set[str]:
    listed = (report.result.unsubscribedEntityIds if report.result else None) or []
    answered = {t for t, answer in report.per_template_answers().items() if answer == "reject"}
    return set(listed) | answered


def _check(accepted: set[str], rejected: set[str]) -> None:
    both = accepted & rejected
    if both:
        raise InvalidReport("a template is both accepted and rejected in one report")
    named = accepted | rejected
    if len(named) > MAX_TEMPLATES_PER_REPORT:
        raise InvalidReport(f"a report decides at most {MAX_TEMPLATES_PER_REPORT} templates")
    if any(not _TEMPLATE_ID.fullmatch(template) for template in named):
        raise InvalidReport("template ids are 1-64 letters, digits, '_' or '-'")
