"""What the sandbox remembers, per dev user: the subscriptions the user made on the "platform"
(through ``run.py simulate subscribe``) and every message it "delivered"; per app, its label
sends of the rolling week.

Kept in one JSON file next to the dev keys (``data/dev/sandbox.json``), rewritten whole after
each change: a restarted dev service sees the same platform, as a real one would, and a
developer can read the file. A one-time subscription is a count of acceptances, each allowing
one send, as the platform documents it; a long-term one is a state.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

WEEK = timedelta(days=7)
# The platform's stated limit: the label-send API may be called at most 5 times a week.
LABEL_SENDS_PER_WEEK = 5
ONE_TIME = "onetime"
LONG_TERM = "longterm"


class SandboxRecord:
    """The sandbox's memory; ``path`` None keeps it in memory only (a test's sandbox)."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        document = _read(path)
        self._subscriptions: dict[str, dict[str, dict[str, Any]]] = document.get(
            "subscriptions", {}
        )
        self._deliveries: dict[str, list[dict[str, Any]]] = document.get("deliveries", {})
        self._label_sends: dict[str, list[str]] = document.get("label_sends", {})

    def subscribe(self, user: str, template: str, kind: str, accept: bool) -> None:
        """The user's answer in the subscribe panel: an acceptance of a one-time template adds
        one send; a rejection closes the template (one-time sends left are kept by the platform
        as the ledger keeps them, but the query then says refused)."""
        known = self._subscriptions.setdefault(user, {}).get(template, {})
        credits = int(known.get("credits", 0)) + (1 if accept and kind == ONE_TIME else 0)
        state = "1" if accept else "0"
        self._subscriptions[user][template] = {"state": state, "type": kind, "credits": credits}
        self._save()

    def relation(self, user: str, template: str) -> Mapping[str, Any] | None:
        return self._subscriptions.get(user, {}).get(template)

    def take_send(self, user: str, template: str) -> bool:
        """Whether the user's subscription allows one more send of ``template`` (a one-time
        acceptance is used up by it)."""
        known = self._subscriptions.get(user, {}).get(template)
        if known is None:
            return False
        if known["type"] == LONG_TERM:
            return bool(known["state"] == "1")
        if known["credits"] < 1:
            return False
        known["credits"] -= 1
        self._save()
        return True

    def deliver(self, user: str, at: datetime, **what: Any) -> None:
        self._deliveries.setdefault(user, []).append({"at": at.isoformat(), **what})
        self._save()

    def take_label_send(self, app_id: str, at: datetime) -> bool:
        """Count one label send of the app, or False once the week's are used."""
        recent = [
            stamp
            for stamp in self._label_sends.get(app_id, [])
            if datetime.fromisoformat(stamp) > at - WEEK
        ]
        if len(recent) >= LABEL_SENDS_PER_WEEK:
            return False
        self._label_sends[app_id] = [*recent, at.isoformat()]
        self._save()
        return True

    def user(self, user: str) -> dict[str, Any]:
        """What the platform holds about one user, as the sandbox shows it."""
        return {
            "user_id": user,
            "subscriptions": self._subscriptions.get(user, {}),
            "deliveries": self._deliveries.get(user, []),
        }

    def _save(self) -> None:
        if self._path is None:
            return
        document = {
            "subscriptions": self._subscriptions,
            "deliveries": self._deliveries,
            "label_sends": self._label_sends,
        }
        temporary = self._path.with_suffix(".tmp")
        temporary.write_text(json.dumps(document, ensure_ascii=False, indent=1), "utf-8")
        os.replace(temporary, self._path)


def _read(path: Path | None) -> dict[str, Any]:
    if path is None or not path.is_file():
        return {}
    try:
        document = json.loads(path.read_text("utf-8"))
    except ValueError:
        return {}  # a damaged file: the sandbox starts afresh rather than refusing to serve
    return document if isinstance(document, dict) else {}
