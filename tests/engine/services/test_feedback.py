"""Questions, FAQ, dashboard logins, digests and report figures on both stores."""

from __future__ import annotations

import pytest

from polycrowd.engine.core import Engine
from polycrowd.engine.errors import Conflict, NotFound
from polycrowd.engine.types import Role

from ...conftest import FakeClock, choice_spec


async def _answered(engine: Engine, clock: FakeClock, workers: int = 3) -> tuple[int, list[int]]:
    project = await engine.create_project(None, choice_spec(languages=("en", "es")))
    csv = b"id,text,lang,gold\n1,a cat,en,yes\n2,un gato,es,\n3,a dog,en,\n"
    await engine.import_items(project.id, csv, name="i.csv")
    await engine.set_state(None, project.id, "live")
    ids = []
    for n in range(workers):
        user, _ = await engine.user_for("memory", f"w{n}", f"w{n}", "en")
        await engine.set_languages(user.id, ["en", "es"])
        ids.append(user.id)
        while (task := await engine.next_task(user.id)) is not None:
            clock.advance(7)
            await engine.submit(user.id, task.assignment.id, "yes" if n else "no")
    return project.id, ids


async def test_a_question_is_answered_and_pinned_once(engine: Engine, clock: FakeClock) -> None:
    pid, (worker, *_) = await _answered(engine, clock, workers=1)
    qid = await engine.ask(worker, pid, None, "es", "¿Y si es un tigre?" * 100)
    assert await engine.questions_since(worker, 60) == 1
    q = await engine.question(qid)
    assert q.answer is None and q.lang == "es" and len(q.text) == 1000
    with pytest.raises(Conflict):
        await engine.pin_faq(qid)
    with pytest.raises(NotFound):
        await engine.answer_question(qid + 1, worker, "x")
    answered = await engine.answer_question(qid, worker, "Es un gato grande: sí.")
    assert answered.answer == "Es un gato grande: sí."
    await engine.pin_faq(qid)
    await engine.pin_faq(qid)  # pinned once
    project = await engine.get_project(pid)
    assert project.instructions["es"].count("Es un gato grande") == 1
    assert project.instructions["es"].startswith("Is it a cat?")
    clock.advance(120)
    assert await engine.questions_since(worker, 60) == 0


async def test_a_login_link_opens_one_session_for_the_role(
    engine: Engine, clock: FakeClock
) -> None:
    user, _ = await engine.user_for("memory", "r", "r", "en")
    await engine.bootstrap_role(user.id, Role.REQUESTER)
    token = await engine.dashboard_login(user.id, Role.REQUESTER)
    redeemed = await engine.redeem_dashboard_login(token)
    assert redeemed is not None and redeemed[1].user_id == user.id
    assert await engine.redeem_dashboard_login(token) is None  # single use
    session = redeemed[0]
    login = await engine.dashboard_session(session)
    assert login is not None and login.role is Role.REQUESTER
    await engine.bootstrap_role(user.id, Role.WORKER)
    assert await engine.dashboard_session(session) is None  # the role changed
    await engine.bootstrap_role(user.id, Role.REQUESTER)
    await engine.end_dashboard_session(session)
    assert await engine.dashboard_session(session) is None
    late = await engine.dashboard_login(user.id, Role.REQUESTER)
    clock.advance(601)
    assert await engine.redeem_dashboard_login(late) is None  # expired


async def test_digests_and_report_figures(engine: Engine, clock: FakeClock) -> None:
    pid, workers = await _answered(engine, clock)
    assert await engine.digest_due() == workers
    d = await engine.worker_digest(workers[1])  # no check question served: accepted share
    assert d.answers == 2 and d.accuracy == 1.0 and d.previous is None and d.earnings == 10
    await engine.mark_digest_sent("worker", [str(w) for w in workers])
    assert await engine.digest_due() == []
    assert await engine.digest_sent("worker", str(workers[0])) == clock()
    m = await engine.moderator_digest()
    assert m.appeals == m.payouts == m.flags == 0 and m.checker_gold_accuracy is None
    await engine.aggregate_project(pid)
    f = await engine.report_figures(pid)
    assert len(f.answer_times) == 6 and f.answer_times == tuple(sorted(f.answer_times))
    assert dict(f.languages) == {"en": 3, "es": 3}
    assert f.accuracy_source == "results" and sorted(f.accuracies) == [0.0, 1.0, 1.0]
    assert f.confusion_source == "results"
    assert set(f.confusion) == {("yes", "no", 2), ("yes", "yes", 4)}
    assert sum(amount for _, amount in f.spend_times) == 30 and f.assist is None
    summaries = await engine.worker_summaries([pid])
    assert [s.answers for s in summaries] == [2, 2, 2] and await engine.worker_summaries([]) == []
    assert sorted(s.agreement or 0.0 for s in summaries) == [0.0, 1.0, 1.0]
    totals = await engine.totals()
    assert totals.picks == 6 and totals.credits == 6 and totals.credited == 30
    assert totals.answers_by_status == {"accepted": 6} and totals.live_assignments == 0
    assert await engine.ping() is True
    assert await engine.open_appeals() == []
