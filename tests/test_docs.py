"""The docs are part of the product: these tests keep them complete and true."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import server.errors as server_errors
import storage.errors as storage_errors
import verify.errors as verify_errors
from server.settings import (
    AppSettings,
    ConsoleSettings,
    DeliverySettings,
    DestinationSettings,
    OutboxSettings,
    ReconcileSettings,
    RetentionSettings,
    ServerSettings,
    StorageSettings,
    TemplateSettings,
    TokenSettings,
    TopAppSettings,
)

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _subclasses(base: type[Any]) -> set[type[Any]]:
    found: set[type[Any]] = set()
    for child in base.__subclasses__():
        found |= {child} | _subclasses(child)
    return found


def request_error_codes() -> set[str]:
    """Every code a request can be refused with (configuration errors excluded)."""
    bases = (
        verify_errors.VerificationError,
        server_errors.RequestRefused,
        storage_errors.StorageError,
    )
    return {cls.code for base in bases for cls in _subclasses(base)}


@pytest.mark.parametrize(
    ("section", "model"),
    [
        ("server", ServerSettings),
        ("storage", StorageSettings),
        ("apps", AppSettings),
        ("top_apps", TopAppSettings),
        ("apps.templates", TemplateSettings),
        ("tokens", TokenSettings),
        ("outbox", OutboxSettings),
        ("delivery", DeliverySettings),
        ("reconcile", ReconcileSettings),
        ("retention", RetentionSettings),
        ("destinations", DestinationSettings),
        ("console", ConsoleSettings),
    ],
)
def test_every_setting_is_documented(section: str, model: type[BaseModel]) -> None:
    text = (DOCS / "settings.md").read_text("utf-8")

    missing = [name for name in model.model_fields if f"`{section}.{name}`" not in text]

    assert missing == []


def test_every_error_code_has_a_status_and_a_row_in_the_docs() -> None:
    rows = set(
        re.findall(r"^\| `([a-z_]+)` \| (\d{3}) \|", (DOCS / "errors.md").read_text("utf-8"), re.M)
    )
    documented = {code: int(status) for code, status in rows}

    codes = request_error_codes()

    assert codes - set(server_errors.STATUS_BY_CODE) == set()
    assert {code: server_errors.STATUS_BY_CODE[code] for code in codes} == {
        code: documented.get(code) for code in codes
    }


def test_ci_runs_exactly_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    match = re.search(r"Run the tests:\n\n```sh\n(.+)\n```", readme)
    assert match is not None, "README must show the test command under 'Run the tests:'"

    ci_lines = (ROOT / ".ci" / "run").read_text("utf-8").splitlines()

    assert match.group(1) in ci_lines


def test_readme_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")

    targets = re.findall(r"\]\(([^)#]+)\)", readme)

    assert targets and [t for t in targets if not (ROOT / t).exists()] == []
