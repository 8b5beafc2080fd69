"""Events raised inside a transaction, published only after it commits.

A state change collects its events (a flag for the moderators, ...) in the transaction's
:class:`Outbox`; the store publishes them after COMMIT and drops them on ROLLBACK, so a
moderator never gets a card for a flag that was never stored.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from polycrowd.engine.domain import FlagKind
from polycrowd.engine.types import RowLike

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Flag:
    id: int
    kind: str
    user_id: int | None
    answer_id: int | None
    project_id: int | None
    evidence: Mapping[str, Any]
    created_at: float

    @classmethod
    def from_row(cls, r: RowLike) -> Flag:
        return cls(
            r["id"],
            _kind(r["kind"]),
            r["user_id"],
            r["answer_id"],
            r["project_id"],
            json.loads(r["evidence"]),
            r["created_at"],
        )


def _kind(value: str) -> str:
    try:
        return FlagKind(value)
    except ValueError:  # a kind written by a newer version: keep the string
        return value


@dataclass
class EngineHooks:
    """Callbacks the app wires in (e.g. post a card to the moderators' channel)."""

    on_flag: list[Callable[[Flag], Any]] = field(default_factory=list)


class Outbox:
    """Callbacks collected during one transaction; run after it commits, never otherwise."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending: list[Callable[[], Any]] = []

    def add(self, callback: Callable[[], Any]) -> None:
        self._pending.append(callback)

    def drop(self) -> None:
        self._pending.clear()

    def publish(self) -> None:
        pending, self._pending = self._pending, []
        for callback in pending:
            try:
                callback()
            except Exception:  # the change is committed; a failed notification can't undo it
                log.exception("event handler failed after commit")


def flag_raised(hooks: EngineHooks, flag: Flag) -> Callable[[], None]:
    """The callback that tells every ``on_flag`` hook about ``flag``."""

    def publish() -> None:
        for hook in list(hooks.on_flag):
            hook(flag)

    return publish
