"""Everything the engine knows about each task type, in one registry.

A new task type is one :class:`TaskTypeSpec` entry here (plus its member in
:class:`polycrowd.engine.domain.TaskType`): how a payload is normalised, when two answers
are the same, how an item's counted answers become a label with a confidence, and how the
handlers render it. Nothing else branches on the task type.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from polycrowd.engine.aggregation import item_posterior
from polycrowd.engine.domain import TaskType
from polycrowd.engine.results import text_medoid

# (label, confidence, agreement) of one item, from (payload, skill) of its counted answers
# and, optionally, extra voters that are not workers (the project model's earned vote: one
# likelihood row over the labels per voter; see aggregation.item_posterior).
Estimate = tuple[str, float, float]
Extra = Sequence[Sequence[float]] | None
Estimator = Callable[[Sequence[tuple[str, float]], tuple[str, ...], Extra], Estimate]


class CheckerHead(StrEnum):
    """Which checker model head a project of this type trains (``polycrowd checker``)."""

    CLASSIFIER = "classifier"  # item -> label
    TAGGER = "tagger"  # token -> BIO tag (spans)
    SIMILARITY = "similarity"  # item/answer pair: needs no training


class Buttons(StrEnum):
    """How a task is answered in chat."""

    NONE = "none"  # a text reply
    LABELS = "labels"  # one button per label
    MULTI = "multi"  # toggle buttons per label, then done


@dataclass(frozen=True, slots=True)
class RenderHints:
    buttons: Buttons
    expects_text: bool  # the answer comes as a text message
    text_prompt: bool  # ask for a text answer in the task message
    numbered_tokens: bool  # show the item as numbered tokens (span annotation)


@dataclass(frozen=True, slots=True)
class TaskTypeSpec:
    normalise: Callable[[str], str]
    estimate: Estimator
    render: RenderHints
    needs_labels: bool  # the spec must name at least two labels
    categorical: bool  # one label out of the label set: alpha and batch aggregation apply
    detects_language: bool  # accepted answers are language evidence for the worker
    checker_head: CheckerHead = CheckerHead.SIMILARITY
    # create-then-verify (services/verify.py): an accepted answer is new content that other
    # workers confirm with a yes/no item before it becomes the result
    verifiable: bool = False

    @property
    def has_buttons(self) -> bool:
        return self.render.buttons is not Buttons.NONE


def same_answer(a: str, b: str) -> bool:
    """Two answers (or an answer and a gold label) say the same thing."""
    return a.strip().casefold() == b.strip().casefold()


def _strip(payload: str) -> str:
    return payload.strip()


def _label_set(payload: str) -> str:
    text = payload.strip()
    parts = sorted({p.strip() for p in text.split("|") if p.strip()})
    return "|".join(parts)


def _estimate_choice(
    rows: Sequence[tuple[str, float]], labels: tuple[str, ...], extra: Extra = None
) -> Estimate:
    """Skill-weighted posterior over the label set (with the extra voters, if any)."""
    if not labels:
        return _estimate_text(rows, labels)
    payloads = [p for p, _ in rows]
    index = {lab: k for k, lab in enumerate(labels)}
    votes = [index[p] for p in payloads if p in index]
    skills = [s for p, s in rows if p in index]
    if not votes:
        return payloads[0], 0.0, 0.0
    post = item_posterior(votes, skills, len(labels), None, extra=extra)
    k = int(np.argmax(post))
    label = labels[k]
    agreement = sum(1 for v in votes if v == k) / len(votes)
    return label, float(post[k]), agreement


def _estimate_text(
    rows: Sequence[tuple[str, float]], labels: tuple[str, ...], extra: Extra = None
) -> Estimate:
    payloads = [p for p, _ in rows]
    counts = Counter(p.casefold() for p in payloads)
    top, n = counts.most_common(1)[0]
    label = next(p for p in payloads if p.casefold() == top)
    agreement = n / len(payloads)
    # Free text: smoothed share of identical answers (answers rarely match exactly).
    confidence = (n + 1) / (len(payloads) + 2)
    return label, confidence, agreement


def _estimate_free_text(
    rows: Sequence[tuple[str, float]], labels: tuple[str, ...], extra: Extra = None
) -> Estimate:
    """Free text: the answer closest to the others (medoid) is the result."""
    _, confidence, agreement = _estimate_text(rows, labels)
    return text_medoid([p for p, _ in rows]).label, confidence, agreement


_LABELS = RenderHints(Buttons.LABELS, expects_text=False, text_prompt=False, numbered_tokens=False)

REGISTRY: Mapping[TaskType, TaskTypeSpec] = {
    TaskType.CHOICE: TaskTypeSpec(
        _strip,
        _estimate_choice,
        _LABELS,
        True,
        categorical=True,
        detects_language=False,
        checker_head=CheckerHead.CLASSIFIER,
    ),
    TaskType.IMAGE: TaskTypeSpec(
        _strip,
        _estimate_choice,
        _LABELS,
        True,
        categorical=True,
        detects_language=False,
        checker_head=CheckerHead.CLASSIFIER,
    ),
    TaskType.MULTI: TaskTypeSpec(
        _label_set,
        _estimate_text,
        RenderHints(Buttons.MULTI, expects_text=False, text_prompt=False, numbered_tokens=False),
        True,
        categorical=False,
        detects_language=False,
    ),
    TaskType.TEXT: TaskTypeSpec(
        _strip,
        _estimate_free_text,
        RenderHints(Buttons.NONE, expects_text=True, text_prompt=True, numbered_tokens=False),
        False,
        categorical=False,
        detects_language=True,
        verifiable=True,
    ),
    TaskType.SPANS: TaskTypeSpec(
        _strip,
        _estimate_text,
        RenderHints(Buttons.NONE, expects_text=True, text_prompt=False, numbered_tokens=True),
        False,
        categorical=False,
        detects_language=True,
        checker_head=CheckerHead.TAGGER,
    ),
}


def spec_of(task_type: TaskType) -> TaskTypeSpec:
    return REGISTRY[task_type]


def estimate(
    task_type: TaskType,
    labels: tuple[str, ...],
    rows: Sequence[tuple[str, float]],
    extra: Extra = None,
) -> Estimate:
    """(label, confidence, agreement) of one item from its counted (payload, skill) pairs
    and the extra (non-worker) voters; free-text types ignore the extra voters."""
    if not rows:
        return "", 0.0, 0.0
    return REGISTRY[task_type].estimate(rows, labels, extra)
