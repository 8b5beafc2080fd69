"""Pre-labels in the database: per-item predictions, the model's earned trust, the pick order.

The engine never imports a model: predictions arrive as plain probability rows (from the
scheduler's retrain job, ``polycrowd model train`` or ``polycrowd replay``, which call a
:class:`Predictor`) and :func:`store_predictions` writes them, re-learns the model's
accuracy (:class:`~polycrowd.engine.loop.ModelAnnotator`) from gold and from confident
human results, and sets each open item's ``priority`` (the pick order, indexed) and
``target`` (people planned: the minimum where the model is sure). :func:`model_prior` is
what the online posterior multiplies the people's votes with.

The project's spec decides how far the model is trusted::

    model: {min_human_answers: 1, retrain_every: 50}
    max_share: 0.2
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from polycrowd.engine import loop
from polycrowd.engine.store import Tx
from polycrowd.engine.types import Project

NEWCOMER_ANSWERS = 20


@dataclass(frozen=True, slots=True)
class LoopConfig:
    """The spec's ``model`` mapping and ``max_share``; ``enabled`` once a ``model`` key."""

    enabled: bool = False
    min_human_answers: int = 1
    retrain_every: int = 50
    max_share: float = 1.0

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> LoopConfig:
        model = spec.get("model")
        share = float(spec.get("max_share") or 1.0)
        if not isinstance(model, Mapping):
            return cls(max_share=share)
        return cls(
            enabled=bool(model.get("enabled", True)),
            min_human_answers=int(model.get("min_human_answers", 1)),
            retrain_every=int(model.get("retrain_every", 50)),
            max_share=share,
        )


@dataclass(frozen=True, slots=True)
class Prediction:
    """What a model returns for a project: one probability row per item id."""

    model_version: str
    probs: Mapping[int, Sequence[float]]
    temperature: float = 1.0
    accuracy: float | None = None  # held-out accuracy on the training labels
    ece: float | None = None  # held-out calibration error after temperature scaling
    trained_on: int = 0


class Predictor(Protocol):
    """A project model (``polycrowd.models.prelabel``): trains on (content, label) pairs and
    predicts a distribution over ``labels`` for every given item. Runs in a worker thread."""

    def train_predict(
        self,
        labels: Sequence[str],
        examples: Sequence[tuple[str, str]],
        items: Sequence[tuple[int, str]],
    ) -> Prediction: ...


async def config(tx: Tx, project_id: int) -> LoopConfig:
    spec = await tx.value("SELECT spec FROM projects WHERE id = ?", (project_id,))
    return LoopConfig.from_spec(json.loads(spec or "{}"))


async def training_data(
    tx: Tx, project: Project
) -> tuple[list[tuple[str, str]], list[tuple[int, str]]]:
    """(content, label) of gold items and confident results with at least one person, and
    (item id, content) of every item of the project (all get a prediction)."""
    rows = await tx.all(
        "SELECT i.content, COALESCE(i.gold, r.label) AS label FROM items i"
        " LEFT JOIN results r ON r.item_id = i.id"
        " WHERE i.project_id = ? AND (i.gold IS NOT NULL"
        " OR (r.confidence >= ? AND r.answers >= 1))",
        (project.id, project.confidence_target),
    )
    labels = set(project.labels)
    examples = [(str(r["content"]), str(r["label"])) for r in rows if r["label"] in labels]
    items = [
        (int(r["id"]), str(r["content"]))
        for r in await tx.all("SELECT id, content FROM items WHERE project_id = ?", (project.id,))
    ]
    return examples, items


async def confident_count(tx: Tx, project: Project) -> int:
    return int(
        await tx.value(
            "SELECT COUNT(*) FROM results WHERE project_id = ? AND confidence >= ?"
            " AND answers >= 1",
            (project.id, project.confidence_target),
        )
        or 0
    )


async def needs_training(tx: Tx, project: Project) -> bool:
    """True when enough new confident results arrived since the last training."""
    cfg = await config(tx, project.id)
    if not cfg.enabled:
        return False
    last = await tx.value(
        "SELECT confident_at_train FROM project_models WHERE project_id = ?", (project.id,)
    )
    now = await confident_count(tx, project)
    base = 0 if last is None else int(last)
    return now - base >= cfg.retrain_every


def _index(project: Project) -> dict[str, int]:
    return {lab: k for k, lab in enumerate(project.labels)}


async def _annotator(
    tx: Tx, project: Project, probs: Mapping[int, FloatRow]
) -> loop.ModelAnnotator:
    """The model's earned accuracy: gold items (weight 1) and results the people alone were
    sure of (agreement weight), never results the model itself helped to close."""
    ann = loop.ModelAnnotator(len(project.labels))
    index = _index(project)
    rows = await tx.all(
        "SELECT i.id, i.gold, r.label, r.human_confidence FROM items i"
        " LEFT JOIN results r ON r.item_id = i.id WHERE i.project_id = ?"
        " AND (i.gold IS NOT NULL OR r.human_confidence >= ?)",
        (project.id, project.confidence_target),
    )
    for r in rows:
        p = probs.get(int(r["id"]))
        if p is None:
            continue
        if r["gold"] is not None and r["gold"] in index:
            ann.observe(p, index[str(r["gold"])], 1.0)
        elif r["label"] in index:
            ann.observe(p, index[str(r["label"])], loop.AGREEMENT_WEIGHT)
    return ann


FloatRow = Sequence[float] | np.ndarray[Any, Any]


def _annotator_json(ann: loop.ModelAnnotator) -> str:
    return json.dumps(
        {
            "right": ann.right.tolist(),
            "wrong": ann.wrong.tolist(),
            "confusion": ann.confusion.tolist(),
        }
    )


def _annotator_from(n_labels: int, text: str) -> loop.ModelAnnotator:
    data = json.loads(text)
    return loop.ModelAnnotator(
        n_labels,
        np.asarray(data["right"], dtype=np.float64),
        np.asarray(data["wrong"], dtype=np.float64),
        np.asarray(data["confusion"], dtype=np.float64),
    )


async def store_predictions(tx: Tx, project: Project, pred: Prediction, now: float) -> int:
    """Store one model version's predictions, learn its trust, re-plan the open items;
    items the model alone is sure of close at once when ``min_human_answers`` is 0.
    Returns the number of open items re-planned."""
    cfg = await config(tx, project.id)
    k = len(project.labels)
    probs = {
        int(i): np.asarray(p, dtype=np.float64)
        for i, p in pred.probs.items()
        if len(p) == k and math.isfinite(float(np.sum(p)))
    }
    await tx.many(
        "INSERT INTO item_predictions(item_id, project_id, model_version, probs, created_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT(item_id) DO UPDATE SET"
        " model_version = excluded.model_version, probs = excluded.probs,"
        " created_at = excluded.created_at",
        [
            (i, project.id, pred.model_version, json.dumps([round(float(x), 6) for x in p]), now)
            for i, p in probs.items()
        ],
    )
    ann = await _annotator(tx, project, probs)
    await tx.run(
        "INSERT INTO project_models(project_id, model_version, temperature, annotator,"
        " accuracy, ece, trained_on, confident_at_train, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(project_id) DO UPDATE SET"
        " model_version = excluded.model_version, temperature = excluded.temperature,"
        " annotator = excluded.annotator, accuracy = excluded.accuracy, ece = excluded.ece,"
        " trained_on = excluded.trained_on, confident_at_train = excluded.confident_at_train,"
        " created_at = excluded.created_at",
        (
            project.id,
            pred.model_version,
            pred.temperature,
            _annotator_json(ann),
            pred.accuracy,
            pred.ece,
            pred.trained_on,
            await confident_count(tx, project),
            now,
        ),
    )
    if not cfg.enabled:
        return 0
    open_rows = await tx.all(
        "SELECT i.id, i.answered, i.is_gold, r.label, r.agreement FROM items i"
        " LEFT JOIN results r ON r.item_id = i.id"
        " WHERE i.project_id = ? AND i.state = 'open'",
        (project.id,),
    )
    index = _index(project)
    updates: list[tuple[float, int, int]] = []
    closes: list[tuple[Any, ...]] = []
    for r in open_rows:
        p = probs.get(int(r["id"]))
        if p is None or r["is_gold"]:
            continue
        prior = ann.prior(p)
        top = int(np.argmax(prior))
        answered = int(r["answered"])
        human = index.get(str(r["label"])) if r["label"] is not None else None
        pri = loop.priority(
            float(loop.uncertainty(prior[None, :])[0]),
            disagree=human is not None and human != top,
            human_agreement=None if r["agreement"] is None else float(r["agreement"]),
            n_humans=answered,
        )
        target = max(
            answered,
            loop.human_target(
                float(prior[top]),
                project.confidence_target,
                project.overlap,
                cfg.min_human_answers,
            ),
        )
        if answered == 0 and target == 0:
            closes.append(
                (
                    int(r["id"]),
                    project.id,
                    project.labels[top],
                    float(prior[top]),
                    now,
                    pred.model_version,
                )
            )
        updates.append((pri, max(target, 1), int(r["id"])))
    await tx.many("UPDATE items SET priority = ?, target = ? WHERE id = ?", updates)
    if closes:
        await tx.many(
            "INSERT INTO results(item_id, project_id, label, method, confidence, agreement,"
            " answers, updated_at, model_version, human_confidence)"
            " VALUES (?, ?, ?, 'model', ?, 0, 0, ?, ?, 0) ON CONFLICT(item_id) DO UPDATE SET"
            " label = excluded.label, method = excluded.method,"
            " confidence = excluded.confidence, updated_at = excluded.updated_at,"
            " model_version = excluded.model_version",
            closes,
        )
        await tx.many(
            "UPDATE items SET state = 'done', confidence = ? WHERE id = ? AND live = 0",
            [(c[3], c[0]) for c in closes],
        )
    return len(updates)


@dataclass(frozen=True, slots=True)
class ModelVote:
    prior: np.ndarray[Any, np.dtype[np.float64]]
    version: str


async def model_vote(tx: Tx, project: Project, item_id: int) -> ModelVote | None:
    """The model's earned vote on one item, or None (no model, no prediction, disabled)."""
    row = await tx.one(
        "SELECT p.probs, p.model_version, m.annotator, pr.spec FROM item_predictions p"
        " JOIN project_models m ON m.project_id = p.project_id"
        " JOIN projects pr ON pr.id = p.project_id WHERE p.item_id = ?",
        (item_id,),
    )
    if row is None or not LoopConfig.from_spec(json.loads(row["spec"] or "{}")).enabled:
        return None
    probs = json.loads(row["probs"])
    if len(probs) != len(project.labels):
        return None
    ann = _annotator_from(len(project.labels), str(row["annotator"]))
    return ModelVote(ann.prior(probs), str(row["model_version"]))


async def after_answer(
    tx: Tx,
    project: Project,
    item_id: int,
    vote: ModelVote,
    label: str,
    agreement: float,
    answered: int,
) -> None:
    """Re-key an item after an answer: model-vs-people disagreement moves it forward."""
    top = int(np.argmax(vote.prior))
    pri = loop.priority(
        float(loop.uncertainty(vote.prior[None, :])[0]),
        disagree=project.labels[top] != label,
        human_agreement=agreement,
        n_humans=answered,
    )
    await tx.run("UPDATE items SET priority = ? WHERE id = ?", (pri, item_id))


async def pick_limits(tx: Tx, user_id: int) -> tuple[float, list[int]]:
    """(priority floor, capped project ids) for one worker's next pick: newcomers are kept
    off hard items; a worker above a project's ``max_share`` skips that project."""
    row = await tx.one(
        "SELECT u.answers, COALESCE(MAX(s.mean), 0) AS mean,"
        " COALESCE(SUM(s.gold_seen), 0) AS gold FROM users u"
        " LEFT JOIN user_skills s ON s.user_id = u.id WHERE u.id = ?",
        (user_id,),
    )
    floor = -1e9
    if row is not None:
        newcomer = int(row["answers"] or 0) < NEWCOMER_ANSWERS
        proven = loop.is_proven(float(row["mean"]), int(row["gold"]))
        if newcomer and not proven:
            floor = loop.priority_floor(False)
    capped: list[int] = []
    for p in await tx.all(
        "SELECT id, spec FROM projects WHERE state = 'live'"
        " AND json_extract(spec, '$.max_share') < 1"
    ):
        share = float(json.loads(p["spec"])["max_share"])
        mine = await tx.value(
            "SELECT COUNT(*) FROM answers WHERE worker_id = ? AND project_id = ?"
            " AND status IN ('accepted', 'review')",
            (user_id, p["id"]),
        )
        total = await tx.value(
            "SELECT COUNT(*) FROM answers WHERE project_id = ?"
            " AND status IN ('accepted', 'review')",
            (p["id"],),
        )
        if loop.over_share(int(mine or 0), int(total or 0), share):
            capped.append(int(p["id"]))
    return floor, capped


@dataclass(frozen=True, slots=True)
class LoopStatus:
    model_version: str | None
    accuracy: float | None
    ece: float | None
    trained_on: int
    model_weight: float | None
    accuracy_by_band: dict[str, tuple[int, float | None]]
    gini: float
    median_first_task_s: float | None
    model_closed: int
    human_answers: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "model_version": self.model_version,
            "model_accuracy": self.accuracy,
            "ece": self.ece,
            "trained_on": self.trained_on,
            "model_weight": self.model_weight,
            "accuracy_by_difficulty": {
                band: {"gold_items": n, "accuracy": acc}
                for band, (n, acc) in self.accuracy_by_band.items()
            },
            "gini": self.gini,
            "median_time_to_first_task_s": self.median_first_task_s,
            "results_with_model": self.model_closed,
            "human_answers": self.human_answers,
        }


async def status(tx: Tx, project: Project) -> LoopStatus:
    """What the requester may ask: the model's accuracy, calibration and version, accuracy
    of results by difficulty band (on gold), Gini of answers among active workers, and the
    median time from a worker's arrival to their first task."""
    m = await tx.one("SELECT * FROM project_models WHERE project_id = ?", (project.id,))
    weight = None
    if m is not None:
        weight = _annotator_from(len(project.labels), str(m["annotator"])).weight()
    bands: dict[str, list[int]] = {name: [0, 0] for name, _, _ in loop.DIFFICULTY_BANDS}
    rows = await tx.all(
        "SELECT i.gold, r.label, r.agreement, r.answers, p.probs FROM items i"
        " JOIN results r ON r.item_id = i.id"
        " LEFT JOIN item_predictions p ON p.item_id = i.id"
        " WHERE i.project_id = ? AND i.gold IS NOT NULL",
        (project.id,),
    )
    for r in rows:
        unc = None
        if r["probs"] is not None:
            unc = float(loop.uncertainty(np.asarray([json.loads(r["probs"])]))[0])
        d = loop.difficulty(unc, float(r["agreement"]), int(r["answers"]))
        cell = bands[loop.difficulty_band(d)]
        cell[0] += 1
        cell[1] += int(str(r["label"]) == str(r["gold"]))
    counts = [
        int(r[0])
        for r in await tx.all(
            "SELECT COUNT(*) FROM answers WHERE project_id = ? AND status IN"
            " ('accepted', 'review') GROUP BY worker_id",
            (project.id,),
        )
    ]
    waits = [
        float(r[0])
        for r in await tx.all(
            "SELECT MIN(a.issued_at) - u.created_at FROM assignments a JOIN users u"
            " ON u.id = a.worker_id WHERE a.project_id = ? GROUP BY a.worker_id",
            (project.id,),
        )
    ]
    closed = await tx.value(
        "SELECT COUNT(*) FROM results WHERE project_id = ? AND model_version IS NOT NULL",
        (project.id,),
    )
    return LoopStatus(
        model_version=None if m is None else str(m["model_version"]),
        accuracy=None if m is None else m["accuracy"],
        ece=None if m is None else m["ece"],
        trained_on=0 if m is None else int(m["trained_on"]),
        model_weight=weight,
        accuracy_by_band={b: (n, (k / n) if n else None) for b, (n, k) in bands.items()},
        gini=loop.gini(counts),
        median_first_task_s=loop.median_time_to_first([max(0.0, w) for w in waits]),
        model_closed=int(closed or 0),
        human_answers=sum(counts),
    )


async def issue(tx: Tx, item_id: int, worker_id: int, now: float) -> int:
    """Assign one given item to one worker (``polycrowd replay``: a past answer arrives for
    that very item). Returns the assignment id."""
    return await tx.run(
        "INSERT INTO assignments(item_id, worker_id, project_id, issued_at, expires_at, state)"
        " SELECT i.id, ?, i.project_id, ?, ? + p.assignment_ttl, 'issued' FROM items i"
        " JOIN projects p ON p.id = i.project_id WHERE i.id = ?",
        (worker_id, now, now, item_id),
    )


async def open_items(tx: Tx, project_id: int) -> list[int]:
    """Open item ids of a project in pick order (priority, fewest answers, oldest)."""
    rows = await tx.all(
        "SELECT id FROM items WHERE project_id = ? AND state = 'open' AND is_gold = 0"
        " ORDER BY priority, filled, confidence, id",
        (project_id,),
    )
    return [int(r[0]) for r in rows]
