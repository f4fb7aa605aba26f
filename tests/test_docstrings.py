"""The doors a merchant's own code uses say what they promise: every public method of ``Store``,
``ConsentLedger`` and ``MessageSender`` has a docstring, and every package says in its
``__init__`` what lives there."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from server.consent.ledger import ConsentLedger
from server.sending.sender import MessageSender
from storage.base import Store

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("interface", [Store, ConsentLedger, MessageSender])
def test_every_public_method_has_a_docstring(interface: type) -> None:
    methods = {
        name: member
        for name, member in vars(interface).items()
        if not name.startswith("_") and inspect.isfunction(member)
    }
    assert methods
    assert [name for name, method in methods.items() if not inspect.getdoc(method)] == []


def test_every_package_says_what_lives_there() -> None:
    packages = [
        p for top in ("server", "storage", "verify") for p in (ROOT / top).rglob("__init__.py")
    ]
    undocumented = [
        str(p.relative_to(ROOT)) for p in packages if not p.read_text("utf-8").startswith('"""')
    ]
    assert undocumented == []
