"""The channel interface: every platform Subgate sends through is one module implementing it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from server.alipay_client import CallResult
from server.credentials import AppCredentials
from server.templates import TemplateRegistry
from storage.models import TemplateKind


@dataclass(frozen=True, slots=True)
class PreparedSend:
    """A validated send: the ledger key it needs consent on, and what to send."""

    user_id: str
    template_id: str
    kind: TemplateKind
    payload: Mapping[str, Any]


class Channel(Protocol):
    name: str

    def prepare(
        self, app_id: str, body: Mapping[str, Any], templates: TemplateRegistry
    ) -> PreparedSend:
        """Validate the request (422 on any problem, nothing reserved)."""

    async def deliver(self, app: AppCredentials, payload: Mapping[str, Any]) -> CallResult:
        """Make the platform call for a reserved message."""
