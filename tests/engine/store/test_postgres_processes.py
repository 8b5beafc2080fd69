"""Several processes on one PostgreSQL database: overlap stays exact, the ledger one chain."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import polycrowd
from polycrowd.engine.core import Engine
from polycrowd.engine.language import LanguageDetector
from polycrowd.models.rules import RulesChecker

from ...conftest import choice_spec, items_csv

asyncpg = pytest.importorskip("asyncpg")

WORKER = """
import asyncio, sys
from polycrowd.engine.core import Engine
from polycrowd.engine.language import LanguageDetector
from polycrowd.engine.store.postgres import PgDatabase
from polycrowd.models.rules import RulesChecker

async def main(url, schema, names):
    db = await PgDatabase.open(url, max_size=4, server_settings={"search_path": schema})
    engine = Engine(db, RulesChecker(), LanguageDetector("script").detect)
    users = [(await engine.user_for("memory", n, n, "en"))[0].id for n in names]
    async def work(uid):
        while (task := await engine.next_task(uid)) is not None:
            await engine.submit(uid, task.assignment.id, "yes", seconds=30.0)
    await asyncio.gather(*(work(u) for u in users))
    await db.close()

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
"""


async def _setup(url: str, schema: str) -> None:
    from polycrowd.engine.store.postgres import PgDatabase

    conn = await asyncpg.connect(url)
    await conn.execute(f"CREATE SCHEMA {schema}")
    await conn.close()
    db = await PgDatabase.open(url, server_settings={"search_path": schema})
    engine = Engine(db, RulesChecker(), LanguageDetector("script").detect)
    project = await engine.create_project(None, choice_spec(overlap=3, overlap_max=3))
    await engine.import_items(project.id, items_csv(30), name="i.csv")
    await engine.set_state(None, project.id, "live")
    await db.close()


async def _check(url: str, schema: str) -> tuple[object, object, object]:
    from polycrowd.engine.store.postgres import PgDatabase

    db = await PgDatabase.open(url, server_settings={"search_path": schema})
    engine = Engine(db, RulesChecker(), LanguageDetector("script").detect)
    try:
        return await engine.diagnostics(), await engine.audit(), await engine.status(1)
    finally:
        await db.close()
        conn = await asyncpg.connect(url)
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        await conn.close()


def test_three_processes_share_one_database(postgres_url: str) -> None:
    schema = "t_" + uuid.uuid4().hex[:12]
    asyncio.run(_setup(postgres_url, schema))
    env = {**os.environ, "PYTHONPATH": str(Path(polycrowd.__file__).parents[1])}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, postgres_url, schema] + [f"p{p}w{w}" for w in range(4)],
            env=env,
            stderr=subprocess.PIPE,
        )
        for p in range(3)
    ]
    errors = [proc.communicate(timeout=300)[1].decode() for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], errors
    diag, audit, status = asyncio.run(_check(postgres_url, schema))
    assert diag.duplicate_assignments == diag.over_assigned_items == 0  # type: ignore[attr-defined]
    assert diag.miscounted_items == diag.duplicate_credits == 0  # type: ignore[attr-defined]
    assert status.answers == 90 and status.done_items == 30  # type: ignore[attr-defined]
    assert diag.credits == 90  # type: ignore[attr-defined]
    assert audit.ok and audit.entries == 90, audit  # type: ignore[attr-defined]
