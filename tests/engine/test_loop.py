"""Model in the loop: the numbers (engine/loop.py) and the engine wiring
(engine/services/prelabels.py), on both stores."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from polycrowd.engine import loop
from polycrowd.engine.core import Engine
from polycrowd.engine.services import prelabels
from polycrowd.engine.store import Database
from tests.conftest import FakeClock, choice_spec, items_csv

# ---------------------------------------------------------------------------- pure numpy


def test_temperature_scaling_fixes_overconfidence() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 2000)
    # a model that says 0.97 but is right 70% of the time
    pred = np.where(rng.random(2000) < 0.7, y, (y + 1) % 3)
    probs = np.full((2000, 3), 0.015)
    probs[np.arange(2000), pred] = 0.97
    t = loop.fit_temperature(probs, y)
    assert t > 1.5
    before = loop.expected_calibration_error(probs, y)
    after = loop.expected_calibration_error(loop.apply_temperature(probs, t), y)
    assert before > 0.2 and after < 0.05


def test_uncertainty_margin_entropy() -> None:
    p = np.array([[0.98, 0.01, 0.01], [0.4, 0.35, 0.25]])
    assert loop.uncertainty(p)[0] < 0.05 < 0.9 < loop.uncertainty(p)[1]
    assert loop.entropy(p)[0] < loop.entropy(p)[1] <= 1.0


def test_model_weight_falls_when_wrong_on_gold() -> None:
    probs = np.array([0.97, 0.02, 0.01])
    ann = loop.ModelAnnotator(3)
    start = ann.prior(probs)[0]
    good = loop.ModelAnnotator(3)
    good.observe_many(np.tile(probs, (30, 1)), np.zeros(30))
    bad = loop.ModelAnnotator(3)
    bad.observe_many(np.tile(probs, (30, 1)), np.ones(30))
    assert bad.prior(probs)[0] < 0.2 < start < good.prior(probs)[0]
    # its mistakes went to label 1, so that is where its vote now points
    assert int(np.argmax(bad.prior(probs))) == 1
    assert bad.weight() < good.weight()


def test_stopping_rule_respects_min_human_answers() -> None:
    kw = {"overlap": 3, "overlap_max": 5, "confidence_target": 0.9}
    assert not loop.should_close(0.99, 1, model_used=False, min_human_answers=1, **kw)
    assert loop.should_close(0.99, 1, model_used=True, min_human_answers=1, **kw)
    assert not loop.should_close(0.99, 1, model_used=True, min_human_answers=2, **kw)
    assert not loop.should_close(0.5, 2, model_used=True, min_human_answers=1, **kw)
    assert loop.should_close(0.5, 5, model_used=True, min_human_answers=1, **kw)
    assert loop.human_target(0.99, 0.9, 3, 1) == 1
    assert loop.human_target(0.6, 0.9, 3, 1) == 3


def test_priority_puts_unsure_and_disagreement_first() -> None:
    sure = loop.priority(0.02)
    unsure = loop.priority(0.8)
    disputed = loop.priority(0.02, disagree=True)
    assert unsure < sure and disputed < sure
    assert loop.priority_floor(False) > unsure  # newcomers do not get the hard one


def test_gini_and_share_cap() -> None:
    assert loop.gini([5, 5, 5, 5]) == pytest.approx(0.0)
    assert loop.gini([1, 1, 1, 97]) > 0.7
    assert not loop.over_share(9, 10, 0.2)  # below the floor a project can start
    assert loop.over_share(30, 100, 0.2)
    assert not loop.over_share(15, 100, 0.2)
    assert not loop.over_share(99, 100, 1.0)
    assert loop.median_time_to_first([3.0, 1.0, 10.0]) == 3.0


# ---------------------------------------------------------------------------- engine


async def _live(engine: Engine, n: int, **spec: object) -> int:
    project = await engine.create_project(None, choice_spec(**spec))
    await engine.import_items(project.id, items_csv(n), fmt="csv")
    await engine.set_state(None, project.id, "live")
    return project.id


async def _worker(engine: Engine, name: str) -> int:
    user, _ = await engine.user_for("telegram", name)
    await engine.set_languages(user.id, ["en"])
    return user.id


async def _item_ids(db: Database, pid: int) -> list[int]:
    async with db.read() as tx:
        return [
            int(r[0])
            for r in await tx.all("SELECT id FROM items WHERE project_id = ? ORDER BY id", (pid,))
        ]


async def test_predictions_are_stored_and_order_the_pick(
    engine: Engine, db: Database, clock: FakeClock
) -> None:
    pid = await _live(engine, 6, model={"min_human_answers": 1})
    ids = await _item_ids(db, pid)
    project = await engine.get_project(pid)
    # the model is sure of everything but item 4
    probs = {i: [0.99, 0.01] for i in ids}
    probs[ids[4]] = [0.55, 0.45]
    async with db.transaction() as tx:
        n = await prelabels.store_predictions(
            tx, project, prelabels.Prediction("tiny@1", probs), clock()
        )
    assert n == 6
    async with db.read() as tx:
        row = await tx.one(
            "SELECT model_version, probs FROM item_predictions WHERE item_id = ?", (ids[4],)
        )
        targets = {
            int(r["id"]): int(r["target"])
            for r in await tx.all("SELECT id, target FROM items WHERE project_id = ?", (pid,))
        }
    assert row is not None and row["model_version"] == "tiny@1"
    assert targets[ids[4]] == 3  # unsure: full overlap
    # a newcomer is kept off the hard item; a proven worker gets it first
    newcomer = await _worker(engine, "new")
    task = await engine.next_task(newcomer)
    assert task is not None and task.item.id != ids[4]
    proven = await _worker(engine, "pro")
    async with db.transaction() as tx:
        await tx.run(
            "INSERT INTO user_skills(user_id, skill, alpha, beta, mean, gold_seen)"
            " VALUES (?, ?, 9, 1, 0.9, 8)",
            (proven, f"project:{pid}"),
        )
    task = await engine.next_task(proven)
    assert task is not None and task.item.id == ids[4]


async def test_a_newcomer_gets_a_hard_item_when_nothing_easier_is_open(
    engine: Engine, db: Database, clock: FakeClock
) -> None:
    """No proven worker yet and the model unsure of everything: the crowd must still start."""
    pid = await _live(engine, 2, model={"min_human_answers": 1})
    ids = await _item_ids(db, pid)
    project = await engine.get_project(pid)
    probs = {ids[0]: [0.99, 0.01], ids[1]: [0.5, 0.5]}
    async with db.transaction() as tx:
        await prelabels.store_predictions(
            tx, project, prelabels.Prediction("tiny@1", probs), clock()
        )
    newcomer = await _worker(engine, "new")
    first = await engine.next_task(newcomer)
    assert first is not None and first.item.id == ids[0]  # the easy one while it is open
    clock.advance(30)
    await engine.submit(newcomer, first.assignment.id, "yes")
    second = await engine.next_task(newcomer)
    assert second is not None and second.item.id == ids[1]  # then the hard one, not nothing


async def test_model_lets_an_item_close_with_fewer_people(
    engine: Engine, db: Database, clock: FakeClock
) -> None:
    pid = await _live(engine, 30, model={"min_human_answers": 1}, confidence_target=0.9)
    ids = await _item_ids(db, pid)
    project = await engine.get_project(pid)
    # gold-free project: the model earns its trust from results people alone were sure of
    async with db.transaction() as tx:
        for i in ids[:20]:
            await tx.run(
                "INSERT INTO results(item_id, project_id, label, method, confidence, agreement,"
                " answers, updated_at, human_confidence) VALUES (?, ?, 'yes', 'online', 0.99,"
                " 1, 3, 0, 0.99)",
                (i, pid),
            )
            await tx.run("UPDATE items SET state = 'done' WHERE id = ?", (i,))
        await prelabels.store_predictions(
            tx,
            project,
            prelabels.Prediction("tiny@1", {i: [0.999, 0.001] for i in ids}),
            clock(),
        )
    w = await _worker(engine, "b")
    task = await engine.next_task(w)
    assert task is not None
    await engine.submit(w, task.assignment.id, "yes", seconds=20)
    async with db.read() as tx:
        state = await tx.value("SELECT state FROM items WHERE id = ?", (task.item.id,))
        model = await tx.value(
            "SELECT model_version FROM results WHERE item_id = ?", (task.item.id,)
        )
    assert state == "done" and model == "tiny@1"
    rows = await engine.export_rows(pid)
    exported = next(r for r in rows if r["answers"] == 1)
    assert exported["model"] == "tiny@1"


async def test_wrong_model_loses_its_say(engine: Engine, db: Database, clock: FakeClock) -> None:
    # gold says "yes" on every gold item; the model insists on "no"
    project = await engine.create_project(None, choice_spec(model={"min_human_answers": 1}))
    lines = ["id,text,lang,gold"] + [f"g{i},pic {i},en,yes" for i in range(20)]
    lines += [f"i{i},pic x{i},en," for i in range(5)]
    await engine.import_items(project.id, ("\n".join(lines) + "\n").encode(), fmt="csv")
    ids = await _item_ids(db, project.id)
    async with db.transaction() as tx:
        await prelabels.store_predictions(
            tx, project, prelabels.Prediction("bad@1", {i: [0.01, 0.99] for i in ids}), clock()
        )
        vote = await prelabels.model_vote(tx, project, ids[-1])
        status = await prelabels.status(tx, project)
    assert vote is not None and vote.prior[1] < 0.2  # its "no" is now weak
    assert status.model_weight is not None and status.model_weight < 0.2


async def test_pick_is_one_indexed_query(tmp_path: Path) -> None:
    """SQLite: the pick (priority first, floor and share cap) is one walk of ix_items_pick,
    no scan, no sort (PostgreSQL walks the same index per branch with SKIP LOCKED)."""
    from polycrowd.engine.store.sqlite.repos import pick_sql

    sql = pick_sql(1, False)
    params = {
        "worker": 1,
        "now": 0.0,
        "project": None,
        "want_gold": 0,
        "chat": "",
        "platform": "",
        "floor": -1e9,
        "capped": "[]",
        "lang0": "en",
    }
    db = await Database.open(tmp_path / "plan.db")
    try:
        async with db.read() as tx:
            rows = await tx.all("EXPLAIN QUERY PLAN " + sql, params)
    finally:
        await db.close()
    plan = " | ".join(str(r[3]) for r in rows)
    assert "USING INDEX ix_items_pick" in plan
    assert "SCAN i " not in plan.replace("USING INDEX", "")
    assert "TEMP B-TREE FOR ORDER BY" not in plan.split("SEARCH i")[1].split("|")[0]


async def test_share_cap_stops_one_fast_worker(engine: Engine, db: Database) -> None:
    pid = await _live(engine, 60, overlap=1, overlap_max=1, max_share=0.3)
    fast = await _worker(engine, "fast")
    other = await _worker(engine, "slow")
    done = 0
    while (task := await engine.next_task(fast)) is not None:
        await engine.submit(fast, task.assignment.id, "yes", seconds=20)
        done += 1
    assert done == 10  # the cap's floor: nobody else has answered yet
    task = await engine.next_task(other)
    assert task is not None and task.project.id == pid
    await engine.submit(other, task.assignment.id, "yes", seconds=20)
    project = await engine.get_project(pid)
    async with db.read() as tx:
        status = await prelabels.status(tx, project)
    assert status.gini > 0.4 and status.human_answers == 11  # 10 against 1
    assert status.median_first_task_s is not None


class _Nearest:
    """A tiny real model: predicts the label of the training text with the same first word."""

    def train_predict(
        self,
        labels: Sequence[str],
        examples: Sequence[tuple[str, str]],
        items: Sequence[tuple[int, str]],
    ) -> prelabels.Prediction:
        seen = {t.split()[0]: lab for t, lab in examples}
        probs = {}
        for i, text in items:
            lab = seen.get(text.split()[0])
            probs[i] = [0.9 if x == lab else 0.1 for x in labels] if lab else [0.5, 0.5]
        return prelabels.Prediction(f"nearest-n{len(examples)}", probs, trained_on=len(examples))


async def test_scheduler_retrains_when_enough_confident_results(
    engine: Engine, db: Database
) -> None:
    from polycrowd.engine.scheduler import Scheduler
    from polycrowd.settings import Settings

    pid = await _live(engine, 20, model={"min_human_answers": 1, "retrain_every": 5})
    sched = Scheduler(engine, Settings())
    sched.predictor_for = lambda project: _Nearest()
    assert await sched.retrain() == []  # nothing confident yet
    ids = await _item_ids(db, pid)
    async with db.transaction() as tx:
        for i in ids[:6]:
            await tx.run(
                "INSERT INTO results(item_id, project_id, label, method, confidence, agreement,"
                " answers, updated_at) VALUES (?, ?, 'yes', 'online', 0.99, 1, 3, 0)",
                (i, pid),
            )
    assert await sched.retrain() == [pid]
    assert await sched.retrain() == []  # no new results since
    project = await engine.get_project(pid)
    async with db.read() as tx:
        status = await prelabels.status(tx, project)
    assert status.model_version == "nearest-n6"
