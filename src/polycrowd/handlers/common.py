"""The dispatcher: one entry point from any adapter, routing events to role handlers.

Handlers are plain coroutines ``(ctx, event) -> list[Reply]`` registered per command or
per button prefix. They never import a platform library and never build text: every
message is a :class:`~polycrowd.i18n.Msg`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from polycrowd.engine.core import Engine, EngineError
from polycrowd.engine.services.state import Conversation
from polycrowd.engine.types import Role, User
from polycrowd.handlers.types import Button, Event, EventKind, Reply
from polycrowd.i18n import N_, Msg, Translator
from polycrowd.settings import Settings

log = logging.getLogger(__name__)

Handler = Callable[["Context", Event], Awaitable[list[Reply]]]

__all__ = [
    "CommandInfo",
    "Context",
    "Conversation",
    "Dispatcher",
    "Handler",
    "parse_int",
    "yes_no",
]


@dataclass
class Context:
    engine: Engine
    settings: Settings
    translator: Translator
    user: User
    lang: str
    created: bool
    dispatcher: Dispatcher

    def text(self, msgid: str, **params: Any) -> Reply:
        return Reply.of(Msg(msgid, params))

    def require(self, role: Role) -> None:
        if not self.user.role.at_least(role):
            raise EngineError(N_("You are not allowed to do that."))


@dataclass(frozen=True, slots=True)
class CommandInfo:
    name: str
    description: str  # msgid
    role: Role
    handler: Handler


class Dispatcher:
    def __init__(self, engine: Engine, settings: Settings, translator: Translator) -> None:
        self.engine = engine
        self.settings = settings
        self.translator = translator
        self.commands: dict[str, CommandInfo] = {}
        self.buttons: dict[str, Handler] = {}
        self.text_handlers: list[Handler] = []
        self.document_handler: Handler | None = None
        # A guided conversation (/newproject) and a requester's current project are stored
        # (engine.conversation, engine.current_project): they survive a restart.
        # platform -> its admin chat; the app points this at its adapters (their own setting)
        self.admin_chat_of: Callable[[str], str] = self.admin_chat_from_settings
        from polycrowd.handlers import feedback, moderator, requester, worker

        worker.register(self)
        requester.register(self)
        moderator.register(self)
        feedback.register(self)

    def admin_chat_from_settings(self, platform: str) -> str:
        s = self.settings
        return s.discord_admin_channel if platform == "discord" else s.admin_chat

    def command(
        self, name: str, description: str, role: Role = Role.WORKER
    ) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.commands[name] = CommandInfo(name, description, role, fn)
            return fn

        return deco

    def button(self, prefix: str) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.buttons[prefix] = fn
            return fn

        return deco

    async def in_conversation(self, user_id: int) -> bool:
        """True while the user has an open guided conversation (stored, not stale)."""
        return await self.engine.conversation(user_id) is not None

    def command_list(self, role: Role = Role.WORKER) -> list[CommandInfo]:
        return [c for c in self.commands.values() if role.at_least(c.role)]

    async def context(self, event: Event) -> Context:
        user, created = await self.engine.user_for(
            event.platform,
            event.user_id,
            event.display_name,
            _base_language(event.locale) or self.settings.default_language,
            event.chat_id,
        )
        bootstrap = f"{event.platform}:{event.user_id}"
        if bootstrap in self.settings.admins and user.role is not Role.ADMIN:
            await self.engine.bootstrap_role(user.id, Role.ADMIN)
            user = await self.engine.get_user(user.id)
        # the user's choice (stored), else the platform's language code, else English
        lang = self.translator.pick(user.locale, event.locale)
        return Context(self.engine, self.settings, self.translator, user, lang, created, self)

    async def handle(self, event: Event) -> list[Reply]:
        """Answer one event. Never raises: errors become a translated reply."""
        if event.update_id and await self.engine.seen_update(event.platform, event.update_id):
            log.info("ignoring redelivered update %s/%s", event.platform, event.update_id)
            return []
        try:
            ctx = await self.context(event)
        except Exception:
            log.exception("cannot load the user for %s", event)
            return [Reply.of(Msg(N_("Something went wrong. Please try again later.")))]
        try:
            return await self._route(ctx, event)
        except EngineError as exc:
            return [Reply.of(Msg(exc.msgid, exc.params), alert=event.kind is EventKind.BUTTON)]
        except Exception:
            log.exception("handler failed for %s", event)
            return [Reply.of(Msg(N_("Something went wrong. Please try again later.")))]

    async def _route(self, ctx: Context, event: Event) -> list[Reply]:
        if ctx.user.status == "blocked" and event.command not in ("mydata", "forgetme", "help"):
            return [
                ctx.text(
                    N_("Your account is blocked: %(reason)s"), reason=ctx.user.status_reason or "-"
                )
            ]
        if event.kind is EventKind.COMMAND:
            if event.command != "cancel":
                await self.engine.end_conversation(ctx.user.id)
            info = self.commands.get(event.command)
            if info is None:
                return [ctx.text(N_("Unknown command. Send /help to see what I can do."))]
            if not ctx.user.role.at_least(info.role):
                return [ctx.text(N_("You are not allowed to do that."))]
            return await info.handler(ctx, event)
        if event.kind is EventKind.BUTTON:
            prefix = event.data.split(":", 1)[0]
            handler = self.buttons.get(prefix)
            if handler is None:
                return [Reply.of(Msg(N_("This button is no longer valid.")), alert=True)]
            return await handler(ctx, event)
        if event.kind is EventKind.DOCUMENT:
            if self.document_handler is None:
                return [ctx.text(N_("I cannot use files here."))]
            return await self.document_handler(ctx, event)
        for handler in self.text_handlers:
            replies = await handler(ctx, event)
            if replies:
                return replies
        return [ctx.text(N_("Send /task to get a task, or /help to see what I can do."))]


def yes_no(yes_data: str, no_data: str) -> tuple[tuple[Button, ...], ...]:
    return ((Button(Msg(N_("Yes")), yes_data), Button(Msg(N_("No")), no_data)),)


def parse_int(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


def _base_language(code: str) -> str:
    """ "pt-BR" -> "pt": the language a worker declares by their platform locale."""
    base = code.replace("_", "-").split("-")[0].lower()
    return base if 2 <= len(base) <= 3 and base.isalpha() else ""
