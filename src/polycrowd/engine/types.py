"""Core value objects passed between the engine and its callers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from polycrowd.engine.domain import (
    AssignmentState,
    ItemState,
    ProjectState,
    Role,
    TaskType,
    UserStatus,
)
from polycrowd.engine.policy import Policy

__all__ = [
    "Assignment",
    "AssignmentState",
    "Item",
    "ItemState",
    "LedgerEntry",
    "Project",
    "ProjectState",
    "Role",
    "RowLike",
    "Task",
    "TaskType",
    "User",
    "UserStatus",
]


class RowLike(Protocol):
    """A database row: sqlite3.Row, aiosqlite.Row or a dict."""

    def __getitem__(self, key: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class User:
    id: int
    display_name: str
    pseudonym: str
    role: Role
    status: UserStatus
    status_reason: str
    locale: str
    balance: int
    answers: int
    erased: bool

    @classmethod
    def from_row(cls, row: RowLike) -> User:
        return cls(
            id=row["id"],
            display_name=row["display_name"],
            pseudonym=row["pseudonym"],
            role=Role(row["role"]),
            status=UserStatus(row["status"]),
            status_reason=row["status_reason"],
            locale=row["locale"],
            balance=row["balance"],
            answers=row["answers"],
            erased=bool(row["erased"]),
        )


@dataclass(frozen=True, slots=True)
class Project:
    id: int
    owner_id: int | None
    name: str
    task_type: TaskType
    instructions: Mapping[str, str]
    labels: tuple[str, ...]
    languages: tuple[str, ...]
    overlap: int
    overlap_max: int
    confidence_target: float
    reward: int
    gold_ratio: float
    qualification: int
    min_skill: float
    assignment_ttl: float
    checker: Mapping[str, Any]
    target_lang: str | None
    deadline: float | None
    state: ProjectState
    created_at: float
    label_names: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # lang: label: name
    verify: Mapping[str, Any] = field(default_factory=dict)  # create-then-verify (services/verify)
    # The checker and quality policy, parsed once from ``checker`` and ``min_skill``.
    policy: Policy = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "policy", Policy.parse(self.id, self.min_skill, self.checker))

    @property
    def skill(self) -> str:
        """The skill a project measures: its own, unless its spec names a shared one."""
        return self.policy.quality.skill

    def instructions_for(self, lang: str) -> str:
        if lang in self.instructions:
            return self.instructions[lang]
        if "en" in self.instructions:
            return self.instructions["en"]
        return next(iter(self.instructions.values()), "")

    def instructions_in(self, *langs: str) -> tuple[str, str]:
        """(text, language): in the first of ``langs`` that has a translation, else in the
        source language (the first one the spec gives)."""
        for lang in langs:
            if lang in self.instructions:
                return self.instructions[lang], lang
        for lang, text in self.instructions.items():
            return text, lang
        return "", ""

    def label_name(self, label: str, *langs: str) -> str:
        """How ``label`` is shown in the first of ``langs`` that names it (else as it is)."""
        for lang in langs:
            name = self.label_names.get(lang, {}).get(label)
            if name:
                return name
        return label

    @classmethod
    def from_row(cls, row: RowLike, languages: tuple[str, ...]) -> Project:
        spec = json.loads(row["spec"] or "{}")
        return cls(
            id=row["id"],
            owner_id=row["owner_id"],
            name=row["name"],
            task_type=TaskType(row["task_type"]),
            instructions=json.loads(row["instructions"]),
            labels=tuple(json.loads(row["labels"])),
            languages=languages,
            overlap=row["overlap"],
            overlap_max=row["overlap_max"],
            confidence_target=row["confidence_target"],
            reward=row["reward"],
            gold_ratio=row["gold_ratio"],
            qualification=row["qualification"],
            min_skill=row["min_skill"],
            assignment_ttl=row["assignment_ttl"],
            checker=json.loads(row["checker"]),
            target_lang=row["target_lang"],
            deadline=row["deadline"],
            state=ProjectState(row["state"]),
            created_at=row["created_at"],
            label_names=spec.get("label_names") or {},
            verify=spec.get("verify") or {},
        )


@dataclass(frozen=True, slots=True)
class Item:
    id: int
    project_id: int
    external_id: str
    content: str
    lang: str
    gold: str | None
    state: ItemState
    target: int
    answered: int
    live: int
    confidence: float

    @classmethod
    def from_row(cls, row: RowLike) -> Item:
        return cls(
            id=row["id"],
            project_id=row["project_id"],
            external_id=row["external_id"],
            content=row["content"],
            lang=row["lang"],
            gold=row["gold"],
            state=ItemState(row["state"]),
            target=row["target"],
            answered=row["answered"],
            live=row["live"],
            confidence=row["confidence"],
        )


@dataclass(frozen=True, slots=True)
class Assignment:
    id: int
    item_id: int
    worker_id: int
    project_id: int
    issued_at: float
    expires_at: float
    state: AssignmentState
    attempts: int

    @classmethod
    def from_row(cls, row: RowLike) -> Assignment:
        return cls(
            id=row["id"],
            item_id=row["item_id"],
            worker_id=row["worker_id"],
            project_id=row["project_id"],
            issued_at=row["issued_at"],
            expires_at=row["expires_at"],
            state=AssignmentState(row["state"]),
            attempts=row["attempts"],
        )


@dataclass(frozen=True, slots=True)
class Task:
    """What a worker is shown: an assignment with its item and project."""

    assignment: Assignment
    item: Item
    project: Project


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    seq: int
    ts: float
    user_id: int
    kind: str
    amount: int
    ref: str
    memo: str
    prev_hash: str
    hash: str

    @classmethod
    def from_row(cls, row: RowLike) -> LedgerEntry:
        return cls(**{k: row[k] for k in cls.__slots__})  # type: ignore[attr-defined]
