"""``auto``: stack the aggregation models by how well they predict held-out answers (no gold).

The rule (:class:`Auto`):

1. Fewer than 30 answers, or under 1.5 answers per item: nothing can be
   compared, use :class:`~.bayes_ds.BayesianDawidSkene` (the prior keeps it
   close to a weighted vote).
2. Under 5 answers per worker: :class:`~.mace.MACE`.
3. Otherwise deal the answers into 5 folds and, for every candidate (wmv, ds,
   ocds, bds, glad, mace; not mv), fit on 4 folds and predict each held-out
   answer (:func:`heldout_predictions`). Find the mixture weights ``w`` that
   maximise the held-out log-likelihood ``sum_j log sum_c w_c p_c(answer_j)``
   (:func:`stack_weights`, EM), drop members under :data:`MIN_WEIGHT`, refit
   the rest on all answers and average their item posteriors with those
   weights. The same held-out answers pick a temperature for the mixture
   (gold-free calibration, :meth:`HeldOut.temperature`).

Why, measured with ``python bench/aggregation.py --auto-study`` (63 runs: the
nine simulated crowd shapes of :mod:`.simulate` (easy binary; 4 skewed classes
with Zipf-sparse workers; 35 % spammers over 3 classes; 20 % adversaries; 5
classes with confused workers; 30 % hard items; 10 classes; skewed binary with
sparse workers; a weak crowd with spammers), 3 seeds each, plus random subsets
of 50 or 200 items with 3 or 5 answers of the four public sets). Mean accuracy
(regret against the best single method in each run; runs in which it was the
worst method):

=============================================  ========  =======  =====
rule                                           accuracy  regret   worst
=============================================  ========  =======  =====
always mv                                      0.8551    0.0432   22
always ds                                      0.8739    0.0244   13
always bds                                     0.8756    0.0227   3
always mace                                    0.8827    0.0156   3
best held-out score                            0.8760    0.0223   3
previous rule (mace under 5/worker, else the   0.8849    0.0134   1
held-out best if it beats mace by 0.005)
stacking everywhere                            0.8787    0.0196   2
stacking with mv as a candidate too            0.8796    0.0187   2
this rule (mace under 5/worker, else stacking) 0.8867    0.0116   1
=============================================  ========  =======  =====

On the 27 simulated runs alone stacking (0.9322 mean, regret 0.0042) beats
picking the single best held-out model (0.9298, 0.0066): mixing a full
confusion model with MACE and BDS hedges where held-out likelihood cannot
tell them apart. On 50-item subsets with 3 answers per item stacking is
erratic (temp 0.727 against MACE's 0.880: too few answers per worker to
estimate the weights), hence the MACE gate, which was already the best rule
there. The single run in which the rule ties the worst method is one where
all methods tie.

On the full public sets (``bench/aggregation.py``) the rule stacks on all
four: product 0.9390 (weights ds .38, bds .28, mace .22), rte 0.9287, temp
0.9394, bluebirds 0.8981, ECE 0.025 / 0.032 / 0.0495 / 0.067. Against
crowd-kit's best that is -0.07 point on product (6 items of 8,315; our own
plain ds gets 0.9399 but loses on held-out likelihood to mace/bds there),
+0.12 on rte, -0.43 on temp (2 of 462 items; Wawa / our wmv gets 0.9437 but
its one-coin model predicts held-out answers far worse, weight 0) and +0.92
on bluebirds. Tuning the rule on those few items would be tuning on gold.
Calibration is short on bluebirds (ECE 0.067 against the goal of 0.05): as
a diagnostic with gold, no single temperature from 0.5 to 6 brings it under
0.067 there, because its errors are confident items on which most of the 39
workers agree on the wrong label; a global temperature cannot single them out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

from polycrowd.engine.aggregation._base import (
    Aggregator,
    FloatArray,
    IntArray,
    _Answers,
    _softmax_rows,
)
from polycrowd.engine.aggregation.registry import METHODS, REGISTRY

CANDIDATES: Final = ("wmv", "ds", "ocds", "bds", "glad", "mace")
FALLBACK: Final = "bds"
DEFAULT: Final = "mace"
MARGIN: Final = 0.005
MIN_PER_WORKER: Final = 5.0


def make_aggregator(method: str, *, seed: int = 0) -> Aggregator:
    """A fresh aggregator with default settings for a name in :data:`METHODS` or ``"auto"``."""
    if method == "auto":
        return Auto(seed=seed)
    cls = REGISTRY.get(method)
    if cls is None:
        raise ValueError(
            f"unknown aggregation method {method!r}; expected auto or one of {METHODS}"
        )
    return cls(seed=seed)


TEMPERATURES: Final = np.round(np.geomspace(0.5, 16.0, 36), 3)
STACK: Final = "stack"
MIN_WEIGHT: Final = 0.02


def _temper(post: FloatArray, temperature: float) -> FloatArray:
    """``post ** (1 / T)``, renormalised per row (T > 1 softens, T < 1 sharpens)."""
    logp = np.log(np.clip(post, 1e-300, 1.0)) / temperature
    return _softmax_rows(logp)[0]


@dataclass(frozen=True, slots=True)
class HeldOut:
    """Out-of-fold predictions of every candidate for every answer.

    ``post[j, c]`` is candidate ``c``'s posterior over the true class of the
    item of answer ``j``, fitted without the fold holding ``j``; ``conf[j, c, k]``
    the probability that model gives answer ``j``'s label when the truth is ``k``.
    """

    candidates: tuple[str, ...]
    post: FloatArray  # (n_answers, C, K)
    conf: FloatArray  # (n_answers, C, K)

    @property
    def proba(self) -> FloatArray:
        """``(n_answers, C)`` predicted probability of each held-out answer."""
        out: FloatArray = np.clip((self.post * self.conf).sum(axis=2), 1e-12, 1.0)
        return out

    def scores(self) -> dict[str, float]:
        """Mean held-out log-likelihood per answer of each candidate."""
        logp = np.log(self.proba).mean(axis=0) if self.post.shape[0] else np.zeros(0)
        return {c: float(logp[j]) for j, c in enumerate(self.candidates)}

    def temperature(self, weights: FloatArray) -> float:
        """The :data:`TEMPERATURES` value that best predicts held-out answers from the
        tempered ``weights``-mixture posterior (gold-free calibration)."""
        w = weights[None, :, None]
        post = (self.post * w).sum(axis=1)
        conf = (self.conf * w).sum(axis=1)
        ll = [
            float(np.log(np.clip((_temper(post, float(t)) * conf).sum(axis=1), 1e-12, 1)).sum())
            for t in TEMPERATURES
        ]
        return float(TEMPERATURES[int(np.argmax(ll))])


def heldout_predictions(
    d: _Answers, candidates: tuple[str, ...], folds: int, seed: int
) -> HeldOut:
    """Deal the answers into ``folds`` random folds and predict each fold from the others.

    For each fold every candidate is fitted on the other answers (same item,
    worker and label numbering), and for each held-out answer it gives the
    posterior of the answer's item and P(that label | true class) for the
    answer's worker: i.e. how well the model predicts what a worker answers to
    an item from that item's other answers and the worker's other work.
    Gold is never used.
    """
    rng = np.random.default_rng(seed)
    fold = rng.permutation(d.items.size) % folds
    shape = (d.items.size, len(candidates), d.n_labels)
    post = np.zeros(shape)
    conf = np.zeros(shape)
    for f in range(folds):
        test = fold == f
        train = ~test
        t_items, t_workers, t_labels = d.items[test], d.workers[test], d.labels[test]
        rows = np.arange(t_items.size)
        for c, name in enumerate(candidates):
            model = REGISTRY[name](seed=seed).fit(
                d.items[train],
                d.workers[train],
                d.labels[train],
                n_items=d.n_items,
                n_workers=d.n_workers,
                n_labels=d.n_labels,
            )
            conf[test, c] = model._answer_confusion(t_items, t_workers)[rows, :, t_labels]
            post[test, c] = model.posteriors_[t_items]
    return HeldOut(candidates, post, conf)


def heldout_scores(
    d: _Answers,
    candidates: tuple[str, ...],
    folds: int,
    seed: int,
) -> tuple[dict[str, float], dict[str, float]]:
    """Held-out answer log-likelihood per candidate, and the temperature that maximises it.

    See :func:`heldout_predictions`. An overconfident model gives the answers
    that disagree with its label too little probability, so the temperature
    ``T`` whose tempered posteriors ``post ** (1 / T)`` predict the held-out
    answers best is a gold-free calibration. Scores are mean log-likelihoods
    per answer at ``T = 1``.
    """
    held = heldout_predictions(d, candidates, folds, seed)
    eye = np.eye(len(candidates))
    temps = {c: held.temperature(eye[j]) for j, c in enumerate(candidates)}
    return held.scores(), temps


def stack_weights(proba: FloatArray, iters: int = 200, tol: float = 1e-7) -> FloatArray:
    """Mixture weights over candidates that maximise the held-out answer likelihood.

    ``proba[j, c]`` is candidate ``c``'s out-of-fold probability of answer
    ``j``; the weights maximise ``sum_j log sum_c w_c proba[j, c]`` (EM for
    mixture weights, a concave problem, so the optimum is unique up to
    candidates that predict identically). A candidate that predicts no answer
    better than the others gets weight near zero.
    """
    n_c = proba.shape[1]
    w = np.full(n_c, 1.0 / n_c)
    if proba.shape[0] == 0:
        return w
    for _ in range(iters):
        r = proba * w[None, :]
        r /= r.sum(axis=1, keepdims=True)
        new = r.mean(axis=0)
        if float(np.abs(new - w).max()) < tol:
            return np.asarray(new, dtype=np.float64)
        w = new
    return np.asarray(w, dtype=np.float64)


def pick(scores: dict[str, float], candidates: tuple[str, ...], margin: float) -> str:
    """The :data:`DEFAULT` method unless another candidate predicts held-out answers better
    by more than ``margin`` nats per answer; then the best of those (the previous rule,
    kept for ``stack=False`` and the study)."""
    base = DEFAULT if DEFAULT in candidates else candidates[0]
    best = max(candidates, key=lambda c: scores[c])
    return best if scores[best] > scores[base] + margin else base


class Auto(Aggregator):
    """Stack the candidates by held-out answer likelihood (see module doc).

    ``chosen_`` is ``"stack"`` when several candidates were mixed, otherwise the
    one method used; ``weights_`` maps each mixed method to its weight,
    ``scores_`` holds the held-out mean log likelihood per candidate (empty
    when the data were too small to score and :data:`FALLBACK` was used),
    ``temperature_`` the gold-free calibration temperature, ``models_`` the
    fitted members and ``model_`` the one with the largest weight.
    ``posteriors_`` is the tempered mixture ``sum_c w_c posteriors_c``;
    ``skills_`` and ``priors_`` are the same mixtures of the members'.
    """

    chosen_: str
    temperature_: float
    scores_: dict[str, float]
    weights_: dict[str, float]
    model_: Aggregator
    models_: dict[str, Aggregator]
    skills_: FloatArray

    def __init__(
        self,
        *,
        candidates: tuple[str, ...] = CANDIDATES,
        folds: int = 5,
        min_answers: int = 30,
        calibrate: bool = True,
        stack: bool = True,
        margin: float = MARGIN,
        seed: int = 0,
    ) -> None:
        super().__init__(seed=seed)
        unknown = [c for c in candidates if c not in REGISTRY]
        if unknown or not candidates:
            raise ValueError(f"unknown candidate methods {unknown}")
        self.candidates = candidates
        self.folds = folds
        self.min_answers = min_answers
        self.calibrate = calibrate
        self.stack = stack
        self.margin = margin

    def _weights(self, d: _Answers) -> tuple[dict[str, float], float]:
        """Member weights and temperature (see module doc)."""
        per_item = d.items.size / max(d.n_items, 1)
        if d.items.size < self.min_answers or per_item < 1.5 or len(self.candidates) == 1:
            self.scores_ = {}
            return {FALLBACK if FALLBACK in self.candidates else self.candidates[0]: 1.0}, 1.0
        if d.items.size / max(d.n_workers, 1) < MIN_PER_WORKER and DEFAULT in self.candidates:
            self.scores_ = {}
            return {DEFAULT: 1.0}, 1.0
        held = heldout_predictions(d, self.candidates, self.folds, self.seed)
        self.scores_ = held.scores()
        if self.stack:
            raw = stack_weights(held.proba)
            raw = np.where(raw >= MIN_WEIGHT, raw, 0.0)
            if raw.sum() <= 0:
                raw = np.ones_like(raw)
            raw /= raw.sum()
        else:
            best = pick(self.scores_, self.candidates, self.margin)
            raw = np.array([float(c == best) for c in self.candidates])
        temperature = held.temperature(raw) if self.calibrate else 1.0
        weights = {c: float(w) for c, w in zip(self.candidates, raw, strict=True) if w > 0}
        return weights, temperature

    def _fit(self, d: _Answers, gold: IntArray) -> FloatArray:
        self.weights_, self.temperature_ = self._weights(d)
        self.models_ = {}
        for name in self.weights_:
            self.models_[name] = REGISTRY[name](seed=self.seed).fit(
                d.items,
                d.workers,
                d.labels,
                n_items=d.n_items,
                n_workers=d.n_workers,
                n_labels=d.n_labels,
                gold=gold,
            )
        top = max(self.weights_, key=lambda c: self.weights_[c])
        self.model_ = self.models_[top]
        self.chosen_ = top if len(self.weights_) == 1 else STACK
        members = [(self.weights_[c], m) for c, m in self.models_.items()]
        post = sum((w * m.posteriors_ for w, m in members), np.zeros((d.n_items, d.n_labels)))
        self.priors_ = sum((w * m.priors_ for w, m in members), np.zeros(d.n_labels))
        self.skills_ = sum(
            (w * np.asarray(getattr(m, "skills_", m.worker_accuracy_)) for w, m in members),
            np.zeros(d.n_workers),
        )
        if self.temperature_ == 1.0:
            return post
        return _temper(post, self.temperature_)

    def _answer_confusion(self, items: IntArray, workers: IntArray) -> FloatArray:
        out = np.zeros((items.size, self.priors_.size, self.priors_.size))
        for c, w in self.weights_.items():
            out += w * self.models_[c]._answer_confusion(items, workers)
        return out


def choose_method(n_items: int, n_workers: int, answers_per_item: float, has_gold: bool) -> str:
    """Pick the aggregation method for data of this shape (``"mv"`` or ``"ds"``).

    Rule: Dawid-Skene once workers have, on average, at least three answers each
    (``n_items * answers_per_item / n_workers >= 3``) and items have more than one
    answer; majority vote otherwise (with a single answer per item nothing can
    be learned about the workers, and with very few answers per worker DS has
    too little to fit a confusion matrix).

    Measured with ``python bench/aggregation.py --subsample``: random subsets of
    the four public data sets (10-400 items, 2-10 answers per item, 12 seeds,
    with and without 10 % gold). Mean accuracy of "ds if answers per worker >= t
    else mv" peaks at t = 2-3 (0.832 against 0.824 for DS everywhere and 0.812
    for MV everywhere); WMV and one-coin DS never came out ahead on average.
    Gold did not move the threshold, so ``has_gold`` is accepted for the
    engine's interface and does not change the answer.
    """
    del has_gold  # measured: no effect on the best threshold
    if n_items <= 0 or n_workers <= 0 or answers_per_item < 1.5:
        return "mv"
    if n_items * answers_per_item / n_workers < 3.0:
        return "mv"
    return "ds"
