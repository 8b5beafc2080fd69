"""Schema versions: each store's migrations are the marked sections of its schema.sql."""

from __future__ import annotations

import importlib

import pytest

from polycrowd.engine.store import versions
from polycrowd.engine.store.base import StoreError

SCRIPT = """CREATE TABLE a (x INTEGER);
-- @version 2: b
CREATE TABLE b (y INTEGER);

-- @version 3: c and d
CREATE TABLE c (z INTEGER);
CREATE TABLE d (w INTEGER);
"""


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_every_version_after_1_has_a_section_and_a_fresh_schema_holds_them(store: str) -> None:
    module = importlib.import_module(f"polycrowd.engine.store.{store}.database")
    steps = module.migrations()
    assert sorted(steps) == list(range(2, module.SCHEMA_VERSION + 1))
    schema = module._schema_sql()
    for version, sql in steps.items():
        section = sql.removeprefix(module.V3_CHANGES) if version == 3 else sql
        assert section.startswith(f"{versions.MARK}{version}:")
        assert section in schema + "\n"
    assert steps[3].startswith(module.V3_CHANGES)
    assert "CREATE TABLE questions" in steps[2] and "CREATE TABLE user_state" in steps[5]
    assert "CREATE TABLE users" not in "".join(steps.values())


def test_sections_run_from_their_mark_to_the_next() -> None:
    found = versions.sections(SCRIPT)
    assert list(found) == [2, 3]
    assert found[2] == "-- @version 2: b\nCREATE TABLE b (y INTEGER);\n\n"
    assert found[3].splitlines()[1:] == [
        "CREATE TABLE c (z INTEGER);",
        "CREATE TABLE d (w INTEGER);",
    ]
    assert versions.migrations(SCRIPT, {3: "ALTER TABLE a ADD COLUMN q;\n"})[3].startswith(
        "ALTER TABLE a ADD COLUMN q;\n-- @version 3"
    )
    with pytest.raises(ValueError, match="marked twice"):
        versions.sections(SCRIPT + "-- @version 3: again\n")


def test_a_plan_is_the_schema_for_a_new_database_else_the_missing_steps() -> None:
    steps = versions.migrations(SCRIPT)
    assert versions.plan(0, 3, SCRIPT, steps) == ([SCRIPT], range(1, 4))
    assert versions.plan(1, 3, SCRIPT, steps) == ([steps[2], steps[3]], range(2, 4))
    assert versions.plan(3, 3, SCRIPT, steps) == ([], range(4, 4))
    with pytest.raises(StoreError, match="newer than this polycrowd"):
        versions.plan(4, 3, SCRIPT, steps)
