"""Replay a past crowd dataset through the engine: what would polycrowd have saved?

The answers of ``labels.tsv`` (item, worker, label) are fed to a real engine on a SQLite
file in a temporary folder. Items are taken in the engine's pick order (priority: unsure
items and model-vs-people disagreement first); each item's past answers arrive one by one
from its workers in random order, and stop as soon as the engine closes the item under
the project's overlap policy (confidence target, ``overlap`` min/max). With item contents
(``--items``) a project model pre-labels every item and joins the posterior as one more
voter; it retrains in a worker thread whenever enough new confident results arrived.

Output: answers_all, answers_used, saved_fraction, accuracy_all (Dawid-Skene on all the
answers), accuracy (the engine's results), accuracy_delta, gini (of answers among workers).
Accuracy is measured on the items of ``--gold``.
"""

from __future__ import annotations

import asyncio
import csv
import random
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from polycrowd.engine import loop
from polycrowd.engine.aggregation import DawidSkene
from polycrowd.engine.core import Engine
from polycrowd.engine.io import ProjectSpec
from polycrowd.engine.language import LanguageDetector
from polycrowd.engine.services import prelabels
from polycrowd.engine.store import Database
from polycrowd.engine.types import TaskType
from polycrowd.models.rules import RulesChecker

Answer = tuple[str, str, str]
READ_WPS = 4.0  # an honest reader's pace (the checker rejects above 10 words a second)


@dataclass(frozen=True, slots=True)
class ReplayConfig:
    overlap: int = 3
    overlap_max: int = 5
    confidence_target: float = 0.95
    min_human_answers: int = 1
    retrain_every: int = 0  # 0: every max(10, items / 40) new confident results
    seed: int = 0


@dataclass
class ReplayReport:
    answers_all: int
    answers_used: int
    accuracy_all: float | None
    accuracy: float | None
    gini: float
    labels: dict[str, str] = field(default_factory=dict)
    model_accuracy: float | None = None
    ece: float | None = None
    curve: list[tuple[int, float]] = field(default_factory=list)

    @property
    def saved_fraction(self) -> float:
        return 0.0 if not self.answers_all else 1.0 - self.answers_used / self.answers_all

    def as_dict(self) -> dict[str, Any]:
        delta = (
            None
            if self.accuracy is None or self.accuracy_all is None
            else round(self.accuracy - self.accuracy_all, 4)
        )
        return {
            "answers_all": self.answers_all,
            "answers_used": self.answers_used,
            "saved_fraction": round(self.saved_fraction, 4),
            "accuracy_all": None if self.accuracy_all is None else round(self.accuracy_all, 4),
            "accuracy": None if self.accuracy is None else round(self.accuracy, 4),
            "accuracy_delta": delta,
            "gini": round(self.gini, 4),
        }


def read_tsv(path: str | Path, columns: int) -> list[list[str]]:
    with Path(path).open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows:
        raise ValueError(f"{path}: empty file")
    out = [r[:columns] for r in rows[1:] if r]
    for n, r in enumerate(out, start=2):
        if len(r) < columns:
            raise ValueError(f"{path}: line {n}: expected {columns} tab-separated columns")
    return out


def ds_labels(answers: Sequence[Answer], labels: Sequence[str], seed: int = 0) -> dict[str, str]:
    """Dawid-Skene on all the answers: item -> label."""
    items = sorted({a[0] for a in answers})
    workers = sorted({a[1] for a in answers})
    ii = {x: k for k, x in enumerate(items)}
    ww = {x: k for k, x in enumerate(workers)}
    ll = {x: k for k, x in enumerate(labels)}
    keep = [a for a in answers if a[2] in ll]
    chosen = DawidSkene(seed=seed).fit_predict(
        [ii[a[0]] for a in keep],
        [ww[a[1]] for a in keep],
        [ll[a[2]] for a in keep],
        n_items=len(items),
        n_workers=len(workers),
        n_labels=len(labels),
    )
    return {items[k]: labels[int(c)] for k, c in enumerate(chosen)}


def accuracy(pred: Mapping[str, str], gold: Mapping[str, str]) -> float | None:
    if not gold:
        return None
    return sum(1 for i, g in gold.items() if pred.get(i) == g) / len(gold)


async def replay(
    answers: Sequence[Answer],
    *,
    labels: Sequence[str] | None = None,
    contents: Mapping[str, str] | None = None,
    gold: Mapping[str, str] | None = None,
    predictor: prelabels.Predictor | None = None,
    task_type: TaskType = TaskType.CHOICE,
    config: ReplayConfig = ReplayConfig(),
    folder: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ReplayReport:
    """Run the replay; ``predictor`` is the project model (None: people only)."""
    gold = dict(gold or {})
    labels = list(labels or sorted({a[2] for a in answers} | set(gold.values())))
    by_item: dict[str, list[tuple[str, str]]] = {}
    for item, worker, label in answers:
        by_item.setdefault(item, []).append((worker, label))
    rng = random.Random(config.seed)
    for pairs in by_item.values():
        rng.shuffle(pairs)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        db = await Database.open(Path(tmp) / "replay.db")
        try:
            return await _run(
                db,
                by_item,
                labels,
                contents,
                gold,
                predictor,
                task_type,
                config,
                progress,
                answers,
            )
        finally:
            await db.close()


async def _run(
    db: Database,
    by_item: dict[str, list[tuple[str, str]]],
    labels: list[str],
    contents: Mapping[str, str] | None,
    gold: dict[str, str],
    predictor: prelabels.Predictor | None,
    task_type: TaskType,
    config: ReplayConfig,
    progress: Callable[[int, int], None] | None,
    answers: Sequence[Answer],
) -> ReplayReport:
    clock = [1_000_000.0]
    engine = Engine(db, RulesChecker(), LanguageDetector("script").detect, clock=lambda: clock[0])
    use_model = predictor is not None and contents is not None
    every = config.retrain_every or max(10, len(by_item) // 40)
    spec = ProjectSpec(
        name="replay",
        task_type=task_type,
        instructions={"en": "replay"},
        labels=tuple(labels),
        overlap=config.overlap,
        overlap_max=max(config.overlap, config.overlap_max),
        confidence_target=config.confidence_target,
        assignment_ttl=7 * 86400.0,
        model=(
            {
                "min_human_answers": config.min_human_answers,
                "retrain_every": every,
            }
            if use_model
            else {}
        ),
    )
    project = await engine.create_project(None, spec)
    names = sorted(by_item)
    lines = ["id,text,lang"]
    for name in names:
        text = (contents or {}).get(name, f"item {name}")
        lines.append(_csv_row([name, text, "en"]))
    await engine.import_items(project.id, ("\n".join(lines) + "\n").encode(), fmt="csv")
    await engine.set_state(None, project.id, "live")
    async with db.read() as tx:
        ids = await tx.prelabels.external_ids(project.id)
    names_of = {v: k for k, v in ids.items()}
    users: dict[str, int] = {}
    used = 0
    curve: list[tuple[int, float]] = []
    remaining = {ids[n]: list(p) for n, p in by_item.items()}
    seconds = {ids[n]: answer_seconds((contents or {}).get(n, "")) for n in by_item}
    stats: dict[str, float | None] = {"accuracy": None, "ece": None}

    async def retrain() -> None:
        assert predictor is not None
        async with db.read() as tx:
            if not await prelabels.needs_training(tx, project):
                return
            examples, items = await prelabels.training_data(tx, project)
        pred = await asyncio.to_thread(predictor.train_predict, labels, examples, items)
        if pred.probs:
            async with db.transaction() as tx:
                await prelabels.store_predictions(tx, project, pred, clock[0])
            stats["accuracy"], stats["ece"] = pred.accuracy, pred.ece

    since = 0
    total = sum(len(p) for p in remaining.values())
    while True:
        if use_model and since == 0:
            await retrain()
        async with db.read() as tx:
            order = await prelabels.open_items(tx, project.id)
        nxt = next((i for i in order if remaining.get(i)), None)
        if nxt is None:
            break
        # One item, its past answers in random worker order, until the engine closes it.
        while remaining[nxt]:
            worker, label = remaining[nxt].pop()
            if worker not in users:
                user, _ = await engine.user_for("replay", worker)
                await engine.set_languages(user.id, ["en"])
                users[worker] = user.id
            uid = users[worker]
            clock[0] += 1.0
            async with db.transaction() as tx:
                aid = await prelabels.issue(tx, nxt, uid, clock[0])
            await engine.submit(uid, aid, label, seconds=seconds[nxt])
            used += 1
            async with db.read() as tx:
                item = await tx.items.get(nxt)
            if item is None or item.state != "open":
                break
        since = (since + 1) % max(1, every // 2)
        if progress is not None:
            progress(used, total)
        if gold and used % 200 < 2:
            curve.append((used, accuracy(await _results(db, project.id, names_of), gold) or 0))
    final = await _results(db, project.id, names_of)
    async with db.read() as tx:
        counts = await tx.prelabels.answers_per_worker(project.id)
    all_labels = ds_labels(answers, labels)
    return ReplayReport(
        answers_all=len(answers),
        answers_used=used,
        accuracy_all=accuracy(all_labels, gold),
        accuracy=accuracy(final, gold),
        gini=loop.gini(counts),
        labels=final,
        model_accuracy=stats["accuracy"],
        ece=stats["ece"],
        curve=curve,
    )


async def _results(db: Database, project_id: int, names_of: Mapping[int, str]) -> dict[str, str]:
    async with db.read() as tx:
        rows = await tx.prelabels.result_labels(project_id)
    return {names_of[item]: label for item, label in rows.items()}


def answer_seconds(content: str) -> float:
    """The time a past answer is replayed with: labels.tsv has no durations, and the answers
    were real, so each one took what an honest reader needs (4 words a second, at least 20
    seconds). A fixed short time would make the checker reject every answer on a long text
    as faster than anyone reads (a news article needs ~40 s), and a replay would then count
    people who were never heard and leave their items without a result."""
    return max(20.0, len(content.split()) / READ_WPS)


def _csv_row(values: Sequence[str]) -> str:
    import io

    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(values)
    return buf.getvalue()


def gold_accuracy_curve(report: ReplayReport) -> np.ndarray[Any, Any]:
    return np.asarray(report.curve, dtype=np.float64)
