"""The task-type registry: one entry per task type, each with its own rules."""

from __future__ import annotations

import pytest

from polycrowd.engine.tasktypes import (
    REGISTRY,
    Buttons,
    CheckerHead,
    estimate,
    same_answer,
    spec_of,
)
from polycrowd.engine.types import TaskType


def test_every_task_type_has_an_entry() -> None:
    assert set(REGISTRY) == set(TaskType)
    for t in TaskType:
        assert spec_of(t).has_buttons == t.has_buttons


def test_multi_payloads_are_a_sorted_label_set() -> None:
    assert spec_of(TaskType.MULTI).normalise(" b| a |b|") == "a|b"
    assert spec_of(TaskType.CHOICE).normalise("  yes ") == "yes"


def test_same_answer_ignores_case_and_spaces() -> None:
    assert same_answer(" Yes", "yes ")
    assert not same_answer("yes", "no")


def test_choice_estimate_follows_the_skilled_majority() -> None:
    label, confidence, agreement = estimate(
        TaskType.CHOICE, ("yes", "no"), [("yes", 0.9), ("yes", 0.9), ("no", 0.6)]
    )
    assert label == "yes" and confidence > 0.9 and agreement == pytest.approx(2 / 3)


def test_text_estimate_is_a_smoothed_share_of_identical_answers() -> None:
    label, confidence, agreement = estimate(
        TaskType.TEXT, (), [("A cat", 0.5), ("a cat", 0.5), ("a dog", 0.5)]
    )
    assert label == "A cat"
    assert confidence == pytest.approx(3 / 5) and agreement == pytest.approx(2 / 3)
    assert estimate(TaskType.TEXT, (), []) == ("", 0.0, 0.0)


def test_render_hints() -> None:
    assert spec_of(TaskType.CHOICE).render.buttons is Buttons.LABELS
    assert spec_of(TaskType.MULTI).render.buttons is Buttons.MULTI
    assert spec_of(TaskType.TEXT).render.text_prompt
    assert spec_of(TaskType.SPANS).render.numbered_tokens
    assert spec_of(TaskType.SPANS).render.expects_text
    assert not spec_of(TaskType.IMAGE).render.expects_text


def test_checker_heads() -> None:
    heads = {t: spec_of(t).checker_head for t in TaskType}
    assert heads[TaskType.CHOICE] is heads[TaskType.IMAGE] is CheckerHead.CLASSIFIER
    assert heads[TaskType.SPANS] is CheckerHead.TAGGER
    assert heads[TaskType.TEXT] is heads[TaskType.MULTI] is CheckerHead.SIMILARITY
