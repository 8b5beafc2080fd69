"""GLAD: worker ability times item easiness (Whitehill et al., 2009), for any number of classes."""

from __future__ import annotations

import math

import numpy as np

from polycrowd.engine.aggregation._base import (
    Aggregator,
    FloatArray,
    IntArray,
    _Answers,
    _clamp,
    _softmax_rows,
    one_coin_confusion,
)


def _sigmoid(x: FloatArray) -> FloatArray:
    out: FloatArray = 0.5 * (1.0 + np.tanh(0.5 * x))
    return out


class GLAD(Aggregator):
    """P(worker w answers item i correctly) = sigmoid(ability_w * easiness_i).

    ``easiness_i = exp(b_i) > 0``; a wrong answer is spread evenly over the other
    ``K - 1`` labels. Abilities have a normal prior N(1, 1) (a worker is assumed
    a little better than chance until shown otherwise; a negative ability is an
    adversary), log-easiness N(0, 1). EM: the E-step is the one-coin posterior
    with a per-answer accuracy; the M-step takes ``newton_steps`` diagonal
    Newton steps on the expected log-likelihood plus log prior, alternately
    for abilities and easiness. Fully vectorised (``bincount`` per step).

    ``difficulty_[i] = 1 / easiness_i``: large for items that even good workers
    get wrong, which :mod:`bench.adaptive` uses to keep hard items open.
    ``abilities_``, ``skills_ = sigmoid(abilities_)`` (accuracy on an item of
    average easiness).
    """

    abilities_: FloatArray
    log_easiness_: FloatArray
    difficulty_: FloatArray
    skills_: FloatArray
    n_iter_: int
    converged_: bool

    def __init__(
        self,
        *,
        max_iter: int = 100,
        tol: float = 1e-5,
        newton_steps: int = 2,
        ability_prior: tuple[float, float] = (1.0, 1.0),
        easiness_var: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__(seed=seed)
        self.max_iter = max_iter
        self.tol = tol
        self.newton_steps = newton_steps
        self.ability_prior = ability_prior
        self.easiness_var = easiness_var

    def _fit(self, d: _Answers, gold: IntArray) -> FloatArray:
        k_ = d.n_labels
        n = d.answers_per_item[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            post = np.where(n > 0, d.votes / n, 1.0 / k_)
        post = _clamp(post, gold)
        mu_a, var_a = self.ability_prior
        a = np.full(d.n_workers, mu_a)
        b = np.zeros(d.n_items)
        log_wrong_share = math.log(max(k_ - 1, 1))
        prior = np.full(k_, 1.0 / k_)
        self.converged_ = False
        self.n_iter_ = 0
        for it in range(1, max(self.max_iter, 1) + 1):
            q = post[d.items, d.labels]  # P(answer is right)
            for _ in range(max(self.newton_steps, 1)):
                e = np.exp(b)[d.items]
                p = _sigmoid(a[d.workers] * e)
                g = q - p
                h = p * (1.0 - p)
                grad = np.bincount(d.workers, g * e, d.n_workers) - (a - mu_a) / var_a
                hess = np.bincount(d.workers, h * e * e, d.n_workers) + 1.0 / var_a
                a = a + np.clip(grad / hess, -2.0, 2.0)
                x = a[d.workers] * e
                p = _sigmoid(x)
                g = q - p
                h = p * (1.0 - p)
                grad = np.bincount(d.items, g * x, d.n_items) - b / self.easiness_var
                hess = np.bincount(d.items, h * x * x, d.n_items) + 1.0 / self.easiness_var
                b = np.clip(b + np.clip(grad / hess, -1.0, 1.0), -4.0, 4.0)
            prior = (post.sum(axis=0) + 1.0) / (d.n_items + k_)
            x = a[d.workers] * np.exp(b)[d.items]
            right = -np.logaddexp(0.0, -x)
            wrong = -np.logaddexp(0.0, x) - log_wrong_share
            base = np.bincount(d.items, weights=wrong, minlength=d.n_items)
            bonus = np.bincount(
                d.items * k_ + d.labels, weights=right - wrong, minlength=d.n_items * k_
            ).reshape(d.n_items, k_)
            logp = bonus + base[:, None] + np.log(prior)[None, :]
            new = _clamp(_softmax_rows(logp)[0], gold)
            self.n_iter_ = it
            shift = float(np.abs(new - post).max()) if post.size else 0.0
            post = new
            if shift <= self.tol:
                self.converged_ = True
                break
        self.priors_ = prior
        self.abilities_ = a
        self.log_easiness_ = b
        self.difficulty_ = np.exp(-b)
        self.skills_ = _sigmoid(a)
        return post

    def _answer_confusion(self, items: IntArray, workers: IntArray) -> FloatArray:
        acc = _sigmoid(self.abilities_[workers] * np.exp(self.log_easiness_[items]))
        return one_coin_confusion(acc, self.priors_.size)
