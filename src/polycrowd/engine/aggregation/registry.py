"""Method names -> aggregator classes. A new method is one module plus one line here."""

from __future__ import annotations

from typing import Final

from polycrowd.engine.aggregation._base import Aggregator
from polycrowd.engine.aggregation.bayes_ds import BayesianDawidSkene
from polycrowd.engine.aggregation.dawid_skene import DawidSkene, OneCoinDawidSkene
from polycrowd.engine.aggregation.glad import GLAD
from polycrowd.engine.aggregation.mace import MACE
from polycrowd.engine.aggregation.majority import MajorityVote, WeightedMajorityVote

REGISTRY: Final[dict[str, type[Aggregator]]] = {
    "mv": MajorityVote,
    "wmv": WeightedMajorityVote,
    "ds": DawidSkene,
    "ocds": OneCoinDawidSkene,
    "bds": BayesianDawidSkene,
    "glad": GLAD,
    "mace": MACE,
}

METHODS: Final = tuple(REGISTRY)
