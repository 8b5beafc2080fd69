from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from typing import Any

import pytest

from polycrowd.engine.checking import Checker, CheckRequest, Decision
from polycrowd.models import rules
from polycrowd.models.rules import (
    REASONS,
    RulesChecker,
    RulesConfig,
    SpanError,
    parse_spans,
    similarity,
    word_count,
)

SOURCE = "The meeting has been moved to Thursday afternoon because the manager is travelling."


def req(**kw: Any) -> CheckRequest:
    base: dict[str, Any] = {
        "project_id": 1,
        "task_type": "text",
        "labels": (),
        "item_text": SOURCE,
        "item_lang": "en",
        "answer": "La reunión se ha pasado al jueves por la tarde porque el jefe está de viaje.",
        "seconds": 40.0,
        "target_lang": "es",
    }
    base.update(kw)
    return CheckRequest(**base)


def choice(answer: str, **kw: Any) -> CheckRequest:
    base: dict[str, Any] = {
        "task_type": "choice",
        "labels": ("pos", "neg", "neutral"),
        "item_text": "I loved it",
        "answer": answer,
        "seconds": 3.0,
        "target_lang": None,
    }
    base.update(kw)
    return req(**base)


CHECKER = RulesChecker()


def check(r: CheckRequest, checker: RulesChecker = CHECKER) -> tuple[Decision, str]:
    v = checker.check_one(r)
    assert 0.0 <= v.score <= 1.0
    assert v.model_version == "rules-1"
    assert (v.reason == "") == (v.decision is Decision.ACCEPT)
    assert v.reason == "" or v.reason in REASONS
    return v.decision, v.reason


# -- the good cases -------------------------------------------------------------------------
def test_good_translation_is_accepted() -> None:
    assert check(req()) == (Decision.ACCEPT, "")


def test_good_answers_of_every_task_type_are_accepted() -> None:
    assert check(choice("pos"))[0] is Decision.ACCEPT
    assert check(choice("neg", task_type="image"))[0] is Decision.ACCEPT
    assert check(choice("pos|neutral", task_type="multi"))[0] is Decision.ACCEPT
    spans = req(
        task_type="spans",
        labels=("PER", "LOC"),
        item_text="Ana went to Lima today",
        answer="0-1:PER;3-4:LOC",
    )
    assert check(spans)[0] is Decision.ACCEPT
    ok = req(task_type="spans", labels=("PER", "LOC"), item_text="Ana went to Lima", answer="")
    assert check(ok)[0] is Decision.ACCEPT  # no entities is a valid answer


def test_checker_protocol_and_async_check() -> None:
    assert isinstance(CHECKER, Checker)


async def test_async_check_keeps_order() -> None:
    verdicts = await CHECKER.check([req(), req(answer=""), choice("nope")])
    assert [v.decision for v in verdicts] == [Decision.ACCEPT, Decision.REJECT, Decision.REJECT]
    assert verdicts[1].reason == rules.R_EMPTY
    assert verdicts[2].reason == rules.R_UNKNOWN_LABEL


# -- one test per rule ----------------------------------------------------------------------
@pytest.mark.parametrize("answer", ["", "   ", "\u200b\u200b", "...", "🙂"])
def test_empty_text(answer: str) -> None:
    assert check(req(answer=answer)) == (Decision.REJECT, rules.R_EMPTY)


def test_too_short_absolute_and_relative_to_source() -> None:
    assert check(req(answer="a", target_lang=None)) == (Decision.REJECT, rules.R_TOO_SHORT)
    assert check(req(answer="La reunión.")) == (Decision.REJECT, rules.R_TOO_SHORT)
    # a short source may have a short translation
    assert check(req(item_text="Yes, sir.", answer="Sí."))[0] is Decision.ACCEPT


def test_length_ratio_counts_cjk_as_dense() -> None:
    zh = "会议改到星期四下午了，因为经理在出差。"
    assert check(req(answer=zh, target_lang="zh"))[0] is Decision.ACCEPT


def test_wrong_script() -> None:
    russian = "Встреча перенесена на четверг, потому что менеджер в командировке сейчас."
    assert check(req(answer=russian)) == (Decision.REJECT, rules.R_WRONG_SCRIPT)
    assert check(req(answer=russian, target_lang="ru"))[0] is Decision.ACCEPT
    # a few Latin brand names in a Cyrillic sentence are fine
    mixed = "Встреча в Zoom перенесена на четверг, потому что менеджер в командировке."
    assert check(req(answer=mixed, target_lang="ru"))[0] is Decision.ACCEPT
    arabic = "تم نقل الاجتماع إلى بعد ظهر يوم الخميس لأن المدير مسافر."
    assert check(req(answer=arabic, target_lang="ar"))[0] is Decision.ACCEPT
    assert check(req(answer=arabic, target_lang="fr"))[1] == rules.R_WRONG_SCRIPT


def test_unknown_target_language_skips_the_script_test() -> None:
    assert check(req(target_lang="xx"))[0] is Decision.ACCEPT


def test_language_detector_is_used_with_confidence_levels() -> None:
    def sure_italian(text: str) -> tuple[str | None, float]:
        return "it", 0.95

    def unsure_italian(text: str) -> tuple[str | None, float]:
        return "it", 0.7

    def guessing(text: str) -> tuple[str | None, float]:
        return "it", 0.3

    def spanish(text: str) -> tuple[str | None, float]:
        return "es-MX", 0.99

    def no_idea(text: str) -> tuple[str | None, float]:
        return None, 0.0

    def broken(text: str) -> tuple[str | None, float]:
        raise RuntimeError("boom")

    assert check(req(), RulesChecker(detect=sure_italian)) == (
        Decision.REJECT,
        rules.R_WRONG_LANGUAGE,
    )
    assert check(req(), RulesChecker(detect=unsure_italian)) == (
        Decision.REVIEW,
        rules.R_WRONG_LANGUAGE,
    )
    for detect in (guessing, spanish, no_idea, broken):
        assert check(req(), RulesChecker(detect=detect))[0] is Decision.ACCEPT
    # too few words to ask the detector
    short = req(item_text="Good morning", answer="Buongiorno")
    assert check(short, RulesChecker(detect=sure_italian))[0] is Decision.ACCEPT
    # no target language: the detector is not asked
    assert check(req(target_lang=None), RulesChecker(detect=sure_italian))[0] is Decision.ACCEPT


def test_copy_of_source() -> None:
    assert check(req(answer=SOURCE, target_lang=None)) == (Decision.REJECT, rules.R_COPY)
    near = SOURCE.upper().replace("travelling", "traveling")
    assert check(req(answer=near, target_lang="en")) == (Decision.REJECT, rules.R_COPY)
    # a real paraphrase is not a copy
    paraphrase = "Because the manager is away, the meeting now takes place on Thursday."
    assert check(req(answer=paraphrase, target_lang="en"))[0] is Decision.ACCEPT
    # short items (names, numbers) may be copied
    assert check(req(item_text="Taxi", answer="Taxi"))[0] is Decision.ACCEPT
    # the project can turn it off
    off = req(answer=SOURCE, target_lang=None, config={"copy_threshold": 1.1})
    assert check(off)[0] is Decision.ACCEPT


def test_similarity_helper() -> None:
    assert similarity("Hello, World!", "hello world") == 1.0
    assert similarity("abc", "xyz") == 0.0
    assert 0.0 < similarity(SOURCE, SOURCE[:40]) < 0.9


def test_answered_faster_than_reading() -> None:
    long_item = " ".join(["word"] * 60)  # 60 words need 6 s at 10 words/s
    fast = choice("pos", item_text=long_item, seconds=2.0)
    assert check(fast) == (Decision.REJECT, rules.R_TOO_FAST)
    assert check(choice("pos", item_text=long_item, seconds=7.0))[0] is Decision.ACCEPT
    # configurable per project
    slow_readers = choice("pos", item_text=long_item, seconds=7.0, config={"max_read_wps": 5})
    assert check(slow_readers) == (Decision.REJECT, rules.R_TOO_FAST)
    # short items are read at a glance; unknown durations are not judged
    assert check(choice("pos", seconds=0.3))[0] is Decision.ACCEPT
    assert check(choice("pos", item_text=long_item, seconds=float("nan")))[0] is Decision.ACCEPT
    floor = choice("pos", seconds=0.3, config={"min_seconds": 1})
    assert check(floor) == (Decision.REJECT, rules.R_TOO_FAST)


def test_word_count_handles_unspaced_scripts() -> None:
    assert word_count("one two three") == 3
    assert word_count("会议改到星期四") == 3.5


def test_repeated_text_answers() -> None:
    answer = req().answer
    twice = req(recent_answers=(answer, "other", answer.upper()))
    assert check(twice) == (Decision.REJECT, rules.R_REPEATED)
    assert check(req(recent_answers=(answer, "other")))[0] is Decision.ACCEPT
    cfg = req(recent_answers=(answer,), config={"repeat_text_min": 1})
    assert check(cfg) == (Decision.REJECT, rules.R_REPEATED)


def test_same_choice_many_times_is_review_not_reject() -> None:
    run = choice("pos", recent_answers=("pos",) * 14)
    assert check(run) == (Decision.REVIEW, rules.R_SAME_CHOICE)
    broken_run = choice("pos", recent_answers=("pos",) * 5 + ("neg",) + ("pos",) * 10)
    assert check(broken_run)[0] is Decision.ACCEPT
    assert check(choice("pos", recent_answers=("pos",) * 13))[0] is Decision.ACCEPT
    small = choice("neg", recent_answers=("neg",) * 2, config={"repeat_choice_run": 3})
    assert check(small) == (Decision.REVIEW, rules.R_SAME_CHOICE)
    multi = choice("pos|neg", task_type="multi", recent_answers=("neg|pos",) * 14)
    assert check(multi) == (Decision.REVIEW, rules.R_SAME_CHOICE)


@pytest.mark.parametrize(
    "answer",
    [
        "As an AI language model, I cannot translate this text.",
        "Here is the translation: La reunión se ha pasado al jueves por la tarde.",
        "Sure! Here you go: la reunión se ha pasado al jueves por la tarde, el jefe viaja.",
        "¡Claro! Aquí tienes la traducción: la reunión se ha pasado al jueves por la tarde.",
        "Конечно! Вот перевод: встречу перенесли на четверг.",
        "当然！以下是翻译：会议改到了星期四下午。",
        "بالتأكيد! إليك الترجمة: تم نقل الاجتماع إلى يوم الخميس.",
        "Tabii ki! İşte çevirisi: toplantı perşembeye alındı.",
    ],
)
def test_machine_generated_phrases(answer: str) -> None:
    assert check(req(answer=answer, target_lang=None)) == (Decision.REJECT, rules.R_MACHINE)


def test_machine_phrase_in_the_item_itself_is_fine() -> None:
    item = "He wrote: as an AI language model I cannot help, and we laughed about it."
    answer = "Escribió: como modelo de lenguaje de IA no puedo ayudar (as an AI language model)."
    assert check(req(item_text=item, answer=answer, target_lang=None))[0] is Decision.ACCEPT


def test_hidden_characters() -> None:
    answer = "La reunión\u200b se ha pasado al jueves por la tarde porque el jefe viaja."
    assert check(req(answer=answer)) == (Decision.REJECT, rules.R_HIDDEN_CHARS)
    # zero-width non-joiner is part of Persian spelling
    persian = "جلسه به بعدازظهر پنج\u200cشنبه منتقل شد چون مدیر در سفر است."
    assert check(req(answer=persian, target_lang="fa"))[0] is Decision.ACCEPT


@pytest.mark.parametrize(
    "answer",
    [
        "**Translation:** la reunión se ha pasado al jueves por la tarde, el jefe viaja.",
        "La reunión se ha pasado al jueves<br>por la tarde porque el jefe está de viaje.",
        "### Respuesta\nLa reunión se ha pasado al jueves por la tarde; el jefe viaja.",
    ],
)
def test_markup_is_a_review_signal(answer: str) -> None:
    assert check(req(answer=answer)) == (Decision.REVIEW, rules.R_MARKUP)


def test_long_text_typed_impossibly_fast() -> None:
    answer = req().answer  # 76 characters
    assert check(req(answer=answer, seconds=2.0)) == (Decision.REVIEW, rules.R_TYPED_TOO_FAST)
    assert check(req(answer=answer, seconds=20.0))[0] is Decision.ACCEPT


def test_reject_beats_review() -> None:
    # markup (review) and a copy (reject) at once: the rejection is reported
    answer = f"**{SOURCE}**"
    assert check(req(answer=answer, target_lang=None)) == (Decision.REJECT, rules.R_COPY)


def test_choice_label_must_be_in_the_label_set() -> None:
    assert check(choice("positive")) == (Decision.REJECT, rules.R_UNKNOWN_LABEL)
    assert check(choice("")) == (Decision.REJECT, rules.R_EMPTY)
    assert check(choice(" pos "))[0] is Decision.ACCEPT


def test_multi_labels() -> None:
    assert check(choice("pos|nope", task_type="multi")) == (
        Decision.REJECT,
        rules.R_UNKNOWN_LABEL,
    )
    assert check(choice("pos||neg", task_type="multi")) == (Decision.REJECT, rules.R_BAD_FORMAT)
    assert check(choice("pos|pos", task_type="multi")) == (Decision.REJECT, rules.R_BAD_FORMAT)
    assert check(choice("", task_type="multi")) == (Decision.REJECT, rules.R_EMPTY)


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("0-1", rules.R_BAD_SPANS),
        ("a-b:PER", rules.R_BAD_SPANS),
        ("2-1:PER", rules.R_BAD_SPANS),
        ("1-1:PER", rules.R_BAD_SPANS),
        ("0-1:PER;;3-4:LOC", rules.R_BAD_SPANS),
        ("0-2:PER;1-3:LOC", rules.R_BAD_SPANS),  # overlap
        ("3-6:LOC", rules.R_SPAN_RANGE),  # 5 tokens
        ("0-1:ORG", rules.R_UNKNOWN_LABEL),
    ],
)
def test_bad_spans(answer: str, reason: str) -> None:
    r = req(
        task_type="spans", labels=("PER", "LOC"), item_text="Ana went to Lima today", answer=answer
    )
    assert check(r) == (Decision.REJECT, reason)


def test_spans_parse_and_options() -> None:
    spans = parse_spans("3-4:LOC; 0-1:PER", 5)
    assert [(s.start, s.end, s.label) for s in spans] == [(0, 1, "PER"), (3, 4, "LOC")]
    inclusive = parse_spans("0-0:PER;3-4:LOC", 5, end_inclusive=True)
    assert [(s.start, s.end) for s in inclusive] == [(0, 1), (3, 5)]
    with pytest.raises(SpanError):
        parse_spans("0-2:PER;1-3:LOC", 5)
    assert len(parse_spans("0-2:PER;1-3:LOC", 5, allow_overlap=True)) == 2
    arabic = "سافر أحمد إلى القاهرة"
    rtl = req(task_type="spans", labels=("PER",), item_text=arabic, answer="1-2:PER")
    assert check(rtl)[0] is Decision.ACCEPT


def test_unknown_task_type_goes_to_review() -> None:
    assert check(req(task_type="audio")) == (Decision.REVIEW, rules.R_CHECK_UNAVAILABLE)


def test_a_crashing_rule_becomes_a_review(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(r: CheckRequest, cfg: RulesConfig) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(rules, "_choice_label", boom)
    verdict = RulesChecker().check_safe(choice("pos"))
    assert verdict.decision is Decision.REVIEW
    assert verdict.reason == rules.R_CHECK_UNAVAILABLE


def test_config_overrides_ignore_unknown_keys_and_bad_values() -> None:
    cfg = RulesConfig().merged(
        {"min_chars": 5, "head": "similarity", "max_read_wps": "fast", "span_end_inclusive": 1}
    )
    assert cfg.min_chars == 5
    assert cfg.max_read_wps == RulesConfig().max_read_wps
    assert cfg.span_end_inclusive is False
    assert RulesConfig().merged({}) == RulesConfig()


# -- reasons ----------------------------------------------------------------------------------
def test_reasons_are_unique_msgids_marked_for_extraction() -> None:
    assert len(set(REASONS)) == len(REASONS)
    assert all(r and r == r.strip() and r[0].isupper() and r[-1] == "." for r in REASONS)
    tree = ast.parse(inspect.getsource(rules))
    marked = {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "N_"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }
    assert marked == set(REASONS)
    constants = {v for k, v in vars(rules).items() if k.startswith("R_")}
    assert constants == set(REASONS)


# -- imports ----------------------------------------------------------------------------------
def test_importing_models_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "import polycrowd.models, polycrowd.models.checker, polycrowd.models.rules\n"
        "import polycrowd.models.batcher, polycrowd.models.bert, polycrowd.models.train\n"
        "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


def test_translations_much_shorter_than_the_source_go_to_review() -> None:
    item = "The meeting has been moved to Thursday afternoon because the manager is travelling."
    short = check(req(item_text=item, answer="La reunión se ha trasladado", target_lang="es"))
    assert short == (Decision.REVIEW, rules.R_TOO_SHORT)
    cut = check(req(item_text=item, answer="La reunión", target_lang="es"))
    assert cut == (Decision.REJECT, rules.R_TOO_SHORT)
