"""Copying a SQLite database into PostgreSQL keeps every row, the ledger and the work."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from polycrowd.cli import main
from polycrowd.engine.core import Engine
from polycrowd.engine.language import LanguageDetector
from polycrowd.engine.ledger_key import LedgerKeyring
from polycrowd.engine.store import Database
from polycrowd.engine.store.copy import copy_store
from polycrowd.models.rules import RulesChecker
from polycrowd.settings import Settings

from ...conftest import FakeClock, choice_spec, drop_postgres, items_csv, open_postgres

asyncpg = pytest.importorskip("asyncpg")


async def _busy_sqlite(path: Path, clock: FakeClock) -> None:
    db = await Database.open(path)
    engine = Engine(db, RulesChecker(), LanguageDetector("script").detect, clock=clock)
    project = await engine.create_project(None, choice_spec(languages=("en", "de")))
    await engine.import_items(project.id, items_csv(6, ("en", "de")), name="i.csv")
    await engine.set_state(None, project.id, "live")
    for n in range(4):
        user, _ = await engine.user_for("memory", f"w{n}", f"w{n}", "en")
        task = await engine.next_task(user.id)
        assert task is not None
        clock.advance(20)
        await engine.submit(user.id, task.assignment.id, "yes")
    await engine.next_task(user.id)  # one assignment still live
    await db.close()


async def test_copy_keeps_everything_and_the_copy_goes_on(
    tmp_path: Path, postgres_url: str, clock: FakeClock
) -> None:
    await _busy_sqlite(tmp_path / "src.db", clock)
    src = await Database.open(tmp_path / "src.db", create=False)
    dst = await open_postgres(postgres_url)
    try:
        keyring = LedgerKeyring.for_store(str(tmp_path / "src.db"), Settings())
        report = await copy_store(src, dst, keyring)
        assert report.ok, report.as_dict()
        assert report.rows["answers"] == 4 and report.rows["ledger"] == 4
        engine = Engine(
            dst, RulesChecker(), LanguageDetector("script").detect, clock=clock, keyring=keyring
        )
        assert (await engine.status(1)).live_assignments == 1  # counters came along
        user, created = await engine.user_for("memory", "new", "new", "en")
        assert created and user.id == 5  # ids continue after the copied ones
        task = await engine.next_task(user.id)
        assert task is not None
        clock.advance(20)
        assert (await engine.submit(user.id, task.assignment.id, "no")).credited == 5
        assert (await engine.audit()).ok
    finally:
        await src.close()
        await drop_postgres(dst, postgres_url)


def test_cli_copy_refuses_a_database_that_is_not_empty(
    tmp_path: Path, postgres_url: str, clock: FakeClock
) -> None:
    asyncio.run(_busy_sqlite(tmp_path / "src.db", clock))
    schema = asyncio.run(_empty_schema(postgres_url))
    url = f"{postgres_url}?search_path={schema}"
    try:
        assert main(["db", "migrate", "--db", url, "--json"]) == 0
        assert main(["db", "copy", str(tmp_path / "src.db"), url]) == 0
        assert main(["db", "copy", str(tmp_path / "src.db"), url]) == 2  # not empty: refused
        assert main(["audit", "--db", url]) == 0
        assert main(["backup", "out.db", "--db", url]) == 2  # a SQLite-only command says so
    finally:
        asyncio.run(_drop_schema(postgres_url, schema))


async def _empty_schema(url: str) -> str:
    schema = "t_" + uuid.uuid4().hex[:12]
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
    finally:
        await conn.close()
    return schema


async def _drop_schema(url: str, schema: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
    finally:
        await conn.close()
