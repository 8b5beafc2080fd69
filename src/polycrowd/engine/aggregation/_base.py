"""Shared pieces of the aggregators: encoding, validated answers, the base class."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]
GoldLike = Mapping[int, int] | ArrayLike | None

METHODS: Final = ("mv", "wmv", "ds", "ocds")
_TIE_RTOL: Final = 1e-9


class AggregationInputError(ValueError):
    """Unusable input for aggregation; the message is one line and names the line."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}: "
        if line is not None:
            where += f"line {line}: "
        super().__init__(where + message)
        self.path = path
        self.line = line


# --------------------------------------------------------------------------- encoding


@dataclass(frozen=True, slots=True)
class Encoded:
    """Answers as parallel integer arrays plus the vocabularies that decode them."""

    items: IntArray
    workers: IntArray
    labels: IntArray
    item_names: tuple[str, ...]
    worker_names: tuple[str, ...]
    label_names: tuple[str, ...]

    @property
    def n_items(self) -> int:
        return len(self.item_names)

    @property
    def n_workers(self) -> int:
        return len(self.worker_names)

    @property
    def n_labels(self) -> int:
        return len(self.label_names)

    def gold_array(self, gold: Mapping[str, str]) -> IntArray:
        """Gold labels by item name as an ``n_items`` array, ``-1`` where unknown.

        A gold label outside the label vocabulary is dropped (no answer can match it).
        """
        label_index = {name: k for k, name in enumerate(self.label_names)}
        out = np.full(self.n_items, -1, dtype=np.int64)
        for i, name in enumerate(self.item_names):
            g = gold.get(name)
            if g is not None and g in label_index:
                out[i] = label_index[g]
        return out


def _index(values: Sequence[str], vocab: Sequence[str] | None) -> tuple[IntArray, tuple[str, ...]]:
    if vocab is None:
        names = tuple(dict.fromkeys(values))
    else:
        names = tuple(dict.fromkeys(vocab))
        unknown = set(values).difference(names)
        if unknown:
            raise ValueError(f"labels outside the label set: {sorted(unknown)[:5]}")
    lookup = {name: k for k, name in enumerate(names)}
    codes = np.fromiter((lookup[v] for v in values), dtype=np.int64, count=len(values))
    return codes, names


def encode(
    items: Sequence[str],
    workers: Sequence[str],
    labels: Sequence[str],
    label_set: Sequence[str] | None = None,
) -> Encoded:
    """Encode string answers as integer arrays.

    Items and workers are numbered in order of first appearance. Labels follow
    ``label_set`` when given (so labels nobody chose still get a column),
    otherwise the sorted set of labels seen.
    """
    if not len(items) == len(workers) == len(labels):
        raise ValueError("items, workers and labels must have the same length")
    item_codes, item_names = _index(items, None)
    worker_codes, worker_names = _index(workers, None)
    vocab = sorted(set(labels)) if label_set is None else label_set
    label_codes, label_names = _index(labels, vocab)
    return Encoded(item_codes, worker_codes, label_codes, item_names, worker_names, label_names)


@dataclass(frozen=True, slots=True)
class _Answers:
    """Validated answers plus the per-item vote counts every method needs."""

    items: IntArray
    workers: IntArray
    labels: IntArray
    n_items: int
    n_workers: int
    n_labels: int
    votes: FloatArray  # (n_items, n_labels) answer counts

    @classmethod
    def build(
        cls,
        items: ArrayLike,
        workers: ArrayLike,
        labels: ArrayLike,
        n_items: int | None,
        n_workers: int | None,
        n_labels: int | None,
    ) -> _Answers:
        it = _as_index_array(items, "items")
        wk = _as_index_array(workers, "workers")
        lb = _as_index_array(labels, "labels")
        if not it.shape == wk.shape == lb.shape:
            raise ValueError("items, workers and labels must have the same length")
        n_i = _size(it, n_items, "items")
        n_w = _size(wk, n_workers, "workers")
        n_l = max(_size(lb, n_labels, "labels"), 1)
        votes = np.bincount(it * n_l + lb, minlength=n_i * n_l).astype(np.float64)
        return cls(it, wk, lb, n_i, n_w, n_l, votes.reshape(n_i, n_l))

    @property
    def answers_per_item(self) -> FloatArray:
        out: FloatArray = self.votes.sum(axis=1)
        return out


def _as_index_array(values: ArrayLike, name: str) -> IntArray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer indices, got {arr.dtype}")
    out = arr.astype(np.int64, copy=False)
    if out.size and int(out.min()) < 0:
        raise ValueError(f"{name} must be non-negative")
    return out


def _size(arr: IntArray, given: int | None, name: str) -> int:
    seen = int(arr.max()) + 1 if arr.size else 0
    if given is None:
        return seen
    if given < seen:
        raise ValueError(f"n_{name}={given} but index {seen - 1} occurs")
    return given


def _gold_array(gold: GoldLike, n_items: int, n_labels: int) -> IntArray:
    out = np.full(n_items, -1, dtype=np.int64)
    if gold is None:
        return out
    if isinstance(gold, Mapping):
        for item, label in gold.items():
            out[int(item)] = int(label)
    else:
        arr = np.asarray(gold, dtype=np.int64)
        if arr.shape != (n_items,):
            raise ValueError(f"gold must have shape ({n_items},), got {arr.shape}")
        out[:] = arr
    if int(out.max(initial=-1)) >= n_labels or int(out.min(initial=-1)) < -1:
        raise ValueError("gold labels must be label indices or -1 for unknown")
    return out


# --------------------------------------------------------------------------- helpers


def _softmax_rows(logp: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Row-normalised probabilities and the row log-sum-exp.

    A row in which every class has probability zero (possible only without
    smoothing) becomes uniform rather than ``nan``.
    """
    top = logp.max(axis=1, keepdims=True)
    dead = ~np.isfinite(top)
    if dead.any():
        logp = np.where(dead, 0.0, logp)
        top = np.where(dead, 0.0, top)
    p = np.exp(logp - top)
    s = p.sum(axis=1, keepdims=True)
    return p / s, (np.log(s) + top)[:, 0]


def _tie_keys(n_items: int, n_labels: int, seed: int) -> FloatArray:
    """Deterministic per-(item, label) random keys used only to break exact ties."""
    return np.random.default_rng(seed).random((n_items, n_labels))


def _argmax_ties(scores: FloatArray, keys: FloatArray) -> IntArray:
    """Row argmax; among (near) ties the label with the largest key wins."""
    top = scores.max(axis=1, keepdims=True)
    tied = scores >= top - _TIE_RTOL * np.maximum(1.0, np.abs(top))
    out: IntArray = np.argmax(np.where(tied, keys, -1.0), axis=1).astype(np.int64)
    return out


def _clamp(post: FloatArray, gold: IntArray) -> FloatArray:
    known = gold >= 0
    if known.any():
        post[known] = 0.0
        post[np.flatnonzero(known), gold[known]] = 1.0
    return post


def _class_prior(weights: FloatArray, strength: float) -> FloatArray:
    """Class frequencies with ``strength`` pseudo-counts per class."""
    p = weights + strength
    total = float(p.sum())
    if total <= 0.0:
        return np.full(weights.shape, 1.0 / weights.size)
    return p / total


def wilson(successes: FloatArray, n: FloatArray, z: float = 1.96) -> tuple[FloatArray, FloatArray]:
    """Share ``successes / n`` and its Wilson score interval (``(len, 2)``; nan share at n=0)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(n > 0, successes / np.maximum(n, 1e-12), np.nan)
        pc = np.nan_to_num(p)
        denom = 1.0 + z * z / np.maximum(n, 1e-12)
        centre = (pc + z * z / (2.0 * np.maximum(n, 1e-12))) / denom
        half = z * np.sqrt(pc * (1 - pc) / np.maximum(n, 1e-12) + z * z / (4 * n * n)) / denom
    lo = np.where(n > 0, np.clip(centre - half, 0.0, 1.0), 0.0)
    hi = np.where(n > 0, np.clip(centre + half, 0.0, 1.0), 1.0)
    return p, np.stack([lo, hi], axis=1)


def one_coin_confusion(accuracy: FloatArray, n_labels: int) -> FloatArray:
    """``(n, K, K)`` confusion matrices of one-coin workers with these accuracies."""
    a = np.clip(np.asarray(accuracy, dtype=np.float64), 1e-6, 1.0 - 1e-6)
    off = (1.0 - a) / max(n_labels - 1, 1)
    conf = np.repeat(off[:, None, None], n_labels, axis=1).repeat(n_labels, axis=2)
    idx = np.arange(n_labels)
    conf[:, idx, idx] = a[:, None]
    return conf


def digamma(x: FloatArray) -> FloatArray:
    """Digamma function for positive arguments (recurrence to x >= 6, then the series)."""
    x = np.asarray(x, dtype=np.float64).copy()
    out = np.zeros_like(x)
    for _ in range(6):
        small = x < 6.0
        out -= np.where(small, 1.0 / x, 0.0)
        x = np.where(small, x + 1.0, x)
    inv = 1.0 / x
    inv2 = inv * inv
    out += (
        np.log(x)
        - 0.5 * inv
        - inv2 * (1.0 / 12 - inv2 * (1.0 / 120 - inv2 * (1.0 / 252 - inv2 * (1.0 / 240))))
    )
    return out


def confusion_counts(d: _Answers, post: FloatArray) -> FloatArray:
    """Expected ``(n_workers, K, K)`` counts: worker w answered l when the truth was k."""
    k_, m = d.n_labels, d.n_workers
    cell = d.workers * k_ + d.labels
    counts = np.empty((m, k_, k_))
    weights = post[d.items]
    for k in range(k_):
        counts[:, k, :] = np.bincount(cell, weights=weights[:, k], minlength=m * k_).reshape(m, k_)
    return counts


def log_joint_from_confusions(
    d: _Answers, log_conf: FloatArray, log_prior: FloatArray
) -> FloatArray:
    """Unnormalised item log posteriors: ``log_prior[k] + sum_answers log_conf[w, k, l]``."""
    per_answer = log_conf[d.workers, :, d.labels]  # (n_answers, K)
    logp = np.empty((d.n_items, d.n_labels))
    for k in range(d.n_labels):
        logp[:, k] = np.bincount(d.items, weights=per_answer[:, k], minlength=d.n_items)
    logp += log_prior[None, :]
    return logp


def _one_coin_log_odds(accuracy: FloatArray, n_labels: int) -> tuple[FloatArray, FloatArray]:
    """Log P(answer = true) and log P(answer = one given wrong label)."""
    a = np.clip(accuracy, 1e-6, 1.0 - 1e-6)
    right = np.log(a)
    wrong = np.log((1.0 - a) / max(n_labels - 1, 1))
    return right, wrong


def _one_coin_log_posterior(
    d: _Answers, accuracy: FloatArray, log_prior: FloatArray
) -> FloatArray:
    """Unnormalised log posterior over classes under the one-coin worker model."""
    right, wrong = _one_coin_log_odds(accuracy, d.n_labels)
    base = np.bincount(d.items, weights=wrong[d.workers], minlength=d.n_items)
    bonus = np.bincount(
        d.items * d.n_labels + d.labels,
        weights=(right - wrong)[d.workers],
        minlength=d.n_items * d.n_labels,
    ).reshape(d.n_items, d.n_labels)
    out: FloatArray = bonus + base[:, None] + log_prior[None, :]
    return out


# --------------------------------------------------------------------------- aggregators


class Aggregator:
    """Base class: subclasses implement ``_fit`` and return item posteriors."""

    seed: int
    posteriors_: FloatArray
    labels_: IntArray
    confidence_: FloatArray
    agreement_: FloatArray
    priors_: FloatArray
    worker_accuracy_: FloatArray
    worker_interval_: FloatArray
    worker_answers_: IntArray

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = seed

    def fit(
        self,
        items: ArrayLike,
        workers: ArrayLike,
        labels: ArrayLike,
        *,
        n_items: int | None = None,
        n_workers: int | None = None,
        n_labels: int | None = None,
        gold: GoldLike = None,
    ) -> Self:
        """Fit on answers ``(items[j], workers[j], labels[j])``, all integer indices."""
        d = _Answers.build(items, workers, labels, n_items, n_workers, n_labels)
        g = _gold_array(gold, d.n_items, d.n_labels)
        post = _clamp(self._fit(d, g), g)
        keys = _tie_keys(d.n_items, d.n_labels, self.seed)
        self.posteriors_ = post
        self.labels_ = self._choose(d, post, keys, g)
        rows = np.arange(d.n_items)
        self.confidence_ = post[rows, self.labels_]
        n = d.answers_per_item
        with np.errstate(invalid="ignore", divide="ignore"):
            self.agreement_ = np.where(n > 0, d.votes[rows, self.labels_] / n, np.nan)
        self._set_worker_accuracy(d, post)
        return self

    def _set_worker_accuracy(self, d: _Answers, post: FloatArray) -> None:
        """Per-worker accuracy: expected share of answers equal to the true label.

        ``worker_accuracy_[w]`` is ``sum_j P(true label of item_j = label_j) / n_w``
        over the worker's answers under the fitted item posteriors, and
        ``worker_interval_[w]`` a 95 % Wilson score interval for it with ``n_w``
        answers (``[0, 1]`` for a worker without answers, whose accuracy is
        ``nan``). It is the same for every model, so workers can be compared
        across methods.
        """
        n_w = np.bincount(d.workers, minlength=d.n_workers)
        right: FloatArray = np.bincount(
            d.workers, weights=post[d.items, d.labels], minlength=d.n_workers
        ).astype(np.float64)
        self.worker_answers_ = n_w.astype(np.int64)
        self.worker_accuracy_, self.worker_interval_ = wilson(right, n_w.astype(np.float64))

    def answer_proba(self, items: ArrayLike, workers: ArrayLike) -> FloatArray:
        """Predicted distribution of the answer worker ``workers[j]`` gives item ``items[j]``.

        ``sum_k posteriors_[i, k] * P(answer | true k, worker, item)`` under the
        fitted model: what :func:`~polycrowd.engine.aggregation.auto` scores on
        held-out answers. Workers or items outside the fit raise ``IndexError``.
        """
        it = np.asarray(items, dtype=np.int64)
        wk = np.asarray(workers, dtype=np.int64)
        conf = self._answer_confusion(it, wk)  # (n, K, K): [true, answered]
        out: FloatArray = np.einsum("nk,nkl->nl", self.posteriors_[it], conf)
        return out

    def _answer_confusion(self, items: IntArray, workers: IntArray) -> FloatArray:
        """``(n, K, K)`` P(answer l | true k) for each (item, worker) pair."""
        raise NotImplementedError

    def fit_predict(
        self,
        items: ArrayLike,
        workers: ArrayLike,
        labels: ArrayLike,
        *,
        n_items: int | None = None,
        n_workers: int | None = None,
        n_labels: int | None = None,
        gold: GoldLike = None,
    ) -> IntArray:
        """Fit and return the label index chosen for every item."""
        return self.fit(
            items,
            workers,
            labels,
            n_items=n_items,
            n_workers=n_workers,
            n_labels=n_labels,
            gold=gold,
        ).labels_

    def fit_predict_proba(
        self,
        items: ArrayLike,
        workers: ArrayLike,
        labels: ArrayLike,
        *,
        n_items: int | None = None,
        n_workers: int | None = None,
        n_labels: int | None = None,
        gold: GoldLike = None,
    ) -> FloatArray:
        """Fit and return the ``(n_items, n_labels)`` posterior matrix."""
        return self.fit(
            items,
            workers,
            labels,
            n_items=n_items,
            n_workers=n_workers,
            n_labels=n_labels,
            gold=gold,
        ).posteriors_

    def _fit(self, d: _Answers, gold: IntArray) -> FloatArray:
        raise NotImplementedError

    def _choose(self, d: _Answers, post: FloatArray, keys: FloatArray, gold: IntArray) -> IntArray:
        return _argmax_ties(post, keys)
