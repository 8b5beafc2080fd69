"""Moderator commands and cards: flagged answers and workers, blocks, payouts, audit.

Moderation happens only in the configured admin chat and only for users with the
moderator role (or admin). Cards carry buttons whose data names the action and the id;
every press is re-checked against the presser's role.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from polycrowd.engine.core import EngineError, Flag
from polycrowd.engine.errors import Forbidden
from polycrowd.engine.types import Role, User
from polycrowd.handlers.types import Button, Event, Reply
from polycrowd.handlers.worker import money
from polycrowd.i18n import N_, Msg

if TYPE_CHECKING:
    from polycrowd.handlers.common import Context, Dispatcher

FLAG_TITLES = {
    "answer_review": N_("Answer to review"),
    "appeal": N_("Appeal"),
    "skill_paused": N_("Worker paused for low accuracy"),
    "fraud_speed": N_("Suspicious: answers faster than anyone can read"),
    "fraud_same_label": N_("Suspicious: always the same label"),
    "fraud_low_agreement": N_("Suspicious: agreement below chance"),
    "fraud_identical_accounts": N_("Suspicious: accounts answering identically"),
    "checker_drift": N_("The checker disagrees with results: switched to review"),
}


def register(d: Dispatcher) -> None:
    mod = Role.MODERATOR
    d.command("review", N_("Flagged answers and workers"), mod, admin_chat=True)(review)
    d.command("payouts", N_("Payouts waiting for approval"), mod, admin_chat=True)(payouts)
    d.command("audit", N_("Verify the ledger"), mod, admin_chat=True)(audit)
    d.command("grant", N_("Give a user a role: /grant USER ROLE"), mod, admin_chat=True)(grant)
    d.command("block", N_("Block a user: /block USER reason"), mod, admin_chat=True)(block)
    d.command("unblock", N_("Unblock a user: /unblock USER"), mod, admin_chat=True)(unblock)
    d.button("mod", mod, admin_chat=True)(mod_button)


def _admin_only(ctx: Context, event: Event) -> None:
    """The router checks this before any moderator command or card button runs; checked
    again here so that a handler called some other way cannot skip it."""
    ctx.require(Role.MODERATOR)
    if not event.is_admin_chat:
        raise Forbidden(N_("Use this in the moderators' chat."))


def _may_manage(ctx: Context, target: User, role: Role | None = None) -> None:
    """Moderators manage workers and requesters; only an admin changes a moderator's or an
    admin's account or makes someone a moderator. Nobody blocks or demotes themselves."""
    if ctx.user.role is Role.ADMIN and target.id != ctx.user.id:
        return
    if target.id == ctx.user.id or target.role.at_least(Role.MODERATOR):
        raise Forbidden(N_("Only admins can do that."))
    if role is not None and role.at_least(Role.MODERATOR):
        raise Forbidden(N_("Only admins can do that."))


def flag_card(flag: Flag) -> Reply:
    """A moderation card for the admin chat."""
    title = FLAG_TITLES.get(flag.kind, flag.kind)
    evidence = json.dumps(flag.evidence, ensure_ascii=False)[:600]
    parts = [
        Msg(N_("Flag %(id)s: %(title)s"), {"id": flag.id, "title": Msg(title)}),
        Msg(
            N_("Worker: %(user)s, project: %(project)s"),
            {"user": str(flag.user_id), "project": str(flag.project_id or "-")},
        ),
        Msg.raw(evidence),
    ]
    rows: list[tuple[Button, ...]] = []
    if flag.answer_id is not None and flag.kind == "appeal":
        rows.append(
            (
                Button(Msg(N_("Uphold")), f"mod:au:{flag.answer_id}"),
                Button(Msg(N_("Deny")), f"mod:ad:{flag.answer_id}"),
            )
        )
    elif flag.answer_id is not None:
        rows.append(
            (
                Button(Msg(N_("Accept")), f"mod:aa:{flag.answer_id}"),
                Button(Msg(N_("Reject")), f"mod:ar:{flag.answer_id}"),
            )
        )
    if flag.user_id is not None:
        rows.append(
            (
                Button(Msg(N_("Block")), f"mod:ub:{flag.user_id}"),
                Button(Msg(N_("Unblock")), f"mod:uu:{flag.user_id}"),
                Button(Msg(N_("Dismiss")), f"mod:fd:{flag.id}"),
            )
        )
    return Reply(parts=tuple(parts), buttons=tuple(rows), kind="card")


async def review(ctx: Context, event: Event) -> list[Reply]:
    _admin_only(ctx, event)
    flags = await ctx.engine.open_flags(limit=10)
    if not flags:
        return [ctx.text(N_("Nothing to review."))]
    return [flag_card(f) for f in flags]


async def payouts(ctx: Context, event: Event) -> list[Reply]:
    _admin_only(ctx, event)
    pending = await ctx.engine.pending_payouts()
    if not pending:
        return [ctx.text(N_("No payouts are waiting."))]
    return [
        Reply.of(
            Msg(
                N_("Payout %(id)s: %(amount)s to %(user)s"),
                {"id": p["id"], "amount": money(p["amount"]), "user": p["pseudonym"]},
            ),
            buttons=(
                (
                    Button(Msg(N_("Approve")), f"mod:pa:{p['id']}"),
                    Button(Msg(N_("Deny")), f"mod:pd:{p['id']}"),
                ),
            ),
            kind="card",
        )
        for p in pending
    ]


async def audit(ctx: Context, event: Event) -> list[Reply]:
    _admin_only(ctx, event)
    report = await ctx.engine.audit()
    if report.ok:
        return [
            ctx.text(
                N_("Ledger OK: %(n)s entries, total %(total)s."),
                n=report.entries,
                total=money(report.total),
            )
        ]
    return [ctx.text(N_("Ledger BROKEN: %(problem)s"), problem=report.problem_msg)]


async def _target(ctx: Context, ref: str) -> User:
    user = await ctx.engine.find_user(ref)
    if user is None:
        raise EngineError(N_("Nothing found with that id."))
    return user


async def grant(ctx: Context, event: Event) -> list[Reply]:
    _admin_only(ctx, event)
    if len(event.args) != 2 or event.args[1] not in {r.value for r in Role}:
        return [ctx.text(N_("Usage: /grant USER worker|requester|moderator|admin"))]
    target, role = await _target(ctx, event.args[0]), Role(event.args[1])
    _may_manage(ctx, target, role)
    user = await ctx.engine.set_role(ctx.user.id, target.id, role)
    return [
        ctx.text(N_("User %(user)s is now %(role)s."), user=user.pseudonym, role=user.role.value)
    ]


async def block(ctx: Context, event: Event) -> list[Reply]:
    _admin_only(ctx, event)
    if not event.args:
        return [ctx.text(N_("Usage: /block USER reason"))]
    target = await _target(ctx, event.args[0])
    _may_manage(ctx, target)
    reason = " ".join(event.args[1:])[:200] or "fraud"
    user = await ctx.engine.set_status(ctx.user.id, target.id, "blocked", reason)
    return [ctx.text(N_("User %(user)s is blocked."), user=user.pseudonym)]


async def unblock(ctx: Context, event: Event) -> list[Reply]:
    _admin_only(ctx, event)
    if not event.args:
        return [ctx.text(N_("Usage: /unblock USER"))]
    target = await _target(ctx, event.args[0])
    _may_manage(ctx, target)
    user = await ctx.engine.set_status(ctx.user.id, target.id, "active")
    return [ctx.text(N_("User %(user)s is active again."), user=user.pseudonym)]


async def mod_button(ctx: Context, event: Event) -> list[Reply]:
    _admin_only(ctx, event)
    _, action, raw = [*event.data.split(":"), "", ""][:3]
    if not raw.isdigit():
        return [Reply.of(Msg(N_("This button is no longer valid.")), alert=True)]
    target = int(raw)
    e = ctx.engine
    if action in ("aa", "ar"):
        outcome = await e.moderate_answer(ctx.user.id, target, accept=action == "aa")
        msg = Msg(N_("Answer %(id)s: %(outcome)s"), {"id": target, "outcome": outcome})
    elif action in ("au", "ad"):
        await e.decide_appeal(ctx.user.id, target, uphold=action == "au")
        msg = Msg(N_("Appeal on answer %(id)s decided."), {"id": target})
    elif action == "ub":
        _may_manage(ctx, await e.get_user(target))
        user = await e.set_status(ctx.user.id, target, "blocked", "fraud")
        msg = Msg(N_("User %(user)s is blocked."), {"user": user.pseudonym})
    elif action == "uu":
        _may_manage(ctx, await e.get_user(target))
        user = await e.set_status(ctx.user.id, target, "active")
        msg = Msg(N_("User %(user)s is active again."), {"user": user.pseudonym})
    elif action == "fd":
        await e.resolve_flag(ctx.user.id, target, "dismissed")
        msg = Msg(N_("Flag %(id)s dismissed."), {"id": target})
    elif action in ("pa", "pd"):
        amount = await e.decide_payout(ctx.user.id, target, approve=action == "pa")
        msg = Msg(
            N_("Payout %(id)s: %(amount)s %(outcome)s."),
            {
                "id": target,
                "amount": money(amount),
                "outcome": Msg(N_("approved") if action == "pa" else N_("denied")),
            },
        )
    else:
        return [Reply.of(Msg(N_("This button is no longer valid.")), alert=True)]
    return [Reply.of(msg, edit=True)]
