"""The bulk lookup's read on PostgreSQL: many users' summaries of one template in one statement.

Each user's row is read by its whole key in a LATERAL subquery, so the plan does not depend on
statistics: written as ``user_id = ANY(...)``, it was planned as a scan of every key of the
template once ``consents`` had grown since its last ANALYZE. The subquery's ``LIMIT 1`` (a key
has one row) keeps PostgreSQL from pulling it up into a join, which it may then plan as a hash
of every key of the template, as it did.
"""

# ruff: noqa: S608 (the statement is built from constants, at import)
from __future__ import annotations

from collections.abc import Sequence

from storage.models import ConsentSummary
from storage.postgres.connection import Conn, Pool, fetch
from storage.sql.dialect import POSTGRES
from storage.sql.ledger import SUMMARY_COLUMNS
from storage.sql.ledger_rows import summary_from_row

SUMMARIES_OF_USERS = POSTGRES.render(
    "SELECT c.* FROM unnest(?::text[]) AS k(user_id) CROSS JOIN LATERAL "
    f"(SELECT {SUMMARY_COLUMNS}, user_id FROM consents WHERE app_id = ? AND user_id = k.user_id "
    "AND channel = ? AND template_id = ? LIMIT 1) AS c"
)


async def summaries_of_users(
    reader: Pool | Conn, app_id: str, channel: str, template_id: str, user_ids: Sequence[str]
) -> dict[str, ConsentSummary]:
    """The summary of each user that has a row for the template, by user id."""
    rows = await fetch(reader, SUMMARIES_OF_USERS, list(user_ids), app_id, channel, template_id)
    return {row[8]: summary_from_row(row) for row in rows}
