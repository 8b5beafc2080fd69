"""Discord adapter: polycrowd as a discord.py 2 bot (slash commands, buttons, selects, modals).

The adapter turns interactions into platform-neutral :class:`~polycrowd.handlers.types.Event`
values, lets the :class:`~polycrowd.handlers.common.Dispatcher` answer them, and renders each
:class:`~polycrowd.handlers.types.Reply` as Discord messages:

* **Slash commands** are generated from ``dispatcher.command_list()``; descriptions (and names
  where a catalog gives a valid one) are localized from our gettext catalogs through a
  :class:`discord.app_commands.Translator`. Commands that take arguments get string options;
  ``/upload file:`` takes an attachment (a CSV/JSONL items file or a YAML/JSON spec).
* **Acknowledge first**: every interaction is deferred before the dispatcher runs (ephemeral
  for personal data), so a slow checker never breaks Discord's 3-second rule; the answer
  follows as follow-up messages (or an edit of the message a button belongs to).
* **Persistent components**: every button carries its dispatcher data in its custom_id
  (``pc:<data>``) and is a :class:`discord.ui.DynamicItem`, registered when the bot starts, so
  buttons on old messages keep working after a restart. Multi-label tasks use a select menu
  (``pcm:<assignment>``, values are label indices) that submits ``ms:<assignment>:<mask>``; text
  and spans tasks get an *Answer* button (``pcq:<assignment>``) that opens a modal whose
  submission becomes a TEXT event. Anything else that matches no template is answered with
  "This button is no longer valid.".
* **Images**: a task of an image project is an embed whose image is the item (its URL, or
  the bytes attached as ``attachment://image.png``); an edit re-attaches it.
* **Limits**: messages are split at 2000 characters, embeds are used only when they fit, at
  most 5 rows of 5 buttons (overflow goes to select menus), labels <= 80 characters and
  custom_ids <= 100 characters.
* **Admin channel**: ``settings.discord_admin_channel``; interactions from it carry
  ``is_admin_chat`` and :meth:`DiscordAdapter.send` posts moderation cards there.
* **Direct messages** (no privileged intent needed): text becomes a TEXT event (answers to
  text tasks, the /newproject conversation) and attachments become DOCUMENT events.

Nothing is created at import time; :meth:`DiscordAdapter.build_bot` makes a fresh client.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from inspect import Parameter, Signature
from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands
from discord.app_commands import locale_str

from polycrowd.bot.budget import SharedBudget, keep_share
from polycrowd.bot.escaping import clean
from polycrowd.engine.types import Role
from polycrowd.handlers.types import Button, Document, Event, EventKind, Photo, Reply
from polycrowd.i18n import N_, Msg, Translator
from polycrowd.settings import ShardPlan

if TYPE_CHECKING:
    from polycrowd.bot.app import App

log = logging.getLogger(__name__)

PLATFORM = "discord"
#: default_member_permissions of moderator/admin slash commands: hidden from plain members.
STAFF_PERMISSIONS = discord.Permissions(manage_messages=True)

# Discord limits (https://discord.com/developers/docs/resources/message)
MAX_CONTENT = 2000
MAX_EMBED_TITLE = 256
MAX_EMBED_DESCRIPTION = 4096
MAX_CUSTOM_ID = 100
MAX_LABEL = 80
MAX_ROWS = 5
MAX_PER_ROW = 5
MAX_OPTIONS = 25
MAX_OPTION_TEXT = 100
MAX_MODAL_TITLE = 45
MAX_DESCRIPTION = 100
MAX_ANSWER_CHARS = 4000

# custom_id prefixes (each a DynamicItem template; keep them distinct)
BUTTON_PREFIX = "pc:"  # pc:<dispatcher button data>
MULTI_PREFIX = "pcm:"  # pcm:<assignment id>, a select menu of label indices
OPTIONS_PREFIX = "pcs:"  # pcs:<n>, a select menu whose values are dispatcher button data
ANSWER_PREFIX = "pcq:"  # pcq:<assignment id or empty>, opens the text answer modal
ANSWER_FIELD = "answer"

UPLOAD_COMMAND = "upload"

#: Commands whose answers are personal: deferred (and answered) ephemerally.
PRIVATE_COMMANDS = frozenset(
    {
        "balance",
        "stats",
        "mydata",
        "forgetme",
        "link",
        "payout",
        "appeal",
        # a requester's projects, files and spend are not for the whole channel
        "newproject",
        "projects",
        "use",
        "launch",
        "pause",
        "status",
        "export",
        "report",
        "dashboard",
        UPLOAD_COMMAND,
    }
)

_MENTION = re.compile(r"^<@!?(\d{5,25})>$")
_NAME_OK = re.compile(r"^[-_\w]{1,32}$")

# Strings of this adapter (the handlers' strings live in the handlers).
T_ANSWER = N_("Answer")
T_YOUR_ANSWER = N_("Your answer")
T_MORE_OPTIONS = N_("More options")
T_CHOOSE_LABELS = N_("Choose one or more labels")
T_NO_LONGER_VALID = N_("This button is no longer valid.")
T_TOO_LARGE = N_("The file is too large (at most %(mb)s MB).")
T_UPLOAD = N_("Upload a file: items (CSV, JSONL) or a project spec (YAML, JSON)")


# Slash command options ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Option:
    """One slash-command option; its value becomes Event.args (split on whitespace)."""

    name: str
    description: str  # msgid
    kind: Literal["text", "user", "role", "format", "file"] = "text"
    required: bool = False


OPTIONS: Mapping[str, tuple[Option, ...]] = {
    "link": (Option("code", N_("The code from your other account (leave empty to get one)")),),
    "appeal": (Option("text", N_("Why your answer was right"), required=True),),
    "use": (Option("project", N_("Project number"), required=True),),
    "launch": (Option("project", N_("Project number (default: the current project)")),),
    "pause": (Option("project", N_("Project number (default: the current project)")),),
    "status": (Option("project", N_("Project number (default: the current project)")),),
    "export": (
        Option("project", N_("Project number (default: the current project)")),
        Option("format", N_("File format"), kind="format"),
    ),
    "grant": (
        Option("user", N_("The user: a mention, pseudonym or id"), kind="user", required=True),
        Option("role", N_("The new role"), kind="role", required=True),
    ),
    "block": (
        Option("user", N_("The user: a mention, pseudonym or id"), kind="user", required=True),
        Option("reason", N_("Why")),
    ),
    "unblock": (
        Option("user", N_("The user: a mention, pseudonym or id"), kind="user", required=True),
    ),
    UPLOAD_COMMAND: (Option("file", N_("The file"), kind="file", required=True),),
    "report": (Option("project", N_("Project number (default: the current project)")),),
    "ask": (Option("text", N_("Your question"), required=True),),
    "leaderboard": (Option("choice", N_("on or off (leave empty to see the board)")),),
    "answer": (
        Option("question", N_("The question's number"), required=True),
        Option("text", N_("Your answer"), required=True),
    ),
    "faq": (
        Option("action", N_("What to do: add"), required=True),
        Option("question", N_("The question's number"), required=True),
    ),
}

_ANNOTATIONS: Mapping[str, Any] = {
    "text": str,
    "user": str,
    "role": Literal["worker", "requester", "moderator", "admin"],
    "format": Literal["csv", "jsonl"],
    "file": discord.Attachment,
}


def option_args(options: Sequence[Option], values: Mapping[str, Any]) -> tuple[str, ...]:
    """Slash option values -> Event.args (``<@123>`` becomes ``discord:123``)."""
    args: list[str] = []
    for opt in options:
        value = values.get(opt.name)
        if value is None or opt.kind == "file":
            continue
        text = str(value).strip()
        if opt.kind == "user":
            mention = _MENTION.match(text)
            if mention:
                text = f"{PLATFORM}:{mention.group(1)}"
        if opt.kind == "text" and opt.name == "project":
            text = text.lstrip("#")
        args.extend(text.split())
    return tuple(args)


# Localized command names and descriptions ---------------------------------------------------


class CatalogTranslator(app_commands.Translator):
    """discord.py's command Translator backed by our gettext catalogs.

    Descriptions are msgids and are translated when the catalog has them. A command *name* is
    localized only when the catalog translates the msgid ``/<name>`` into a valid Discord name
    (lower case, 1-32 letters, digits, ``-`` or ``_``) not already taken in that locale.
    """

    def __init__(self, translator: Translator) -> None:
        self.translator = translator
        self._languages = frozenset(translator.languages)  # read the locales folder once
        self._names: dict[tuple[str, str], str] = {}  # (lang, localized name) -> command

    def language_of(self, locale: discord.Locale) -> str | None:
        """Our language for a Discord locale; None for English (the msgids) or unknown."""
        base = locale.value.replace("_", "-").split("-")[0].lower()
        if base == "en" or base not in self._languages:
            return None
        return base

    async def translate(
        self,
        string: locale_str,
        locale: discord.Locale,
        context: app_commands.TranslationContextTypes,
    ) -> str | None:
        lang = self.language_of(locale)
        if lang is None:
            return None
        where = context.location
        if where is app_commands.TranslationContextLocation.command_name:
            return self._name(lang, string.message)
        if where in (
            app_commands.TranslationContextLocation.command_description,
            app_commands.TranslationContextLocation.parameter_description,
        ):
            text = self.translator.gettext(lang, string.message)
            if not text or text == string.message:
                return None
            return _clip(text, MAX_DESCRIPTION)
        return None

    def _name(self, lang: str, name: str) -> str | None:
        msgid = f"/{name}"
        text = self.translator.gettext(lang, msgid).strip().lstrip("/")
        if not text or text == name or not _NAME_OK.match(text) or text != text.lower():
            return None
        owner = self._names.setdefault((lang, text), name)
        return text if owner == name else None


# Rendering ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Component:
    """A button or select menu to put on a message (built into a View when sent)."""

    kind: Literal["button", "multi", "options", "answer"]
    custom_id: str
    label: str = ""
    style: discord.ButtonStyle = discord.ButtonStyle.primary
    options: tuple[tuple[str, str], ...] = ()  # (label, value) for selects
    placeholder: str = ""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One Discord message rendered from a Reply."""

    content: str | None = None
    embed: discord.Embed | None = None
    rows: tuple[tuple[Component, ...], ...] = ()
    document: Document | None = None
    photo: Photo | None = None  # the embed's image, attached when it is bytes

    def view(self) -> discord.ui.View | None:
        if not self.rows:
            return None
        view = discord.ui.View(timeout=None)
        for n, row in enumerate(self.rows):
            for c in row:
                view.add_item(_item(c, n))
        return view

    def files(self) -> list[discord.File]:
        out = []
        if self.photo is not None and not self.photo.url:
            out.append(discord.File(io.BytesIO(self.photo.data), filename=self.photo.filename))
        if self.document is not None:
            content = io.BytesIO(self.document.content)
            out.append(discord.File(content, filename=self.document.filename))
        return out

    def send_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"allowed_mentions": discord.AllowedMentions.none()}
        if self.content:
            kw["content"] = self.content
        if self.embed is not None:
            kw["embed"] = self.embed
        view = self.view()
        if view is not None:
            kw["view"] = view
        files = self.files()
        if files:
            kw["files"] = files
        return kw

    def edit_kwargs(self) -> dict[str, Any]:
        return {
            "allowed_mentions": discord.AllowedMentions.none(),
            "content": self.content or None,
            "embeds": [self.embed] if self.embed is not None else [],
            "view": self.view(),
            "attachments": self.files(),
        }


def _item(c: Component, row: int) -> discord.ui.Item[Any]:
    if c.kind == "button":
        return TaskButton(c.custom_id[len(BUTTON_PREFIX) :], c.label, c.style, row=row)
    if c.kind == "answer":
        return AnswerButton(c.custom_id[len(ANSWER_PREFIX) :], c.label, row=row)
    select: discord.ui.Select[discord.ui.View] = discord.ui.Select(
        custom_id=c.custom_id,
        placeholder=c.placeholder or None,
        min_values=1,
        max_values=len(c.options) if c.kind == "multi" else 1,
        options=[discord.SelectOption(label=lab, value=val) for lab, val in c.options],
    )
    if c.kind == "multi":
        return LabelSelect(c.custom_id[len(MULTI_PREFIX) :], select, row=row)
    return OptionSelect(c.custom_id[len(OPTIONS_PREFIX) :], select, row=row)


def _escape(text: str) -> str:
    """User-supplied text (items, names, instructions, answers) shown as typed: no bidi
    overrides or control characters, not as markdown, and no mention that would ping
    (``@everyone``, ``<@id>``; the messages also go out with ``allowed_mentions`` none)."""
    plain = discord.utils.escape_markdown(clean(text), as_needed=True)
    return discord.utils.escape_mentions(plain)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def split_text(text: str, limit: int = MAX_CONTENT) -> list[str]:
    """Split on line breaks into chunks of at most ``limit`` characters (hard-split long lines)."""
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for line in text.split("\n"):
        while len(line) > limit:
            if current:
                chunks.append("\n".join(current))
                current, size = [], 0
            chunks.append(line[:limit])
            line = line[limit:]
        extra = len(line) + (1 if current else 0)
        if current and size + extra > limit:
            chunks.append("\n".join(current))
            current, size = [], 0
            extra = len(line)
        current.append(line)
        size += extra
    if current or not chunks:
        chunks.append("\n".join(current))
    return chunks


_STYLES: tuple[tuple[str, discord.ButtonStyle], ...] = (
    ("s:", discord.ButtonStyle.secondary),
    ("fn", discord.ButtonStyle.secondary),
    ("fy", discord.ButtonStyle.danger),
    ("lok", discord.ButtonStyle.success),
    ("ms:", discord.ButtonStyle.success),
    ("mod:aa:", discord.ButtonStyle.success),
    ("mod:au:", discord.ButtonStyle.success),
    ("mod:pa:", discord.ButtonStyle.success),
    ("mod:uu:", discord.ButtonStyle.success),
    ("mod:ar:", discord.ButtonStyle.danger),
    ("mod:ad:", discord.ButtonStyle.danger),
    ("mod:pd:", discord.ButtonStyle.danger),
    ("mod:ub:", discord.ButtonStyle.danger),
    ("mod:fd:", discord.ButtonStyle.secondary),
    ("l:", discord.ButtonStyle.secondary),
)


def _style(data: str, label: str) -> discord.ButtonStyle:
    if data.startswith("l:") and label.startswith("✓"):
        return discord.ButtonStyle.success
    for prefix, style in _STYLES:
        if data.startswith(prefix):
            return style
    return discord.ButtonStyle.primary


class Renderer:
    """Reply -> Discord messages in one language (pure: no I/O)."""

    def __init__(self, translator: Translator) -> None:
        self.translator = translator

    def text(self, msg: Msg, lang: str) -> str:
        """Plain text (labels, placeholders): user parts cleaned, never markdown-escaped."""
        return self.translator.render(msg, lang, clean)

    def render(self, reply: Reply, lang: str, *, answer_button: bool = False) -> list[Outgoing]:
        """Messages for ``reply``; components and the file ride on the last one."""
        esc = _escape
        rows = self.components(reply, lang, answer_button=answer_button)
        embed = None
        body = ""
        if reply.kind in ("task", "card") and reply.parts:
            title = self.translator.render(reply.parts[0], lang, esc)
            desc = self.translator.render_all(reply.parts[1:], lang, esc)
            if len(title) <= MAX_EMBED_TITLE and len(desc) <= MAX_EMBED_DESCRIPTION:
                colour = (
                    discord.Colour.blurple() if reply.kind == "task" else discord.Colour.orange()
                )
                embed = discord.Embed(title=title, description=desc or None, colour=colour)
            else:
                body = "\n".join(x for x in (title, desc) if x)
        else:
            body = self.translator.render_all(reply.parts, lang, esc)
        photo = reply.photo
        if photo is not None:  # the image goes in an embed (one of its own if the text is long)
            if embed is None:
                embed = discord.Embed(colour=discord.Colour.blurple())
            embed.set_image(url=photo.url or f"attachment://{photo.filename}")
        if embed is not None and not body:
            return [Outgoing(embed=embed, rows=rows, document=reply.document, photo=photo)]
        chunks = split_text(body)
        if not chunks[-1].strip() and reply.document is None and not rows and embed is None:
            chunks[-1] = "…"  # Discord refuses an empty message
        out = [Outgoing(content=c) for c in chunks[:-1] if c.strip()]
        out.append(
            Outgoing(
                content=chunks[-1] or None,
                embed=embed,
                rows=rows,
                document=reply.document,
                photo=photo,
            )
        )
        return out

    def components(
        self, reply: Reply, lang: str, *, answer_button: bool = False
    ) -> tuple[tuple[Component, ...], ...]:
        """At most 5 rows: buttons (5 a row), a label select for multi tasks, overflow selects."""
        selects: list[Component] = []
        button_rows: list[list[Component]] = []
        seen: set[str] = set()
        multi: list[tuple[str, str]] = []
        multi_aid = ""
        aid = ""
        for row in reply.buttons:
            out_row: list[Component] = []
            for b in row:
                kind, _, rest = b.data.partition(":")
                label = self.text(b.label, lang)
                if kind == "m":  # a multi-label toggle: becomes an option of one select
                    multi_aid = rest.partition(":")[0]
                    clean = label.removeprefix("✓ ")
                    multi.append((_clip(clean, MAX_OPTION_TEXT), str(len(multi))))
                    continue
                if kind == "ms":  # the select submits by itself
                    multi_aid = rest.partition(":")[0]
                    continue
                if kind == "s":
                    aid = rest
                component = self._button(b, label)
                if component is None or component.custom_id in seen:
                    continue
                seen.add(component.custom_id)
                out_row.append(component)
            if out_row:
                button_rows.append(out_row)
        if multi and multi_aid.isdigit():
            selects.append(
                Component(
                    "multi",
                    f"{MULTI_PREFIX}{multi_aid}",
                    options=tuple(multi[:MAX_OPTIONS]),
                    placeholder=_clip(self.text(Msg(T_CHOOSE_LABELS), lang), MAX_OPTION_TEXT),
                )
            )
        if reply.expects_text or answer_button:
            answer = Component(
                "answer",
                f"{ANSWER_PREFIX}{aid if aid.isdigit() else ''}",
                label=_clip(self.text(Msg(T_ANSWER), lang), MAX_LABEL),
                style=discord.ButtonStyle.success,
            )
            if button_rows and len(button_rows[-1]) < MAX_PER_ROW:
                button_rows[-1].insert(0, answer)
            else:
                button_rows.append([answer])
        return self._layout(button_rows, selects, lang)

    def _button(self, b: Button, label: str) -> Component | None:
        custom_id = BUTTON_PREFIX + b.data
        if len(custom_id) > MAX_CUSTOM_ID:
            log.error("button data too long for a Discord custom_id: %r", b.data)
            return None
        return Component(
            "button", custom_id, _clip(label or "…", MAX_LABEL), _style(b.data, label)
        )

    def _layout(
        self, button_rows: list[list[Component]], selects: list[Component], lang: str
    ) -> tuple[tuple[Component, ...], ...]:
        budget = MAX_ROWS - len(selects)
        rows = [r[i : i + MAX_PER_ROW] for r in button_rows for i in range(0, len(r), MAX_PER_ROW)]
        if len(rows) > budget:
            flat = [c for r in rows for c in r]
            if len(flat) <= budget * MAX_PER_ROW:
                rows = [flat[i : i + MAX_PER_ROW] for i in range(0, len(flat), MAX_PER_ROW)]
            else:  # too many buttons: keep the last row, the rest goes into select menus
                last = button_rows[-1][:MAX_PER_ROW]
                rest = [c for c in flat if c not in last and c.kind == "button"]
                room = max(budget - 1, 0)
                for n in range(room):
                    chunk = rest[n * MAX_OPTIONS : (n + 1) * MAX_OPTIONS]
                    if not chunk:
                        break
                    selects.append(
                        Component(
                            "options",
                            f"{OPTIONS_PREFIX}{n}",
                            options=tuple(
                                (
                                    _clip(c.label, MAX_OPTION_TEXT),
                                    c.custom_id[len(BUTTON_PREFIX) :],
                                )
                                for c in chunk
                            ),
                            placeholder=_clip(self.text(Msg(T_MORE_OPTIONS), lang), 100),
                        )
                    )
                if len(rest) > room * MAX_OPTIONS:
                    log.error("too many buttons for one Discord message: %d", len(flat))
                rows = [last]
        out = [tuple(r) for r in rows] + [(s,) for s in selects]
        return tuple(out[:MAX_ROWS])


# Components ---------------------------------------------------------------------------------


def _adapter(interaction: discord.Interaction[Any]) -> DiscordAdapter:
    client = interaction.client
    if not isinstance(client, PolycrowdBot):
        raise RuntimeError("not a polycrowd bot")
    return client.adapter


class TaskButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=r"pc:(?P<data>.{1,97})",
):
    """A button carrying dispatcher data (``a:12:0``, ``mod:ub:3`` ...) in its custom_id."""

    def __init__(
        self,
        data: str,
        label: str = "",
        style: discord.ButtonStyle = discord.ButtonStyle.primary,
        *,
        row: int | None = None,
    ) -> None:
        super().__init__(
            discord.ui.Button(label=label or None, style=style, custom_id=BUTTON_PREFIX + data),
            row=row,
        )
        self.data = data

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> TaskButton:
        return cls(match["data"], getattr(item, "label", None) or "")

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _adapter(interaction).on_component(interaction, self.data)


class LabelSelect(
    discord.ui.DynamicItem[discord.ui.Select[discord.ui.View]],
    template=r"pcm:(?P<aid>\d{1,20})",
):
    """A multi-label task's labels; the chosen indices are submitted as ``ms:<aid>:<mask>``."""

    def __init__(
        self, aid: str, select: discord.ui.Select[discord.ui.View], *, row: int | None = None
    ) -> None:
        super().__init__(select, row=row)
        self.aid = aid

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> LabelSelect:
        if not isinstance(item, discord.ui.Select):
            raise TypeError("expected a select menu")
        return cls(match["aid"], item)

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        mask = 0
        for value in self.item.values:
            if value.isdigit() and int(value) < 64:
                mask |= 1 << int(value)
        await _adapter(interaction).on_component(interaction, f"ms:{self.aid}:{mask}")


class OptionSelect(
    discord.ui.DynamicItem[discord.ui.Select[discord.ui.View]],
    template=r"pcs:(?P<n>\d{1,2})",
):
    """Buttons that did not fit in 5x5, as a select menu: the value is the button data."""

    def __init__(
        self, n: str, select: discord.ui.Select[discord.ui.View], *, row: int | None = None
    ) -> None:
        super().__init__(select, row=row)
        self.n = n

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> OptionSelect:
        if not isinstance(item, discord.ui.Select):
            raise TypeError("expected a select menu")
        return cls(match["n"], item)

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        values = self.item.values
        await _adapter(interaction).on_component(interaction, values[0] if values else "")


class AnswerButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=r"pcq:(?P<aid>\d{0,20})",
):
    """Opens the modal for a free-text answer (text and spans tasks, conversations)."""

    def __init__(self, aid: str, label: str = "", *, row: int | None = None) -> None:
        super().__init__(
            discord.ui.Button(
                label=label or None,
                style=discord.ButtonStyle.success,
                custom_id=ANSWER_PREFIX + aid,
            ),
            row=row,
        )
        self.aid = aid

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> AnswerButton:
        return cls(match["aid"], getattr(item, "label", None) or "")

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _adapter(interaction).open_answer_modal(interaction, self.aid)


class StaleComponent(
    discord.ui.DynamicItem[discord.ui.Item[discord.ui.View]],
    template=r"(?!pc[a-z]?:).{1,100}",
):
    """Any component that is not ours (an older scheme): answered politely, never ignored."""

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> StaleComponent:
        return cls(item)

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _adapter(interaction).on_stale(interaction)


class AnswerModal(discord.ui.Modal):
    """A one-field modal; its submission is handled by the bot's ``on_interaction`` (so that a
    modal opened before a restart still works), not by ``on_submit``."""

    def __init__(self, custom_id: str, title: str, label: str, placeholder: str = "") -> None:
        super().__init__(title=_clip(title, MAX_MODAL_TITLE), custom_id=custom_id, timeout=900)
        self.answer: discord.ui.TextInput[AnswerModal] = discord.ui.TextInput(
            label=_clip(label, MAX_MODAL_TITLE),
            custom_id=ANSWER_FIELD,
            style=discord.TextStyle.paragraph,
            max_length=MAX_ANSWER_CHARS,
            placeholder=_clip(placeholder, MAX_OPTION_TEXT) or None,
        )
        self.add_item(self.answer)


def modal_value(data: Any, custom_id: str = ANSWER_FIELD) -> str | None:
    """The value of a modal field in raw interaction data (rows or label components)."""
    if isinstance(data, Mapping):
        if data.get("custom_id") == custom_id and "value" in data:
            return str(data["value"])
        for key in ("components", "component"):
            found = modal_value(data.get(key), custom_id)
            if found is not None:
                return found
    elif isinstance(data, list):
        for child in data:
            found = modal_value(child, custom_id)
            if found is not None:
                return found
    return None


# Slash command callbacks --------------------------------------------------------------------


def _make_callback(adapter: DiscordAdapter, name: str, options: tuple[Option, ...]) -> Any:
    """A command callback whose signature declares ``options`` (discord.py reads it)."""

    async def callback(interaction: discord.Interaction[Any], **values: Any) -> None:
        await adapter.on_command(interaction, name, options, values)

    params = [
        Parameter("interaction", Parameter.POSITIONAL_OR_KEYWORD, annotation=discord.Interaction)
    ]
    for opt in options:
        annotation = _ANNOTATIONS[opt.kind]
        params.append(
            Parameter(
                opt.name,
                Parameter.KEYWORD_ONLY,
                annotation=annotation if opt.required else annotation | None,
                default=Parameter.empty if opt.required else None,
            )
        )
    callback.__signature__ = Signature(params)  # type: ignore[attr-defined]
    if options:
        described = {o.name: locale_str(o.description) for o in options}
        return app_commands.describe(**described)(callback)
    return callback


# The bot ------------------------------------------------------------------------------------


class PolycrowdBot(discord.Client):
    """One discord.py client per start; everything it knows comes from its adapter."""

    def __init__(self, adapter: DiscordAdapter, **options: Any) -> None:
        intents = discord.Intents.none()
        intents.guilds = True  # channels (the admin channel) in the cache
        intents.dm_messages = True  # text answers and files sent to the bot directly
        super().__init__(
            intents=intents, allowed_mentions=discord.AllowedMentions.none(), **options
        )
        self.adapter = adapter
        self.tree = app_commands.CommandTree(self)
        for command in adapter.slash_commands():
            self.tree.add_command(command)

    async def setup_hook(self) -> None:
        pace_requests(self.http, self.adapter.budget)
        self.add_dynamic_items(TaskButton, LabelSelect, OptionSelect, AnswerButton, StaleComponent)
        await self.tree.set_translator(CatalogTranslator(self.adapter.translator))
        ids = self.adapter.shards.ids
        if ids is not None and 0 not in ids:
            return  # the process that runs shard 0 syncs the commands, once for all
        guilds = self.adapter.guilds
        if guilds:
            for gid in guilds:
                guild = discord.Object(id=gid)
                self.tree.copy_global_to(guild=guild)
                await self.tree.sync(guild=guild)
        else:
            await self.tree.sync()

    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or message.guild is not None:
            return  # only direct messages: guild content needs the privileged intent
        await self.adapter.on_direct_message(message)

    async def on_interaction(self, interaction: discord.Interaction[Any]) -> None:
        if interaction.type is not discord.InteractionType.modal_submit:
            return
        data: Any = interaction.data or {}
        custom_id = str(data.get("custom_id", ""))
        if custom_id.startswith(ANSWER_PREFIX):
            text = modal_value(data.get("components")) or ""
            await self.adapter.on_modal(interaction, custom_id[len(ANSWER_PREFIX) :], text)


class ShardedPolycrowdBot(PolycrowdBot, discord.AutoShardedClient):
    """The same bot on discord.py's AutoShardedClient: ``shard_count`` gateway connections
    (None: as many as Discord recommends), of which this process runs ``shard_ids``."""


#: Discord allows a bot 50 REST requests a second overall; a little under, as for Telegram.
#: Interaction responses and follow-ups do not count (they are webhook calls).
DISCORD_PER_S = 45.0
DISCORD_BURST = 20.0


def pace_requests(http: Any, budget: SharedBudget) -> None:
    """Every REST request of ``http`` (a discord.py HTTPClient) waits for its slot of the
    bot's overall budget first; discord.py still keeps each route's own bucket."""
    request = http.request
    if getattr(request, "polycrowd_budget", None) is budget:
        return

    async def paced(*args: Any, **kwargs: Any) -> Any:
        await budget.turn()
        return await request(*args, **kwargs)

    paced.polycrowd_budget = budget  # type: ignore[attr-defined]
    http.request = paced


# The adapter ----------------------------------------------------------------------------------


@dataclass
class _Delivery:
    """How to answer one interaction."""

    interaction: discord.Interaction[Any]
    private: bool  # every message ephemeral
    can_edit: bool  # a component (or a modal opened from one): its message can be edited


@dataclass
class DiscordAdapter:
    """The Discord platform for :class:`~polycrowd.bot.app.App` (see the module docstring)."""

    app: App
    admin_channel: int = 0
    guilds: tuple[int, ...] = ()
    token: str = ""
    bot: PolycrowdBot | None = None
    _langs: dict[int, str] = field(default_factory=dict)  # discord user id -> language
    _send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _runner: asyncio.Task[None] | None = None
    _share_task: asyncio.Task[None] | None = None

    name = PLATFORM

    def __post_init__(self) -> None:
        s = self.app.settings
        if not self.admin_channel and s.discord_admin_channel.strip().isdigit():
            self.admin_channel = int(s.discord_admin_channel.strip())
        self.guilds = self.guilds or tuple(s.discord_guilds)
        self.token = self.token or s.discord_token
        self.renderer = Renderer(self.app.translator)
        # POLYCROWD_DISCORD_SHARDS / _SHARD_IDS (SettingsError when they do not fit)
        self.shards: ShardPlan = s.shard_plan()
        # the bot's overall REST budget, split between the processes that run it
        self.budget = SharedBudget(DISCORD_PER_S, DISCORD_BURST)

    @property
    def translator(self) -> Translator:
        return self.app.translator

    @property
    def admin_chat_id(self) -> str:
        return str(self.admin_channel) if self.admin_channel else ""

    # lifecycle -------------------------------------------------------------------------

    def build_bot(self) -> PolycrowdBot:
        """A fresh client (slash commands, persistent components); replaces the previous one.
        Sharded (:class:`ShardedPolycrowdBot`) when POLYCROWD_DISCORD_SHARDS asks for it."""
        plan = self.shards
        if plan.sharded:
            ids = list(plan.ids) if plan.ids is not None else None
            self.bot = ShardedPolycrowdBot(self, shard_count=plan.count, shard_ids=ids)
        else:
            self.bot = PolycrowdBot(self)
        return self.bot

    @property
    def share_group(self) -> str:
        """The peer group of the processes that run this bot (its user id; after login)."""
        user = self._client().user
        if user is None:
            raise RuntimeError("the Discord bot has not logged in")
        return f"{PLATFORM}:{user.id}"

    async def refresh_share(self) -> int:
        """Count the processes running this bot (their peer slots on the database) and use
        that share of the bot's budget; the count."""
        n = await self.app.engine.db.peers(self.share_group)
        self.budget.set_share(n)
        return n

    async def start(self) -> None:
        """Log in, sync commands and connect to the gateway in the background."""
        bot = self.build_bot()
        try:
            await bot.login(self.token)  # runs setup_hook: components, translator, sync
            runner = asyncio.create_task(bot.connect(reconnect=True), name="discord-gateway")
            self._runner = runner
            ready = asyncio.create_task(bot.wait_until_ready())
            done, _ = await asyncio.wait({runner, ready}, return_when=asyncio.FIRST_COMPLETED)
            if runner in done:
                ready.cancel()
                runner.result()  # raises why the connection ended
                raise RuntimeError("the Discord gateway connection ended before it was ready")
            db, group = self.app.engine.db, self.share_group
            self._share_task = asyncio.create_task(
                keep_share(lambda: db.peers(group), self.budget.set_share, PLATFORM)
            )
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        if self._share_task is not None:
            self._share_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._share_task
            self._share_task = None
        if self.bot is not None:
            await self.bot.close()
        if self._runner is not None:
            with contextlib.suppress(asyncio.CancelledError, discord.DiscordException):
                await self._runner
            self._runner = None

    def _client(self) -> PolycrowdBot:
        if self.bot is None:
            raise RuntimeError("the Discord bot is not built; call start() first")
        return self.bot

    # slash commands -----------------------------------------------------------------------

    def slash_commands(self) -> list[app_commands.Command[Any, ..., None]]:
        """One slash command per dispatcher command. Moderator and admin commands carry
        ``default_member_permissions`` (:data:`STAFF_PERMISSIONS`) and are guild-only, so
        members do not see them (a server admin may still grant them to a role); the
        dispatcher checks the role and the channel of every use anyway."""
        infos = list(self.app.dispatcher.command_list(Role.ADMIN))
        out: list[app_commands.Command[Any, ..., None]] = []
        names = {i.name for i in infos}
        described = [(i.name, i.description, i.role) for i in infos]
        if UPLOAD_COMMAND not in names:
            described.append((UPLOAD_COMMAND, T_UPLOAD, Role.WORKER))
        for name, description, role in described:
            options = OPTIONS.get(name, ())
            command: app_commands.Command[Any, ..., None] = app_commands.Command(
                name=locale_str(name),
                description=locale_str(_clip(description, MAX_DESCRIPTION)),
                callback=_make_callback(self, name, options),
            )
            if role.at_least(Role.MODERATOR):
                command.default_permissions = STAFF_PERMISSIONS
                command.guild_only = True
            out.append(command)
        return out

    # incoming -------------------------------------------------------------------------------

    def _event(self, interaction: discord.Interaction[Any], kind: EventKind, **kw: Any) -> Event:
        user = interaction.user
        message = interaction.message
        return Event(
            platform=PLATFORM,
            user_id=str(user.id),
            chat_id=f"dm:{user.id}",
            kind=kind,
            locale=interaction.locale.value,
            display_name=user.display_name,
            update_id=f"i{interaction.id}",
            is_admin_chat=bool(self.admin_channel)
            and interaction.channel_id == self.admin_channel,
            message_id=str(message.id) if message is not None else "",
            **kw,
        )

    async def on_command(
        self,
        interaction: discord.Interaction[Any],
        name: str,
        options: tuple[Option, ...],
        values: Mapping[str, Any],
    ) -> None:
        private = name in PRIVATE_COMMANDS
        await interaction.response.defer(ephemeral=private, thinking=True)
        delivery = _Delivery(interaction, private, can_edit=False)
        attachment = values.get("file")
        if name == UPLOAD_COMMAND and isinstance(attachment, discord.Attachment):
            event = self._event(interaction, EventKind.DOCUMENT)
            replies = await self._document(event, attachment)
        else:
            args = option_args(options, values)
            event = self._event(interaction, EventKind.COMMAND, command=name, args=args)
            replies = await self.app.dispatcher.handle(event)
        await self._deliver(delivery, event, replies)

    async def on_component(self, interaction: discord.Interaction[Any], data: str) -> None:
        await interaction.response.defer()  # "deferred update": the clicked message stays
        ephemeral = bool(interaction.message and interaction.message.flags.ephemeral)
        delivery = _Delivery(interaction, ephemeral, can_edit=interaction.message is not None)
        event = self._event(interaction, EventKind.BUTTON, data=data)
        await self._deliver(delivery, event, await self.app.dispatcher.handle(event))

    async def on_stale(self, interaction: discord.Interaction[Any]) -> None:
        lang = self._lang(interaction.user.id, interaction.locale.value)
        text = self.renderer.text(Msg(T_NO_LONGER_VALID), lang)
        await interaction.response.send_message(text, ephemeral=True)

    async def open_answer_modal(self, interaction: discord.Interaction[Any], aid: str) -> None:
        """Show the answer modal at once (a modal must be the first response)."""
        lang = self._lang(interaction.user.id, interaction.locale.value)
        modal = AnswerModal(
            ANSWER_PREFIX + aid,
            title=self.renderer.text(Msg(T_YOUR_ANSWER), lang),
            label=self.renderer.text(Msg(T_YOUR_ANSWER), lang),
        )
        await interaction.response.send_modal(modal)

    async def on_modal(self, interaction: discord.Interaction[Any], aid: str, text: str) -> None:
        message = interaction.message
        ephemeral = bool(message and message.flags.ephemeral)
        if message is not None:
            await interaction.response.defer()
        else:
            await interaction.response.defer(thinking=True)
        delivery = _Delivery(interaction, ephemeral, can_edit=message is not None)
        event = self._event(interaction, EventKind.TEXT, text=text.strip())
        if aid and not await self._is_current_task(interaction.user.id, int(aid)):
            replies = [Reply.of(Msg(T_NO_LONGER_VALID), alert=True)]
        else:
            replies = await self.app.dispatcher.handle(event)
        await self._deliver(delivery, event, replies)

    async def _is_current_task(self, discord_user: int, aid: int) -> bool:
        user = await self.app.engine.find_user(f"{PLATFORM}:{discord_user}")
        if user is None:
            return False
        current = await self.app.engine.current_task(user.id)
        return current is not None and current.assignment.id == aid

    async def _document(self, event: Event, attachment: discord.Attachment) -> list[Reply]:
        limit = self.app.settings.max_upload_bytes
        if attachment.size > limit:
            return [Reply.of(Msg(T_TOO_LARGE, {"mb": limit // (1024 * 1024)}))]
        content = await attachment.read()
        doc_event = dataclasses.replace(
            event,
            document=Document(attachment.filename, content),
            update_id=f"{event.update_id}:{attachment.id}",
        )
        return await self.app.dispatcher.handle(doc_event)

    async def on_direct_message(self, message: discord.Message) -> None:
        """A DM: text (answers, conversations, ``/command args``) and attachments."""
        author = message.author
        base: dict[str, Any] = {
            "platform": PLATFORM,
            "user_id": str(author.id),
            "chat_id": f"dm:{author.id}",
            "display_name": author.display_name,
            "message_id": str(message.id),
        }
        replies: list[Reply] = []
        event: Event | None = None
        text = message.content.strip()
        if text:
            if text.startswith("/") and len(text) > 1:
                name, *args = text[1:].split()
                event = Event(
                    kind=EventKind.COMMAND,
                    command=name.lower(),
                    args=tuple(args),
                    update_id=f"m{message.id}",
                    **base,
                )
            else:
                event = Event(kind=EventKind.TEXT, text=text, update_id=f"m{message.id}", **base)
            replies += await self.app.dispatcher.handle(event)
        for attachment in message.attachments:
            event = Event(kind=EventKind.DOCUMENT, update_id=f"m{message.id}", **base)
            replies += await self._document(event, attachment)
        if event is None:
            return
        lang = await self._refresh_lang(author.id, "")
        answer_button = await self._in_conversation(author.id, replies)
        for n, reply in enumerate(replies):
            rlang = reply.lang or lang
            if reply.chat_id and reply.chat_id != event.chat_id:
                await self.send(reply.chat_id, reply, rlang)
                continue
            outs = self.renderer.render(
                reply, rlang, answer_button=answer_button and n == len(replies) - 1
            )
            for out in outs:
                await message.channel.send(**out.send_kwargs())

    # outgoing -------------------------------------------------------------------------------

    async def _deliver(self, delivery: _Delivery, event: Event, replies: Sequence[Reply]) -> None:
        interaction = delivery.interaction
        if not replies:
            if interaction.type is discord.InteractionType.application_command:
                with contextlib.suppress(discord.HTTPException):
                    await interaction.delete_original_response()  # the "thinking..." message
            return
        lang = await self._refresh_lang(interaction.user.id, interaction.locale.value)
        answer_button = await self._in_conversation(interaction.user.id, replies)
        for n, reply in enumerate(replies):
            rlang = reply.lang or lang
            if reply.chat_id and reply.chat_id != event.chat_id:
                await self.send(reply.chat_id, reply, rlang)
                continue
            outs = self.renderer.render(
                reply, rlang, answer_button=answer_button and n == len(replies) - 1
            )
            ephemeral = delivery.private or reply.ephemeral or reply.alert
            if reply.edit and delivery.can_edit:
                head, *outs = outs
                await interaction.edit_original_response(**head.edit_kwargs())
            for out in outs:
                await interaction.followup.send(**out.send_kwargs(), ephemeral=ephemeral)

    async def _in_conversation(self, discord_user: int, replies: Sequence[Reply]) -> bool:
        """True when the user is in a guided conversation (/newproject) and the last reply
        asks a question: it gets an Answer button (guild messages cannot be read)."""
        if not replies or replies[-1].buttons or any(r.expects_text for r in replies):
            return False
        user = await self.app.engine.find_user(f"{PLATFORM}:{discord_user}")
        return user is not None and await self.app.dispatcher.in_conversation(user.id)

    async def send(self, chat_id: str, reply: Reply, lang: str = "en") -> None:
        """A proactive message: ``dm:<user id>`` or a channel id (the admin channel)."""
        bot = self._client()
        await bot.wait_until_ready()
        target: discord.abc.Messageable
        if chat_id.startswith("dm:"):
            uid = int(chat_id[3:])
            target = bot.get_user(uid) or await bot.fetch_user(uid)
        else:
            cid = int(chat_id)
            channel = bot.get_channel(cid) or await bot.fetch_channel(cid)
            if not isinstance(channel, discord.abc.Messageable):
                raise ValueError(f"cannot send to Discord channel {chat_id}")
            target = channel
        outs = self.renderer.render(reply, reply.lang or lang)
        async with self._send_lock:  # one by one: discord.py paces each route's bucket
            for out in outs:
                await target.send(**out.send_kwargs())

    # languages ----------------------------------------------------------------------------

    def _lang(self, discord_user: int, locale: str) -> str:
        """The user's language without I/O: the last one seen, else the client's locale."""
        cached = self._langs.get(discord_user)
        return cached if cached is not None else self.translator.normalize(locale)

    async def _refresh_lang(self, discord_user: int, locale: str) -> str:
        """The stored user locale (set from the platform locale at first contact)."""
        user = await self.app.engine.find_user(f"{PLATFORM}:{discord_user}")
        if user is None:
            lang = self._langs.get(discord_user) or self.translator.normalize(locale)
        else:
            lang = self.translator.pick(user.locale, locale)
        if len(self._langs) > 50_000:
            self._langs.clear()
        self._langs[discord_user] = lang
        return lang


__all__ = [
    "PLATFORM",
    "AnswerButton",
    "CatalogTranslator",
    "DiscordAdapter",
    "LabelSelect",
    "OptionSelect",
    "Outgoing",
    "PolycrowdBot",
    "Renderer",
    "ShardedPolycrowdBot",
    "StaleComponent",
    "TaskButton",
    "option_args",
    "split_text",
]
