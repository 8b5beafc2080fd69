"""POLYCROWD_DB_READERS and POLYCROWD_PG_POOL_MIN/MAX reach the store build_app opens, and
every other command's (the CLI refuses a bad value in one line)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from polycrowd.bot.app import build_app
from polycrowd.engine.language import LanguageDetector
from polycrowd.engine.store.sqlite import Database
from polycrowd.engine.store.sqlite.database import default_readers
from polycrowd.models.rules import RulesChecker
from polycrowd.settings import Settings


async def _readers(settings: Settings) -> int:
    app = await build_app(settings, checker=RulesChecker(), detector=LanguageDetector("script"))
    try:
        assert isinstance(app.db, Database)
        return app.db.readers
    finally:
        await app.close()


async def test_the_reader_setting_reaches_the_sqlite_store(tmp_path: Path) -> None:
    db = str(tmp_path / "r.db")
    env = {"POLYCROWD_DB": db, "POLYCROWD_DB_READERS": "3"}
    assert await _readers(Settings.from_env(env)) == 3
    assert await _readers(Settings(db=db, db_readers="0")) == 0
    assert await _readers(Settings(db=db)) == default_readers()  # auto: the core-count rule


async def test_the_pool_settings_reach_the_asyncpg_pool(postgres_url: str) -> None:
    import asyncpg

    schema = "t_" + uuid.uuid4().hex[:12]
    conn = await asyncpg.connect(postgres_url)
    await conn.execute(f"CREATE SCHEMA {schema}")
    try:
        url = f"{postgres_url}?search_path={schema}"
        env = {"POLYCROWD_DB": url, "POLYCROWD_PG_POOL_MIN": "2", "POLYCROWD_PG_POOL_MAX": "5"}
        app = await build_app(
            Settings.from_env(env), checker=RulesChecker(), detector=LanguageDetector("script")
        )
        try:
            pool = app.db.pool  # type: ignore[attr-defined]
            assert (pool.get_min_size(), pool.get_max_size()) == (2, 5)
        finally:
            await app.close()
    finally:
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        await conn.close()


@pytest.mark.parametrize(
    ("name", "value", "line"),
    [
        ("POLYCROWD_DB_READERS", "-2", "bad value for POLYCROWD_DB_READERS: '-2' (auto or 0..64)"),
        ("POLYCROWD_PG_POOL_MAX", "0", "bad value for POLYCROWD_PG_POOL_MAX: 0 (1 or more)"),
    ],
)
def test_a_command_refuses_a_bad_pool_size_in_one_line(
    tmp_path: Path, name: str, value: str, line: str
) -> None:
    db = tmp_path / "c.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLYCROWD_")}
    made = subprocess.run(
        [sys.executable, "-m", "polycrowd", "db", "migrate", "--db", str(db)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    before = db.read_bytes()
    out = subprocess.run(
        [sys.executable, "-m", "polycrowd", "audit", "--db", str(db)],
        capture_output=True,
        text=True,
        env={**env, name: value},
        timeout=120,
        check=False,
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [f"polycrowd: {line}"]
    assert db.read_bytes() == before
