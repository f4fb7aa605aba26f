"""Every shared statement, rendered for one dialect: what a backend's modules run."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from storage.sql.console import CONSOLE, ConsoleStatements
from storage.sql.dialect import Dialect
from storage.sql.events import EVENTS, EventStatements
from storage.sql.ledger import LEDGER, LedgerStatements
from storage.sql.notifications import NOTIFICATIONS, NotificationStatements
from storage.sql.outbox import OUTBOX, OutboxStatements
from storage.sql.reconcile import RECONCILE, ReconcileStatements


@dataclass(frozen=True, slots=True)
class Statements:
    """The shared statements of each concern, in one dialect."""

    console: ConsoleStatements
    events: EventStatements
    ledger: LedgerStatements
    notifications: NotificationStatements
    outbox: OutboxStatements
    reconcile: ReconcileStatements


@cache
def statements_for(dialect: Dialect) -> Statements:
    """Rendered on the first call for a dialect (a backend module's import), then the same
    object for every module of that backend that asks."""
    return Statements(
        console=dialect.render_all(CONSOLE),
        events=dialect.render_all(EVENTS),
        ledger=dialect.render_all(LEDGER),
        notifications=dialect.render_all(NOTIFICATIONS),
        outbox=dialect.render_all(OUTBOX),
        reconcile=dialect.render_all(RECONCILE),
    )
