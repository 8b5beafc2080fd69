"""Aggregation of overlapping crowd answers into one label per item.

Pure numpy, modelled on crowd-kit: every aggregator has ``fit(...)`` and
``fit_predict(...)`` and keeps what it learned in attributes ending with ``_``.
Answers come in as three parallel integer arrays (item index, worker index,
label index); :func:`encode` turns string ids into that form.

Every aggregator sets, per item:

- ``labels_``: the chosen label index;
- ``posteriors_``: an ``(n_items, n_labels)`` matrix of class probabilities;
- ``confidence_``: the posterior probability of the chosen label;
- ``agreement_``: the fraction of the item's answers equal to the chosen label
  (``nan`` for an item without answers).

Every ``fit`` accepts ``gold``: known labels of some items (an array with ``-1``
for unknown, or a mapping item -> label). Gold items are clamped to their known
label (posterior one-hot); the EM methods keep them clamped while they learn,
so gold also sharpens the worker estimates of the other items.

Methods (``method`` names used by the engine and the CLI):

- ``mv``  :class:`MajorityVote`;
- ``wmv`` :class:`WeightedMajorityVote` (log-odds weights, Wawa-style skills);
- ``ds``  :class:`DawidSkene` (full confusion matrix per worker, MAP-EM);
- ``ocds`` :class:`OneCoinDawidSkene` (one accuracy per worker, MAP-EM);
- ``bds`` :class:`BayesianDawidSkene` (DS with Dirichlet priors centred on the
  crowd's pooled confusion matrix, variational Bayes: sparse workers, skewed
  classes);
- ``glad`` :class:`GLAD` (worker ability times item easiness);
- ``mace`` :class:`MACE` (workers who sometimes answer at random);
- ``auto`` :class:`Auto`: the candidate that best predicts held-out answers.

Every fitted aggregator also has ``worker_accuracy_`` (expected share of right
answers), ``worker_interval_`` (95 % Wilson interval) and ``answer_proba``.
One module per model; :data:`REGISTRY` maps names to classes, so adding a
method is a module plus one line in ``registry.py``.
"""

from __future__ import annotations

from polycrowd.engine.aggregation._base import (
    AggregationInputError,
    Aggregator,
    Encoded,
    encode,
)
from polycrowd.engine.aggregation.agreement import krippendorff_alpha
from polycrowd.engine.aggregation.auto import Auto, choose_method, make_aggregator
from polycrowd.engine.aggregation.bayes_ds import BayesianDawidSkene
from polycrowd.engine.aggregation.dawid_skene import DawidSkene, OneCoinDawidSkene
from polycrowd.engine.aggregation.glad import GLAD
from polycrowd.engine.aggregation.mace import MACE
from polycrowd.engine.aggregation.majority import MajorityVote, WeightedMajorityVote
from polycrowd.engine.aggregation.online import item_posterior
from polycrowd.engine.aggregation.registry import METHODS, REGISTRY
from polycrowd.engine.aggregation.tsv import aggregate_tsv, read_answers_tsv, read_gold_tsv

__all__ = [
    "GLAD",
    "MACE",
    "METHODS",
    "REGISTRY",
    "AggregationInputError",
    "Aggregator",
    "Auto",
    "BayesianDawidSkene",
    "DawidSkene",
    "Encoded",
    "MajorityVote",
    "OneCoinDawidSkene",
    "WeightedMajorityVote",
    "aggregate_tsv",
    "choose_method",
    "encode",
    "item_posterior",
    "krippendorff_alpha",
    "make_aggregator",
    "read_answers_tsv",
    "read_gold_tsv",
]
