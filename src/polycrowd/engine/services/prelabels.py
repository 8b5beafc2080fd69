"""Pre-labels: per-item predictions, the model's earned trust, the pick order.

The engine never imports a model: predictions arrive as plain probability rows (from the
scheduler's retrain job, ``polycrowd model train`` or ``polycrowd replay``, which call a
:class:`Predictor`) and :func:`store_predictions` stores them, re-learns the model's
accuracy (:class:`~polycrowd.engine.loop.ModelAnnotator`) from gold and from confident
human results, and sets each open item's ``priority`` (the pick order, indexed) and
``target`` (people planned: the minimum where the model is sure). :func:`model_vote` is
the model's earned vote that the online posterior takes as one more voter. All storage goes
through the store's ``prelabels`` repository (:class:`~polycrowd.engine.store.base.
PrelabelRepository`).

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
from polycrowd.engine.store.base import NO_FLOOR, ProjectModelRow, Session, Transaction
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


async def config(tx: Session, project_id: int) -> LoopConfig:
    spec = await tx.prelabels.project_spec(project_id)
    return LoopConfig.from_spec(json.loads(spec or "{}"))


async def training_data(
    tx: Session, project: Project
) -> tuple[list[tuple[str, str]], list[tuple[int, str]]]:
    """(content, label) of gold items and confident results with at least one person, and
    (item id, content) of every item of the project (all get a prediction)."""
    rows = await tx.prelabels.labelled(project.id, project.confidence_target)
    labels = set(project.labels)
    examples = [(content, label) for content, label in rows if label in labels]
    return examples, await tx.prelabels.contents(project.id)


async def confident_count(tx: Session, project: Project) -> int:
    return await tx.prelabels.confident_count(project.id, project.confidence_target)


async def needs_training(tx: Session, project: Project) -> bool:
    """True when enough new confident results arrived since the last training."""
    cfg = await config(tx, project.id)
    if not cfg.enabled:
        return False
    model = await tx.prelabels.model(project.id)
    now = await confident_count(tx, project)
    base = 0 if model is None else model.confident_at_train
    return now - base >= cfg.retrain_every


def _index(project: Project) -> dict[str, int]:
    return {lab: k for k, lab in enumerate(project.labels)}


async def _annotator(
    tx: Session, project: Project, probs: Mapping[int, FloatRow]
) -> loop.ModelAnnotator:
    """The model's earned accuracy: gold items (weight 1) and results the people alone were
    sure of (agreement weight), never results the model itself helped to close."""
    ann = loop.ModelAnnotator(len(project.labels))
    index = _index(project)
    for item_id, gold, label in await tx.prelabels.trust_evidence(
        project.id, project.confidence_target
    ):
        p = probs.get(item_id)
        if p is None:
            continue
        if gold is not None and gold in index:
            ann.observe(p, index[gold], 1.0)
        elif label is not None and label in index:
            ann.observe(p, index[label], loop.AGREEMENT_WEIGHT)
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


async def store_predictions(
    tx: Transaction, project: Project, pred: Prediction, now: float
) -> int:
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
    await tx.prelabels.save_predictions(
        project.id,
        pred.model_version,
        [(i, json.dumps([round(float(x), 6) for x in p])) for i, p in probs.items()],
        now,
    )
    ann = await _annotator(tx, project, probs)
    await tx.prelabels.save_model(
        project.id,
        ProjectModelRow(
            model_version=pred.model_version,
            temperature=pred.temperature,
            annotator=_annotator_json(ann),
            accuracy=pred.accuracy,
            ece=pred.ece,
            trained_on=pred.trained_on,
            confident_at_train=await confident_count(tx, project),
        ),
        now,
    )
    if not cfg.enabled:
        return 0
    index = _index(project)
    updates: list[tuple[float, int, int]] = []
    closes: list[tuple[int, str, float]] = []
    for r in await tx.prelabels.open_items(project.id):
        p = probs.get(r.item_id)
        if p is None or r.is_gold:
            continue
        prior = ann.prior(p)
        top = int(np.argmax(prior))
        human = index.get(r.label) if r.label is not None else None
        pri = loop.priority(
            float(loop.uncertainty(prior[None, :])[0]),
            disagree=human is not None and human != top,
            human_agreement=r.agreement,
            n_humans=r.answered,
        )
        target = max(
            r.answered,
            loop.human_target(
                float(prior[top]),
                project.confidence_target,
                project.overlap,
                cfg.min_human_answers,
            ),
        )
        if r.answered == 0 and target == 0:
            closes.append((r.item_id, project.labels[top], float(prior[top])))
        updates.append((pri, max(target, 1), r.item_id))
    await tx.prelabels.plan(updates)
    if closes:
        await tx.prelabels.close_by_model(project.id, closes, pred.model_version, now)
    return len(updates)


@dataclass(frozen=True, slots=True)
class ModelVote:
    prior: np.ndarray[Any, np.dtype[np.float64]]
    version: str


async def model_vote(tx: Session, project: Project, item_id: int) -> ModelVote | None:
    """The model's earned vote on one item, or None (no model, no prediction, disabled)."""
    row = await tx.prelabels.vote(item_id)
    if row is None or not LoopConfig.from_spec(json.loads(row.spec or "{}")).enabled:
        return None
    probs = json.loads(row.probs)
    if len(probs) != len(project.labels):
        return None
    ann = _annotator_from(len(project.labels), row.annotator)
    return ModelVote(ann.prior(probs), row.model_version)


async def after_answer(
    tx: Transaction,
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
    await tx.prelabels.set_priority(item_id, pri)


async def pick_limits(tx: Session, user_id: int) -> tuple[float, list[int]]:
    """(priority floor, capped project ids) for one worker's next pick: newcomers are kept
    off hard items; a worker above a project's ``max_share`` skips that project."""
    floor = NO_FLOOR
    standing = await tx.prelabels.standing(user_id)
    if standing is not None:
        answers, mean, gold = standing
        if answers < NEWCOMER_ANSWERS and not loop.is_proven(mean, gold):
            floor = loop.priority_floor(False)
    capped: list[int] = []
    for pid, spec in await tx.prelabels.live_specs():
        share = float(json.loads(spec or "{}").get("max_share") or 1.0)
        if share >= 1.0:
            continue
        mine, total = await tx.prelabels.share(user_id, pid)
        if loop.over_share(mine, total, share):
            capped.append(pid)
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


async def status(tx: Session, project: Project) -> LoopStatus:
    """What the requester may ask: the model's accuracy, calibration and version, accuracy
    of results by difficulty band (on gold), Gini of answers among active workers, and the
    median time from a worker's arrival to their first task."""
    m = await tx.prelabels.model(project.id)
    weight = None
    if m is not None:
        weight = _annotator_from(len(project.labels), m.annotator).weight()
    bands: dict[str, list[int]] = {name: [0, 0] for name, _, _ in loop.DIFFICULTY_BANDS}
    for r in await tx.prelabels.gold_results(project.id):
        unc = None
        if r.probs is not None:
            unc = float(loop.uncertainty(np.asarray([json.loads(r.probs)]))[0])
        d = loop.difficulty(unc, r.agreement, r.answers)
        cell = bands[loop.difficulty_band(d)]
        cell[0] += 1
        cell[1] += int(r.label == r.gold)
    counts = await tx.prelabels.answers_per_worker(project.id)
    waits = await tx.prelabels.first_task_waits(project.id)
    return LoopStatus(
        model_version=None if m is None else m.model_version,
        accuracy=None if m is None else m.accuracy,
        ece=None if m is None else m.ece,
        trained_on=0 if m is None else m.trained_on,
        model_weight=weight,
        accuracy_by_band={b: (n, (k / n) if n else None) for b, (n, k) in bands.items()},
        gini=loop.gini(counts),
        median_first_task_s=loop.median_time_to_first([max(0.0, w) for w in waits]),
        model_closed=await tx.prelabels.model_results(project.id),
        human_answers=sum(counts),
    )


async def issue(tx: Transaction, item_id: int, worker_id: int, now: float) -> int:
    """Assign one given item to one worker (``polycrowd replay``: a past answer arrives for
    that very item). Returns the assignment id."""
    return await tx.prelabels.issue(item_id, worker_id, now)


async def open_items(tx: Session, project_id: int) -> list[int]:
    """Open item ids of a project in pick order (priority, fewest answers, oldest)."""
    return await tx.prelabels.pick_order(project_id)
