"""Both stores: user_state holds one JSON value per (user, key), replaced in place,
deleted with its user, expired by age."""

from __future__ import annotations

import random
from typing import Any

from polycrowd.engine.events import EngineHooks
from polycrowd.engine.language import LanguageDetector
from polycrowd.engine.services.context import EngineContext
from polycrowd.engine.services.state import CONVERSATION_TTL, Conversation, StateService
from polycrowd.models.rules import RulesChecker

from ...conftest import FakeClock


async def _users(db: Any, n: int) -> list[int]:
    async with db.transaction() as tx:
        return [
            await tx.users.create("memory", f"u{i}", f"u{i}", f"u-{i}", "en", "", 1.0)
            for i in range(n)
        ]


async def test_put_replaces_get_reads_delete_says_whether_there_was_one(db: Any) -> None:
    a, b = await _users(db, 2)
    async with db.transaction() as tx:
        await tx.state.put(a, "conversation", '{"step": 1}', 10.0)
        await tx.state.put(a, "conversation", '{"step": 2}', 11.0)
        await tx.state.put(a, "current_project", "7", 12.0)
    async with db.read() as tx:
        assert await tx.state.get(a, "conversation") == ('{"step": 2}', 11.0)
        assert await tx.state.get(a, "current_project") == ("7", 12.0)
        assert await tx.state.get(b, "conversation") is None
    async with db.transaction() as tx:
        assert await tx.state.delete(a, "conversation") is True
        assert await tx.state.delete(a, "conversation") is False
    async with db.read() as tx:
        assert await tx.state.get(a, "conversation") is None
        assert await tx.state.get(a, "current_project") == ("7", 12.0)


async def test_expire_deletes_only_old_values_of_that_key(db: Any) -> None:
    a, b, c = await _users(db, 3)
    async with db.transaction() as tx:
        await tx.state.put(a, "conversation", "{}", 100.0)
        await tx.state.put(b, "conversation", "{}", 200.0)
        await tx.state.put(c, "current_project", "1", 50.0)
    async with db.transaction() as tx:
        assert await tx.state.expire("conversation", 150.0) == 1
    async with db.read() as tx:
        assert await tx.state.get(a, "conversation") is None
        assert await tx.state.get(b, "conversation") is not None
        assert await tx.state.get(c, "current_project") is not None


async def test_the_service_expires_a_stale_conversation_with_the_clock(db: Any) -> None:
    [uid] = await _users(db, 1)
    clock = FakeClock()
    detect = LanguageDetector("script").detect
    ctx = EngineContext(db, RulesChecker(), detect, random.Random(1), clock, EngineHooks())
    state = StateService(ctx)
    await state.save_conversation(uid, Conversation("newproject", 2, {"name": "Pets"}))
    clock.advance(CONVERSATION_TTL - 1)
    conv = await state.conversation(uid)
    assert conv == Conversation("newproject", 2, {"name": "Pets"})
    await state.save_conversation(uid, conv)  # touching it keeps it fresh
    clock.advance(CONVERSATION_TTL - 1)
    assert await state.conversation(uid) is not None
    clock.advance(2)
    assert await state.conversation(uid) is None  # stale: gone, and deleted
    async with db.read() as tx:
        assert await tx.state.get(uid, "conversation") is None
    await state.save_conversation(uid, Conversation("newproject"))
    clock.advance(CONVERSATION_TTL + 1)
    assert await state.expire_conversations() == 1
    await state.set_current_project(uid, 42)
    clock.advance(10 * CONVERSATION_TTL)
    assert await state.current_project(uid) == 42  # a preference, never stale
    assert await state.expire_conversations() == 0
