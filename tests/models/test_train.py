"""Fine-tuning round trips on a tiny random BERT: train, save, load, predict."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("torch")
pytest.importorskip("transformers")

from polycrowd.engine.checking import CheckRequest, Decision
from polycrowd.models import rules
from polycrowd.models.bert import BertChecker
from polycrowd.models.train import (
    ClassMetrics,
    TrainReport,
    build_tiny_bert,
    classification_report,
    evaluate,
    evaluate_tagger,
    stratified_split,
    train_classifier,
    train_tagger,
)

POS = ["good", "great", "fine", "happy", "love", "nice"]
NEG = ["bad", "awful", "sad", "hate", "poor", "ugly"]
NAMES = ["alice", "bob", "carol"]
PLACES = ["paris", "rome", "oslo"]
FILLER = ["went", "to", "met", "in", "the", "saw"]


def sentiment_data(n: int = 200, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        label = rng.choice(["pos", "neg"])
        words = POS if label == "pos" else NEG
        texts.append(" ".join(rng.choice(words) for _ in range(4)))
        labels.append(label)
    return texts, labels


def ner_data(n: int = 200, seed: int = 0) -> tuple[list[list[str]], list[list[str]]]:
    rng = random.Random(seed)
    tokens_list, tags_list = [], []
    for _ in range(n):
        tokens, tags = [], []
        for _ in range(6):
            r = rng.random()
            if r < 0.2:
                tokens.append(rng.choice(NAMES))
                tags.append("B-PER")
            elif r < 0.4:
                tokens.append(rng.choice(PLACES))
                tags.append("B-LOC")
            else:
                tokens.append(rng.choice(FILLER))
                tags.append("O")
        tokens_list.append(tokens)
        tags_list.append(tags)
    return tokens_list, tags_list


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    words = POS + NEG + NAMES + PLACES + FILLER
    return build_tiny_bert(tmp_path_factory.mktemp("tiny"), kind="encoder", words=words)


# -- metrics ----------------------------------------------------------------------------------
def test_classification_report_matches_hand_computed_values() -> None:
    y_true = ["a", "a", "a", "b", "b", "c"]
    y_pred = ["a", "a", "b", "b", "c", "c"]
    per_class, macro, accuracy = classification_report(y_true, y_pred, ["a", "b", "c"])
    a, b, c = per_class
    assert a == ClassMetrics("a", 1.0, 2 / 3, 0.8, 3)
    assert (b.precision, b.recall, b.f1, b.support) == (0.5, 0.5, 0.5, 2)
    assert (c.precision, c.recall, c.support) == (0.5, 1.0, 1)
    assert c.f1 == pytest.approx(2 / 3)
    assert macro.precision == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert macro.f1 == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert macro.support == 6
    assert accuracy == pytest.approx(4 / 6)
    # a class that is never predicted scores 0, not NaN
    (d,), _, _ = classification_report(["d"], ["a"], ["d"])
    assert (d.precision, d.recall, d.f1) == (0.0, 0.0, 0.0)


def test_stratified_split_keeps_every_class_and_is_seeded() -> None:
    labels = ["a"] * 50 + ["b"] * 10 + ["c"] * 2 + ["d"]
    train, test = stratified_split(labels, 0.2, seed=3)
    assert sorted(train + test) == list(range(len(labels)))
    held = [labels[i] for i in test]
    assert (held.count("a"), held.count("b"), held.count("c"), held.count("d")) == (10, 2, 1, 0)
    assert stratified_split(labels, 0.2, seed=3) == (train, test)
    assert stratified_split(labels, 0.2, seed=4) != (train, test)


def test_report_format_is_a_table() -> None:
    rows = (ClassMetrics("pos", 0.9, 0.8, 0.847, 10), ClassMetrics("neg", 0.8, 0.9, 0.847, 10))
    macro = ClassMetrics("macro avg", 0.85, 0.85, 0.847, 20)
    report = TrainReport("v1", "/m", "classifier", ("neg", "pos"), rows, macro, 0.85, 80, 20)
    text = report.format()
    assert "precision" in text and "recall" in text and "f1-score" in text
    assert "macro avg" in text and "accuracy" in text
    assert "0.90" in text and "0.85" in text


# -- tiny models ------------------------------------------------------------------------------
def test_build_tiny_bert_needs_no_download(tmp_path: Path) -> None:
    folder = build_tiny_bert(tmp_path / "clf", ["x", "y"], kind="classifier", words=["hello"])
    files = set(os.listdir(folder))
    assert {"config.json", "model.safetensors", "vocab.txt"} <= files
    config = json.loads((folder / "config.json").read_text())
    assert config["hidden_size"] == 32 and config["num_hidden_layers"] == 2
    assert config["id2label"] == {"0": "x", "1": "y"}
    with pytest.raises(ValueError):
        build_tiny_bert(tmp_path / "bad", kind="seq2seq")


# -- classifier -------------------------------------------------------------------------------
def test_train_classifier_save_load_predict(base: Path, tmp_path: Path) -> None:
    texts, labels = sentiment_data()
    report = train_classifier(
        texts, labels, base, tmp_path, epochs=5, seed=0, learning_rate=1e-3, languages=["en"]
    )
    assert report.kind == "classifier"
    assert report.labels == ("neg", "pos")
    assert (report.n_train, report.n_test) == (160, 40)
    assert report.accuracy >= 0.8  # a trivially separable toy task
    folder = Path(report.model_dir)
    assert folder.parent == tmp_path and folder.name == report.version
    assert {"config.json", "model.safetensors", "polycrowd.json"} <= set(os.listdir(folder))
    meta = json.loads((folder / "polycrowd.json").read_text())
    assert meta["version"] == report.version
    assert meta["labels"] == ["neg", "pos"]
    assert meta["input"] == "item"
    assert meta["languages"] == ["en"]
    assert meta["metrics"]["accuracy"] == report.accuracy
    assert meta["created"]

    # the saved model reproduces the held-out score
    _, test = stratified_split(labels, 0.2, 0)
    again = evaluate(folder, [texts[i] for i in test], [labels[i] for i in test], device="cpu")
    assert again.version == report.version
    assert again.accuracy == pytest.approx(report.accuracy)
    assert again.macro.f1 == pytest.approx(report.macro.f1)

    # and the checker loads it
    checker = BertChecker(folder, "classifier", "cpu")
    assert checker.model_version.startswith(f"{report.version}-clf@")
    top, confidence = checker.predict_labels(["love great happy nice"])[0]
    assert top == "pos" and 0.5 <= confidence <= 1.0

    def pick(answer: str, **config: float) -> CheckRequest:
        item = "love great happy nice"
        return CheckRequest(1, "choice", ("pos", "neg"), item, "en", answer, 5.0, config=config)

    agree, disagree, strict = checker.predict(
        [pick("pos"), pick("neg"), pick("neg", review_confidence=0.0)]
    )
    assert agree.decision is Decision.ACCEPT
    assert disagree.decision in (Decision.ACCEPT, Decision.REVIEW)  # never a reject
    assert strict.decision is Decision.REVIEW
    assert strict.reason == rules.R_MODEL_DISAGREES
    assert agree.score > strict.score
    # a second training run gets its own version folder
    second = train_classifier(texts[:40], labels[:40], base, tmp_path, epochs=1, seed=0)
    assert second.version != report.version
    assert len(list(tmp_path.iterdir())) == 2


def test_train_pair_classifier_for_text_answers(base: Path, tmp_path: Path) -> None:
    rng = random.Random(1)
    items, answers, labels = [], [], []
    for _ in range(120):
        item = " ".join(rng.choice(POS) for _ in range(3))
        good = rng.random() < 0.5
        answers.append(" ".join(rng.choice(POS if good else NEG) for _ in range(3)))
        items.append(item)
        labels.append("good" if good else "bad")
    report = train_classifier(
        items, labels, base, tmp_path, epochs=3, seed=0, pairs=answers, learning_rate=1e-3
    )
    meta = json.loads((Path(report.model_dir) / "polycrowd.json").read_text())
    assert meta["input"] == "pair" and meta["good_label"] == "good"
    # thresholds on p(good) calibrated on the held-out split, read back by the checker
    calibrated = meta["thresholds"]["classifier"]
    assert 0.0 <= calibrated["reject_below"] <= calibrated["accept_above"] <= 1.0
    assert meta["calibration"]["n_good"] + meta["calibration"]["n_bad"] == report.n_test
    checker = BertChecker(report.model_dir, "classifier", "cpu")
    assert checker.thresholds["accept_above"] == calibrated["accept_above"]
    text = CheckRequest(1, "text", (), "good great", "en", "happy nice", 9.0)
    pick = CheckRequest(1, "choice", ("good", "bad"), "good great", "en", "good", 9.0)
    assert checker.applies(text) and not checker.applies(pick)
    (verdict,) = checker.predict([text])
    assert verdict.decision in set(Decision)
    assert verdict.reason in ("", rules.R_LOW_QUALITY, rules.R_UNSURE)
    strict_config = {"accept_above": 1.1, "reject_below": 1.1}
    (strict,) = checker.predict(
        [CheckRequest(1, "text", (), "good", "en", "fine", 9.0, config=strict_config)]
    )
    assert strict.decision is Decision.REJECT and strict.reason == rules.R_LOW_QUALITY


def test_train_classifier_rejects_bad_input(base: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        train_classifier(["a", "b"], ["x"], base, tmp_path)
    with pytest.raises(ValueError):
        train_classifier(["a"], ["x"], base, tmp_path, label_names=["y"])


# -- tagger -----------------------------------------------------------------------------------
def test_train_tagger_save_load_predict(base: Path, tmp_path: Path) -> None:
    tokens_list, tags_list = ner_data()
    report = train_tagger(
        tokens_list, tags_list, base, tmp_path, epochs=5, seed=0, learning_rate=1e-3
    )
    assert report.kind == "tagger"
    assert report.labels == ("O", "B-LOC", "B-PER")
    assert [r.label for r in report.per_class] == ["LOC", "PER"]
    assert report.macro.f1 >= 0.8  # a trivially learnable toy task
    meta = json.loads((Path(report.model_dir) / "polycrowd.json").read_text())
    assert meta["kind"] == "tagger" and meta["labels"] == ["O", "B-LOC", "B-PER"]

    again = evaluate_tagger(report.model_dir, tokens_list[:50], tags_list[:50], device="cpu")
    assert again.macro.f1 >= 0.8
    assert "LOC" in again.format()

    checker = BertChecker(report.model_dir, "tagger", "cpu")
    text = "alice went to paris"

    def spans(answer: str) -> CheckRequest:
        return CheckRequest(1, "spans", ("PER", "LOC"), text, "en", answer, 9.0)

    blank = CheckRequest(1, "spans", ("PER", "LOC"), "", "en", "", 9.0)
    choice = CheckRequest(1, "choice", ("a",), text, "en", "a", 9.0)
    right, wrong, nothing, empty_item, pick = checker.predict(
        [spans("0-1:PER;3-4:LOC"), spans("1-2:LOC"), spans(""), blank, choice]
    )
    assert right.decision is Decision.ACCEPT and right.score == 1.0
    assert wrong.decision is Decision.REVIEW and wrong.reason == rules.R_SPANS_DISAGREE
    assert nothing.decision is Decision.REVIEW and nothing.score == 0.0
    assert empty_item.decision is Decision.ACCEPT  # no tokens: nothing to disagree about
    assert pick.decision is Decision.ACCEPT and pick.score == 0.5  # not a spans task


def test_large_vocabularies_keep_their_word_embeddings(base: Path) -> None:
    import transformers

    from polycrowd.models.train import freeze_large_vocabulary

    model = transformers.AutoModelForSequenceClassification.from_pretrained(base, num_labels=2)
    assert not freeze_large_vocabulary(model)  # a small vocabulary is trained
    assert model.get_input_embeddings().weight.requires_grad
    assert freeze_large_vocabulary(model, min_vocab=10)
    assert not model.get_input_embeddings().weight.requires_grad
    assert all(p.requires_grad for n, p in model.named_parameters() if "word_emb" not in n)
