"""The PostgreSQL store: an asyncpg pool, migrations, one transaction per state change.

Every state change runs in its own pooled connection inside a READ COMMITTED transaction;
reads run in a read-only REPEATABLE READ transaction, so a read sees one snapshot. Several
processes may share one database: matching claims items with ``FOR UPDATE SKIP LOCKED``
(an item's counters are only changed under its row lock, so overlap stays exact), a
submit locks its assignment row, and ledger appends are serialised with a transaction-
scoped advisory lock so the hash chain never forks. Events collected in a transaction's
outbox are published after COMMIT and dropped on ROLLBACK, as in the SQLite store.

The statements use ``?`` placeholders like the SQLite store's (converted to ``$n`` once per
statement), so the repositories share the portable SQL and override what differs.
"""

from __future__ import annotations

import functools
import re
import time
import zlib
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

import asyncpg

from polycrowd.engine.events import Outbox
from polycrowd.engine.store import versions
from polycrowd.engine.store.base import TABLES, Diagnostics, StoreError
from polycrowd.engine.store.postgres import repos

SCHEMA_VERSION = 5

# Version 3 (model in the loop) also changed version 1's tables, which schema.sql holds as they
# are now: a database older than 3 gets these statements before the section of version 3.
V3_CHANGES = """
ALTER TABLE items ADD COLUMN priority DOUBLE PRECISION NOT NULL DEFAULT 0;
DROP INDEX ix_items_pick;
CREATE INDEX ix_items_pick ON items(lang, is_gold, priority, filled, confidence, project_id, id)
    WHERE state = 'open';
ALTER TABLE results ADD COLUMN model_version TEXT;
ALTER TABLE results ADD COLUMN human_confidence DOUBLE PRECISION;
"""


@functools.cache
def migrations() -> dict[int, str]:
    """version -> SQL applied to go from version-1 to version: the version's section of
    schema.sql (a fresh database runs all of schema.sql instead). A migration's SQL never
    changes once released."""
    return versions.migrations(_schema_sql(), {3: V3_CHANGES})


MIGRATION_LOCK = 0x70C0_0001  # advisory lock key: one process migrates at a time
MAX_PEERS = 256  # processes in one peers() group

Row = Any  # asyncpg.Record (the driver ships no type information)


@functools.lru_cache(maxsize=1024)
def convert(sql: str) -> str:
    """``?`` placeholders to ``$1, $2, ...`` (our statements have no ``?`` in literals)."""
    counter = iter(range(1, 10_000))
    return re.sub(r"\?", lambda _: f"${next(counter)}", sql)


def _changed(status: str) -> int:
    """Rows changed, from a command status such as ``UPDATE 3`` or ``INSERT 0 1``."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


class PgTx:
    """A pooled connection inside a transaction (or a read), with the repositories."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.outbox = Outbox()
        self.users = repos.UserRepo(self)
        self.languages = repos.LanguageRepo(self)
        self.skills = repos.SkillRepo(self)
        self.projects = repos.ProjectRepo(self)
        self.items = repos.ItemRepo(self)
        self.assignments = repos.AssignmentRepo(self)
        self.answers = repos.AnswerRepo(self)
        self.results = repos.ResultRepo(self)
        self.prelabels = repos.PrelabelRepo(self)
        self.checker_stats = repos.CheckerStatsRepo(self)
        self.ledger = repos.LedgerRepo(self)
        self.flags = repos.FlagRepo(self)
        self.payouts = repos.PayoutRepo(self)
        self.tokens = repos.TokenRepo(self)
        self.links = repos.LinkRepo(self)
        self.questions = repos.QuestionRepo(self)
        self.dashboard = repos.DashboardRepo(self)
        self.digests = repos.DigestRepo(self)
        self.reports = repos.ReportRepo(self)
        self.state = repos.StateRepo(self)

    async def one(self, sql: str, params: Sequence[Any] = ()) -> Row:
        return await self.conn.fetchrow(convert(sql), *params)

    async def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return list(await self.conn.fetch(convert(sql), *params))

    async def value(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return await self.conn.fetchval(convert(sql), *params)

    async def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Execute; return the number of changed rows (new ids: :meth:`insert_id`)."""
        return _changed(await self.conn.execute(convert(sql), *params))

    async def insert_id(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run an INSERT of one row; the new row's id (the same SQL ``RETURNING id``)."""
        return int(await self.value(sql + " RETURNING id", params))

    async def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        batch = [tuple(r) for r in rows]
        if batch:
            await self.conn.executemany(convert(sql), batch)


class PgDatabase:
    """A PostgreSQL database reached through a connection pool."""

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 10, **connect: Any):
        self.dsn = dsn
        self.path = dsn  # what the CLI prints as "the database"
        self._min_size = min_size
        self._max_size = max_size
        self._connect = connect
        self._pool: asyncpg.Pool | None = None
        # peers(): a connection of our own holding one advisory-lock slot per group joined
        self._peer_conn: asyncpg.Connection | None = None
        self._peer_slots: dict[str, int] = {}

    @classmethod
    async def open(cls, dsn: str, *, create: bool = True, **kw: Any) -> PgDatabase:
        db = cls(dsn, **kw)
        await db.connect(create=create)
        return db

    async def connect(self, *, create: bool = True) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=self._min_size,
                max_size=self._max_size,
                command_timeout=60,
                **self._connect,
            )
        except (OSError, asyncpg.PostgresError, ValueError) as exc:
            raise StoreError(f"cannot open database {redact_dsn(self.dsn)}: {exc}") from exc
        await self._migrate(create=create)

    async def peers(self, group: str) -> int:
        """Processes sharing ``group`` on this database, this one included.

        Each process joins by taking one slot (``pg_try_advisory_lock(group key, slot)``) on
        a connection of its own and holds it while it runs; a process that dies loses its
        connection and so its slot. The count is how many slots are held. The outbound queue
        divides a platform's overall budget by it, so N processes sending with one bot token
        stay within the platform's limit together.
        """
        key = zlib.crc32(group.encode()) & 0x7FFFFFFF
        if group not in self._peer_slots:
            if self._peer_conn is None:
                self._peer_conn = await asyncpg.connect(self.dsn, **self._connect)
            for slot in range(MAX_PEERS):
                if await self._peer_conn.fetchval(
                    "SELECT pg_try_advisory_lock($1::int, $2::int)", key, slot
                ):
                    self._peer_slots[group] = slot
                    break
            else:
                raise StoreError(f"more than {MAX_PEERS} processes share {group}")
        n = await self.pool.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND objsubid = 2 AND classid = $1::int::oid"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            key,
        )
        return max(1, int(n))

    async def close(self) -> None:
        if self._peer_conn is not None:
            await self._peer_conn.close()  # gives the peer slots back
            self._peer_conn = None
            self._peer_slots.clear()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def __aenter__(self) -> PgDatabase:
        if self._pool is None:
            await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError("database is not open")
        return self._pool

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PgTx]:
        """One state change: all of it commits, or none of it does."""
        async with self.pool.acquire() as conn:
            tx = PgTx(conn)
            try:
                async with conn.transaction():
                    yield tx
            except BaseException:
                tx.outbox.drop()
                raise
        tx.outbox.publish()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[PgTx]:
        async with (
            self.pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            yield PgTx(conn)

    async def diagnostics(self, project_id: int | None = None) -> Diagnostics:
        """Invariants (duplicate assignments, over-assigned items, ...) counted."""
        async with self.read() as tx:
            diag: Diagnostics = await repos.diagnostics(tx, project_id)
        return diag

    async def table_sizes(self) -> dict[str, int]:
        """Rows per table."""
        async with self.read() as tx:
            return {t: int(await tx.value(f"SELECT COUNT(*) FROM {t}")) for t in TABLES}

    @asynccontextmanager
    async def bulk_load(self) -> AsyncIterator[BulkLoader]:
        """Load rows with their ids into this empty database, in one transaction.

        The assignment triggers are off while loading (the items' counters arrive with the
        items); the identity sequences continue after the loaded ids."""
        async with self.transaction() as tx:
            if await tx.value(
                "SELECT EXISTS (SELECT 1 FROM users) OR EXISTS (SELECT 1 FROM projects)"
            ):
                raise StoreError(f"the destination database is not empty: {redact_dsn(self.dsn)}")
            await tx.conn.execute("ALTER TABLE assignments DISABLE TRIGGER USER")
            yield BulkLoader(tx.conn)
            await tx.conn.execute("ALTER TABLE assignments ENABLE TRIGGER USER")
            for table in IDENTITY_TABLES:
                await tx.conn.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                    f" COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
                )

    async def schema_version(self) -> int:
        async with self.read() as tx:
            return int(await tx.value("SELECT MAX(version) FROM schema_migrations") or 0)

    async def migrate(self) -> int:
        """Apply pending migrations; the schema version after."""
        await self._migrate(create=True)
        return await self.schema_version()

    async def _migrate(self, *, create: bool) -> None:
        async with self.transaction() as tx:
            await tx.conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await tx.conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
            )
            current = int(await tx.value("SELECT MAX(version) FROM schema_migrations") or 0)
            scripts, pending = versions.plan(current, SCHEMA_VERSION, _schema_sql(), migrations())
            if current == 0 and not create:
                raise StoreError(f"database has no polycrowd schema: {redact_dsn(self.dsn)}")
            for sql in scripts:
                if any(ln.strip() and not ln.strip().startswith("--") for ln in sql.splitlines()):
                    await tx.conn.execute(sql)
            for version in pending:
                await tx.run(
                    "INSERT INTO schema_migrations(version, applied_at) VALUES (?, ?)",
                    (version, time.time()),
                )


IDENTITY_TABLES = (
    "users",
    "projects",
    "items",
    "assignments",
    "answers",
    "flags",
    "payouts",
    "tokens",
    "questions",
    "faq_entries",
)


class BulkLoader:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def rows(
        self, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
    ) -> None:
        if table not in TABLES:
            raise ValueError(table)
        await self.conn.copy_records_to_table(table, records=rows, columns=list(columns))


def _schema_sql() -> str:
    return (
        resources.files("polycrowd.engine.store.postgres")
        .joinpath("schema.sql")
        .read_text("utf-8")
    )


def redact_dsn(dsn: str) -> str:
    """The DSN without its password, for messages."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", dsn)
