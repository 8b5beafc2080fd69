"""The engine and store tests run on both stores: SQLite, and a real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from polycrowd.engine.store import Database

from ..conftest import drop_postgres, open_postgres


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    if request.param == "sqlite":
        database = await Database.open(tmp_path / "test.db")
        yield database
        await database.close()
        return
    url = request.getfixturevalue("postgres_url")
    store = await open_postgres(url)
    yield store
    await drop_postgres(store, url)
