"""Schema versions, shared by both stores' ``database.py``.

A store's ``schema.sql`` holds the base schema, then one section per later version, each
opened by a ``-- @version N: ...`` line and running to the next one. A fresh database runs
the whole file; an older one runs the sections of the versions it lacks, so each version's
SQL is written once. A version that also changed the base tables (which ``schema.sql`` holds
as they are now) prefixes its section with those changes (``before``).
"""

from __future__ import annotations

from collections.abc import Mapping

from polycrowd.engine.store.base import StoreError

MARK = "-- @version "


def sections(script: str) -> dict[int, str]:
    """version -> its section of ``script``, the marking line included."""
    found: dict[int, list[str]] = {}
    lines: list[str] | None = None
    for line in script.splitlines():
        if line.startswith(MARK):
            version = int(line[len(MARK) :].split(":", 1)[0])
            if version in found:
                raise ValueError(f"schema version {version} is marked twice")
            lines = found[version] = []
        if lines is not None:
            lines.append(line)
    return {version: "\n".join(body) + "\n" for version, body in found.items()}


def migrations(script: str, before: Mapping[int, str] | None = None) -> dict[int, str]:
    """version -> the SQL that takes a database from version - 1 to it."""
    found, before = sections(script), before or {}
    return {version: before.get(version, "") + sql for version, sql in sorted(found.items())}


def plan(
    current: int, latest: int, schema: str, steps: Mapping[int, str]
) -> tuple[list[str], range]:
    """(scripts to run, versions they bring) for a database at version ``current``: the whole
    schema for a new database (0), else the migrations it lacks."""
    if current > latest:
        raise StoreError(f"database schema {current} is newer than this polycrowd ({latest})")
    pending = range(current + 1, latest + 1)
    return ([schema] if current == 0 else [steps[v] for v in pending]), pending
