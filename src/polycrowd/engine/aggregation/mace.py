"""MACE: workers who sometimes answer at random (Hovy et al., 2013)."""

from __future__ import annotations

import numpy as np

from polycrowd.engine.aggregation._base import (
    Aggregator,
    FloatArray,
    IntArray,
    _Answers,
    _clamp,
    _softmax_rows,
    log_joint_from_confusions,
)


class MACE(Aggregator):
    """Each answer is either competent (the true label) or spam (a draw from ``xi_w``).

    Worker ``w`` spams with probability ``spam_[w]`` and then picks label ``l``
    with probability ``spam_labels_[w, l]``, so its confusion matrix is
    ``(1 - spam) * I + spam * 1 xi^T``: a spammer who always presses the same
    button is recognised as such (its answers carry no information about the
    item), unlike in a one-coin model where it looks like a worker biased
    towards one class. MAP-EM with a Beta prior of ``competent`` and ``spammy``
    pseudo-answers on the spam rate and ``smoothing`` pseudo-answers per label
    on ``xi``; the class prior has one pseudo-item per class.
    """

    spam_: FloatArray
    spam_labels_: FloatArray
    confusions_: FloatArray
    skills_: FloatArray
    n_iter_: int
    converged_: bool

    def __init__(
        self,
        *,
        competent: float = 2.0,
        spammy: float = 1.0,
        smoothing: float = 0.5,
        max_iter: int = 100,
        tol: float = 1e-5,
        seed: int = 0,
    ) -> None:
        super().__init__(seed=seed)
        self.competent = competent
        self.spammy = spammy
        self.smoothing = smoothing
        self.max_iter = max_iter
        self.tol = tol

    def _fit(self, d: _Answers, gold: IntArray) -> FloatArray:
        k_, m = d.n_labels, d.n_workers
        n = d.answers_per_item[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            post = np.where(n > 0, d.votes / n, 1.0 / k_)
        post = _clamp(post, gold)
        spam = np.full(m, 0.3)
        xi = np.full((m, k_), 1.0 / k_)
        n_w = np.bincount(d.workers, minlength=m).astype(np.float64)
        prior = np.full(k_, 1.0 / k_)
        self.converged_ = False
        self.n_iter_ = 0
        for it in range(1, max(self.max_iter, 1) + 1):
            q = post[d.items, d.labels]
            s_j = spam[d.workers]
            x_j = xi[d.workers, d.labels]
            good = q * (1.0 - s_j) / np.maximum((1.0 - s_j) + s_j * x_j, 1e-300)
            bad = 1.0 - good
            spam_count = np.bincount(d.workers, weights=bad, minlength=m)
            spam = (spam_count + self.spammy) / (n_w + self.spammy + self.competent)
            xi = np.bincount(d.workers * k_ + d.labels, weights=bad, minlength=m * k_)
            xi = (xi.reshape(m, k_) + self.smoothing).astype(np.float64)
            xi /= xi.sum(axis=1, keepdims=True)
            conf = self._confusion(spam, xi, k_)
            prior = (post.sum(axis=0) + 1.0) / (d.n_items + k_)
            logp = log_joint_from_confusions(d, np.log(conf), np.log(prior))
            new = _clamp(_softmax_rows(logp)[0], gold)
            self.n_iter_ = it
            shift = float(np.abs(new - post).max()) if post.size else 0.0
            post = new
            if shift <= self.tol:
                self.converged_ = True
                break
        self.spam_ = spam
        self.spam_labels_ = xi
        self.confusions_ = self._confusion(spam, xi, k_)
        self.priors_ = prior
        self.skills_ = np.einsum("wkk,k->w", self.confusions_, self.priors_)
        return post

    @staticmethod
    def _confusion(spam: FloatArray, xi: FloatArray, k_: int) -> FloatArray:
        conf: FloatArray = spam[:, None, None] * xi[:, None, :] + (1.0 - spam)[
            :, None, None
        ] * np.eye(k_)
        return conf

    def _answer_confusion(self, items: IntArray, workers: IntArray) -> FloatArray:
        out: FloatArray = self.confusions_[workers]
        return out
