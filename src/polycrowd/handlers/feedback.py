"""The feedback loop in chat: /report charts, /dashboard login links, questions about a task
(/ask, /answer, /faq add), feedback after a check question, and the digests' texts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from polycrowd.engine.core import SubmitResult
from polycrowd.engine.errors import Forbidden
from polycrowd.engine.services.digests import ModeratorDigest, WorkerDigest
from polycrowd.engine.services.feedback import LOGIN_TTL
from polycrowd.engine.types import Role, Task
from polycrowd.handlers import leaderboard
from polycrowd.handlers.types import Document, Event, Reply
from polycrowd.handlers.worker import money
from polycrowd.i18n import N_, Msg

if TYPE_CHECKING:
    from polycrowd.handlers.common import Context, Dispatcher

ASK_PER_HOUR = 5


def register(d: Dispatcher) -> None:
    d.command("report", N_("Charts and a summary of a project"), Role.REQUESTER)(report)
    d.command("dashboard", N_("A one-time link to the web dashboard"), Role.REQUESTER)(dashboard)
    d.command("ask", N_("Ask the requester about your task: /ask TEXT"))(ask)
    d.command("answer", N_("Answer a worker's question: /answer ID TEXT"), Role.REQUESTER)(answer)
    d.command(
        "faq", N_("Pin an answered question to the instructions: /faq add ID"), Role.REQUESTER
    )(faq)
    leaderboard.register(d)
    d.button("q")(ask_button)


# Reports --------------------------------------------------------------------------------------


async def report(ctx: Context, event: Event) -> list[Reply]:
    from polycrowd.handlers.requester import _project_from
    from polycrowd.reports import build_report, summary_lines

    project = await _project_from(ctx, event)
    await ctx.engine.aggregate_project(project.id)
    rep = await build_report(ctx.engine, project.id, ctx.translator, ctx.lang)
    head = Msg(
        N_("Project %(id)s “%(name)s”: %(state)s"),
        {"id": project.id, "name": project.name, "state": project.state},
    )
    replies = [Reply.of(head, *summary_lines(rep.data))]
    replies += [
        Reply.of(Msg.raw(c.title), document=Document(f"p{project.id}-{c.filename}", c.png))
        for c in rep.charts
    ]
    replies.append(
        Reply.of(
            Msg(N_("The same charts on one page.")),
            document=Document(f"p{project.id}-report.html", rep.html.encode("utf-8")),
        )
    )
    return replies


# Dashboard ------------------------------------------------------------------------------------


async def dashboard(ctx: Context, event: Event) -> list[Reply]:
    base = ctx.settings.dashboard_url.rstrip("/")
    if not base:
        return [ctx.text(N_("The web dashboard is not set up on this server."))]
    token = await ctx.engine.dashboard_login(ctx.user.id, ctx.user.role)
    return [
        Reply.of(
            Msg(
                N_("Open the dashboard (the link works once, for %(minutes)s minutes): %(url)s"),
                {"minutes": int(LOGIN_TTL // 60), "url": f"{base}/login?token={token}"},
            ),
            ephemeral=True,
        )
    ]


# Questions ------------------------------------------------------------------------------------


async def ask(ctx: Context, event: Event) -> list[Reply]:
    text = " ".join(event.args).strip()
    if not text:
        return [ctx.text(N_("Send /ask followed by your question about the current task."))]
    task = await ctx.engine.current_task(ctx.user.id)
    if task is None:
        return [ctx.text(N_("You have no open task."))]
    if await ctx.engine.questions_since(ctx.user.id, 3600.0) >= ASK_PER_HOUR:
        return [ctx.text(N_("You have asked many questions this hour. Please try again later."))]
    qid = await ctx.engine.ask(ctx.user.id, task.project.id, task.item.id, ctx.lang, text)
    card = question_card(qid, task, text)
    replies = [ctx.text(N_("Your question was sent. The answer will come here."))]
    owner = task.project.owner_id
    if owner is not None:
        for platform, chat in await ctx.engine.chats_of(owner):
            if platform == event.platform and chat != event.chat_id:
                replies.append(_to(card, chat, platform))
    admin = ctx.dispatcher.admin_chat_of(event.platform)
    if admin and admin != event.chat_id:
        replies.append(_to(card, admin, event.platform))
    return replies


async def ask_button(ctx: Context, event: Event) -> list[Reply]:
    """The "Ask a question" button under a task: say how to ask about that task."""
    task = await ctx.engine.current_task(ctx.user.id)
    aid = event.data.partition(":")[2]
    if task is None or str(task.assignment.id) != aid:
        return [ctx.text(N_("You have no open task."))]
    return [ctx.text(N_("Send /ask followed by your question about the current task."))]


def _to(reply: Reply, chat: str, platform: str) -> Reply:
    return Reply(parts=reply.parts, chat_id=chat, platform=platform)


def question_card(qid: int, task: Task, text: str) -> Reply:
    return Reply.of(
        Msg(
            N_("Question %(id)s about project “%(name)s”:"),
            {"id": qid, "name": task.project.name},
        ),
        Msg.raw(task.item.content[:500]),
        Msg.raw("❓ " + text),
        Msg(N_("Reply with /answer %(id)s TEXT"), {"id": qid}),
    )


async def _may_answer(ctx: Context, project_id: int) -> None:
    project = await ctx.engine.get_project(project_id)
    if project.owner_id != ctx.user.id and not ctx.user.role.at_least(Role.MODERATOR):
        raise Forbidden(N_("Project %(id)s is not yours."), id=project_id)


async def answer(ctx: Context, event: Event) -> list[Reply]:
    qid = int(event.args[0]) if event.args and event.args[0].isdigit() else None
    text = " ".join(event.args[1:]).strip()
    if qid is None or not text:
        return [ctx.text(N_("Send /answer followed by the question's number and your answer."))]
    q = await ctx.engine.question(qid)
    await _may_answer(ctx, q.project_id)
    q = await ctx.engine.answer_question(qid, ctx.user.id, text)
    project = await ctx.engine.get_project(q.project_id)
    to_worker = Reply.of(
        Msg(N_("An answer to your question about “%(name)s”:"), {"name": project.name}),
        Msg.raw("❓ " + q.text),
        Msg.raw("💬 " + text),
    )
    replies = [
        ctx.text(
            N_("Your answer was sent. To add it to the instructions: /faq add %(id)s"), id=qid
        )
    ]
    for platform, chat in await ctx.engine.chats_of(q.worker_id):
        if platform == event.platform:
            replies.append(Reply(parts=to_worker.parts, chat_id=chat, platform=platform))
    return replies


async def faq(ctx: Context, event: Event) -> list[Reply]:
    args = list(event.args)
    if len(args) != 2 or args[0] != "add" or not args[1].isdigit():
        return [ctx.text(N_("Send /faq add followed by the question's number."))]
    q = await ctx.engine.question(int(args[1]))
    await _may_answer(ctx, q.project_id)
    await ctx.engine.pin_faq(q.id)
    return [ctx.text(N_("The question is now part of the instructions."))]


# Feedback after a check question ---------------------------------------------------------------


def gold_feedback(task: Task, result: SubmitResult) -> list[Reply]:
    """Right or wrong on a check question; when wrong, the expected answer and the
    instruction line that mentions it."""
    if result.correct is None or result.status in ("duplicate", "retry"):
        return []
    if result.correct:
        return [Reply.of(Msg(N_("That was a check question, and your answer was right.")))]
    expected = task.item.gold or ""
    parts = [
        Msg(
            N_("That was a check question. The expected answer was “%(expected)s”."),
            {"expected": expected},
        )
    ]
    line = instruction_line(task.project.instructions_for(task.item.lang), expected)
    if line:
        parts.append(Msg(N_("From the instructions: %(line)s"), {"line": line}))
    return [Reply.of(*parts)]


def instruction_line(instructions: str, expected: str) -> str:
    """The first instruction line that names any of the expected labels."""
    wanted = [x.strip().lower() for x in expected.split("|") if x.strip()]
    for line in instructions.splitlines():
        low = line.lower()
        if any(w in low for w in wanted):
            return line.strip()[:300]
    return ""


# Digests --------------------------------------------------------------------------------------


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def worker_digest_reply(d: WorkerDigest) -> Reply:
    if d.accuracy is None or d.previous is None or abs(d.accuracy - d.previous) < 0.02:
        trend = "→"
    else:
        trend = "↑" if d.accuracy > d.previous else "↓"
    return Reply.of(
        Msg(N_("Your week on polycrowd:")),
        Msg(N_("%(n)s answer"), plural=N_("%(n)s answers"), n=d.answers),
        Msg(
            N_("Accuracy: %(now)s (the week before: %(before)s) %(trend)s"),
            {"now": percent(d.accuracy), "before": percent(d.previous), "trend": trend},
        ),
        Msg(N_("Earned this week: %(amount)s"), {"amount": money(d.earnings)}),
        Msg(
            N_("Skills unlocked: %(ok)s, at risk: %(risk)s"),
            {"ok": d.skills_ok, "risk": d.skills_at_risk},
        ),
    )


def moderator_digest_reply(d: ModeratorDigest) -> Reply:
    return Reply.of(
        Msg(N_("Daily summary for moderators:")),
        Msg(
            N_("Open flags: %(flags)s (%(workers)s workers)"),
            {"flags": d.flags, "workers": d.flagged_workers},
        ),
        Msg(N_("Appeals waiting: %(count)s"), {"count": d.appeals}),
        Msg(
            N_("Checker accuracy on gold: %(acc)s of %(count)s"),
            {"acc": percent(d.checker_gold_accuracy), "count": d.checker_gold_seen},
        ),
        Msg(
            N_("Payouts to approve: %(count)s, total %(total)s"),
            {"count": d.payouts, "total": money(d.payout_total)},
        ),
    )
