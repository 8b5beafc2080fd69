"""Feedback: questions about a task and their answers, the FAQ pinned to a project's
instructions, and the one-time login links and sessions of the web dashboard.

Tokens and sessions are stored as their sha256 only; a login link is single use, expires,
and opens a session bound to the role the user had when it was made.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from polycrowd.engine.errors import Conflict, NotFound
from polycrowd.engine.services.context import EngineContext, load_project
from polycrowd.engine.store.base import QuestionRow
from polycrowd.engine.types import Role
from polycrowd.i18n import N_

LOGIN_TTL = 600.0
SESSION_TTL = 12 * 3600.0
QUESTION_CHARS = 1000
ANSWER_CHARS = 2000

Question = QuestionRow


def digest_of(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Login:
    """Who a dashboard token or session belongs to."""

    user_id: int
    role: Role


class FeedbackService:
    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx

    # Questions and FAQ ---------------------------------------------------------------------

    async def questions_since(self, worker_id: int, seconds: float) -> int:
        async with self.ctx.db.read() as tx:
            return await tx.questions.count_since(worker_id, self.ctx.clock() - seconds)

    async def ask(
        self, worker_id: int, project_id: int, item_id: int | None, lang: str, text: str
    ) -> int:
        async with self.ctx.db.transaction() as tx:
            return await tx.questions.create(
                worker_id, project_id, item_id, lang, text[:QUESTION_CHARS], self.ctx.clock()
            )

    async def question(self, question_id: int) -> Question:
        async with self.ctx.db.read() as tx:
            q = await tx.questions.get(question_id)
        if q is None:
            raise NotFound(N_("Nothing found with that id."))
        return q

    async def answer(self, question_id: int, by: int, text: str) -> Question:
        async with self.ctx.db.transaction() as tx:
            found = await tx.questions.answer(
                question_id, by, text[:ANSWER_CHARS], self.ctx.clock()
            )
        if not found:
            raise NotFound(N_("Nothing found with that id."))
        return await self.question(question_id)

    async def pin_faq(self, question_id: int) -> None:
        """Append an answered question to its project's instructions in its language."""
        async with self.ctx.db.transaction() as tx:
            q = await tx.questions.get(question_id)
            if q is None:
                raise NotFound(N_("Nothing found with that id."))
            if not q.answer:
                raise Conflict(N_("Answer the question first: /answer %(id)s TEXT"), id=q.id)
            if await tx.questions.pinned(q.id):
                return
            project = await load_project(tx, q.project_id)
            instructions = dict(project.instructions)
            base = instructions.get(q.lang) or instructions.get("en") or ""
            if not base and instructions:
                base = next(iter(instructions.values()))
            instructions[q.lang] = f"{base}\n\n❓ {q.text}\n💬 {q.answer}".strip()
            await tx.projects.set_instructions(q.project_id, instructions)
            await tx.questions.pin(q.project_id, q.id, q.lang, q.text, q.answer, self.ctx.clock())

    # Dashboard logins ----------------------------------------------------------------------

    async def create_login(self, user_id: int, role: Role, ttl: float = LOGIN_TTL) -> str:
        token = secrets.token_urlsafe(32)
        now = self.ctx.clock()
        async with self.ctx.db.transaction() as tx:
            await tx.dashboard.create_login(digest_of(token), user_id, role.value, now, now + ttl)
        return token

    async def redeem_login(self, token: str, ttl: float = SESSION_TTL) -> tuple[str, Login] | None:
        """Spend a login token (once, before it expires): a new session token and its login."""
        now = self.ctx.clock()
        async with self.ctx.db.transaction() as tx:
            row = await tx.dashboard.spend_login(digest_of(token), now)
            if row is None or row.status == "blocked" or row.current_role != row.role:
                return None  # the role the link was made for is no longer the user's
            session = secrets.token_urlsafe(32)
            await tx.dashboard.create_session(
                digest_of(session), row.user_id, row.role, now, now + ttl
            )
        return session, Login(row.user_id, Role(row.role))

    async def session(self, session: str) -> Login | None:
        async with self.ctx.db.read() as tx:
            found = await tx.dashboard.session(digest_of(session), self.ctx.clock())
        return None if found is None else Login(found[0], Role(found[1]))

    async def end_session(self, session: str) -> None:
        async with self.ctx.db.transaction() as tx:
            await tx.dashboard.end_session(digest_of(session))
