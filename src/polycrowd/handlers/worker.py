"""Worker commands: start, languages, tasks and answers, balance, stats, privacy, appeals."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING

from polycrowd.engine import images
from polycrowd.engine.core import SubmitResult
from polycrowd.engine.tasktypes import Buttons, spec_of
from polycrowd.engine.types import Role, Task, TaskType
from polycrowd.handlers.common import parse_int
from polycrowd.handlers.types import Button, Document, Event, Photo, Reply
from polycrowd.i18n import N_, Msg

if TYPE_CHECKING:
    from polycrowd.handlers.common import Context, Dispatcher

log = logging.getLogger(__name__)
LANGUAGE_NAMES = {
    "en": "English",
    "es": "Español",
    "ru": "Русский",
    "de": "Deutsch",
    "fr": "Français",
    "pt": "Português",
    "ar": "العربية",
    "hi": "हिन्दी",
    "zh": "中文",
    "tr": "Türkçe",
    "id": "Bahasa Indonesia",
}
MAX_MULTI_LABELS = 16  # the selection travels as a bit mask in the button data


def money(amount: int) -> str:
    """Minor units as a plain decimal (the ledger's currency is the project's)."""
    sign = "-" if amount < 0 else ""
    return f"{sign}{abs(amount) // 100}.{abs(amount) % 100:02d}"


def register(d: Dispatcher) -> None:
    d.command("start", N_("Start and choose your languages"))(start)
    d.command("help", N_("What I can do"))(help_)
    d.command("language", N_("Choose the languages you work in"))(language)
    d.command("task", N_("Get the next task"))(task)
    d.command("skip", N_("Skip the current task"))(skip)
    d.command("balance", N_("Your balance"))(balance)
    d.command("stats", N_("Your accuracy, answers and earnings"))(stats)
    d.command("payout", N_("Ask for a payout of your balance"))(payout)
    d.command("mydata", N_("Download everything stored about you"))(mydata)
    d.command("forgetme", N_("Erase your personal data"))(forgetme)
    d.command("appeal", N_("Appeal your last rejected answer"))(appeal)
    d.command("link", N_("Link your Telegram and Discord accounts"))(link)
    d.command("cancel", N_("Cancel the current conversation"))(cancel)
    d.button("a")(answer_button)
    d.button("m")(multi_toggle)
    d.button("ms")(multi_submit)
    d.button("s")(skip_button)
    d.button("l")(language_toggle)
    d.button("lok")(language_done)
    d.button("fy")(forget_confirm)
    d.button("fn")(forget_cancel)
    d.button("t")(task_button)
    d.text_handlers.append(text_answer)


# Start, help, languages -------------------------------------------------------------------


async def start(ctx: Context, event: Event) -> list[Reply]:
    declared, _ = await ctx.engine.languages_of(ctx.user.id)
    greet = Msg(N_("Welcome to polycrowd! You label data and earn for every accepted answer."))
    ask = Msg(N_("Which languages do you work in? Tap to select, then press Done."))
    return [Reply.of(greet, ask, buttons=_language_buttons(declared))]


async def help_(ctx: Context, event: Event) -> list[Reply]:
    lines = [Msg(N_("Commands:"))]
    for info in ctx.dispatcher.command_list(ctx.user.role):
        cmd, desc = "/" + info.name, Msg(info.description)
        lines.append(Msg("%(cmd)s — %(desc)s", {"cmd": cmd, "desc": desc}))
    return [Reply.of(*lines)]


async def language(ctx: Context, event: Event) -> list[Reply]:
    declared, trusted = await ctx.engine.languages_of(ctx.user.id)
    current = ", ".join(LANGUAGE_NAMES.get(x, x) for x in trusted) or "-"
    return [
        Reply.of(
            Msg(N_("Your languages: %(langs)s"), {"langs": current}),
            Msg(N_("Which languages do you work in? Tap to select, then press Done.")),
            buttons=_language_buttons(declared),
        )
    ]


def _language_buttons(selected: tuple[str, ...]) -> tuple[tuple[Button, ...], ...]:
    buttons = [
        Button(Msg.raw(("✓ " if code in selected else "") + name), f"l:{code}")
        for code, name in LANGUAGE_NAMES.items()
    ]
    rows = [tuple(buttons[i : i + 3]) for i in range(0, len(buttons), 3)]
    rows.append((Button(Msg(N_("Done")), "lok"),))
    return tuple(rows)


async def language_toggle(ctx: Context, event: Event) -> list[Reply]:
    code = event.data.partition(":")[2]
    if code not in LANGUAGE_NAMES:
        return [Reply.of(Msg(N_("This button is no longer valid.")), alert=True)]
    await ctx.engine.toggle_language(ctx.user.id, code)
    declared, _ = await ctx.engine.languages_of(ctx.user.id)
    ask = Msg(N_("Which languages do you work in? Tap to select, then press Done."))
    return [Reply.of(ask, buttons=_language_buttons(declared), edit=True)]


async def language_done(ctx: Context, event: Event) -> list[Reply]:
    _, trusted = await ctx.engine.languages_of(ctx.user.id)
    names = ", ".join(LANGUAGE_NAMES.get(x, x) for x in trusted)
    return [
        Reply.of(
            Msg(N_("Your languages: %(langs)s"), {"langs": names}),
            Msg(N_("Send /task to get your first task.")),
            buttons=((Button(Msg(N_("Get a task")), "t"),),),
            edit=True,
        )
    ]


# Tasks -----------------------------------------------------------------------------------


def render_task(
    task: Task, lang: str, *, answer: str | None = None, photo: Photo | None = None
) -> Reply:
    """The task in the worker's language ``lang``: instructions in that language, else in the
    item's, else in the source language with a note; label buttons by their translated
    names (the button data keeps the canonical label's index). An image project's item is
    ``photo`` (see :func:`task_photo`), shown with the text as its caption."""
    p, item = task.project, task.item
    instructions, shown = p.instructions_in(lang, item.lang)
    parts = [Msg(N_("Task for project “%(name)s”"), {"name": p.name})]
    if shown and shown != lang:
        parts.append(
            Msg(
                N_(
                    "The instructions are not available in your language; here they are in"
                    " %(language)s."
                ),
                {"language": LANGUAGE_NAMES.get(shown, shown)},
            )
        )
    parts.append(Msg.raw(instructions))
    image = p.task_type is TaskType.IMAGE
    if not image:
        parts.append(Msg.raw(""))

    def name(label: str) -> str:
        return p.label_name(label, lang, item.lang)

    hints = spec_of(p.task_type).render
    if hints.numbered_tokens:
        tokens = item.content.split()
        numbered = " ".join(f"{i}:{tok}" for i, tok in enumerate(tokens))
        parts.append(Msg.raw(numbered))
        parts.append(
            Msg(
                N_(
                    "Reply with spans as start-end:LABEL separated by ';' (labels: %(labels)s),"
                    " or 'none'."
                ),
                {"labels": ", ".join(p.labels)},
            )
        )
    elif not image:
        parts.append(Msg.raw(item.content))
    elif photo is None:
        parts.append(Msg(N_("The image of this task cannot be shown. Please press Skip.")))
    if answer is not None:
        if p.task_type.has_buttons:
            answer = "|".join(name(x) for x in answer.split("|"))
        parts.append(Msg(N_("Your answer: %(answer)s"), {"answer": answer}))
        return Reply(parts=tuple(parts), edit=True, kind="task", photo=photo)
    aid = task.assignment.id
    rows: list[tuple[Button, ...]] = []
    if hints.buttons is Buttons.LABELS:
        buttons = [Button(Msg.raw(name(lab)), f"a:{aid}:{k}") for k, lab in enumerate(p.labels)]
        rows = [tuple(buttons[i : i + 3]) for i in range(0, len(buttons), 3)]
    elif hints.buttons is Buttons.MULTI:
        rows = list(_multi_rows(task, 0, lang))
    elif hints.text_prompt:
        parts.append(Msg(N_("Reply with your answer as a message.")))
    rows.append(
        (Button(Msg(N_("Skip")), f"s:{aid}"), Button(Msg(N_("Ask a question")), f"q:{aid}"))
    )
    return Reply(
        parts=tuple(parts),
        buttons=tuple(rows),
        kind="task",
        expects_text=hints.expects_text,
        photo=photo,
    )


async def task_photo(task: Task) -> Photo | None:
    """The item's image for a task of an image project (a file is read in a worker thread);
    None for other projects, or when the image cannot be read any more (logged)."""
    if task.project.task_type is not TaskType.IMAGE:
        return None
    try:
        image = await asyncio.to_thread(images.load, task.item.content)
    except images.ImageRefError as exc:
        log.warning("item %s of project %s: %s", task.item.id, task.project.id, exc)
        return None
    return Photo(image.filename, image.data, image.url)


async def show_task(task: Task, lang: str, *, answer: str | None = None) -> Reply:
    """:func:`render_task` with the item's image, when it has one."""
    return render_task(task, lang, answer=answer, photo=await task_photo(task))


def _multi_rows(task: Task, mask: int, lang: str) -> tuple[tuple[Button, ...], ...]:
    aid, p = task.assignment.id, task.project
    names = [p.label_name(lab, lang, task.item.lang) for lab in p.labels[:MAX_MULTI_LABELS]]
    buttons = [
        Button(Msg.raw(("✓ " if mask >> k & 1 else "") + name), f"m:{aid}:{mask ^ (1 << k)}")
        for k, name in enumerate(names)
    ]
    rows = [tuple(buttons[i : i + 3]) for i in range(0, len(buttons), 3)]
    rows.append((Button(Msg(N_("Submit")), f"ms:{aid}:{mask}"),))
    return tuple(rows)


async def _next(ctx: Context, event: Event) -> list[Reply]:
    if ctx.user.status != "active":
        return [
            ctx.text(
                N_("Your account is paused or blocked: %(reason)s"),
                reason=ctx.user.status_reason or ctx.user.status,
            )
        ]
    t = await ctx.engine.next_task(ctx.user.id, chat_id=event.chat_id, platform=event.platform)
    if t is None:
        paused = await ctx.engine.paused_projects(ctx.user.id)
        notes = [
            Msg(N_("Project “%(name)s”: %(reason)s"), {"name": name, "reason": Msg(reason)})
            for name, reason in paused
        ]
        return [
            Reply.of(
                Msg(N_("No tasks for you right now. I will remind you when there are.")), *notes
            )
        ]
    return [await show_task(t, ctx.lang)]


async def task(ctx: Context, event: Event) -> list[Reply]:
    return await _next(ctx, event)


async def task_button(ctx: Context, event: Event) -> list[Reply]:
    return await _next(ctx, event)


async def skip(ctx: Context, event: Event) -> list[Reply]:
    current = await ctx.engine.current_task(ctx.user.id)
    if current is None:
        return [ctx.text(N_("You have no open task."))]
    await ctx.engine.skip(ctx.user.id, current.assignment.id)
    return [ctx.text(N_("Skipped.")), *await _next(ctx, event)]


async def skip_button(ctx: Context, event: Event) -> list[Reply]:
    aid = _int_part(event.data, 1)
    if aid is None or not await ctx.engine.skip(ctx.user.id, aid):
        return [Reply.of(Msg(N_("This button is no longer valid.")), alert=True)]
    return [Reply.of(Msg(N_("Skipped.")), edit=True), *await _next(ctx, event)]


def _int_part(data: str, index: int) -> int | None:
    parts = data.split(":")
    return parse_int(parts[index]) if index < len(parts) else None


async def _owned_task(ctx: Context, aid: int | None) -> Task | None:
    if aid is None:
        return None
    t = await ctx.engine.task(aid)
    if t is None or t.assignment.worker_id != ctx.user.id or t.assignment.state != "issued":
        return None
    return t


async def answer_button(ctx: Context, event: Event) -> list[Reply]:
    aid, k = _int_part(event.data, 1), _int_part(event.data, 2)
    t = await _owned_task(ctx, aid)
    if t is None or k is None or not 0 <= k < len(t.project.labels):
        return [Reply.of(Msg(N_("This button is no longer valid.")), alert=True)]
    return await submit(ctx, event, t, t.project.labels[k])


async def multi_toggle(ctx: Context, event: Event) -> list[Reply]:
    t = await _owned_task(ctx, _int_part(event.data, 1))
    mask = _int_part(event.data, 2)
    if t is None or mask is None or not 0 <= mask < (1 << MAX_MULTI_LABELS):
        return [Reply.of(Msg(N_("This button is no longer valid.")), alert=True)]
    shown = await show_task(t, ctx.lang)
    rows = _multi_rows(t, mask, ctx.lang)
    return [Reply(parts=shown.parts, buttons=rows, edit=True, kind="task", photo=shown.photo)]


async def multi_submit(ctx: Context, event: Event) -> list[Reply]:
    t = await _owned_task(ctx, _int_part(event.data, 1))
    mask = _int_part(event.data, 2)
    if t is None or mask is None or not 0 <= mask < (1 << MAX_MULTI_LABELS):
        return [Reply.of(Msg(N_("This button is no longer valid.")), alert=True)]
    chosen = [lab for k, lab in enumerate(t.project.labels) if mask >> k & 1]
    if not chosen:
        return [Reply.of(Msg(N_("Select at least one label.")), alert=True)]
    return await submit(ctx, event, t, "|".join(chosen))


async def text_answer(ctx: Context, event: Event) -> list[Reply]:
    t = await ctx.engine.current_task(ctx.user.id)
    if t is None or not spec_of(t.project.task_type).render.expects_text:
        return []
    return await submit(ctx, event, t, event.text)


async def submit(ctx: Context, event: Event, t: Task, payload: str) -> list[Reply]:
    result = await ctx.engine.submit(ctx.user.id, t.assignment.id, payload, task=t)
    if result.status == "duplicate":
        return [Reply.of(Msg(N_("You already answered this task.")), alert=True)]
    photo = await task_photo(t)
    replies = []
    if t.project.task_type.has_buttons:
        replies.append(render_task(t, ctx.lang, answer=payload, photo=photo))
    replies.append(verdict_reply(result))
    from polycrowd.handlers.feedback import gold_feedback

    replies += gold_feedback(t, result)
    if result.status == "retry":
        again = render_task(t, ctx.lang, photo=photo)
        return [*replies, again]
    return [*replies, *await _next(ctx, event)]


def verdict_reply(result: SubmitResult) -> Reply:
    v = result.verdict
    if result.status == "accepted":
        if result.credited:
            msg = Msg(
                N_("Accepted. +%(amount)s, balance %(balance)s."),
                {"amount": money(result.credited), "balance": money(result.balance)},
            )
        else:
            msg = Msg(N_("Accepted. Thank you!"))
        return Reply.of(msg, kind="verdict")
    if result.status == "review":
        return Reply.of(
            Msg(N_("Credited for now; a moderator will double-check this answer.")),
            kind="verdict",
        )
    reason = Msg(v.reason or N_("The answer did not pass the checks."))
    if result.status == "retry":
        return Reply.of(
            Msg(N_("Not accepted: %(reason)s"), {"reason": reason}),
            Msg(N_("You have one more try: please fix your answer.")),
            kind="verdict",
        )
    return Reply.of(
        Msg(N_("Not accepted: %(reason)s"), {"reason": reason}),
        Msg(N_("If you think this is wrong, send /appeal with a short explanation.")),
        kind="verdict",
    )


# Money and stats --------------------------------------------------------------------------


async def balance(ctx: Context, event: Event) -> list[Reply]:
    user = await ctx.engine.get_user(ctx.user.id)
    lines = [Msg(N_("Your balance: %(balance)s"), {"balance": money(user.balance)})]
    lines += pending_line(await ctx.engine.pending_credit(ctx.user.id))
    return [Reply.of(*lines)]


def pending_line(pending: int) -> list[Msg]:
    """The part of a balance that other workers have not checked yet (not paid out)."""
    if pending <= 0:
        return []
    return [
        Msg(N_("of which %(pending)s waits for other workers' check"), {"pending": money(pending)})
    ]


async def stats(ctx: Context, event: Event) -> list[Reply]:
    s = await ctx.engine.worker_stats(ctx.user.id)
    return [
        Reply.of(
            Msg(
                N_(
                    "%(n)s answer",
                ),
                plural=N_("%(n)s answers"),
                n=s.answers,
            ),
            Msg(N_("Accepted: %(ok)s, rejected: %(rej)s"), {"ok": s.accepted, "rej": s.rejected}),
            Msg(
                N_("Check questions: %(right)s of %(total)s right"),
                {"right": s.gold_correct, "total": s.gold_answered},
            ),
            Msg(
                N_("Estimated accuracy: %(acc)s%% (at least %(low)s%%)"),
                {"acc": round(100 * s.accuracy), "low": round(100 * s.accuracy_low)},
            ),
            Msg(
                N_("Earned: %(earned)s, balance %(balance)s"),
                {"earned": money(s.earnings), "balance": money(s.balance)},
            ),
            *pending_line(s.pending),
            ephemeral=True,
        )
    ]


async def payout(ctx: Context, event: Event) -> list[Reply]:
    await ctx.engine.request_payout(ctx.user.id)
    return [ctx.text(N_("Payout requested. A moderator will approve it."))]


# Privacy and appeals --------------------------------------------------------------------


async def mydata(ctx: Context, event: Event) -> list[Reply]:
    data = await ctx.engine.my_data(ctx.user.id)
    blob = json.dumps(data, ensure_ascii=False, indent=1, default=str).encode("utf-8")
    return [
        Reply.of(
            Msg(N_("Here is everything stored about you.")),
            document=Document("polycrowd-my-data.json", blob),
            ephemeral=True,
        )
    ]


async def forgetme(ctx: Context, event: Event) -> list[Reply]:
    from polycrowd.handlers.common import yes_no

    return [
        Reply.of(
            Msg(N_("Erase your personal data? Your answers and payments stay under a pseudonym.")),
            buttons=yes_no("fy", "fn"),
            ephemeral=True,
        )
    ]


async def forget_confirm(ctx: Context, event: Event) -> list[Reply]:
    await ctx.engine.forget(ctx.user.id)
    return [Reply.of(Msg(N_("Your personal data has been erased. Goodbye!")), edit=True)]


async def forget_cancel(ctx: Context, event: Event) -> list[Reply]:
    return [Reply.of(Msg(N_("Nothing was erased.")), edit=True)]


async def appeal(ctx: Context, event: Event) -> list[Reply]:
    text = " ".join(event.args).strip()
    if not text:
        return [ctx.text(N_("Send /appeal followed by why your answer was right."))]
    await ctx.engine.appeal(ctx.user.id, None, text)
    return [ctx.text(N_("Your appeal was sent to the moderators."))]


async def link(ctx: Context, event: Event) -> list[Reply]:
    if event.args:
        user = await ctx.engine.redeem_link(ctx.user.id, event.args[0])
        return [
            ctx.text(N_("Accounts linked. Your balance: %(balance)s"), balance=money(user.balance))
        ]
    code = await ctx.engine.link_code(ctx.user.id, event.platform)
    return [
        Reply.of(
            Msg(
                N_(
                    "Your link code is %(code)s. Within 10 minutes, send /link %(code)s from your"
                    " other account."
                ),
                {"code": code},
            ),
            ephemeral=True,
        )
    ]


async def cancel(ctx: Context, event: Event) -> list[Reply]:
    if not await ctx.engine.end_conversation(ctx.user.id):
        return [ctx.text(N_("Nothing to cancel."))]
    return [ctx.text(N_("Cancelled."))]


__all__ = [
    "LANGUAGE_NAMES",
    "Role",
    "money",
    "register",
    "render_task",
    "show_task",
    "task_photo",
]
