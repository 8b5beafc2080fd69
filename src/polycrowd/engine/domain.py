"""The engine's vocabulary: roles, task types, states and flag kinds as StrEnums.

Each enum's values are the strings stored in the database, so a member compares equal to
its stored string (``UserStatus.ACTIVE == "active"``) and formats as it.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    WORKER = "worker"
    REQUESTER = "requester"
    MODERATOR = "moderator"
    ADMIN = "admin"

    def at_least(self, other: Role) -> bool:
        order = [Role.WORKER, Role.REQUESTER, Role.MODERATOR, Role.ADMIN]
        return order.index(self) >= order.index(other)


class TaskType(StrEnum):
    CHOICE = "choice"
    MULTI = "multi"
    TEXT = "text"
    SPANS = "spans"
    IMAGE = "image"

    @property
    def has_buttons(self) -> bool:
        return self in (TaskType.CHOICE, TaskType.MULTI, TaskType.IMAGE)


class UserStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    BLOCKED = "blocked"


class ProjectState(StrEnum):
    DRAFT = "draft"
    LIVE = "live"
    PAUSED = "paused"
    DONE = "done"


class ItemState(StrEnum):
    OPEN = "open"
    DONE = "done"


class AssignmentState(StrEnum):
    ISSUED = "issued"
    ANSWERED = "answered"
    EXPIRED = "expired"
    SKIPPED = "skipped"
    REJECTED = "rejected"


class AnswerStatus(StrEnum):
    ACCEPTED = "accepted"
    REVIEW = "review"
    REJECTED = "rejected"
    OVERRULED = "overruled"


class SubmitStatus(StrEnum):
    """What :meth:`Engine.submit` did with an answer."""

    ACCEPTED = "accepted"
    REVIEW = "review"
    REJECTED = "rejected"
    RETRY = "retry"
    DUPLICATE = "duplicate"


class AppealState(StrEnum):
    NONE = "none"
    OPEN = "open"
    UPHELD = "upheld"
    DENIED = "denied"


class FlagKind(StrEnum):
    ANSWER_REVIEW = "answer_review"
    SKILL_PAUSED = "skill_paused"
    CHECKER_DRIFT = "checker_drift"
    APPEAL = "appeal"
    FRAUD_SPEED = "fraud_speed"
    FRAUD_SAME_LABEL = "fraud_same_label"
    FRAUD_LOW_AGREEMENT = "fraud_low_agreement"
    FRAUD_IDENTICAL = "fraud_identical_accounts"


class FlagState(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class PayoutState(StrEnum):
    REQUESTED = "requested"
    APPROVED = "approved"
    DENIED = "denied"


class LedgerKind(StrEnum):
    CREDIT = "credit"
    BONUS = "bonus"
    PENALTY = "penalty"
    PAYOUT = "payout"
    CORRECTION = "correction"
