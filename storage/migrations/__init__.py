"""Versioned schema migrations: ``<backend>/NNNN_name.sql``, applied in order, each once.

Each backend keeps its own scripts (the schemas differ in types, identity columns and indexes);
the runners are ``storage.sqlite.migrate`` and ``storage.postgres.migrate``. A script, once
released, is never edited: a database records the versions it has applied, not their text. This
package reads the scripts and may import only the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files


@dataclass(frozen=True, slots=True)
class Migration:
    """One script of a backend, as numbered and named by its file."""

    version: int
    name: str
    sql: str


def migrations_for(backend: str) -> list[Migration]:
    """Every script of ``backend`` in version order; a gap in the numbers is a packaging error."""
    folder = files(__package__).joinpath(backend)
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            number, _, rest = entry.name.partition("_")
            found.append(
                Migration(int(number), rest.removesuffix(".sql"), entry.read_text("utf-8"))
            )
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"{backend} migrations are not numbered 1..N without gaps")
    return found
