"""Matching: the next item for a worker, in one SQL statement.

``INSERT ... SELECT ... ORDER BY ... LIMIT 1 RETURNING`` picks and claims the item in one
statement inside the caller's write transaction (after one indexed lookup of the worker's
trusted languages). The item's ``filled`` counter (answered +
live assignments), kept by triggers, is what the WHERE clause compares against ``target``,
so no item ever gets more live assignments than its overlap still needs, however many
workers ask at once; the UNIQUE (item_id, worker_id) constraint and the NOT EXISTS make
sure no worker sees an item twice. Expired assignments give their slot back through the
same triggers.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Sequence

from polycrowd.engine.store import Tx

# One branch per worker language (and per gold/non-gold when a honeypot is wanted): each is
# an index walk over ix_items_pick in (filled, confidence, project_id, id) order, filtered
# by the live project, a free slot, "not seen by this worker" and the skill requirements,
# and stops at the first hit. The outer ORDER BY merges the few branch winners: honeypots
# first when wanted, then the model-in-the-loop priority (engine/loop.py: unsure items and
# model-vs-people disagreement first; 0 for all items without a model), fewest answers,
# lowest confidence, older projects first. ``:floor`` keeps newcomers off hard items (a
# range on the index) and ``:capped`` lists projects where the worker is over max_share.
BRANCH_SQL = """
SELECT * FROM (
  SELECT i.id AS item_id, i.project_id, i.is_gold, i.priority, i.filled, i.confidence,
         p.assignment_ttl
  FROM items AS i INDEXED BY ix_items_pick
  JOIN projects AS p ON p.id = i.project_id
  WHERE i.lang = :lang{k} AND i.is_gold = {gold} AND i.state = 'open'
    AND i.priority >= :floor
    AND p.state = 'live'
    AND i.project_id NOT IN (SELECT value FROM json_each(:capped))
    AND (:project IS NULL OR i.project_id = :project)
    AND i.filled < i.target
    AND NOT EXISTS (
        SELECT 1 FROM assignments AS a WHERE a.item_id = i.id AND a.worker_id = :worker)
    AND NOT EXISTS (
        SELECT 1 FROM project_skills AS ps
        LEFT JOIN user_skills AS us ON us.user_id = :worker AND us.skill = ps.skill
        WHERE ps.project_id = p.id
          AND (us.paused = 1 OR COALESCE(us.mean, 0.5) < ps.min_score))
    AND NOT EXISTS (
        SELECT 1 FROM user_skills AS own
        WHERE own.user_id = :worker AND own.skill = 'project:' || p.id AND own.paused = 1)
  ORDER BY i.priority, i.filled, i.confidence, i.project_id, i.id
  LIMIT 1
)"""

PICK_SQL = """
INSERT INTO assignments(item_id, worker_id, project_id, issued_at, expires_at, state,
                        chat_id, platform)
SELECT c.item_id, :worker, c.project_id, :now, :now + c.assignment_ttl, 'issued', :chat,
       :platform
FROM ({branches}) AS c
ORDER BY (c.is_gold != :want_gold), c.priority, c.filled, c.confidence, c.project_id,
         c.item_id
LIMIT 1
RETURNING id
"""


@functools.cache
def pick_sql(n_langs: int, want_gold: bool) -> str:
    """The pick statement for a worker with ``n_langs`` trusted languages."""
    golds = (1, 0) if want_gold else (0,)
    branches = " UNION ALL ".join(
        BRANCH_SQL.format(k=k, gold=g) for k in range(n_langs) for g in golds
    )
    return PICK_SQL.format(branches=branches)


async def pick(
    tx: Tx,
    worker_id: int,
    *,
    want_gold: bool = False,
    project_id: int | None = None,
    chat_id: str = "",
    platform: str = "",
    now: float | None = None,
    floor: float = -1e9,
    capped: Sequence[int] = (),
) -> int | None:
    """Claim the next item for ``worker_id``; return the new assignment id or None."""
    langs = [
        str(r["lang"])
        for r in await tx.all(
            "SELECT lang FROM user_languages WHERE user_id = ? AND trusted = 1 ORDER BY lang",
            (worker_id,),
        )
    ]
    if not langs:
        return None
    params: dict[str, object] = {
        "worker": worker_id,
        "now": time.time() if now is None else now,
        "project": project_id,
        "want_gold": 1 if want_gold else 0,
        "chat": chat_id,
        "platform": platform,
        "floor": floor,
        "capped": json.dumps(list(capped)),
    }
    params.update({f"lang{k}": lang for k, lang in enumerate(langs)})
    row = await tx.one(pick_sql(len(langs), want_gold), params)
    return None if row is None else int(row["id"])


async def expire(tx: Tx, now: float | None = None) -> int:
    """Expire issued assignments past their deadline; their slots return to the items."""
    return await tx.run(
        "UPDATE assignments SET state = 'expired' WHERE state = 'issued' AND expires_at < ?",
        (time.time() if now is None else now,),
    )
