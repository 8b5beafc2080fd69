"""Both stores: a version-1 database migrates to the schema a fresh one gets from schema.sql,
and a migrated database works."""

from __future__ import annotations

import importlib
from typing import Any

V2_TABLES = ("questions", "faq_entries", "dashboard_tokens", "dashboard_sessions", "digest_runs")
V4_TABLES = ("ledger_checkpoints",)
V5_TABLES = ("user_state",)
# Tables that versions after 1 added (dropped to make a version-1 database).
V1_LATER_TABLES = V2_TABLES + V4_TABLES + V5_TABLES

# What versions 2-5 added, undone: the database as version 1 left it.
DOWNGRADE_TO_V1 = (
    *(f"DROP TABLE {table}" for table in reversed(V1_LATER_TABLES)),
    "ALTER TABLE ledger DROP COLUMN mac",  # version 4
    "DROP TABLE project_models",  # version 3
    "DROP TABLE item_predictions",
    "DROP INDEX ix_items_pick",
    "ALTER TABLE items DROP COLUMN priority",
    "CREATE INDEX ix_items_pick ON items(lang, is_gold, filled, confidence, project_id, id)"
    " WHERE state = 'open'",
    "ALTER TABLE results DROP COLUMN model_version",
    "ALTER TABLE results DROP COLUMN human_confidence",
    "DELETE FROM schema_migrations WHERE version > 1",
)


async def _shape(db: Any) -> tuple[dict[str, list[str]], dict[str, str]]:
    """(columns per table, definition per index) of the database."""
    sqlite = not hasattr(db, "dsn")
    async with db.read() as tx:
        if sqlite:
            tables = [
                str(r[0])
                for r in await tx.all("SELECT name FROM sqlite_master WHERE type = 'table'")
            ]
            columns = {
                t: sorted(str(c[1]) for c in await tx.all(f"PRAGMA table_info({t})"))
                for t in tables
            }
            indexes = {
                str(r[0]): " ".join(str(r[1]).split())
                for r in await tx.all(
                    "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
                )
            }
        else:
            columns = {}
            for r in await tx.all(
                "SELECT table_name, column_name FROM information_schema.columns"
                " WHERE table_schema = current_schema()"
            ):
                columns.setdefault(str(r[0]), []).append(str(r[1]))
            columns = {t: sorted(c) for t, c in columns.items()}
            indexes = {
                str(r[0]): str(r[1])
                for r in await tx.all(
                    "SELECT indexname, indexdef FROM pg_indexes"
                    " WHERE schemaname = current_schema()"
                )
            }
    return columns, indexes


async def test_a_version_1_database_migrates_to_the_fresh_schema(db: Any) -> None:
    sqlite = not hasattr(db, "dsn")
    module = importlib.import_module(
        f"polycrowd.engine.store.{'sqlite' if sqlite else 'postgres'}.database"
    )
    assert module.SCHEMA_VERSION >= 3 and set(module.migrations()) >= {2, 3}
    fresh = await _shape(db)
    assert "priority" in fresh[0]["items"] and "item_predictions" in fresh[0]
    assert await db.schema_version() == module.SCHEMA_VERSION
    async with db.transaction() as tx:
        for statement in DOWNGRADE_TO_V1:
            await tx.run(statement)
        if not sqlite:  # PostgreSQL's TRUNCATE guard on the ledger (version 4)
            await tx.run("DROP TRIGGER tr_ledger_no_truncate ON ledger")
    assert await db.schema_version() == 1
    assert "priority" not in (await _shape(db))[0]["items"]
    await db.close()
    await db.connect()  # migrates 1 -> SCHEMA_VERSION
    assert await db.schema_version() == module.SCHEMA_VERSION
    migrated = await _shape(db)
    assert migrated == fresh
    async with db.read() as tx:
        assert await tx.questions.get(1) is None
        assert await tx.digests.last("moderators", "all") is None
        assert await tx.state.get(1, "conversation") is None


async def test_a_version_4_database_migrates_to_5_and_keeps_its_rows(db: Any) -> None:
    """Version 5 (user_state) on a database with users in it: the rows stay, the new
    table works, and the schema equals a fresh one."""
    sqlite = not hasattr(db, "dsn")
    module = importlib.import_module(
        f"polycrowd.engine.store.{'sqlite' if sqlite else 'postgres'}.database"
    )
    assert module.SCHEMA_VERSION >= 5 and 5 in module.migrations()
    fresh = await _shape(db)
    assert sorted(fresh[0]["user_state"]) == ["key", "updated_at", "user_id", "value"]
    async with db.transaction() as tx:
        uid = await tx.users.create("memory", "u1", "u1", "u-1", "en", "", 1.0)
        await tx.run("DROP TABLE user_state")
        await tx.run("DELETE FROM schema_migrations WHERE version > 4")
    assert await db.schema_version() == 4
    await db.close()
    await db.connect()  # migrates 4 -> 5
    assert await db.schema_version() == module.SCHEMA_VERSION
    assert await _shape(db) == fresh
    async with db.transaction() as tx:
        assert (await tx.users.get(uid)) is not None
        await tx.state.put(uid, "conversation", '{"name": "x"}', 2.0)
        await tx.state.put(uid, "conversation", '{"name": "y"}', 3.0)
    async with db.read() as tx:
        assert await tx.state.get(uid, "conversation") == ('{"name": "y"}', 3.0)
