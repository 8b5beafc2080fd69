"""Shared fixtures: a real SQLite file per test, the real engine, rules-only checker."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from polycrowd.engine.core import Engine
from polycrowd.engine.io import ProjectSpec
from polycrowd.engine.language import LanguageDetector
from polycrowd.engine.store import Database
from polycrowd.engine.types import TaskType
from polycrowd.models.rules import RulesChecker

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


class FakeClock:
    """Time that moves only when a test says so."""

    def __init__(self, start: float | None = None) -> None:
        self.t = time.time() if start is None else start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "test.db")
    yield database
    await database.close()


@pytest.fixture
def detector() -> LanguageDetector:
    return LanguageDetector("script")


@pytest.fixture
async def engine(db: Database, clock: FakeClock, detector: LanguageDetector) -> Engine:
    return Engine(db, RulesChecker(), detector.detect, clock=clock)


def choice_spec(**kw: object) -> ProjectSpec:
    base: dict[str, object] = {
        "name": "cats",
        "task_type": TaskType.CHOICE,
        "instructions": {"en": "Is it a cat?"},
        "labels": ("yes", "no"),
        "languages": ("en",),
        "overlap": 3,
        "overlap_max": 3,
        "reward": 5,
    }
    base.update(kw)
    return ProjectSpec(**base)  # type: ignore[arg-type]


def items_csv(n: int, langs: tuple[str, ...] = ("en",), gold_every: int = 0) -> bytes:
    lines = ["id,text,lang,gold"]
    for i in range(n):
        gold = ("yes" if i % 2 else "no") if gold_every and i % gold_every == 0 else ""
        lines.append(f"i{i},picture {i},{langs[i % len(langs)]},{gold}")
    return ("\n".join(lines) + "\n").encode()
