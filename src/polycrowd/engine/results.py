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


# -- free-text results: the medoid --------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TextResult:
    label: str  # the answer most similar to the others
    index: int  # its position among the answers
    agreement: float  # its mean similarity to the other answers (1.0 for a single answer)
    method: str  # "medoid-embedding" or "medoid-lexical"


def _trigrams(text: str) -> frozenset[str]:
    words = " ".join("".join(ch if ch.isalnum() else " " for ch in text.casefold()).split())
    padded = f" {words} "
    return frozenset(padded[i : i + 3] for i in range(len(padded) - 2))


def lexical_similarity(a: str, b: str) -> float:
    """Char-trigram Jaccard similarity of two casefolded texts without punctuation (0..1):
    the similarity used when no embedding model is available."""
    ga, gb = _trigrams(a), _trigrams(b)
    if ga == gb:
        return 1.0
    return len(ga & gb) / len(ga | gb) if ga and gb else 0.0


def medoid(similarity: Sequence[Sequence[float]]) -> tuple[int, float]:
    """(index, mean similarity to the others) of the row with the highest mean similarity
    to the other rows of a square similarity matrix; the first on a tie. A single row is
    its own medoid with similarity 1.0. Raises ``ValueError`` on an empty matrix."""
    n = len(similarity)
    if n == 0:
        raise ValueError("medoid of no answers")
    if n == 1:
        return 0, 1.0
    means = [(sum(row) - row[i]) / (n - 1) for i, row in enumerate(similarity)]
    best = max(range(n), key=lambda i: (means[i], -i))
    return best, float(means[best])


def text_medoid(
    answers: Sequence[str], vectors: Sequence[Sequence[float]] | None = None
) -> TextResult:
    """The result of a free-text item (translation, transcription...): the answer most
    similar to the others. ``vectors`` (unit embeddings, one per answer, e.g. from a
    :class:`~polycrowd.engine.checking.Embedder`) give cosine similarity, across
    languages and wordings; without them the similarity is lexical. Identical answers
    (ignoring case and surrounding space) back each other up."""
    if not answers:
        raise ValueError("medoid of no answers")
    if vectors is not None and len(vectors) == len(answers):
        m = np.asarray(vectors, dtype=np.float64)
        sim = (m @ m.T).tolist()
        method = "medoid-embedding"
    else:
        keys = [a.strip().casefold() for a in answers]
        sim = [
            [
                1.0 if keys[i] == keys[j] else lexical_similarity(answers[i], answers[j])
                for j in range(len(answers))
            ]
            for i in range(len(answers))
        ]
        method = "medoid-lexical"
    i, agreement = medoid(sim)
    return TextResult(answers[i].strip(), i, max(0.0, min(1.0, agreement)), method)
