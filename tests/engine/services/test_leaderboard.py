"""The opt-in leaderboard on both stores: who appears, in which order, and who never does."""

from __future__ import annotations

from polycrowd.engine.core import Engine

from ...conftest import FakeClock
from .test_feedback import _answered


async def test_only_opted_in_active_workers_appear_most_accepted_first(
    engine: Engine, clock: FakeClock
) -> None:
    pid, (w0, w1, w2) = await _answered(engine, clock, workers=3)
    assert await engine.leaders(pid) == []
    assert await engine.latest_project_of(w0) == pid
    outsider, _ = await engine.user_for("memory", "idle", "idle", "en")
    assert await engine.latest_project_of(outsider.id) is None

    for uid in (w0, w1, outsider.id):
        await engine.set_leaderboard(uid, True)
    assert await engine.on_leaderboard(w0) and not await engine.on_leaderboard(w2)
    rows = await engine.leaders(pid)
    assert {r.user_id for r in rows} == {w0, w1}  # w2 never chose; the outsider has no answers
    assert [r.accepted for r in rows] == sorted((r.accepted for r in rows), reverse=True)
    pseudonyms = {(await engine.get_user(uid)).pseudonym for uid in (w0, w1)}
    assert {r.pseudonym for r in rows} == pseudonyms
    gold = {r.user_id: (r.gold_answered, r.gold_correct) for r in rows}
    assert gold[w0][0] >= gold[w0][1] >= 0

    await engine.set_leaderboard(w0, False)
    await engine.set_leaderboard(w0, False)  # twice is fine
    assert [r.user_id for r in await engine.leaders(pid)] == [w1]
