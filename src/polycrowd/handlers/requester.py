"""Requester commands: create projects, upload items, launch, watch and export."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from polycrowd.engine.core import Conversation, EngineError
from polycrowd.engine.io import (
    ImportLimits,
    InputError,
    ItemsError,
    load_spec_text,
    parse_spec,
)
from polycrowd.engine.types import Project, Role
from polycrowd.handlers.types import Button, Document, Event, Reply
from polycrowd.i18n import N_, Msg
from polycrowd.reports import status_lines

if TYPE_CHECKING:
    from polycrowd.handlers.common import Context, Dispatcher

SPEC_SUFFIXES = (".yaml", ".yml", ".json")
ITEM_SUFFIXES = (".csv", ".jsonl", ".ndjson")
BAR_WIDTH = 20


def register(d: Dispatcher) -> None:
    d.command("newproject", N_("Create a project step by step"), Role.REQUESTER)(newproject)
    d.command("projects", N_("Your projects"), Role.REQUESTER)(projects)
    d.command("use", N_("Choose the project the next commands act on"), Role.REQUESTER)(use)
    d.command("launch", N_("Start a project"), Role.REQUESTER)(launch)
    d.command("pause", N_("Pause a project"), Role.REQUESTER)(pause)
    d.command("status", N_("Progress, agreement and spend"), Role.REQUESTER)(status)
    d.command("export", N_("Download the results"), Role.REQUESTER)(export)
    d.button("np", Role.REQUESTER)(newproject_type)
    d.button("pl", Role.REQUESTER)(launch_button)
    d.text_handlers.insert(0, conversation_text)
    d.document_handler = document


async def _project_from(ctx: Context, event: Event) -> Project:
    arg = next((a for a in event.args if a.isdigit()), None)
    if arg is not None:
        return await ctx.engine.owned_project(ctx.user.id, int(arg))
    pid = await ctx.engine.current_project(ctx.user.id)
    if pid is None:
        owned = await ctx.engine.projects(ctx.user.id)
        if not owned:
            raise EngineError(N_("You have no projects yet. Send /newproject or a spec file."))
        pid = owned[-1].id
    return await ctx.engine.owned_project(ctx.user.id, pid)


# Guided creation ----------------------------------------------------------------------------

STEPS = (
    N_("What is the project called?"),
    N_("What kind of task is it?"),
    N_("Send the labels, separated by commas."),
    N_("Send the instructions workers will read."),
    N_("Which languages are the items in? Send codes separated by commas, e.g. en, es."),
    N_("How many workers should answer each item? Send a number from 1 to 20."),
    N_("Reward per accepted answer, in cents? Send a whole number, e.g. 5."),
)


async def newproject(ctx: Context, event: Event) -> list[Reply]:
    await ctx.engine.save_conversation(ctx.user.id, Conversation("newproject"))
    return [
        Reply.of(
            Msg(
                N_(
                    "Let's create a project. You can also send a YAML or JSON spec file instead."
                    " Send /cancel to stop."
                )
            ),
            Msg(STEPS[0]),
        )
    ]


def _type_buttons() -> tuple[tuple[Button, ...], ...]:
    return (
        (
            Button(Msg(N_("One label")), "np:choice"),
            Button(Msg(N_("Several labels")), "np:multi"),
            Button(Msg(N_("Free text")), "np:text"),
        ),
    )


async def newproject_type(ctx: Context, event: Event) -> list[Reply]:
    conv = await ctx.engine.conversation(ctx.user.id)
    kind = event.data.partition(":")[2]
    if conv is None or conv.step != 1 or kind not in ("choice", "multi", "text"):
        return [Reply.of(Msg(N_("This button is no longer valid.")), alert=True)]
    conv.data["type"] = kind
    conv.step = 3 if kind == "text" else 2
    await ctx.engine.save_conversation(ctx.user.id, conv)
    return [Reply.of(Msg(STEPS[conv.step]), edit=True)]


async def conversation_text(ctx: Context, event: Event) -> list[Reply]:
    conv = await ctx.engine.conversation(ctx.user.id)
    if conv is None or conv.name != "newproject":
        return []
    text = event.text.strip()
    if not text:
        return [Reply.of(Msg(STEPS[conv.step]))]
    return await _conversation_step(ctx, conv, text)


async def _conversation_step(ctx: Context, conv: Conversation, text: str) -> list[Reply]:
    """One answer of the guided dialogue; every step taken is stored before the reply."""
    if conv.step == 0:
        conv.data["name"] = text[:200]
        conv.step = 1
        await ctx.engine.save_conversation(ctx.user.id, conv)
        return [Reply.of(Msg(STEPS[1]), buttons=_type_buttons())]
    if conv.step == 1:
        return [Reply.of(Msg(STEPS[1]), buttons=_type_buttons())]
    if conv.step == 2:
        conv.data["labels"] = [x.strip() for x in text.split(",") if x.strip()]
        conv.step = 3
    elif conv.step == 3:
        conv.data["instructions"] = text
        conv.step = 4
    elif conv.step == 4:
        conv.data["languages"] = [x.strip().lower() for x in text.split(",") if x.strip()]
        conv.step = 5
    elif conv.step == 5:
        if not text.isdigit() or not 1 <= int(text) <= 20:
            return [Reply.of(Msg(STEPS[5]))]
        conv.data["overlap"] = int(text)
        conv.step = 6
    elif conv.step == 6:
        if not text.isdigit():
            return [Reply.of(Msg(STEPS[6]))]
        conv.data["reward"] = int(text)
        return await _finish(ctx, conv)
    await ctx.engine.save_conversation(ctx.user.id, conv)
    return [Reply.of(Msg(STEPS[conv.step]))]


async def _finish(ctx: Context, conv: Conversation) -> list[Reply]:
    data = dict(conv.data)
    langs = data.get("languages") or [ctx.lang]
    data["instructions"] = {langs[0]: data.get("instructions", "")}
    try:
        spec = parse_spec(data, "project")
    except InputError as exc:
        await ctx.engine.end_conversation(ctx.user.id)
        return [Reply.of(Msg(N_("The project is not valid: %(error)s"), {"error": str(exc)}))]
    project = await ctx.engine.create_project(ctx.user.id, spec)
    await ctx.engine.end_conversation(ctx.user.id, current_project=project.id)
    return [_created(project)]


def _created(project: Project) -> Reply:
    return Reply.of(
        Msg(N_("Project %(id)s “%(name)s” created."), {"id": project.id, "name": project.name}),
        Msg(
            N_(
                "Now send a CSV or JSONL file with the items (columns id, text, and optionally"
                " lang and gold), then /launch."
            )
        ),
    )


# Files --------------------------------------------------------------------------------------


async def document(ctx: Context, event: Event) -> list[Reply]:
    ctx.require(Role.REQUESTER)
    doc = event.document
    assert doc is not None
    name = doc.filename.lower()
    if len(doc.content) > ctx.settings.max_upload_bytes:
        return [
            ctx.text(
                N_("The file is too large (at most %(mb)s MB)."),
                mb=ctx.settings.max_upload_bytes // (1024 * 1024),
            )
        ]
    if name.endswith(SPEC_SUFFIXES):
        try:
            text = doc.content.decode("utf-8")
            spec = load_spec_text(text, doc.filename)
        except (InputError, UnicodeDecodeError) as exc:
            return [Reply.of(Msg(N_("The project is not valid: %(error)s"), {"error": str(exc)}))]
        project = await ctx.engine.create_project(ctx.user.id, spec)
        await ctx.engine.end_conversation(ctx.user.id, current_project=project.id)
        return [_created(project)]
    if not name.endswith(ITEM_SUFFIXES):
        return [
            ctx.text(
                N_("Send items as a .csv or .jsonl file, or a project spec as .yaml or .json.")
            )
        ]
    project = await _project_from(ctx, event)
    try:
        limits = ImportLimits(ctx.settings.max_import_rows, ctx.settings.max_upload_bytes)
        report = await ctx.engine.import_items(
            project.id, doc.content, name=doc.filename, limits=limits
        )
    except ItemsError as exc:
        lines = "\n".join(str(e) for e in exc.errors)
        return [
            Reply.of(
                Msg(
                    N_("%(n)s bad row, nothing was imported. The report is attached."),
                    plural=N_("%(n)s bad rows, nothing was imported. The report is attached."),
                    n=len(exc.errors),
                ),
                document=Document("import-errors.txt", lines.encode("utf-8")),
            )
        ]
    except InputError as exc:
        return [Reply.of(Msg(N_("Nothing was imported: %(error)s"), {"error": str(exc)}))]
    return [
        Reply.of(
            Msg(
                N_("Imported %(n)s item into project %(id)s."),
                {"id": project.id},
                plural=N_("Imported %(n)s items into project %(id)s."),
                n=report.imported,
            ),
            Msg(N_("Gold questions: %(gold)s"), {"gold": report.gold}),
            buttons=((Button(Msg(N_("Launch")), f"pl:{project.id}"),),),
        )
    ]


# Lifecycle ------------------------------------------------------------------------------------


async def projects(ctx: Context, event: Event) -> list[Reply]:
    owned = await ctx.engine.projects(ctx.user.id)
    if not owned:
        return [ctx.text(N_("You have no projects yet. Send /newproject or a spec file."))]
    lines = [Msg(N_("Your projects:"))]
    lines += [Msg.raw(f"#{p.id} {p.name} [{p.state}]") for p in owned]
    return [Reply.of(*lines)]


async def use(ctx: Context, event: Event) -> list[Reply]:
    project = await _project_from(ctx, event)
    await ctx.engine.set_current_project(ctx.user.id, project.id)
    return [
        ctx.text(N_("Now working on project %(id)s “%(name)s”."), id=project.id, name=project.name)
    ]


async def launch(ctx: Context, event: Event) -> list[Reply]:
    project = await _project_from(ctx, event)
    project = await ctx.engine.set_state(ctx.user.id, project.id, "live")
    return [ctx.text(N_("Project %(id)s is live."), id=project.id)]


async def pause(ctx: Context, event: Event) -> list[Reply]:
    project = await _project_from(ctx, event)
    project = await ctx.engine.set_state(ctx.user.id, project.id, "paused")
    return [ctx.text(N_("Project %(id)s is paused."), id=project.id)]


def progress_bar(fraction: float, width: int = BAR_WIDTH) -> str:
    full = round(max(0.0, min(1.0, fraction)) * width)
    return "█" * full + "░" * (width - full)


async def status(ctx: Context, event: Event) -> list[Reply]:
    project = await _project_from(ctx, event)
    s = await ctx.engine.status(project.id)
    return [
        Reply.of(
            Msg(
                N_("Project %(id)s “%(name)s”: %(state)s"),
                {"id": project.id, "name": project.name, "state": project.state},
            ),
            Msg.raw(f"{progress_bar(s.progress)} {100 * s.progress:.0f}%"),
            *status_lines(s),
        )
    ]


async def export(ctx: Context, event: Event) -> list[Reply]:
    project = await _project_from(ctx, event)
    fmt = "jsonl" if "jsonl" in event.args else "csv"
    await ctx.engine.aggregate_project(project.id)
    buf = io.StringIO()
    n = await ctx.engine.export(project.id, buf, fmt)
    return [
        Reply.of(
            Msg(
                N_("Results of project %(id)s: %(n)s item."),
                {"id": project.id},
                plural=N_("Results of project %(id)s: %(n)s items."),
                n=n,
            ),
            document=Document(f"project-{project.id}-results.{fmt}", buf.getvalue().encode()),
        )
    ]


async def launch_button(ctx: Context, event: Event) -> list[Reply]:
    pid = event.data.partition(":")[2]
    if not pid.isdigit():
        return [Reply.of(Msg(N_("This button is no longer valid.")), alert=True)]
    ctx.require(Role.REQUESTER)
    project = await ctx.engine.set_state(ctx.user.id, int(pid), "live")
    return [ctx.text(N_("Project %(id)s is live."), id=project.id)]
