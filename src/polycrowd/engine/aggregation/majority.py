"""Majority vote and skill-weighted majority vote."""

from __future__ import annotations

from typing import Literal, Self

import numpy as np
from numpy.typing import ArrayLike

from polycrowd.engine.aggregation._base import (
    Aggregator,
    FloatArray,
    GoldLike,
    IntArray,
    _Answers,
    _argmax_ties,
    _clamp,
    _class_prior,
    _one_coin_log_posterior,
    _softmax_rows,
    _tie_keys,
    one_coin_confusion,
)


class MajorityVote(Aggregator):
    """The label most workers chose.

    Ties: with ``tie_break="random"`` (default) a tie is broken by a seeded random
    key per (item, label), so tied items are spread over the tied labels,
    reproducibly for a given ``seed``; with ``tie_break="prior"`` the label chosen
    more often over the whole data set wins and the random key only decides
    between labels that are equally frequent overall. (crowd-kit breaks ties in
    a fixed order, which always favours the same class in binary tasks.)

    Confidence (``posteriors_``), two models:

    - ``confidence="pooled"`` (default): the posterior under a one-coin model in
      which every worker has the same accuracy ``a``, estimated as the smoothed
      share of all answers that agree with the majority label. Unlike a vote
      share it grows with the number of agreeing answers.
    - ``confidence="share"``: the vote share smoothed by a Dirichlet prior centred
      on the overall label frequencies with ``smoothing`` pseudo-answers,
      ``(votes + smoothing * prior) / (n + smoothing)``.

    On the four public data sets in ``shared/data`` the pooled model has the lower
    expected calibration error on three (product, rte, temp) and the lower mean
    Brier score; the share model is better on bluebirds, where the majority is
    often wrong. ``skills_`` is the pooled accuracy repeated for every worker.
    """

    skills_: FloatArray

    def __init__(
        self,
        *,
        tie_break: Literal["random", "prior"] = "random",
        confidence: Literal["pooled", "share"] = "pooled",
        smoothing: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__(seed=seed)
        if tie_break not in ("random", "prior"):
            raise ValueError(f"unknown tie_break {tie_break!r}")
        if confidence not in ("pooled", "share"):
            raise ValueError(f"unknown confidence {confidence!r}")
        if smoothing < 0:
            raise ValueError("smoothing must be >= 0")
        self.tie_break = tie_break
        self.confidence = confidence
        self.smoothing = smoothing

    def _fit(self, d: _Answers, gold: IntArray) -> FloatArray:
        self.priors_ = _class_prior(d.votes.sum(axis=0), 1.0)
        keys = _tie_keys(d.n_items, d.n_labels, self.seed)
        if self.tie_break == "prior":
            rank = np.argsort(np.argsort(self.priors_, kind="stable"), kind="stable")
            keys = rank[None, :] + keys
        scores = d.votes.copy()
        n = d.answers_per_item
        scores[n == 0] = self.priors_
        self._majority = np.where(gold >= 0, gold, _argmax_ties(scores, keys))
        s = self.smoothing
        agree = float((d.labels == self._majority[d.items]).sum())
        pooled = (agree + s) / (d.labels.size + d.n_labels * s)
        self.skills_ = np.full(d.n_workers, pooled)
        if self.confidence == "pooled":
            return _softmax_rows(_one_coin_log_posterior(d, self.skills_, np.log(self.priors_)))[0]
        with np.errstate(invalid="ignore", divide="ignore"):
            post = (d.votes + s * self.priors_[None, :]) / (n[:, None] + s)
        post[n == 0] = self.priors_
        return post

    def _choose(self, d: _Answers, post: FloatArray, keys: FloatArray, gold: IntArray) -> IntArray:
        return self._majority

    def _answer_confusion(self, items: IntArray, workers: IntArray) -> FloatArray:
        return one_coin_confusion(self.skills_[workers], self.priors_.size)


class WeightedMajorityVote(Aggregator):
    """Skill-weighted vote with log-odds weights ``log((K - 1) a / (1 - a))``.

    Worker accuracies ``a`` are either given to :meth:`fit` (``accuracies=``, e.g.
    measured on gold) or estimated Wawa-style: start from the majority vote,
    set each worker's accuracy to their smoothed agreement with the current
    labels, ``(agree + smoothing) / (n + K * smoothing)``, re-vote, and repeat
    until the labels stop changing (at most ``max_iter`` rounds). Gold items
    given to ``fit`` are clamped, so agreement on them is accuracy on gold.

    The weighted vote plus the log class prior is the log posterior of the
    one-coin model, so ``posteriors_`` are that model's posteriors and the label
    is its argmax (the prior only matters when the weighted votes are close).
    ``skills_`` holds the accuracies used.
    """

    skills_: FloatArray
    n_iter_: int

    def __init__(self, *, max_iter: int = 10, smoothing: float = 1.0, seed: int = 0) -> None:
        super().__init__(seed=seed)
        self.max_iter = max_iter
        self.smoothing = smoothing
        self._given: FloatArray | None = None

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
        accuracies: ArrayLike | None = None,
    ) -> Self:
        """As :meth:`Aggregator.fit`; ``accuracies`` (one per worker) skips estimation."""
        self._given = None if accuracies is None else np.asarray(accuracies, dtype=np.float64)
        try:
            return super().fit(
                items,
                workers,
                labels,
                n_items=n_items,
                n_workers=n_workers,
                n_labels=n_labels,
                gold=gold,
            )
        finally:
            self._given = None

    def _fit(self, d: _Answers, gold: IntArray) -> FloatArray:
        keys = _tie_keys(d.n_items, d.n_labels, self.seed)
        prior = _class_prior(d.votes.sum(axis=0), 1.0)
        if self._given is not None:
            if self._given.shape != (d.n_workers,):
                raise ValueError(f"accuracies must have shape ({d.n_workers},)")
            self.skills_ = self._given.copy()
            self.n_iter_ = 0
            self.priors_ = prior
            return self._posterior(d, prior)
        labels = _argmax_ties(_clamp(d.votes.copy(), gold), keys)
        n_per_worker = np.bincount(d.workers, minlength=d.n_workers).astype(np.float64)
        s = self.smoothing
        post = d.votes
        for it in range(1, max(self.max_iter, 1) + 1):
            agree = np.bincount(
                d.workers, weights=(d.labels == labels[d.items]), minlength=d.n_workers
            )
            self.skills_ = (agree + s) / (n_per_worker + d.n_labels * s)
            prior = _class_prior(np.bincount(labels, minlength=d.n_labels).astype(float), 1.0)
            post = _clamp(self._posterior(d, prior), gold)
            new = _argmax_ties(post, keys)
            self.n_iter_ = it
            if np.array_equal(new, labels):
                break
            labels = new
        self.priors_ = prior
        return post

    def _posterior(self, d: _Answers, prior: FloatArray) -> FloatArray:
        logp = _one_coin_log_posterior(d, self.skills_, np.log(prior))
        return _softmax_rows(logp)[0]

    def _answer_confusion(self, items: IntArray, workers: IntArray) -> FloatArray:
        return one_coin_confusion(self.skills_[workers], self.priors_.size)
