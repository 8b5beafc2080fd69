"""Matching: the next item for a worker, in one SQL statement.

``INSERT ... SELECT ... ORDER BY ... LIMIT 1 RETURNING`` picks and claims the item in one
statement inside the caller's write transaction. The item's ``filled`` counter (answered +
live assignments), kept by triggers, is what the WHERE clause compares against ``target``,
so no item ever gets more live assignments than its overlap still needs, however many
workers ask at once; the UNIQUE (item_id, worker_id) constraint and the NOT EXISTS make
sure no worker sees an item twice. Expired assignments give their slot back through the
same triggers.
"""

from __future__ import annotations

import time

from polycrowd.engine.store import Tx

# Eligible items: live project, open item with a free slot, in one of the worker's trusted
# languages, not seen by this worker, and every skill the project requires is met and not
# paused. Gold items (honeypots) are only eligible when :want_gold is set, and then come
# first, so a worker meets them at the project's gold ratio and never once the real items
# are gone; otherwise fewest answers, lowest confidence, then older projects first.
PICK_SQL = """
INSERT INTO assignments(item_id, worker_id, project_id, issued_at, expires_at, state,
                        chat_id, platform)
SELECT i.id, :worker, i.project_id, :now, :now + p.assignment_ttl, 'issued', :chat, :platform
FROM items AS i
JOIN projects AS p ON p.id = i.project_id
WHERE i.state = 'open'
  AND p.state = 'live'
  AND (:project IS NULL OR i.project_id = :project)
  AND i.filled < i.target
  AND (i.is_gold = 0 OR :want_gold = 1)
  AND i.lang IN (SELECT lang FROM user_languages WHERE user_id = :worker AND trusted = 1)
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
ORDER BY (i.is_gold != :want_gold), i.filled, i.confidence, p.created_at, i.id
LIMIT 1
RETURNING id, item_id, project_id, issued_at, expires_at
"""


async def pick(
    tx: Tx,
    worker_id: int,
    *,
    want_gold: bool = False,
    project_id: int | None = None,
    chat_id: str = "",
    platform: str = "",
    now: float | None = None,
) -> int | None:
    """Claim the next item for ``worker_id``; return the new assignment id or None."""
    row = await tx.one(
        PICK_SQL,
        {
            "worker": worker_id,
            "now": time.time() if now is None else now,
            "project": project_id,
            "want_gold": 1 if want_gold else 0,
            "chat": chat_id,
            "platform": platform,
        },
    )
    return None if row is None else int(row["id"])


async def expire(tx: Tx, now: float | None = None) -> int:
    """Expire issued assignments past their deadline; their slots return to the items."""
    return await tx.run(
        "UPDATE assignments SET state = 'expired' WHERE state = 'issued' AND expires_at < ?",
        (time.time() if now is None else now,),
    )
