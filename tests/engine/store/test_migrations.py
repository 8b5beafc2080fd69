"""Schema version 2 on both stores: an older database migrated to it has the same schema as
a fresh one, and a migrated database works."""

from __future__ import annotations

from typing import Any

from polycrowd.engine.store import SCHEMA_VERSION, Database
from polycrowd.engine.store.postgres.database import SCHEMA_VERSION as PG_VERSION

V2_TABLES = ("questions", "faq_entries", "dashboard_tokens", "dashboard_sessions", "digest_runs")
V4_TABLES = ("ledger_checkpoints",)
# Tables that versions after 1 added (dropped to make a version-1 database).
V1_LATER_TABLES = V2_TABLES + V4_TABLES


async def _schema(db: Any) -> list[tuple[Any, ...]]:
    """Every table, column and index of the store, comparable between two databases."""
    async with db.read() as tx:
        if isinstance(db, Database):
            rows = await tx.all(
                "SELECT type, name, tbl_name, sql FROM sqlite_master"
                " WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name"
            )
        else:
            rows = await tx.all(
                "SELECT 'column', table_name, column_name, data_type, is_nullable,"
                " COALESCE(column_default, '') FROM information_schema.columns"
                " WHERE table_schema = current_schema()"
                " UNION ALL SELECT 'index', tablename, indexname, indexdef, '', ''"
                " FROM pg_indexes WHERE schemaname = current_schema() ORDER BY 1, 2, 3"
            )
    return [tuple(r) for r in rows]


async def _reopen(db: Any) -> Any:
    await db.close()
    await db.connect()
    return db


async def test_a_version_1_database_migrates_to_the_fresh_schema(db: Any) -> None:
    assert await db.schema_version() == SCHEMA_VERSION == PG_VERSION
    fresh = await _schema(db)
    async with db.transaction() as tx:  # back to version 1: what an older polycrowd made
        for table in reversed(V1_LATER_TABLES):
            await tx.run(f"DROP TABLE {table}")
        await tx.run("ALTER TABLE ledger DROP COLUMN mac")  # version 4's column
        if not isinstance(db, Database):  # and PostgreSQL's TRUNCATE guard
            await tx.run("DROP TRIGGER tr_ledger_no_truncate ON ledger")
        await tx.run("DELETE FROM schema_migrations WHERE version > 1")
    assert await db.schema_version() == 1
    assert await _schema(db) != fresh
    db = await _reopen(db)
    assert await db.schema_version() == SCHEMA_VERSION
    assert await _schema(db) == fresh
    async with db.read() as tx:
        assert await tx.questions.get(1) is None
        assert await tx.digests.last("moderators", "all") is None
