"""The engine's state changes: answers, credits, quality, privacy, linking."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from polycrowd.engine.checking import CheckRequest, Decision, Verdict
from polycrowd.engine.core import Engine, EngineError
from polycrowd.engine.language import LanguageDetector
from polycrowd.engine.store import Database
from polycrowd.engine.types import Role, TaskType

from ..conftest import FakeClock, choice_spec, items_csv


async def _worker(engine: Engine, n: int, lang: str = "en") -> int:
    user, _ = await engine.user_for("memory", f"w{n}", f"w{n}", lang)
    return user.id


async def _project(engine: Engine, n_items: int = 5, **kw: object) -> int:
    project = await engine.create_project(None, choice_spec(**kw))
    await engine.import_items(project.id, items_csv(n_items), name="i.csv")
    await engine.set_state(None, project.id, "live")
    return project.id


async def _text_project(engine: Engine) -> int:
    spec = choice_spec(task_type=TaskType.TEXT, labels=(), name="describe")
    project = await engine.create_project(None, spec)
    await engine.import_items(project.id, b"id,text\n1,a cat on a mat\n", name="i.csv")
    await engine.set_state(None, project.id, "live")
    return project.id


async def test_reject_then_fix_then_credit_once(engine: Engine, clock: FakeClock) -> None:
    await _text_project(engine)
    w = await _worker(engine, 1)
    task = await engine.next_task(w)
    assert task is not None
    clock.advance(10)
    first = await engine.submit(w, task.assignment.id, " ")
    assert first.status == "retry" and first.credited == 0 and first.verdict.reason
    async with engine.db.read() as tx:
        assert await tx.value("SELECT COUNT(*) FROM ledger") == 0  # no credit before a pass
    second = await engine.submit(w, task.assignment.id, "a small cat sitting")
    assert second.status == "accepted" and second.credited == 5 and second.balance == 5
    again = await engine.submit(w, task.assignment.id, "a small cat sitting")
    assert again.status == "duplicate" and again.credited == 0
    assert (await engine.get_user(w)).balance == 5
    assert (await engine.audit()).ok


async def test_second_rejection_is_final_and_frees_the_slot(
    engine: Engine, clock: FakeClock
) -> None:
    await _text_project(engine)
    w = await _worker(engine, 1)
    task = await engine.next_task(w)
    assert task is not None
    clock.advance(10)
    assert (await engine.submit(w, task.assignment.id, "")).status == "retry"
    assert (await engine.submit(w, task.assignment.id, "")).status == "rejected"
    with pytest.raises(EngineError):
        await engine.submit(w, task.assignment.id, "a cat")
    async with engine.db.read() as tx:
        assert await tx.value("SELECT filled FROM items") == 0


async def test_concurrent_duplicate_submits_credit_once(engine: Engine, clock: FakeClock) -> None:
    await _project(engine)
    w = await _worker(engine, 1)
    task = await engine.next_task(w)
    assert task is not None
    clock.advance(5)
    results = await asyncio.gather(
        *(engine.submit(w, task.assignment.id, "yes") for _ in range(8)), return_exceptions=True
    )
    statuses = sorted(r.status for r in results if not isinstance(r, BaseException))
    assert statuses.count("accepted") == 1
    assert (await engine.get_user(w)).balance == 5


async def test_answers_of_other_workers_are_refused(engine: Engine, clock: FakeClock) -> None:
    await _project(engine)
    a, b = await _worker(engine, 1), await _worker(engine, 2)
    task = await engine.next_task(a)
    assert task is not None
    with pytest.raises(EngineError, match="not yours"):
        await engine.submit(b, task.assignment.id, "yes")


async def test_label_outside_the_set_is_rejected(engine: Engine, clock: FakeClock) -> None:
    await _project(engine)
    w = await _worker(engine, 1)
    task = await engine.next_task(w)
    assert task is not None
    clock.advance(5)
    result = await engine.submit(w, task.assignment.id, "banana")
    assert result.status == "retry" and result.credited == 0


async def test_adaptive_overlap_stops_confident_items_early(
    engine: Engine, clock: FakeClock
) -> None:
    pid = await _project(engine, 1, overlap=2, overlap_max=6, confidence_target=0.8)
    workers = [await _worker(engine, n) for n in range(6)]
    answered = 0
    for w in workers:
        task = await engine.next_task(w)
        if task is None:
            break
        clock.advance(5)
        await engine.submit(w, task.assignment.id, "yes")
        answered += 1
    status = await engine.status(pid)
    assert status.done_items == 1 and answered < 6
    project = await engine.get_project(pid)
    assert project.state == "done"


async def test_disagreement_widens_overlap_up_to_max(engine: Engine, clock: FakeClock) -> None:
    pid = await _project(engine, 1, overlap=2, overlap_max=4, confidence_target=0.99)
    for n, label in enumerate(["yes", "no", "yes", "no", "yes"]):
        w = await _worker(engine, n)
        task = await engine.next_task(w)
        if task is None:
            assert n == 4  # max overlap reached
            break
        clock.advance(5)
        await engine.submit(w, task.assignment.id, label)
    async with engine.db.read() as tx:
        row = await tx.one("SELECT answered, target, state FROM items")
    assert row is not None and (row["answered"], row["state"]) == (4, "done")
    assert (await engine.status(pid)).answers == 4


async def test_the_last_answer_is_not_asked_when_it_could_not_change_the_label(
    engine: Engine, clock: FakeClock
) -> None:
    # 3 yes against 1 no: short of the 0.99 target, but a fifth answer cannot make "no" win
    pid = await _project(engine, 1, overlap=2, overlap_max=5, confidence_target=0.99)
    for n, label in enumerate(["yes", "no", "yes", "yes"]):
        w = await _worker(engine, n)
        task = await engine.next_task(w)
        assert task is not None
        clock.advance(5)
        await engine.submit(w, task.assignment.id, label)
    async with engine.db.read() as tx:
        row = await tx.one("SELECT answered, confidence, state FROM items")
    assert row is not None and (row["answered"], row["state"]) == (4, "done")
    assert row["confidence"] < 0.99
    assert await engine.next_task(await _worker(engine, 9)) is None
    assert (await engine.status(pid)).answers == 4


async def test_gold_mistakes_pause_the_worker(engine: Engine, clock: FakeClock) -> None:
    project = await engine.create_project(
        None, choice_spec(gold_ratio=0.9, qualification=10, min_skill=0.6)
    )
    await engine.import_items(project.id, items_csv(40, gold_every=2), name="i.csv")
    await engine.set_state(None, project.id, "live")
    w = await _worker(engine, 1)
    for _ in range(12):
        task = await engine.next_task(w)
        if task is None:
            break
        clock.advance(5)
        wrong = "no" if task.item.gold == "yes" else "yes"
        await engine.submit(w, task.assignment.id, wrong)
    assert await engine.next_task(w) is None
    flags = await engine.open_flags(50)
    assert any(f.kind == "skill_paused" and f.user_id == w for f in flags)


async def test_same_label_spammer_is_flagged(engine: Engine, clock: FakeClock) -> None:
    await _project(engine, 30, overlap=1, overlap_max=1)
    w = await _worker(engine, 1)
    for _ in range(18):
        task = await engine.next_task(w)
        assert task is not None
        clock.advance(5)
        await engine.submit(w, task.assignment.id, "yes")
    kinds = {f.kind for f in await engine.open_flags(50)}
    assert "fraud_same_label" in kinds


async def test_moderator_overrules_with_a_reversing_entry(
    engine: Engine, clock: FakeClock
) -> None:
    await _project(engine)
    w = await _worker(engine, 1)
    mod = await _worker(engine, 2)
    await engine.bootstrap_role(mod, Role.MODERATOR)
    task = await engine.next_task(w)
    assert task is not None
    clock.advance(5)
    result = await engine.submit(w, task.assignment.id, "yes")
    assert result.answer_id is not None
    with pytest.raises(EngineError):
        await engine.moderate_answer(w, result.answer_id, accept=False)
    assert await engine.moderate_answer(mod, result.answer_id, accept=False) == "rejected"
    assert (await engine.get_user(w)).balance == 0
    assert (await engine.audit()).ok
    # an appeal, upheld, pays again through a new entry
    await engine.appeal(w, None, "it was a cat")
    await engine.decide_appeal(mod, result.answer_id, uphold=True)
    assert (await engine.get_user(w)).balance == 5
    assert (await engine.audit()).ok


async def test_mydata_and_forget(engine: Engine, clock: FakeClock) -> None:
    await _project(engine)
    w = await _worker(engine, 1)
    task = await engine.next_task(w)
    assert task is not None
    clock.advance(5)
    await engine.submit(w, task.assignment.id, "yes")
    await engine.set_leaderboard(w, True)
    await engine.set_current_project(w, task.project.id)
    data = await engine.my_data(w)
    assert data["user"]["display_name"] == "w1"
    assert data["identities"][0]["external_id"] == "w1"
    assert len(data["answers"]) == 1 and len(data["ledger"]) == 1
    assert data["state"] == {"current_project": task.project.id, "leaderboard": True}
    await engine.forget(w)
    after = await engine.my_data(w)
    assert after["identities"] == [] and after["user"]["display_name"] == ""
    assert after["state"] == {} and not await engine.on_leaderboard(w)
    assert len(after["ledger"]) == 1  # money stays, under the pseudonym
    assert (await engine.audit()).ok
    assert await engine.find_user("memory:w1") is None


async def test_link_merges_accounts_and_refuses_bad_codes(
    engine: Engine, clock: FakeClock
) -> None:
    await _project(engine, 10, overlap=1, overlap_max=1)
    tg, _ = await engine.user_for("telegram", "100", "ann", "en")
    dc, _ = await engine.user_for("discord", "200", "ann", "es")
    await engine.set_languages(dc.id, ["es", "en"])
    for uid in (tg.id, dc.id):
        task = await engine.next_task(uid)
        assert task is not None
        clock.advance(5)
        await engine.submit(uid, task.assignment.id, "yes")
    with pytest.raises(EngineError, match="not valid"):
        await engine.redeem_link(dc.id, "NOPE1234")
    expired = await engine.link_code(tg.id, "telegram")
    clock.advance(601)
    with pytest.raises(EngineError, match="expired"):
        await engine.redeem_link(dc.id, expired)
    assert (await engine.get_user(dc.id)).balance == 5  # nothing merged
    code = await engine.link_code(tg.id, "telegram")
    merged = await engine.redeem_link(dc.id, code)
    assert merged.id == tg.id and merged.balance == 10 and merged.answers == 2
    assert (await engine.find_user("discord:200")).id == tg.id  # type: ignore[union-attr]
    _, trusted = await engine.languages_of(tg.id)
    assert set(trusted) >= {"en", "es"}
    with pytest.raises(EngineError, match="not valid"):
        await engine.redeem_link(dc.id, code)  # used
    assert (await engine.audit()).ok


async def test_detected_language_becomes_trusted(engine: Engine, clock: FakeClock) -> None:
    spec = choice_spec(task_type=TaskType.TEXT, labels=(), languages=("en", "ru"))
    project = await engine.create_project(None, spec)
    csv = "id,text,lang\n" + "".join(f"{i},picture number {i},en\n" for i in range(6))
    csv += "".join(f"r{i},картинка номер {i},ru\n" for i in range(4))
    await engine.import_items(project.id, csv.encode(), name="i.csv")
    await engine.set_state(None, project.id, "live")
    w = await _worker(engine, 1)
    for n in range(6):
        task = await engine.next_task(w)
        assert task is not None and task.item.lang == "en"
        clock.advance(10)
        answer = f"кошка номер {n} сидит на коврике у окна дома"
        assert (await engine.submit(w, task.assignment.id, answer)).status == "accepted"
    _, trusted = await engine.languages_of(w)
    assert "ru" in trusted
    task = await engine.next_task(w)
    assert task is not None and task.item.lang == "ru"


class AlwaysRejectModel:
    """A broken model: rejects every answer (what drift detection must catch)."""

    async def check(self, batch: Sequence[CheckRequest]) -> list[Verdict]:
        return [
            Verdict(Decision.REJECT, 0.1, "The answer did not pass the checks.", "bad@1")
            for _ in batch
        ]


async def test_model_that_fails_on_gold_is_switched_to_review(
    db: Database, clock: FakeClock
) -> None:
    engine = Engine(db, AlwaysRejectModel(), LanguageDetector("script").detect, clock=clock)
    spec = choice_spec(
        gold_ratio=0.5, qualification=6, checker={"drift_min_samples": 5, "drift_threshold": 0.7}
    )
    project = await engine.create_project(None, spec)
    await engine.import_items(project.id, items_csv(20, gold_every=2), name="i.csv")
    await engine.set_state(None, project.id, "live")
    statuses = []
    for n in range(6):
        w = await _worker(engine, n)
        task = await engine.next_task(w)
        assert task is not None and task.item.gold is not None
        clock.advance(5)
        statuses.append((await engine.submit(w, task.assignment.id, task.item.gold or "")).status)
    assert statuses[:5] == ["retry"] * 5  # the model still decides...
    assert statuses[5] == "review"  # ...until it is caught failing on gold
    assert (await engine.get_project(project.id)).checker["mode"] == "review"
    assert (await engine.checker_stats(project.id))["bad@1"]["gold_accuracy"] == 0.0
    assert any(f.kind == "checker_drift" for f in await engine.open_flags(50))


async def test_scan_flags_identical_accounts(engine: Engine, clock: FakeClock) -> None:
    pid = await _project(engine, 8, overlap=4, overlap_max=4)
    honest = [await _worker(engine, n) for n in range(2)]
    ring = [await _worker(engine, 10 + n) for n in range(2)]
    for w, label in [(h, "yes") for h in honest] + [(r, "no") for r in ring]:
        while (task := await engine.next_task(w)) is not None:
            clock.advance(5)
            item_no = int(task.item.external_id[1:])
            await engine.submit(w, task.assignment.id, label if item_no < 6 else "yes")
    flags = await engine.scan_fraud(pid, min_common=5)
    flagged = {f.user_id for f in flags if f.kind == "fraud_identical_accounts"}
    assert set(ring) <= flagged
    assert not set(honest) & flagged


async def test_blocking_discards_labels_and_reopens_items(
    engine: Engine, clock: FakeClock
) -> None:
    pid = await _project(engine, 2, overlap=1, overlap_max=1)
    spammer = await _worker(engine, 1)
    while (task := await engine.next_task(spammer)) is not None:
        clock.advance(5)
        await engine.submit(spammer, task.assignment.id, "no")
    assert (await engine.status(pid)).done_items == 2
    await engine.set_status(None, spammer, "blocked", "fraud")
    status = await engine.status(pid)
    assert status.done_items == 0 and status.project.state == "live"
    assert (await engine.get_user(spammer)).balance == 10  # earned money is not touched
    honest = await _worker(engine, 2)
    labels = []
    while (task := await engine.next_task(honest)) is not None:
        clock.advance(5)
        await engine.submit(honest, task.assignment.id, "yes")
        labels.append(task.item.id)
    assert len(labels) == 2
    rows = await engine.export_rows(pid)
    assert all(r["label"] == "yes" and len(r["worker_answers"]) == 1 for r in rows)
    assert (await engine.audit()).ok


class AlwaysAcceptModel:
    async def check(self, batch: Sequence[CheckRequest]) -> list[Verdict]:
        return [Verdict(Decision.ACCEPT, 0.9, "", "lenient@1") for _ in batch]


async def test_checker_agreement_with_results_is_tracked(db: Database, clock: FakeClock) -> None:
    engine = Engine(db, AlwaysAcceptModel(), LanguageDetector("script").detect, clock=clock)
    pid = await _project(engine, 1, overlap=3, overlap_max=3, confidence_target=0.6)
    for n, label in enumerate(["yes", "yes", "no"]):
        w = await _worker(engine, n)
        task = await engine.next_task(w)
        assert task is not None
        clock.advance(5)
        await engine.submit(w, task.assignment.id, label)
    stats = (await engine.checker_stats(pid))["lenient@1"]
    # it accepted all three, but the crowd says one was wrong
    assert stats["results_seen"] == 3 and stats["result_agreement"] == round(2 / 3, 4)
    assert stats["gold_seen"] == 0 and stats["gold_accuracy"] is None
