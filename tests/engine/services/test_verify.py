"""Create-then-verify on both stores: an accepted text answer is checked by other workers
(never its creator) before its credit is final and it becomes the item's result."""

from __future__ import annotations

import pytest

from polycrowd.engine.core import Engine
from polycrowd.engine.domain import AnswerStatus
from polycrowd.engine.errors import Conflict
from polycrowd.engine.io import InputError, load_spec_text
from polycrowd.engine.services import verify
from polycrowd.engine.types import Project, Role

from ...conftest import FakeClock

SPEC = (
    "name: paraphrase\ntype: text\nlanguages: [en]\ninstructions: Rewrite the sentence.\n"
    "overlap: 1\nreward: 5\nverify: {overlap: 2, reward: 2}\n"
)
SOURCE = "The meeting has been moved to Thursday afternoon."
ANSWER = "The meeting now takes place on Thursday afternoon."


async def setup(engine: Engine) -> tuple[Project, Project, dict[str, int]]:
    project = await engine.create_project(None, load_spec_text(SPEC))
    await engine.import_items(project.id, f'id,text,lang\n1,"{SOURCE}",en\n'.encode(), "csv")
    await engine.set_state(None, project.id, "live")
    cfg = verify.VerifyConfig.parse(project_spec_verify(await engine.projects(), project.id))
    assert cfg.project is not None
    checker = await engine.get_project(cfg.project)
    users = {}
    for name in ("creator", "v1", "v2", "v3", "other"):
        user, _ = await engine.user_for("test", name, name, "en")
        users[name] = user.id
    return project, checker, users


def project_spec_verify(projects: list[Project], project_id: int) -> dict[str, int]:
    """The verify project's id as the engine stored it (found by its name)."""
    names = {p.name: p.id for p in projects}
    source = next(p for p in projects if p.id == project_id)
    return {"project": names[f"{source.name} · verify"]}


async def answer(engine: Engine, user: int, payload: str, project_id: int) -> int | None:
    task = await engine.next_task(user, project_id=project_id)
    if task is None:
        return None
    assert task.project.id == project_id
    result = await engine.submit(user, task.assignment.id, payload, seconds=30)
    return result.answer_id


async def test_a_verified_answer_is_the_result_and_its_credit_stays(
    engine: Engine, clock: FakeClock
) -> None:
    project, checker, u = await setup(engine)
    assert checker.labels == ("yes", "no") and checker.reward == 2
    assert checker.label_name("yes", "es") == "Sí"  # worded in the workers' languages
    aid = await answer(engine, u["creator"], ANSWER, project.id)
    assert aid is not None
    assert (await engine.get_user(u["creator"])).balance == 5  # credited, still pending
    # the creator is never offered the check of their own answer
    assert await engine.next_task(u["creator"]) is None
    task = await engine.next_task(u["v1"])
    assert task is not None and task.project.id == checker.id
    assert SOURCE in task.item.content and ANSWER in task.item.content
    await engine.submit(u["v1"], task.assignment.id, "yes", seconds=30)
    async with engine.db.read() as tx:
        assert await verify.state(tx, verify.VerifyConfig(project=checker.id), aid) == "pending"
    assert (await engine.status(project.id)).done_items == 0  # not a result before verification
    await answer(engine, u["v2"], "yes", checker.id)
    async with engine.db.read() as tx:
        assert await verify.state(tx, verify.VerifyConfig(project=checker.id), aid) == "verified"
    [row] = await engine.export_rows(project.id)
    assert row["label"] == ANSWER
    assert (await engine.get_project(project.id)).state == "done"
    assert (await engine.get_user(u["creator"])).balance == 5  # final
    assert (await engine.get_user(u["v1"])).balance == 2
    assert await engine.next_task(u["v3"]) is None  # nothing left to check


async def test_a_rejected_answer_loses_its_credit_and_the_item_reopens(
    engine: Engine, clock: FakeClock
) -> None:
    project, checker, u = await setup(engine)
    aid = await answer(engine, u["creator"], "Meeting.", project.id)
    assert aid is not None
    await answer(engine, u["v1"], "no", checker.id)
    await answer(engine, u["v2"], "no", checker.id)
    creator = await engine.get_user(u["creator"])
    assert creator.balance == 0  # reversed by a new entry: the ledger only grows
    kinds = [e.kind for e in await engine.ledger_entries(u["creator"])]
    assert sorted(kinds) == ["correction", "credit"]
    data = await engine.my_data(u["creator"])
    [mine] = [a for a in data["answers"] if a["id"] == aid]
    assert mine["status"] == AnswerStatus.OVERRULED
    assert "did not confirm" in mine["reason"]
    assert (await engine.audit()).ok
    # the item goes to another creator; their verified answer is the result
    await answer(engine, u["other"], ANSWER, project.id)
    await answer(engine, u["v1"], "yes", checker.id)
    await answer(engine, u["v3"], "yes", checker.id)
    [row] = await engine.export_rows(project.id)
    assert row["label"] == ANSWER


async def test_verify_is_for_text_projects_only() -> None:
    with pytest.raises(InputError, match="text projects"):
        load_spec_text(
            "name: x\ntype: choice\nlabels: [a, b]\ninstructions: x\nverify: {overlap: 2}\n"
        )
    spec = load_spec_text(SPEC)
    assert spec.verify == {"overlap": 2, "reward": 2}


async def test_a_pending_credit_is_not_paid_out_and_a_no_never_leaves_a_debt(
    engine: Engine, clock: FakeClock
) -> None:
    project, checker, u = await setup(engine)
    await engine.import_items(
        project.id, f'id,text,lang\n2,"{SOURCE} Twice.",en\n'.encode(), "csv"
    )
    mod = u["other"]
    await engine.bootstrap_role(mod, Role.MODERATOR)
    first = await answer(engine, u["creator"], ANSWER, project.id)
    assert first is not None
    await answer(engine, u["v1"], "yes", checker.id)
    await answer(engine, u["v2"], "yes", checker.id)  # verified: 5 final
    second = await answer(engine, u["creator"], "Meeting.", project.id)
    assert second is not None
    assert (await engine.get_user(u["creator"])).balance == 10
    assert await engine.pending_credit(u["creator"]) == 5
    stats = await engine.worker_stats(u["creator"])
    assert (stats.balance, stats.pending) == (10, 5)
    assert (await engine.my_data(u["creator"]))["pending_verification"] == 5
    payout = await engine.request_payout(u["creator"])
    [row] = [p for p in await engine.pending_payouts() if p["id"] == payout]
    assert row["amount"] == 5  # the verified part only
    assert await engine.decide_payout(mod, payout, True) == 5
    with pytest.raises(Conflict):
        await engine.request_payout(u["creator"])  # the rest waits for the check
    await answer(engine, u["v1"], "no", checker.id)
    await answer(engine, u["v3"], "no", checker.id)
    assert (await engine.get_user(u["creator"])).balance == 0  # never below zero
    assert await engine.pending_credit(u["creator"]) == 0
    assert (await engine.audit()).ok


async def test_a_payout_asked_before_a_new_credit_never_takes_the_pending_part(
    engine: Engine, clock: FakeClock
) -> None:
    project, checker, u = await setup(engine)
    await engine.import_items(
        project.id, f'id,text,lang\n2,"{SOURCE} Twice.",en\n'.encode(), "csv"
    )
    await engine.bootstrap_role(u["other"], Role.MODERATOR)
    await answer(engine, u["creator"], ANSWER, project.id)
    await answer(engine, u["v1"], "yes", checker.id)
    await answer(engine, u["v2"], "yes", checker.id)
    payout = await engine.request_payout(u["creator"])  # 5, verified
    await answer(engine, u["creator"], "Meeting.", project.id)  # 5 more, pending
    assert await engine.decide_payout(u["other"], payout, True) == 5
    assert (await engine.get_user(u["creator"])).balance == 5
    await answer(engine, u["v1"], "no", checker.id)
    await answer(engine, u["v3"], "no", checker.id)
    assert (await engine.get_user(u["creator"])).balance == 0


async def test_a_moderator_overruling_a_verified_answer_reopens_its_item(
    engine: Engine, clock: FakeClock
) -> None:
    project, checker, u = await setup(engine)
    mod, _ = await engine.user_for("test", "mod", "mod", "en")
    await engine.bootstrap_role(mod.id, Role.MODERATOR)
    aid = await answer(engine, u["creator"], ANSWER, project.id)
    assert aid is not None
    await answer(engine, u["v1"], "yes", checker.id)
    await answer(engine, u["v2"], "yes", checker.id)
    assert (await engine.get_project(project.id)).state == "done"
    assert await engine.moderate_answer(mod.id, aid, False, "Copied from the web.") == "rejected"
    # nobody stands behind the old result: the item is open again, with no result
    assert (await engine.get_project(project.id)).state == "live"
    assert (await engine.status(project.id)).done_items == 0
    [row] = await engine.export_rows(project.id)
    assert row["label"] != ANSWER
    # another creator's answer, once verified, is the result
    better = "On Thursday afternoon the meeting takes place."
    await answer(engine, u["other"], better, project.id)
    [row] = await engine.export_rows(project.id)
    assert row["label"] != better  # not before its check
    await answer(engine, u["v1"], "yes", checker.id)
    await answer(engine, u["v3"], "yes", checker.id)
    [row] = await engine.export_rows(project.id)
    assert row["label"] == better
    assert (await engine.get_project(project.id)).state == "done"


async def test_an_answer_overruled_before_its_check_is_not_checked(
    engine: Engine, clock: FakeClock
) -> None:
    project, checker, u = await setup(engine)
    mod, _ = await engine.user_for("test", "mod", "mod", "en")
    await engine.bootstrap_role(mod.id, Role.MODERATOR)
    aid = await answer(engine, u["creator"], "Meeting.", project.id)
    assert aid is not None and await engine.pending_credit(u["creator"]) == 5
    await engine.moderate_answer(mod.id, aid, False, "Too short.")
    assert await engine.pending_credit(u["creator"]) == 0
    assert (await engine.get_user(u["creator"])).balance == 0  # reversed once
    assert await engine.next_task(u["v1"], project_id=checker.id) is None  # nothing to check
    assert (await engine.get_project(checker.id)).state == "done"
    # the item went back to the crowd
    task = await engine.next_task(u["v1"])
    assert task is not None and task.project.id == project.id
    assert (await engine.audit()).ok


async def test_verify_is_refused_on_spans() -> None:
    with pytest.raises(InputError, match="text projects"):
        load_spec_text(
            "name: x\ntype: spans\nlabels: [a, b]\ninstructions: x\nverify: {overlap: 2}\n"
        )


async def test_a_linked_account_is_never_offered_the_check_of_its_own_answer(
    engine: Engine, clock: FakeClock
) -> None:
    project, checker, u = await setup(engine)
    await answer(engine, u["creator"], ANSWER, project.id)
    discord, _ = await engine.user_for("discord", "creator-dc", "creator", "en")
    code = await engine.link_code(u["creator"], "discord")
    merged = await engine.redeem_link(discord.id, code)
    assert await engine.next_task(merged.id, platform="discord") is None
    assert await engine.next_task(merged.id, platform="telegram") is None
    task = await engine.next_task(u["v1"], platform="discord")
    assert task is not None and task.project.id == checker.id
