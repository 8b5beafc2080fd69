"""Simulated crowds of different shapes, with known truth, for tests and benchmarks.

A crowd is drawn as follows: true labels from a class distribution (uniform
or skewed); workers of five kinds (reliable, confused, spammer, adversary,
plus each reliable worker's item-dependent accuracy); which worker answers
which item follows an activity weight per worker (uniform, or Zipf-like for
sparse crowds where most workers give a handful of answers). The probability
that a non-spammer is right on item ``i`` is ``sigmoid(ability * easiness_i)``
(GLAD's model), so hard items make many workers wrong at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from polycrowd.engine.aggregation._base import FloatArray, IntArray


@dataclass(frozen=True, slots=True)
class Shape:
    """Parameters of a simulated crowd (see module doc)."""

    n_items: int = 300
    n_workers: int = 30
    n_classes: int = 2
    per_item: int = 5
    skew: float = 0.0  # 0: uniform classes; s > 0: class k has weight exp(-s * k)
    sparse: bool = False  # Zipf-like worker activity
    spammers: float = 0.0  # share of workers answering at random (or one fixed label)
    adversaries: float = 0.0  # share of workers answering a wrong label on purpose
    confused: float = 0.0  # share of workers who mistake class k for k + 1 often
    hard_items: float = 0.0  # share of items with low easiness
    ability: float = 2.0  # mean ability of honest workers (log-odds scale)


@dataclass(frozen=True, slots=True)
class Crowd:
    items: IntArray
    workers: IntArray
    labels: IntArray
    truth: IntArray
    easiness: FloatArray
    n_items: int
    n_workers: int
    n_classes: int


def simulate(shape: Shape, seed: int = 0) -> Crowd:
    """Draw one crowd of the given shape; every item gets ``per_item`` distinct workers."""
    rng = np.random.default_rng(seed)
    k_, n, m = shape.n_classes, shape.n_items, shape.n_workers
    weights = np.exp(-shape.skew * np.arange(k_))
    truth = rng.choice(k_, n, p=weights / weights.sum())
    easiness = np.where(rng.random(n) < shape.hard_items, 0.15, 1.0) * rng.lognormal(0, 0.3, n)
    kind = rng.random(m)
    spam = kind < shape.spammers
    adv = (kind >= shape.spammers) & (kind < shape.spammers + shape.adversaries)
    conf = (kind >= shape.spammers + shape.adversaries) & (
        kind < shape.spammers + shape.adversaries + shape.confused
    )
    ability = rng.normal(shape.ability, 0.8, m)
    fixed = rng.integers(0, k_, m)  # half the spammers press one button
    fixed_spam = rng.random(m) < 0.5
    activity = 1.0 / np.arange(1, m + 1) ** 1.1 if shape.sparse else np.ones(m)
    activity = rng.permutation(activity)
    per_item = min(shape.per_item, m)
    items_l, workers_l = [], []
    p = activity / activity.sum()
    for i in range(n):
        chosen = rng.choice(m, per_item, replace=False, p=p)
        items_l.append(np.full(per_item, i))
        workers_l.append(chosen)
    items = np.concatenate(items_l).astype(np.int64)
    workers = np.concatenate(workers_l).astype(np.int64)
    t = truth[items]
    x = np.abs(ability[workers]) * easiness[items]
    right = rng.random(items.size) < 1.0 / (1.0 + np.exp(-x))
    other = (t + rng.integers(1, max(k_, 2), items.size)) % k_
    labels = np.where(right, t, other)
    shifted = (t + 1) % k_
    c = conf[workers]
    labels = np.where(c & (rng.random(items.size) < 0.4), shifted, labels)
    a = adv[workers]
    labels = np.where(a, np.where(rng.random(items.size) < 0.8, other, t), labels)
    s = spam[workers]
    noise = np.where(fixed_spam[workers], fixed[workers], rng.integers(0, k_, items.size))
    labels = np.where(s, noise, labels)
    _, workers = np.unique(workers, return_inverse=True)
    return Crowd(
        items,
        workers.astype(np.int64),
        labels.astype(np.int64),
        truth.astype(np.int64),
        easiness.astype(np.float64),
        n,
        int(workers.max()) + 1,
        k_,
    )


SHAPES: dict[str, Shape] = {
    "easy_binary": Shape(),
    "sparse_skewed_4": Shape(
        n_items=400, n_workers=150, n_classes=4, per_item=3, skew=1.0, sparse=True, ability=1.5
    ),
    "spammers_3": Shape(n_classes=3, spammers=0.35, per_item=5),
    "adversaries": Shape(adversaries=0.2, per_item=7),
    "confused_5": Shape(n_classes=5, confused=0.5, per_item=5, n_workers=20),
    "hard_items": Shape(hard_items=0.3, per_item=9, ability=2.5),
    "many_classes_10": Shape(n_classes=10, per_item=4, n_workers=40, ability=1.0),
    "skewed_binary_sparse": Shape(n_items=500, n_workers=200, skew=2.0, sparse=True, per_item=3),
    "weak_crowd": Shape(per_item=7, ability=0.7, spammers=0.1),
}
