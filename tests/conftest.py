"""Shared fixtures: a real SQLite file per test, the real engine, rules-only checker."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from polycrowd.engine.core import Engine
from polycrowd.engine.io import ProjectSpec
from polycrowd.engine.language import LanguageDetector
from polycrowd.engine.store import Database
from polycrowd.engine.types import TaskType
from polycrowd.models.rules import RulesChecker

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


class FakeClock:
    """Time that moves only when a test says so."""

    def __init__(self, start: float | None = None) -> None:
        self.t = time.time() if start is None else start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "test.db")
    yield database
    await database.close()


@pytest.fixture
def detector() -> LanguageDetector:
    return LanguageDetector("script")


@pytest.fixture
async def engine(db: Database, clock: FakeClock, detector: LanguageDetector) -> Engine:
    return Engine(db, RulesChecker(), detector.detect, clock=clock)


def choice_spec(**kw: object) -> ProjectSpec:
    base: dict[str, object] = {
        "name": "cats",
        "task_type": TaskType.CHOICE,
        "instructions": {"en": "Is it a cat?"},
        "labels": ("yes", "no"),
        "languages": ("en",),
        "overlap": 3,
        "overlap_max": 3,
        "reward": 5,
    }
    base.update(kw)
    return ProjectSpec(**base)  # type: ignore[arg-type]


def items_csv(n: int, langs: tuple[str, ...] = ("en",), gold_every: int = 0) -> bytes:
    lines = ["id,text,lang,gold"]
    for i in range(n):
        gold = ("yes" if i % 2 else "no") if gold_every and i % gold_every == 0 else ""
        lines.append(f"i{i},picture {i},{langs[i % len(langs)]},{gold}")
    return ("\n".join(lines) + "\n").encode()


# PostgreSQL --------------------------------------------------------------------------------

_PG_SKIPPED: list[str] = []


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The URL of a real PostgreSQL server for this session; skips when none can start."""
    from .postgres import PostgresServer

    server = PostgresServer()
    server.start()
    try:
        error = server.error or (_probe(server.url) if server.url else "no server")
        if error:
            _PG_SKIPPED.append(error)
            pytest.skip(error)
        yield server.url
    finally:
        server.stop()


def _probe(url: str) -> str:
    """Why no PostgreSQL server answers at ``url`` (one line), or "" when one does."""
    try:
        import asyncpg
    except ImportError:
        return "asyncpg is not installed (pip install '.[postgres]')"

    async def connect() -> None:
        conn = await asyncpg.connect(url, timeout=10)
        await conn.close()

    try:
        # in a thread of its own: this session fixture may be set up inside a running loop
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, connect()).result()
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"cannot connect to PostgreSQL: {exc}".splitlines()[0]
    return ""


async def open_postgres(url: str) -> Any:
    """A PostgreSQL store in a fresh schema of its own (dropped again by drop_postgres)."""
    import asyncpg

    from polycrowd.engine.store.postgres import PgDatabase

    schema = "t_" + uuid.uuid4().hex[:12]
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
    finally:
        await conn.close()
    db = await PgDatabase.open(url, max_size=12, server_settings={"search_path": schema})
    db.test_schema = schema  # type: ignore[attr-defined]
    return db


async def drop_postgres(db: Any, url: str) -> None:
    import asyncpg

    await db.close()
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"DROP SCHEMA {db.test_schema} CASCADE")
    finally:
        await conn.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _PG_SKIPPED:
        terminalreporter.write_line(
            f"PostgreSQL half of the store tests skipped: {_PG_SKIPPED[0]}", yellow=True
        )
