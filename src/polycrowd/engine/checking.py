"""The checker contract the engine depends on.

The engine never imports a model library: it talks to any object that satisfies
:class:`Checker`. ``polycrowd.models`` provides the rules and transformer backends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable


class Decision(StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"
    REVIEW = "review"  # credited provisionally, queued for a moderator


@dataclass(frozen=True, slots=True)
class CheckRequest:
    """One answer to judge, with everything a checker may look at."""

    project_id: int
    task_type: str  # choice | multi | text | spans | image
    labels: tuple[str, ...]  # label set (empty for text tasks)
    item_text: str  # the item shown to the worker (source text)
    item_lang: str  # ISO 639-1 code of the item
    answer: str  # choice: the label; multi: labels joined by "|"; text: the text;
    # spans: "start-end:LABEL" tokens joined by ";"
    seconds: float  # time from issue to answer
    target_lang: str | None = None  # language the answer must be in (text tasks)
    recent_answers: tuple[str, ...] = ()  # the worker's previous answers, newest first
    config: Mapping[str, Any] = field(default_factory=dict)  # project's checker config


@dataclass(frozen=True, slots=True)
class Verdict:
    decision: Decision
    score: float  # 0..1, confidence that the answer is good
    reason: str  # gettext message id the worker can read ("" when accepted)
    model_version: str  # "rules-1", "minilm-sim@abc123", ...

    @property
    def accepted(self) -> bool:
        return self.decision is not Decision.REJECT


@runtime_checkable
class Checker(Protocol):
    async def check(self, batch: Sequence[CheckRequest]) -> list[Verdict]:
        """Return one verdict per request, in order. Must not raise."""
        ...


@runtime_checkable
class Embedder(Protocol):
    async def embed(self, texts: Sequence[str]) -> list[list[float]] | None:
        """Unit-length sentence embeddings, one per text, comparable across languages;
        ``None`` when no model is available. Must not raise."""
        ...


async def embeddings(checker: object, texts: Sequence[str]) -> list[list[float]] | None:
    """``checker``'s embeddings of ``texts`` when it is an :class:`Embedder` that can
    embed them, else ``None`` (the caller falls back to a lexical similarity)."""
    if not texts or not isinstance(checker, Embedder):
        return None
    try:
        got = await checker.embed(texts)
    except Exception:  # an embedder must not raise; a broken one must not break results
        return None
    return got if got is not None and len(got) == len(texts) else None
