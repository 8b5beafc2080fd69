"""Delivering the digests the scheduler computes: to each worker's chats in their language,
and to every platform's admin chat."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from polycrowd.engine.services.digests import ModeratorDigest, WorkerDigest
from polycrowd.handlers.feedback import moderator_digest_reply, worker_digest_reply

if TYPE_CHECKING:
    from polycrowd.bot.app import App

log = logging.getLogger(__name__)


def wire_digests(app: App) -> None:
    async def to_workers(digests: list[WorkerDigest]) -> None:
        by_name = {a.name: a for a in app.adapters}
        for d in digests:
            user = await app.engine.get_user(d.user_id)
            lang = app.translator.normalize(user.locale)
            for platform, chat in await app.engine.chats_of(d.user_id):
                adapter = by_name.get(platform)
                if adapter is None:
                    continue
                try:
                    await adapter.send(chat, worker_digest_reply(d), lang)
                except Exception:
                    log.exception("digest for user %s on %s failed", d.user_id, platform)

    async def to_moderators(digest: ModeratorDigest) -> None:
        reply = moderator_digest_reply(digest)
        for adapter in app.adapters:
            if adapter.admin_chat_id:
                await app._send_safe(adapter, adapter.admin_chat_id, reply)

    app.scheduler.digests.on_workers = to_workers
    app.scheduler.digests.on_moderators = to_moderators
