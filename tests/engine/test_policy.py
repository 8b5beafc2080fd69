"""The checker and quality policy is parsed once from the spec, with its defaults."""

from __future__ import annotations

from polycrowd.engine.core import Engine
from polycrowd.engine.policy import CheckerPolicy, Policy, QualityPolicy

from ..conftest import choice_spec


def test_defaults() -> None:
    policy = Policy.parse(7, 0.0, {})
    assert policy.checker == CheckerPolicy()
    assert policy.quality == QualityPolicy(skill="project:7", pause_below=0.0)


def test_values_from_the_spec() -> None:
    config = {
        "mode": "review",
        "drift_min_samples": "5",
        "drift_threshold": 0.5,
        "skill": "sentiment",
        "pause_below": 0.4,
        "model": "bert-tiny",
    }
    policy = Policy.parse(7, 0.0, config)
    assert policy.checker == CheckerPolicy(True, 5, 0.5, "bert-tiny")
    assert policy.quality == QualityPolicy("sentiment", 0.4)
    assert Policy.parse(7, 0.6, config).quality.pause_below == 0.6  # min_skill wins


async def test_a_project_carries_its_parsed_policy(engine: Engine) -> None:
    spec = choice_spec(checker={"mode": "review", "skill": "cats"})
    project = await engine.create_project(None, spec)
    assert project.policy.checker.review_mode
    assert project.skill == "cats"
