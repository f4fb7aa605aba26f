"""The periodic reconciliation's statements: its walk over the users holding open mini-program
consent, and the cursor that says where the walk is (``storage.sql.reconcile_walk`` runs them).
"""

# ruff: noqa: S608 (every statement is built from constants, at import)
from __future__ import annotations

from dataclasses import dataclass

# An open mini-program key: a subscription or credits. Written as the WHERE of the partial index
# consents_open_mini_program (migration 0014 on SQLite, 0015 on PostgreSQL), term for term: SQLite
# uses a partial index only for a query whose WHERE holds each of the index's terms.
OPEN_MINI_PROGRAM = "channel = 'mini_template' AND (credits > 0 OR status = 'subscribed')"
_OPEN_USERS = f"SELECT DISTINCT app_id, user_id FROM consents WHERE {OPEN_MINI_PROGRAM} AND "
_IN_KEY_ORDER = " ORDER BY app_id, user_id LIMIT ?"


@dataclass(frozen=True, slots=True)
class ReconcileStatements:
    """Each statement of the walk, neutral (``?``) until a dialect renders it."""

    cursor: str = "SELECT app_id, user_id, moves FROM reconcile_cursor WHERE id = 1"
    # The next users after the cursor's (app, user); then, at the end of the cycle, the first
    # ones up to it. Each is a range of the partial index, read in its order.
    open_users_after: str = f"{_OPEN_USERS}(app_id, user_id) > (?, ?){_IN_KEY_ORDER}"
    open_users_up_to: str = f"{_OPEN_USERS}(app_id, user_id) <= (?, ?){_IN_KEY_ORDER}"
    # Compare and set: the cursor moves only from the place it was read at.
    move_cursor: str = (
        "UPDATE reconcile_cursor SET app_id = ?, user_id = ?, moves = moves + 1 "
        "WHERE id = 1 AND moves = ?"
    )


RECONCILE = ReconcileStatements()
