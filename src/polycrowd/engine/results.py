"""Batch aggregation of a project's answers into results (bridge to aggregation.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from polycrowd.engine.aggregation import (
    Auto,
    encode,
    krippendorff_alpha,
    make_aggregator,
)


@dataclass(frozen=True, slots=True)
class ItemResult:
    label: str
    confidence: float
    agreement: float
    answers: int
    method: str


@dataclass(frozen=True, slots=True)
class Aggregated:
    method: str
    results: dict[str, ItemResult]
    alpha: float | None  # Krippendorff's alpha over all answers (None when undefined)


def aggregate_labels(
    items: Sequence[str],
    workers: Sequence[str],
    labels: Sequence[str],
    method: str = "auto",
    gold: Mapping[str, str] | None = None,
    label_set: Sequence[str] | None = None,
) -> Aggregated:
    """Aggregate string answers; ``auto`` picks the model by held-out answers (no gold)."""
    enc = encode(items, workers, labels, label_set)
    per_item = np.bincount(enc.items, minlength=enc.n_items)
    gold = gold or {}
    agg = make_aggregator(method).fit(
        enc.items,
        enc.workers,
        enc.labels,
        n_items=enc.n_items,
        n_workers=enc.n_workers,
        n_labels=enc.n_labels,
        gold=enc.gold_array(gold) if gold else None,
    )
    if isinstance(agg, Auto):
        method = agg.chosen_  # the model auto chose, as before
    results = {
        item: ItemResult(
            label=enc.label_names[int(agg.labels_[i])],
            confidence=float(agg.confidence_[i]),
            agreement=float(np.nan_to_num(agg.agreement_[i])),
            answers=int(per_item[i]),
            method=method,
        )
        for i, item in enumerate(enc.item_names)
    }
    alpha = krippendorff_alpha(enc.items, enc.workers, enc.labels)
    return Aggregated(method, results, None if np.isnan(alpha) else float(alpha))
