"""The demo's multilingual text phase: per-language catch rates, rules only and with a tiny
BERT (wiring, not quality; the real model runs in ``polycrowd demo``)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from polycrowd.bot.app import App, build_app
from polycrowd.bot.memory import MemoryChat, MemoryUser
from polycrowd.demo import SimClock
from polycrowd.demo_text import BAD_KINDS, KINDS, RULES_ONLY, TEXT_LANGS, text_phase
from polycrowd.engine.checking import Checker
from polycrowd.engine.language import LanguageDetector
from polycrowd.engine.types import Role
from polycrowd.models.checker import build_checker
from polycrowd.settings import Settings

CAUGHT_BY_RULES = ("copy", "wrong_language", "too_short")


def _detector() -> LanguageDetector:
    return LanguageDetector("lingua", ("en", *TEXT_LANGS), high_accuracy=False)


async def _run(tmp_path: Path, checker: Checker, detector: LanguageDetector) -> dict[str, Any]:
    settings = Settings().with_db(tmp_path / "demo.db")
    app: App = await build_app(settings, checker=checker, detector=detector)
    clock = SimClock()
    app.engine.clock = clock.now
    try:
        chat = MemoryChat(app.dispatcher, app.translator)
        app.add_adapter(chat)  # type: ignore[arg-type]
        requester = MemoryUser("1", "requester", "en")
        user, _ = await app.engine.user_for("memory", requester.id, requester.name, "en")
        await app.engine.bootstrap_role(user.id, Role.REQUESTER)
        return await text_phase(app, chat, requester, random.Random(7), clock)
    finally:
        await app.close()


def _check_consistent(result: dict[str, Any]) -> None:
    per = result["text_per_language"]
    assert list(per) == list(result["text_languages"]) == list(TEXT_LANGS)
    replies = 0
    for lang, r in per.items():
        kinds = r["by_kind"]
        assert set(kinds) == set(KINDS), lang
        assert r["bad_sent"] == sum(kinds[k]["sent"] for k in BAD_KINDS) > 0
        assert r["bad_caught"] == sum(kinds[k]["as_expected"] for k in BAD_KINDS)
        assert (r["good_sent"], r["good_accepted"]) == (
            kinds["good"]["sent"],
            kinds["good"]["as_expected"],
        )
        assert r["good_sent"] > 0
        assert r["bad_caught_rate"] == round(r["bad_caught"] / r["bad_sent"], 4)
        assert r["good_accepted_rate"] == round(r["good_accepted"] / r["good_sent"], 4)
        assert r["model"] == result["text_model"]
        for kind in CAUGHT_BY_RULES:  # the rules catch these whatever the model says
            assert kinds[kind]["as_expected"] == kinds[kind]["sent"], (lang, kind)
        replies += r["bad_sent"] + r["good_sent"]
    # every reply a worker sent is an answer in one of the three projects
    assert replies == result["text_answers"] + result["text_rejections"]


async def test_text_phase_rules_only(tmp_path: Path) -> None:
    detector = _detector()
    checker = build_checker(None, None, detect=lambda t: _detect(detector, t))
    result = await _run(tmp_path, checker, detector)
    _check_consistent(result)
    assert result["text_model"] == RULES_ONLY
    assert result["checker_versions"] == ["rules-1"]
    for lang, r in result["text_per_language"].items():
        # without a model nothing tells an off-topic sentence from a paraphrase
        off = r["by_kind"]["off_topic"]
        assert off["as_expected"] == 0, lang
        assert r["good_accepted"] == r["good_sent"], lang


async def test_text_phase_with_a_tiny_bert(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from polycrowd.models.train import build_tiny_bert

    encoder = build_tiny_bert(tmp_path / "enc", kind="encoder", words=["la", "the", "un"])
    detector = _detector()
    checker = build_checker(
        "similarity", str(encoder), "cpu", detect=lambda t: _detect(detector, t)
    )
    await checker.start()
    result = await _run(tmp_path, checker, detector)
    _check_consistent(result)
    assert "-sim@" in result["text_model"]
    assert result["text_model"] in result["checker_versions"]


def _detect(detector: LanguageDetector, text: str) -> tuple[str | None, float]:
    d = detector.detect(text)
    return d.lang, d.confidence
