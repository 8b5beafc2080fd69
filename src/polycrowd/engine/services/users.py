"""Users: platform identities, languages, roles, a worker's own data, linking accounts."""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from polycrowd.engine import ledger, quality
from polycrowd.engine.errors import Conflict, Forbidden, InvalidInput, NotFound
from polycrowd.engine.language import (
    Detection,
    LanguageEvidence,
    accumulate,
    count_words,
    trusted_languages,
)
from polycrowd.engine.services import verify
from polycrowd.engine.services.context import EngineContext, load_user
from polycrowd.engine.store.base import Transaction
from polycrowd.engine.types import Role, User
from polycrowd.i18n import N_

LINK_TTL = 600.0


@dataclass(frozen=True, slots=True)
class WorkerStats:
    answers: int
    accepted: int
    rejected: int
    gold_answered: int
    gold_correct: int
    accuracy: float  # posterior mean over all skills
    accuracy_low: float
    earnings: int
    balance: int
    languages: tuple[str, ...]
    pending: int = 0  # of the balance: credits still waiting for other workers' check


class UsersService:
    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx

    async def user_for(
        self,
        platform: str,
        external_id: str,
        display_name: str = "",
        locale: str = "en",
        chat_id: str = "",
    ) -> tuple[User, bool]:
        """The user behind a platform identity, created on first contact. (user, created)."""
        db = self.ctx.db
        async with db.read() as tx:
            known = await tx.users.by_identity(platform, external_id)
        if known is not None and (not chat_id or known[1] == chat_id):
            return known[0], False
        now = self.ctx.clock()
        async with db.transaction() as tx:
            uid = await tx.users.identity_owner(platform, external_id)
            created = uid is None
            if uid is None:
                uid = await tx.users.create(
                    platform, external_id, display_name[:100], _pseudonym(), locale, chat_id, now
                )
            elif chat_id:
                await tx.users.set_chat(platform, external_id, chat_id)
            user = await load_user(tx, uid)
        return user, created

    async def get_user(self, user_id: int) -> User:
        async with self.ctx.db.read() as tx:
            return await load_user(tx, user_id)

    async def find_user(self, ref: str) -> User | None:
        """By id, pseudonym, or platform:external_id."""
        async with self.ctx.db.read() as tx:
            user = None
            if ":" in ref:
                platform, _, ext = ref.partition(":")
                user = await tx.users.by_platform(platform, ext)
            if user is None and ref.isdigit():
                user = await tx.users.get(int(ref))
            if user is None:
                user = await tx.users.by_pseudonym(ref)
        return user

    async def chats_of(self, user_id: int) -> list[tuple[str, str]]:
        """(platform, chat id) pairs where the user can be reached."""
        async with self.ctx.db.read() as tx:
            return await tx.users.chats(user_id)

    async def require(self, actor_id: int, role: Role) -> User:
        actor = await self.get_user(actor_id)
        if not actor.role.at_least(role):
            raise Forbidden(N_("You are not allowed to do that."))
        return actor

    # Languages -----------------------------------------------------------------------------

    async def set_languages(self, user_id: int, langs: Sequence[str]) -> tuple[str, ...]:
        """Replace the declared languages (detected evidence is kept)."""
        clean = tuple(dict.fromkeys(x.lower() for x in langs if x))
        if not clean:
            raise InvalidInput(N_("Choose at least one language."))
        async with self.ctx.db.transaction() as tx:
            await tx.languages.set_declared(user_id, clean)
            await tx.users.set_locale(user_id, clean[0])
            await self.refresh_trust(tx, user_id)
            return await tx.languages.trusted(user_id)

    async def toggle_language(self, user_id: int, lang: str) -> tuple[str, ...]:
        async with self.ctx.db.read() as tx:
            declared = await tx.languages.declared(user_id)
        if lang in declared:
            if len(declared) == 1:
                raise InvalidInput(N_("Choose at least one language."))
            declared.remove(lang)
            new = declared
        else:
            new = [*declared, lang]
        locale = (await self.get_user(user_id)).locale
        ordered = sorted(new, key=lambda x: (x != locale, x))
        return await self.set_languages(user_id, ordered)

    async def languages_of(self, user_id: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(declared, trusted) languages."""
        async with self.ctx.db.read() as tx:
            rows = await tx.languages.rows(user_id)
        declared = tuple(sorted(r.lang for r in rows if r.declared))
        trusted = tuple(sorted(r.lang for r in rows if r.trusted))
        return declared, trusted

    async def refresh_trust(self, tx: Transaction, user_id: int) -> None:
        rows = await tx.languages.rows(user_id)
        declared = [r.lang for r in rows if r.declared]
        evidence = {r.lang: LanguageEvidence(r.lang, r.weight, r.replies) for r in rows}
        trusted = trusted_languages(declared, evidence)
        for r in rows:
            await tx.languages.set_trusted(user_id, r.lang, r.lang in trusted)

    async def add_language_evidence(
        self, tx: Transaction, user_id: int, detection: Detection, text: str
    ) -> None:
        rows = await tx.languages.rows(user_id)
        evidence = {r.lang: LanguageEvidence(r.lang, r.weight, r.replies) for r in rows}
        updated = accumulate(evidence, detection, count_words(text))
        for lang, ev in updated.items():
            await tx.languages.set_evidence(user_id, lang, ev.weight, ev.replies)
        await self.refresh_trust(tx, user_id)

    # Roles ---------------------------------------------------------------------------------

    async def set_role(self, actor_id: int, user_id: int, role: Role) -> User:
        actor = await self.get_user(actor_id)
        if not actor.role.at_least(Role.MODERATOR) or (
            role is Role.ADMIN and actor.role is not Role.ADMIN
        ):
            raise Forbidden(N_("You are not allowed to do that."))
        async with self.ctx.db.transaction() as tx:
            await tx.users.set_role(user_id, role.value)
            return await load_user(tx, user_id)

    async def bootstrap_role(self, user_id: int, role: Role) -> None:
        """Set a role without an actor: for the CLI and the configured first admin."""
        async with self.ctx.db.transaction() as tx:
            await tx.users.set_role(user_id, role.value)

    # A worker's own data -------------------------------------------------------------------

    async def worker_stats(self, user_id: int) -> WorkerStats:
        async with self.ctx.db.read() as tx:
            user = await load_user(tx, user_id)
            r = await tx.answers.worker_counts(user_id)
            totals = await tx.skills.totals(user_id)
            earned = await tx.ledger.earned(user_id)
            trusted = await tx.languages.trusted(user_id)
            pending = await verify.pending_credit(tx, user_id)
        skill = quality.Skill(*totals) if totals else quality.Skill()
        return WorkerStats(
            answers=int(r["n"] or 0),
            accepted=int(r["ok"] or 0),
            rejected=int(r["rej"] or 0),
            gold_answered=int(r["gold"] or 0),
            gold_correct=int(r["gold_ok"] or 0),
            accuracy=skill.mean,
            accuracy_low=max(0.0, skill.mean - 1.64 * skill.std),
            earnings=earned,
            balance=user.balance,
            languages=trusted,
            pending=pending,
        )

    async def pending_credit(self, user_id: int) -> int:
        """Of the balance, the credits still waiting for other workers' check."""
        async with self.ctx.db.read() as tx:
            return await verify.pending_credit(tx, user_id)

    async def my_data(self, user_id: int) -> dict[str, Any]:
        """Everything stored about a user, as one JSON-ready dict (for /mydata)."""
        async with self.ctx.db.read() as tx:
            out = await tx.users.personal_data(user_id)
            state = await tx.state.of_user(user_id)
            pending = await verify.pending_credit(tx, user_id)
        if out is None:
            raise NotFound(N_("Nothing found with that id."))
        # of the balance, what other workers have not checked yet (create-then-verify)
        out["pending_verification"] = pending
        # a conversation in progress, the current project, the leaderboard choice
        out["state"] = {key: _json_or_text(value) for key, value in state.items()}
        return out

    async def forget(self, user_id: int) -> None:
        """Erase personal data. Answers stay (they are the requester's labels) and ledger
        entries stay, both tied only to the user's pseudonym."""
        async with self.ctx.db.transaction() as tx:
            await tx.users.forget(user_id)
            await tx.state.forget_user(user_id)

    # Linking platforms ---------------------------------------------------------------------

    async def link_code(self, user_id: int, platform: str) -> str:
        rng = self.ctx.rng
        code = "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(8))
        async with self.ctx.db.transaction() as tx:
            await tx.links.create(code, user_id, platform, self.ctx.clock() + LINK_TTL)
        return code

    async def redeem_link(self, user_id: int, code: str) -> User:
        """Merge ``user_id`` into the user who made ``code``; refused codes merge nothing."""
        async with self.ctx.db.transaction() as tx:
            link = await tx.links.get(code.upper())
            if link is None or link[2]:
                raise InvalidInput(N_("That code is not valid."))
            keep, expires_at, _ = link
            if expires_at < self.ctx.clock():
                raise Conflict(N_("That code has expired. Ask for a new one."))
            if keep == user_id:
                raise InvalidInput(N_("That code is not valid."))
            await tx.links.use(code.upper())
            await self._merge_users(tx, keep, user_id)
            return await load_user(tx, keep)

    async def _merge_users(self, tx: Transaction, keep: int, drop: int) -> None:
        """Fold user ``drop`` into ``keep``: identities, languages, skills, work and money."""
        balance, answers = await tx.users.merge_records(keep, drop)
        if balance:
            # Money moves through the ledger so the audit still balances.
            now = self.ctx.clock()
            await ledger.append(
                tx,
                drop,
                "correction",
                -balance,
                f"merge-out:{drop}",
                memo=f"merged into user {keep}",
                now=now,
                keyring=self.ctx.keyring,
            )
            await ledger.append(
                tx,
                keep,
                "correction",
                balance,
                f"merge-in:{drop}",
                memo=f"merged from user {drop}",
                now=now,
                keyring=self.ctx.keyring,
            )
        await tx.users.retire_merged(keep, drop, answers)


def _pseudonym() -> str:
    return "w-" + secrets.token_hex(5)


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value
