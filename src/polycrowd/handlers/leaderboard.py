"""/leaderboard: the opt-in leaderboard of the project a worker works on.

Nobody appears on it unless they chose to (``/leaderboard on`` or the button), and then only
by pseudonym; ``/leaderboard off`` (or the button) takes them off again at once."""

from __future__ import annotations

from typing import TYPE_CHECKING

from polycrowd.engine.types import Role
from polycrowd.handlers.types import Button, Event, Reply
from polycrowd.i18n import N_, Msg

if TYPE_CHECKING:
    from polycrowd.handlers.common import Context, Dispatcher

ON_WORDS = frozenset({"on", "yes", "join", "1"})
OFF_WORDS = frozenset({"off", "no", "leave", "0"})


def register(d: Dispatcher) -> None:
    d.command("leaderboard", N_("The project's leaderboard; /leaderboard on to appear on it"))(
        leaderboard
    )
    d.button("lb")(leaderboard_button)


async def leaderboard(ctx: Context, event: Event) -> list[Reply]:
    word = (event.args[0] if event.args else "").strip().lower()
    if word in ON_WORDS or word in OFF_WORDS:
        return [await _set(ctx, word in ON_WORDS)]
    return [await board(ctx)]


async def leaderboard_button(ctx: Context, event: Event) -> list[Reply]:
    on = event.data.partition(":")[2] == "1"
    return [await _set(ctx, on)]


async def _set(ctx: Context, on: bool) -> Reply:
    await ctx.engine.set_leaderboard(ctx.user.id, on)
    if on:
        return ctx.text(N_("You now appear on leaderboards as %(name)s."), name=ctx.user.pseudonym)
    return ctx.text(N_("You no longer appear on leaderboards."))


async def board(ctx: Context) -> Reply:
    engine = ctx.engine
    pid = await engine.latest_project_of(ctx.user.id)
    if pid is None and ctx.user.role is not Role.WORKER:
        pid = await engine.current_project(ctx.user.id)
    if pid is None:
        return ctx.text(N_("Answer a task first: the leaderboard is of the project you work on."))
    project = await engine.get_project(pid)
    rows = await engine.leaders(pid)
    parts = [
        Msg(
            N_("Leaderboard of project “%(name)s” (only workers who chose to appear):"),
            {"name": project.name},
        )
    ]
    if not rows:
        parts.append(Msg(N_("No one has chosen to appear on this leaderboard yet.")))
    for rank, row in enumerate(rows, 1):
        params = {"rank": rank, "name": row.pseudonym, "answers": row.accepted}
        if row.gold_answered:
            accuracy = f"{round(100 * row.gold_correct / row.gold_answered)}%"
            parts.append(
                Msg(
                    N_("%(rank)s. %(name)s: %(answers)s accepted, %(accuracy)s on check tasks"),
                    {**params, "accuracy": accuracy},
                )
            )
        else:
            parts.append(Msg(N_("%(rank)s. %(name)s: %(answers)s accepted"), params))
    if await engine.on_leaderboard(ctx.user.id):
        parts.append(Msg(N_("You appear as %(name)s."), {"name": ctx.user.pseudonym}))
        button = Button(Msg(N_("Hide me")), "lb:0")
    else:
        parts.append(Msg(N_("You do not appear on it.")))
        button = Button(Msg(N_("Show me")), "lb:1")
    return Reply(parts=tuple(parts), buttons=((button,),))
