"""What every service shares: the store, the injected collaborators, and small loaders."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from polycrowd.engine.checking import Checker
from polycrowd.engine.errors import NotFound
from polycrowd.engine.events import EngineHooks, Flag, flag_raised
from polycrowd.engine.language import Detection
from polycrowd.engine.ledger_key import LedgerKeyring
from polycrowd.engine.store.base import Session, Store, Transaction
from polycrowd.engine.types import Project, Task, User
from polycrowd.i18n import N_


@dataclass
class EngineContext:
    """Mutable on purpose: the app, demo and tests swap the clock or rng after wiring."""

    db: Store
    checker: Checker
    detect_language: Callable[[str], Detection]
    rng: random.Random
    clock: Callable[[], float]
    hooks: EngineHooks
    # The ledger's key and checkpoint file, outside the database. The Engine passes the one
    # beside the database; a bare context (tests) gets a random in-memory key.
    keyring: LedgerKeyring = field(default_factory=LedgerKeyring)


async def load_user(tx: Session, user_id: int) -> User:
    user = await tx.users.get(user_id)
    if user is None:
        raise NotFound(N_("Nothing found with that id."))
    return user


async def load_project(tx: Session, project_id: int) -> Project:
    project = await tx.projects.get(project_id)
    if project is None:
        raise NotFound(N_("There is no project %(id)s."), id=project_id)
    return project


async def load_task(tx: Session, assignment_id: int) -> Task | None:
    assignment = await tx.assignments.get(assignment_id)
    if assignment is None:
        return None
    item = await tx.items.get(assignment.item_id)
    assert item is not None
    return Task(assignment, item, await load_project(tx, assignment.project_id))


async def raise_flag(
    ctx: EngineContext,
    tx: Transaction,
    kind: str,
    user_id: int | None,
    answer_id: int | None,
    project_id: int | None,
    evidence: Mapping[str, Any],
) -> None:
    """Store a flag for the moderators; the hooks hear of it once the transaction commits."""
    now = ctx.clock()
    fid = await tx.flags.insert(kind, user_id, answer_id, project_id, evidence, now)
    if fid is not None:
        flag = Flag(fid, kind, user_id, answer_id, project_id, evidence, now)
        tx.outbox.add(flag_raised(ctx.hooks, flag))
