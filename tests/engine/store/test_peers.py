"""Processes that share a group on one store are counted (the outbound budget's divisor)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from polycrowd.engine.store import Database

from ...conftest import drop_postgres, open_postgres


async def test_processes_sharing_a_group_are_counted_until_they_close(
    db: Any, request: pytest.FixtureRequest
) -> None:
    group = f"telegram:{uuid.uuid4().hex}"
    assert await db.peers(group) == 1
    assert await db.peers(group) == 1  # asking again takes no second slot
    if isinstance(db, Database):
        return  # a SQLite file is served by one process: always 1
    url = request.getfixturevalue("postgres_url")
    second = await open_postgres(url)
    try:
        assert await second.peers(group) == 2
        assert await db.peers(group) == 2
        assert await second.peers(f"{group}-other") == 1  # another bot, another budget
    finally:
        await drop_postgres(second, url)
    assert await db.peers(group) == 1  # the closed one gave its slot back
