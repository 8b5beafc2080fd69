"""Model in the loop: the numbers behind pre-labels, active learning and fair allocation.

Pure numpy, no database and no torch: the engine's prelabel service, ``polycrowd replay``
and ``bench/active.py`` all call these functions, so the loop behaves the same everywhere.

- **Calibration**: :func:`fit_temperature` (temperature scaling by NLL on gold and confident
  results) and :func:`expected_calibration_error`.
- **Uncertainty and difficulty**: :func:`margin`, :func:`entropy`, :func:`uncertainty`,
  :func:`difficulty` (model uncertainty plus human disagreement).
- **The model as one more annotator**: :class:`ModelAnnotator` keeps Beta counts of the
  model's accuracy per calibrated-confidence band and Dirichlet counts of its confusions,
  learned from gold and from agreement with confident human results, exactly like a
  worker's skill. Its weight in an item's posterior (:meth:`ModelAnnotator.prior`) is what
  it has earned: a model that is wrong on gold falls towards a uniform vote.
- **Stopping**: :func:`human_target` (how many people an item needs given the model) and
  :func:`should_close`.
- **Order**: :func:`priority` (lower is offered first: unsure items and model-vs-people
  disagreement first; items the model is sure of last, with the minimum overlap).
- **Allocation**: :func:`is_proven` and :func:`priority_floor` (hard items only to proven
  workers; newcomers get gold and easy items).
- **Fairness**: :func:`gini`, :func:`median_time_to_first`, :func:`over_share`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

# Calibrated-confidence bands of the model's top label; one Beta accuracy per band.
BANDS: Final = (0.0, 0.5, 0.7, 0.85, 0.95, 0.99, 1.0 + 1e-9)
# Prior pseudo-answers per band: the model starts as a modest voter and earns the rest.
PRIOR_STRENGTH: Final = 4.0
PRIOR_CEILING: Final = 0.8
# Agreement with a confident human result counts less than a gold answer (as for workers).
AGREEMENT_WEIGHT: Final = 0.5
# Difficulty bands reported by ``project status``.
DIFFICULTY_BANDS: Final = (("easy", 0.0, 0.2), ("medium", 0.2, 0.5), ("hard", 0.5, 1.01))
# Newcomers are not offered items harder than this (priority below -HARD_FOR_NEWCOMERS).
HARD_FOR_NEWCOMERS: Final = 0.5
PROVEN_GOLD: Final = 3
PROVEN_SKILL: Final = 0.8


# --------------------------------------------------------------------------- calibration


def _as_probs(probs: ArrayLike) -> FloatArray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 1:
        raise ValueError("probabilities must be a 2-d (items, labels) array")
    return p


def softmax(logits: ArrayLike) -> FloatArray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    out: FloatArray = e / e.sum(axis=-1, keepdims=True)
    return out


def apply_temperature(probs: ArrayLike, temperature: float) -> FloatArray:
    """Probabilities re-scaled by ``temperature`` (``T > 1`` softens, ``T < 1`` sharpens)."""
    p = _as_probs(probs)
    return softmax(np.log(np.clip(p, 1e-12, 1.0)) / max(temperature, 1e-3))


def _nll(probs: FloatArray, labels: IntArray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0))))


def fit_temperature(probs: ArrayLike, labels: ArrayLike) -> float:
    """The temperature minimising the negative log-likelihood of ``labels`` (1.0 without
    data). Golden-section search over log T in [0.05, 20]: one parameter, no gradients."""
    p = _as_probs(probs)
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(y) == 0:
        return 1.0
    logp = np.log(np.clip(p, 1e-12, 1.0))

    def loss(log_t: float) -> float:
        return _nll(softmax(logp / math.exp(log_t)), y)

    lo, hi = math.log(0.05), math.log(20.0)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = loss(a), loss(b)
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = loss(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = loss(b)
    return float(math.exp((lo + hi) / 2))


def expected_calibration_error(probs: ArrayLike, labels: ArrayLike, n_bins: int = 10) -> float:
    """ECE: the confidence-weighted gap between confidence and accuracy over equal-width
    bins of the top probability (0.0 for a perfectly calibrated model; nan without data)."""
    p = _as_probs(probs)
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(y) == 0:
        return float("nan")
    conf = p.max(axis=1)
    right = (p.argmax(axis=1) == y).astype(np.float64)
    bins = np.minimum((conf * n_bins).astype(np.int64), n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        m = bins == b
        if m.any():
            total += float(m.sum()) * abs(float(conf[m].mean()) - float(right[m].mean()))
    return total / len(y)


# --------------------------------------------------------------------------- uncertainty


def margin(probs: ArrayLike) -> FloatArray:
    """Top probability minus the runner-up, per row (1 = sure, 0 = a tie)."""
    p = np.sort(_as_probs(probs), axis=1)
    out: FloatArray = p[:, -1] - (p[:, -2] if p.shape[1] > 1 else 0.0)
    return out


def entropy(probs: ArrayLike) -> FloatArray:
    """Shannon entropy per row, normalised to [0, 1] by log(n_labels)."""
    p = np.clip(_as_probs(probs), 1e-12, 1.0)
    k = p.shape[1]
    h = -(p * np.log(p)).sum(axis=1)
    out: FloatArray = h / math.log(k) if k > 1 else np.zeros(len(p))
    return out


def uncertainty(probs: ArrayLike) -> FloatArray:
    """1 - margin: what active learning sorts by (0 = sure, 1 = a coin toss)."""
    out: FloatArray = 1.0 - margin(probs)
    return out


def difficulty(
    model_uncertainty: float | None, human_agreement: float | None, n_humans: int = 0
) -> float:
    """An item's difficulty in [0, 1]: the model's uncertainty, raised by human disagreement
    once two or more people answered (a split between people is the stronger evidence)."""
    parts: list[float] = []
    if model_uncertainty is not None:
        parts.append(min(max(model_uncertainty, 0.0), 1.0))
    if human_agreement is not None and n_humans >= 2:
        parts.append(min(max(2.0 * (1.0 - human_agreement), 0.0), 1.0))
    return max(parts) if parts else 0.5


def difficulty_band(value: float) -> str:
    for name, lo, hi in DIFFICULTY_BANDS:
        if lo <= value < hi:
            return name
    return DIFFICULTY_BANDS[-1][0]


# --------------------------------------------------------------------------- the model voter


def band_of(confidence: float) -> int:
    for b in range(len(BANDS) - 1):
        if BANDS[b] <= confidence < BANDS[b + 1]:
            return b
    return len(BANDS) - 2


@dataclass
class ModelAnnotator:
    """The project model as one more annotator, with counts it earns.

    ``right[b]``/``wrong[b]``: Beta counts of the model's top label being right when its
    calibrated confidence falls in band ``b``; ``confusion[k, m]``: Dirichlet counts of true
    label ``k`` when the model said ``m`` and was wrong (where its mistakes go).
    """

    n_labels: int
    right: FloatArray = field(default_factory=lambda: np.zeros(len(BANDS) - 1))
    wrong: FloatArray = field(default_factory=lambda: np.zeros(len(BANDS) - 1))
    confusion: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))

    def __post_init__(self) -> None:
        if self.confusion.shape != (self.n_labels, self.n_labels):
            self.confusion = np.ones((self.n_labels, self.n_labels)) - np.eye(self.n_labels)

    @staticmethod
    def _prior_mean(b: int) -> float:
        mid = (BANDS[b] + min(BANDS[b + 1], 1.0)) / 2
        return min(mid, PRIOR_CEILING)

    def accuracy(self, b: int) -> float:
        """Posterior mean accuracy of the model in band ``b``."""
        m = self._prior_mean(b)
        a = PRIOR_STRENGTH * m + self.right[b]
        w = PRIOR_STRENGTH * (1 - m) + self.wrong[b]
        return float(a / (a + w))

    def observe(self, probs: ArrayLike, truth: int, weight: float = 1.0) -> None:
        """Learn from one item whose label is known (gold: weight 1; a confident human
        result: :data:`AGREEMENT_WEIGHT`)."""
        p = np.asarray(probs, dtype=np.float64).reshape(-1)
        m = int(np.argmax(p))
        b = band_of(float(p[m]))
        if m == truth:
            self.right[b] += weight
        else:
            self.wrong[b] += weight
            self.confusion[truth, m] += weight

    def observe_many(self, probs: ArrayLike, truths: ArrayLike, weight: float = 1.0) -> None:
        p = _as_probs(probs)
        for row, t in zip(p, np.asarray(truths, dtype=np.int64).reshape(-1), strict=True):
            self.observe(row, int(t), weight)

    def prior(self, probs: ArrayLike) -> FloatArray:
        """The model's vote on one item as a distribution over the true label: its earned
        accuracy in the band of its confidence on its top label, the rest spread as its
        past mistakes were."""
        p = np.asarray(probs, dtype=np.float64).reshape(-1)
        m = int(np.argmax(p))
        acc = self.accuracy(band_of(float(p[m])))
        if self.n_labels == 1:
            return np.ones(1)
        spread = self.confusion[:, m].copy()
        spread[m] = 0.0
        total = spread.sum()
        spread = spread / total if total > 0 else np.full(self.n_labels, 0.0)
        out: FloatArray = (1.0 - acc) * spread
        out[m] = acc
        result: FloatArray = out / out.sum()
        return result

    def weight(self) -> float:
        """A one-number summary of trust: mean earned accuracy over the bands it was seen in
        (the prior mean where it was never checked), for reports."""
        seen = (self.right + self.wrong) > 0
        bands = np.flatnonzero(seen) if seen.any() else np.arange(len(BANDS) - 1)
        return float(np.mean([self.accuracy(int(b)) for b in bands]))


def combine(
    model_prior: FloatArray | None,
    labels_of_item: Sequence[int],
    worker_accuracies: Sequence[float],
    n_labels: int,
) -> FloatArray:
    """The item posterior: the model's earned vote (or uniform) times the people's one-coin
    likelihoods."""
    log_post = (
        np.full(n_labels, -math.log(n_labels))
        if model_prior is None
        else np.log(np.clip(model_prior, 1e-9, 1.0))
    )
    for lab, acc in zip(labels_of_item, worker_accuracies, strict=True):
        a = min(max(float(acc), 1e-6), 1 - 1e-6)
        wrong = (1 - a) / max(n_labels - 1, 1)
        like = np.full(n_labels, math.log(wrong))
        like[lab] = math.log(a)
        log_post = log_post + like
    return softmax(log_post)


# --------------------------------------------------------------------------- stopping


def human_target(
    model_confidence: float | None,
    confidence_target: float,
    overlap: int,
    min_human_answers: int,
) -> int:
    """People an item is planned for: the minimum when the model's earned vote alone
    reaches the confidence target, the project's overlap otherwise (or without a model)."""
    if model_confidence is None or model_confidence < confidence_target:
        return overlap
    return min(min_human_answers, overlap)


def should_close(
    confidence: float,
    n_humans: int,
    *,
    overlap: int,
    overlap_max: int,
    confidence_target: float,
    model_used: bool,
    min_human_answers: int,
) -> bool:
    """Close an item: at its maximum overlap, or confident enough with enough people.
    With the model in the posterior fewer people suffice (``min_human_answers``); without
    it the project's overlap is the floor, as before."""
    if n_humans >= overlap_max:
        return True
    floor = min(min_human_answers, overlap) if model_used else overlap
    return n_humans >= floor and confidence >= confidence_target


# --------------------------------------------------------------------------- order


def priority(
    model_uncertainty: float | None,
    *,
    disagree: bool = False,
    human_agreement: float | None = None,
    n_humans: int = 0,
) -> float:
    """The pick order key (lower first) in [-2, 0]: minus the difficulty, minus one more
    when the model's top label and the people's current label differ."""
    d = difficulty(model_uncertainty, human_agreement, n_humans)
    return -round(d + (1.0 if disagree else 0.0), 4)


# --------------------------------------------------------------------------- allocation


def is_proven(skill_mean: float, gold_seen: int) -> bool:
    """A worker whose record (gold answered, posterior skill) earns hard items."""
    return gold_seen >= PROVEN_GOLD and skill_mean >= PROVEN_SKILL


def priority_floor(proven: bool) -> float:
    """The lowest priority a worker may be offered: everything for proven workers, no
    hard items for newcomers (who get gold and easy items, and feedback from gold)."""
    return -1e9 if proven else -HARD_FOR_NEWCOMERS


# --------------------------------------------------------------------------- fairness


def gini(counts: ArrayLike) -> float:
    """Gini coefficient of answers per active worker (0 = equal, towards 1 = one worker
    answers everything); 0.0 for fewer than two workers."""
    x = np.sort(np.asarray(counts, dtype=np.float64).reshape(-1))
    x = x[x > 0]
    n = len(x)
    if n < 2 or x.sum() <= 0:
        return 0.0
    ranks = np.arange(1, n + 1)
    return float((2.0 * (ranks * x).sum()) / (n * x.sum()) - (n + 1.0) / n)


def median_time_to_first(waits: ArrayLike) -> float | None:
    """Median seconds from a worker's arrival to their first task (None without data)."""
    w = np.asarray(waits, dtype=np.float64).reshape(-1)
    return float(np.median(w)) if len(w) else None


def over_share(worker_answers: int, total_answers: int, max_share: float, floor: int = 10) -> bool:
    """True when a worker already holds more than ``max_share`` of a project's answers
    (never before ``floor`` answers, so a project can start with one worker)."""
    if max_share >= 1.0:
        return False
    return worker_answers >= max(floor, math.ceil(max_share * total_answers))
