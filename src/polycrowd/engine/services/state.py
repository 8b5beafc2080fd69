"""Per-user state that survives a restart: a guided conversation, the current project.

Both used to live in the dispatcher's memory and vanished when the bot restarted (or was
killed). They are stored in ``user_state`` as JSON under a key, one row per user and key;
a conversation untouched for :data:`CONVERSATION_TTL` seconds is stale and reads as none.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from polycrowd.engine.services.context import EngineContext

CONVERSATION = "conversation"
CURRENT_PROJECT = "current_project"
CONVERSATION_TTL = 24 * 3600.0


@dataclass(slots=True)
class Conversation:
    """A short guided dialogue (e.g. /newproject) waiting for the user's next text.

    Mutable while one event handles it; saved with :meth:`StateService.save_conversation`.
    ``data`` holds JSON values only (strings, numbers, lists)."""

    name: str
    step: int = 0
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {"name": self.name, "step": self.step, "data": self.data}, ensure_ascii=False
        )

    @classmethod
    def from_json(cls, text: str) -> Conversation | None:
        """None for a value this version cannot read (it is then dropped)."""
        try:
            raw = json.loads(text)
        except ValueError:
            return None
        if not isinstance(raw, dict):
            return None
        name, step, data = raw.get("name"), raw.get("step", 0), raw.get("data", {})
        if not isinstance(name, str) or type(step) is not int or not isinstance(data, dict):
            return None
        return cls(name, step, data)


class StateService:
    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx

    async def conversation(self, user_id: int) -> Conversation | None:
        """The user's open conversation; None when there is none or it went stale."""
        async with self.ctx.db.read() as tx:
            row = await tx.state.get(user_id, CONVERSATION)
        if row is None:
            return None
        value, updated_at = row
        conv = Conversation.from_json(value)
        if conv is None or self.ctx.clock() - updated_at > CONVERSATION_TTL:
            async with self.ctx.db.transaction() as tx:
                await tx.state.delete(user_id, CONVERSATION)
            return None
        return conv

    async def save_conversation(self, user_id: int, conv: Conversation) -> None:
        async with self.ctx.db.transaction() as tx:
            await tx.state.put(user_id, CONVERSATION, conv.to_json(), self.ctx.clock())

    async def end_conversation(self, user_id: int, *, current_project: int | None = None) -> bool:
        """Close the conversation (and, in the same transaction, make ``current_project``
        the one the user's commands act on). True when a conversation was open."""
        if current_project is None:
            async with self.ctx.db.read() as tx:  # most commands have none to end: no write
                if await tx.state.get(user_id, CONVERSATION) is None:
                    return False
        async with self.ctx.db.transaction() as tx:
            had = await tx.state.delete(user_id, CONVERSATION)
            if current_project is not None:
                await tx.state.put(
                    user_id, CURRENT_PROJECT, json.dumps(current_project), self.ctx.clock()
                )
        return had

    async def current_project(self, user_id: int) -> int | None:
        async with self.ctx.db.read() as tx:
            row = await tx.state.get(user_id, CURRENT_PROJECT)
        if row is None:
            return None
        try:
            value = json.loads(row[0])
        except ValueError:
            return None
        return value if type(value) is int else None

    async def set_current_project(self, user_id: int, project_id: int) -> None:
        async with self.ctx.db.transaction() as tx:
            await tx.state.put(user_id, CURRENT_PROJECT, json.dumps(project_id), self.ctx.clock())

    async def expire_conversations(self) -> int:
        """Delete conversations untouched for :data:`CONVERSATION_TTL`; how many."""
        before = self.ctx.clock() - CONVERSATION_TTL
        async with self.ctx.db.transaction() as tx:
            return await tx.state.expire(CONVERSATION, before)
