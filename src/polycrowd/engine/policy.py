"""A project's quality and checker policy, parsed once from its spec into typed values.

The spec keeps the free-form ``checker`` mapping (model backends read their own keys from
it); the keys the engine itself acts on are read here, once, with their defaults, so the
services never look up ``project.checker.get("...")`` with a scattered default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_DRIFT_MIN_SAMPLES = 20
DEFAULT_DRIFT_THRESHOLD = 0.7


@dataclass(frozen=True, slots=True)
class CheckerPolicy:
    """How far the checker model is trusted, and when it loses its right to reject."""

    review_mode: bool = False  # a model may not reject on its own; a moderator decides
    drift_min_samples: int = DEFAULT_DRIFT_MIN_SAMPLES  # gold answers before judging drift
    drift_threshold: float = DEFAULT_DRIFT_THRESHOLD  # agreement on gold below this: review
    model: str = ""  # the checker model the project asks for ("" = the app's default)

    @classmethod
    def parse(cls, config: Mapping[str, Any]) -> CheckerPolicy:
        return cls(
            review_mode=config.get("mode") == "review",
            drift_min_samples=int(config.get("drift_min_samples", DEFAULT_DRIFT_MIN_SAMPLES)),
            drift_threshold=float(config.get("drift_threshold", DEFAULT_DRIFT_THRESHOLD)),
            model=str(config.get("model") or ""),
        )


@dataclass(frozen=True, slots=True)
class QualityPolicy:
    """When a worker is paused on a project, and which skill the project measures."""

    skill: str  # the skill key answers on this project train
    pause_below: float  # pause a worker whose skill mean falls below this (0 = never)

    @classmethod
    def parse(cls, project_id: int, min_skill: float, config: Mapping[str, Any]) -> QualityPolicy:
        return cls(
            skill=str(config.get("skill") or f"project:{project_id}"),
            pause_below=min_skill or float(config.get("pause_below", 0.0)),
        )


@dataclass(frozen=True, slots=True)
class Policy:
    checker: CheckerPolicy
    quality: QualityPolicy

    @classmethod
    def parse(cls, project_id: int, min_skill: float, config: Mapping[str, Any]) -> Policy:
        return cls(CheckerPolicy.parse(config), QualityPolicy.parse(project_id, min_skill, config))


def review_mode_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The checker config with the model demoted to review mode."""
    return {**config, "mode": "review"}
