"""Tests for polycrowd.engine.language: detection backends and evidence accumulation."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from polycrowd.engine.language import (
    FULL_WEIGHT_WORDS,
    SUPPORTED,
    Detection,
    LanguageDetector,
    LanguageEvidence,
    accumulate,
    count_words,
    reply_weight,
    trusted_languages,
)

CLEAR = {
    "en": "Sorry, I don't understand the question at all",
    "es": "Creo que la respuesta correcta es la segunda",
    "ru": "Мне кажется, правильный ответ второй",
    "de": "Ich glaube, die zweite Antwort ist richtig",
    "fr": "Je pense que la bonne réponse est la deuxième",
    "pt": "Acho que a resposta certa é a segunda opção",
    "ar": "أعتقد أن الإجابة الصحيحة هي الثانية",
    "hi": "मुझे लगता है सही जवाब दूसरा है",
    "zh": "我觉得正确答案是第二个",
    "tr": "Bence doğru cevap kesinlikle ikincisi",
}
MEANINGLESS = ["", "   ", "12345", "😀😀", "!!! ???", "3.14 + 2 = 5.14", "👍"]


@pytest.fixture(scope="module")
def lingua() -> Iterator[LanguageDetector]:
    detector = LanguageDetector()  # the default: lingua, high accuracy
    detector.warm_up()
    yield detector


@pytest.fixture(scope="module")
def lingua_low() -> LanguageDetector:
    return LanguageDetector("lingua", high_accuracy=False)


@pytest.fixture(scope="module")
def langdetect() -> LanguageDetector:
    return LanguageDetector("langdetect")


@pytest.fixture(scope="module")
def script() -> LanguageDetector:
    return LanguageDetector("script")


# -- detection ---------------------------------------------------------------------


def test_defaults() -> None:
    detector = LanguageDetector()
    assert detector.backend == "lingua"
    assert detector.high_accuracy is True
    assert detector.languages == SUPPORTED
    assert set(SUPPORTED) == {"en", "es", "ru", "de", "fr", "pt", "ar", "hi", "zh", "tr"}


@pytest.mark.parametrize("lang", sorted(CLEAR))
def test_lingua_detects_clear_sentences(lingua: LanguageDetector, lang: str) -> None:
    found = lingua.detect(CLEAR[lang])
    assert found.lang == lang
    assert 0.5 < found.confidence <= 1.0


@pytest.mark.parametrize("lang", ["en", "es", "ru", "de", "ar", "zh"])
def test_lingua_low_accuracy_detects_clear_sentences(
    lingua_low: LanguageDetector, lang: str
) -> None:
    assert lingua_low.detect(CLEAR[lang]).lang == lang


@pytest.mark.parametrize("lang", sorted(CLEAR))
def test_langdetect_detects_clear_sentences(langdetect: LanguageDetector, lang: str) -> None:
    found = langdetect.detect(CLEAR[lang])
    assert found.lang == lang  # zh-cn / zh-tw are reported as zh
    assert 0.5 < found.confidence <= 1.0


def test_langdetect_is_reproducible() -> None:
    first = LanguageDetector("langdetect")
    second = LanguageDetector("langdetect")
    for text in ["vale", "ok", "bien sûr", "merci beaucoup", *CLEAR.values()]:
        assert first.detect(text) == second.detect(text)


@pytest.mark.parametrize("backend", ["lingua", "langdetect", "script"])
@pytest.mark.parametrize("text", MEANINGLESS)
def test_meaningless_input_is_unsure(
    request: pytest.FixtureRequest, backend: str, text: str
) -> None:
    detector: LanguageDetector = request.getfixturevalue(backend)
    assert detector.detect(text) == Detection(None, 0.0)


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("Привет, как дела?", "ru"),
        ("مرحبا، كيف حالك؟", "ar"),
        ("नमस्ते, आप कैसे हैं?", "hi"),
        ("你好，最近怎么样？", "zh"),
        ("谢谢", "zh"),
    ],
)
def test_script_backend_non_latin(script: LanguageDetector, text: str, lang: str) -> None:
    assert script.detect(text) == Detection(lang, 1.0)


def test_script_backend_latin_is_unsure_among_several_latin_languages(
    script: LanguageDetector,
) -> None:
    found = script.detect("The answer is the second one")
    assert found.lang is None
    assert found.confidence == 1.0  # the script is clear, the language is not


def test_script_backend_latin_with_one_latin_language() -> None:
    detector = LanguageDetector("script", languages=("en", "ru", "ar"))
    assert detector.detect("The answer is the second one").lang == "en"
    assert detector.detect("Ответ второй").lang == "ru"


def test_script_backend_ambiguous_han_and_kana() -> None:
    detector = LanguageDetector("script", languages=("zh", "ja"))
    assert detector.detect("漢字").lang is None  # Han alone: Chinese or Japanese
    assert detector.detect("ありがとうございます").lang == "ja"
    assert detector.detect("日本語を話します").lang == "ja"


def test_script_backend_confidence_is_script_share() -> None:
    detector = LanguageDetector("script", languages=("en", "ru"), min_confidence=0.0)
    found = detector.detect("ok спасибо")  # 2 Latin letters, 7 Cyrillic
    assert found.lang == "ru"
    assert found.confidence == pytest.approx(7 / 9)


def test_min_confidence_turns_a_weak_guess_into_unsure() -> None:
    detector = LanguageDetector("script", languages=("en", "ru"), min_confidence=0.9)
    found = detector.detect("ok спасибо")
    assert found.lang is None
    assert found.confidence == pytest.approx(7 / 9)


def test_lingua_answers_only_allowed_languages() -> None:
    detector = LanguageDetector("lingua", languages=("en", "de"), high_accuracy=False)
    found = detector.detect("Creo que la respuesta correcta es la segunda")
    assert found.lang in {"en", "de", None}
    assert detector.detect("I think the second answer is right").lang == "en"


def test_single_allowed_language() -> None:
    for backend in ("lingua", "langdetect", "script"):
        detector = LanguageDetector(backend, languages=("de",))
        assert detector.detect("Ich glaube, die zweite Antwort ist richtig").lang == "de"
        assert detector.detect("12345").lang is None


def test_concurrent_first_use_builds_once() -> None:
    detector = LanguageDetector("langdetect", languages=("en", "ru"))
    texts = ["Hello there, how are you doing", "Привет, как дела"] * 20
    with ThreadPoolExecutor(max_workers=8) as pool:
        langs = list(pool.map(lambda text: detector.detect(text).lang, texts))
    assert langs == ["en", "ru"] * 20


def test_unknown_backend_raises() -> None:
    with pytest.raises(ValueError, match="unknown language backend"):
        LanguageDetector("fasttext")


@pytest.mark.parametrize(
    ("backend", "languages"),
    [
        ("lingua", ()),
        ("lingua", ("english",)),
        ("lingua", ("xx",)),
        ("script", ("e1",)),
        ("langdetect", ("eo",)),  # lingua knows Esperanto, langdetect does not
    ],
)
def test_bad_languages_raise(backend: str, languages: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        LanguageDetector(backend, languages=languages)


@pytest.mark.parametrize("min_confidence", [-0.1, 1.5])
def test_bad_min_confidence_raises(min_confidence: float) -> None:
    with pytest.raises(ValueError, match="min_confidence"):
        LanguageDetector("script", min_confidence=min_confidence)


def test_languages_are_normalised() -> None:
    detector = LanguageDetector("script", languages=(" RU", "ru", "En"))
    assert detector.languages == ("ru", "en")


# -- words -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", 0),
        ("12345 😀 !!!", 0),
        ("yes", 1),
        ("no idea", 2),
        ("Sorry, I don't understand the question", 6),
        ("谢谢", 1),
        ("谢谢，现在清楚多了", 4),
        ("ok 谢谢", 2),
        ("Привет, как дела?", 3),
    ],
)
def test_count_words(text: str, words: int) -> None:
    assert count_words(text) == words


# -- evidence ----------------------------------------------------------------------


def test_accumulate_adds_weighted_evidence_without_mutating() -> None:
    start: dict[str, LanguageEvidence] = {}
    after = accumulate(start, Detection("es", 0.8), text_words=FULL_WEIGHT_WORDS)
    assert start == {}
    assert list(after) == ["es"]
    assert (after["es"].lang, after["es"].replies) == ("es", 1)
    assert after["es"].weight == pytest.approx(0.8)
    again = accumulate(after, Detection("es", 1.0), text_words=FULL_WEIGHT_WORDS)
    assert again["es"].replies == 2
    assert again["es"].weight == pytest.approx(1.8)
    assert after["es"].replies == 1


def test_longer_replies_count_more_and_are_capped() -> None:
    weights = [reply_weight(Detection("en", 1.0), words) for words in (1, 2, 5, 50, 5000)]
    assert weights[0] < weights[1] < weights[2]
    assert weights[2] == weights[3] == weights[4] == 1.0
    assert reply_weight(Detection("en", 0.5), 1) == pytest.approx(0.5 / FULL_WEIGHT_WORDS)


def test_unsure_or_empty_reply_adds_nothing() -> None:
    evidence = {"en": LanguageEvidence("en", 1.0, 1)}
    assert accumulate(evidence, Detection(None, 0.9), 7) == evidence
    assert accumulate(evidence, Detection("en", 0.9), 0) == evidence
    assert accumulate(evidence, Detection("en", 0.0), 7) == evidence


def test_declared_languages_trusted_at_once() -> None:
    assert trusted_languages(["ES", "pt"], {}) == frozenset({"es", "pt"})
    assert trusted_languages([], {}) == frozenset()


def test_detected_language_trusted_only_after_enough_replies() -> None:
    evidence: dict[str, LanguageEvidence] = {}
    sentence = Detection("tr", 0.95)
    for _ in range(2):
        evidence = accumulate(evidence, sentence, text_words=8)
        assert trusted_languages(["en"], evidence) == {"en"}
    evidence = accumulate(evidence, sentence, text_words=8)
    assert trusted_languages(["en"], evidence) == {"en", "tr"}


def test_long_replies_alone_do_not_skip_the_reply_count() -> None:
    evidence: dict[str, LanguageEvidence] = {}
    for _ in range(2):
        evidence = accumulate(evidence, Detection("de", 1.0), text_words=400)
    assert evidence["de"].weight == pytest.approx(2.0)
    assert "de" not in trusted_languages([], evidence)


def test_single_words_need_more_replies() -> None:
    evidence: dict[str, LanguageEvidence] = {}
    word = Detection("fr", 1.0)
    for _ in range(5):
        evidence = accumulate(evidence, word, text_words=1)
    assert "fr" not in trusted_languages([], evidence)  # weight 1.0 < 2.0
    for _ in range(5):
        evidence = accumulate(evidence, word, text_words=1)
    assert "fr" in trusted_languages([], evidence)


def test_one_stray_detection_does_not_add_a_language() -> None:
    evidence: dict[str, LanguageEvidence] = {}
    for _ in range(30):
        evidence = accumulate(evidence, Detection("pt", 0.95), text_words=7)
    evidence = accumulate(evidence, Detection("es", 0.99), text_words=9)
    assert trusted_languages(["pt"], evidence) == {"pt"}


def test_recurring_misdetection_below_share_is_not_trusted() -> None:
    # A Portuguese worker whose "valeu" keeps being read as French: many replies,
    # enough weight, but a small share of all evidence.
    evidence: dict[str, LanguageEvidence] = {}
    for _ in range(40):
        for _ in range(6):
            evidence = accumulate(evidence, Detection("pt", 0.8), text_words=4)
        evidence = accumulate(evidence, Detection("fr", 0.85), text_words=1)
    assert evidence["fr"].replies == 40
    assert evidence["fr"].weight > 2.0
    assert trusted_languages(["pt"], evidence) == {"pt"}
    assert "fr" in trusted_languages(["pt"], evidence, min_share=0.0)


def test_second_language_used_often_is_trusted() -> None:
    evidence: dict[str, LanguageEvidence] = {}
    for _ in range(10):
        for _ in range(3):
            evidence = accumulate(evidence, Detection("en", 1.0), text_words=6)
        evidence = accumulate(evidence, Detection("hi", 1.0), text_words=6)
    assert trusted_languages(["en"], evidence) == {"en", "hi"}


def test_detector_and_evidence_together(script: LanguageDetector) -> None:
    evidence: dict[str, LanguageEvidence] = {}
    replies = ["Ответ второй, без сомнений", "12345", "😀", "Спасибо, всё понятно", "да"]
    replies += ["На фото кошка на диване"]
    for text in replies:
        evidence = accumulate(evidence, script.detect(text), count_words(text))
    assert set(evidence) == {"ru"}
    assert evidence["ru"].replies == 4
    assert trusted_languages([], evidence) == {"ru"}
