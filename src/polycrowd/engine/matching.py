"""Matching: the next item for a worker, in one store statement.

The SQLite store picks and claims the item in one ``INSERT ... SELECT ... ORDER BY ...
LIMIT 1 RETURNING`` inside the caller's write transaction (after one indexed lookup of the
worker's trusted languages); see :mod:`polycrowd.engine.store.sqlite.repos`. The item's
``filled`` counter (answered + live assignments), kept by triggers, is what the pick
compares against ``target``, so no item ever gets more live assignments than its overlap
still needs, however many workers ask at once; the UNIQUE (item_id, worker_id) constraint
and the "not seen" condition make sure no worker sees an item twice. Expired assignments
give their slot back through the same triggers.
"""

from __future__ import annotations

from collections.abc import Sequence

from polycrowd.engine.store.base import NO_FLOOR, Transaction


async def pick(
    tx: Transaction,
    worker_id: int,
    *,
    now: float,
    want_gold: bool = False,
    project_id: int | None = None,
    chat_id: str = "",
    platform: str = "",
    floor: float = NO_FLOOR,
    capped: Sequence[int] = (),
    langs: Sequence[str] | None = None,
) -> int | None:
    """Claim the next item for ``worker_id``; return the new assignment id or None.

    ``floor`` and ``capped`` come from the model in the loop
    (:func:`polycrowd.engine.services.prelabels.pick_limits`): newcomers skip hard items,
    a worker over a project's ``max_share`` skips that project. ``langs``: the worker's
    trusted languages, when the caller has read them already."""
    if langs is None:
        langs = await tx.languages.trusted(worker_id)
    if not langs:
        return None
    return await tx.assignments.pick(
        worker_id,
        langs,
        want_gold=want_gold,
        project_id=project_id,
        chat_id=chat_id,
        platform=platform,
        now=now,
        floor=floor,
        capped=capped,
    )


async def expire(tx: Transaction, now: float) -> int:
    """Expire issued assignments past their deadline; their slots return to the items."""
    return await tx.assignments.expire_due(now)
