"""Worker quality: Beta skill estimates, the pause rule, and fraud signals.

A worker's skill for one skill key is a Beta(alpha, beta) posterior over their accuracy.
The prior Beta(2, 1) (mean 0.67) says "probably better than chance, not known yet".
Gold answers count fully; agreement with a confident aggregated result counts with a
weight below one, because the result itself can be wrong.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from polycrowd.engine.domain import FlagKind
from polycrowd.i18n import N_

PRIOR_ALPHA = 2.0
PRIOR_BETA = 1.0
AGREEMENT_WEIGHT = 0.5


@dataclass(frozen=True, slots=True)
class Skill:
    alpha: float = PRIOR_ALPHA
    beta: float = PRIOR_BETA
    gold_seen: int = 0

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)

    @property
    def std(self) -> float:
        a, b = self.alpha, self.beta
        return math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))

    def upper(self, z: float = 1.64) -> float:
        """One-sided ~95% upper credible bound (normal approximation, clipped to [0, 1])."""
        return min(1.0, self.mean + z * self.std)

    def observe(self, correct: bool, weight: float = 1.0, gold: bool = False) -> Skill:
        return Skill(
            self.alpha + (weight if correct else 0.0),
            self.beta + (0.0 if correct else weight),
            self.gold_seen + (1 if gold else 0),
        )


PAUSE_REASON = N_(
    "Your accuracy on check questions is too low for this project, so it is paused for you."
)


def should_pause(skill: Skill, threshold: float, min_gold: int = 5) -> bool:
    """Pause only with enough gold evidence and when even the optimistic bound is low."""
    return threshold > 0 and skill.gold_seen >= min_gold and skill.upper() < threshold


def chance_level(n_labels: int) -> float:
    return 1.0 / n_labels if n_labels > 0 else 0.0


# Fraud signals ------------------------------------------------------------------------------

FRAUD_SPEED = FlagKind.FRAUD_SPEED
FRAUD_SAME_LABEL = FlagKind.FRAUD_SAME_LABEL
FRAUD_LOW_AGREEMENT = FlagKind.FRAUD_LOW_AGREEMENT
FRAUD_IDENTICAL = FlagKind.FRAUD_IDENTICAL


def min_seconds(text: str, words_per_second: float = 8.0, floor: float = 0.8) -> float:
    """The least time a human needs to read ``text`` and press a button."""
    words = max(1, len(text.split()))
    return max(floor, words / words_per_second)


def too_fast(durations: Sequence[float], minimums: Sequence[float], share: float = 0.6) -> bool:
    """Most of the recent answers came faster than a human could read the item."""
    if len(durations) < 5:
        return False
    fast = sum(1 for d, m in zip(durations, minimums, strict=True) if d < m)
    return fast / len(durations) >= share


def same_label_run(n_labels: int, false_alarm: float = 1e-5) -> int:
    """The run of identical answers that an honest worker facing balanced labels produces
    with probability below ``false_alarm`` (binary: 18, three labels: 12, five: 9)."""
    if n_labels < 2:
        return 0
    return max(6, math.ceil(math.log(false_alarm / n_labels) / math.log(1 / n_labels)))


def same_label(labels: Sequence[str], n_labels: int, run: int | None = None) -> bool:
    """The last ``run`` answers all carry one label, when the project has several."""
    run = same_label_run(n_labels) if run is None else run
    return n_labels > 1 and len(labels) >= run and len(set(labels[:run])) == 1


def agreement_below_chance(agree: int, total: int, n_labels: int, min_total: int = 10) -> bool:
    """Agreement with confident results far below what random clicking would give."""
    if total < min_total or n_labels < 2:
        return False
    p = chance_level(n_labels)
    # one-sided binomial z-test against the chance rate
    z = (agree - total * p) / math.sqrt(total * p * (1 - p))
    return z < -2.0
