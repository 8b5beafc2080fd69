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
from polycrowd.engine.errors import Forbidden
from polycrowd.engine.services.state import Conversation
from polycrowd.engine.types import Role, User
from polycrowd.handlers.flood import FloodControl, Verdict
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
            raise Forbidden(ROLE_REFUSALS.get(role, N_("You are not allowed to do that.")))


@dataclass(frozen=True, slots=True)
class CommandInfo:
    name: str
    description: str  # msgid
    role: Role
    handler: Handler
    admin_chat: bool = False  # only from the moderators' chat/channel


@dataclass(frozen=True, slots=True)
class ButtonInfo:
    prefix: str
    role: Role
    handler: Handler
    admin_chat: bool = False


#: The reason a refusal gives, by the role the command or button needs.
ROLE_REFUSALS: dict[Role, str] = {
    Role.REQUESTER: N_("Only requesters can do that."),
    Role.MODERATOR: N_("Only moderators can do that."),
    Role.ADMIN: N_("Only admins can do that."),
}
WRONG_CHAT = N_("Use this in the moderators' chat.")
TOO_FAST = N_("You are sending messages too fast. Please wait a moment and try again.")


class Dispatcher:
    def __init__(self, engine: Engine, settings: Settings, translator: Translator) -> None:
        self.engine = engine
        self.settings = settings
        self.translator = translator
        self.commands: dict[str, CommandInfo] = {}
        self.buttons: dict[str, ButtonInfo] = {}
        self.text_handlers: list[Handler] = []
        self.document_handler: Handler | None = None
        # A guided conversation (/newproject) and a requester's current project are stored
        # (engine.conversation, engine.current_project): they survive a restart.
        # platform -> its admin chat; the app points this at its adapters (their own setting)
        self.admin_chat_of: Callable[[str], str] = self.admin_chat_from_settings
        self._in_flight: set[tuple[str, str]] = set()  # updates being handled right now
        self.flood = FloodControl(
            settings.flood_rate,
            settings.flood_burst,
            lambda: self.engine.clock(),
            settings.flood_staff_factor,
        )
        from polycrowd.handlers import feedback, moderator, requester, worker

        worker.register(self)
        requester.register(self)
        moderator.register(self)
        feedback.register(self)

    def admin_chat_from_settings(self, platform: str) -> str:
        s = self.settings
        return s.discord_admin_channel if platform == "discord" else s.admin_chat

    def command(
        self,
        name: str,
        description: str,
        role: Role = Role.WORKER,
        *,
        admin_chat: bool = False,
    ) -> Callable[[Handler], Handler]:
        """Register a command that needs ``role`` (and the moderators' chat if ``admin_chat``);
        the router refuses anyone else before the handler runs."""

        def deco(fn: Handler) -> Handler:
            self.commands[name] = CommandInfo(name, description, role, fn, admin_chat)
            return fn

        return deco

    def button(
        self, prefix: str, role: Role = Role.WORKER, *, admin_chat: bool = False
    ) -> Callable[[Handler], Handler]:
        """Register the handler of buttons whose data starts with ``prefix:`` (or is it)."""

        def deco(fn: Handler) -> Handler:
            self.buttons[prefix] = ButtonInfo(prefix, role, fn, admin_chat)
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
        """Answer one event. Never raises: errors become a translated reply.

        An update is recorded as handled only after its handling finished, so a process killed
        half way handles the platform's redelivery again (every state change is idempotent: an
        answered task cannot be answered twice); a redelivery of an update handled to the end,
        or one still in flight here, is dropped."""
        if not event.update_id:
            return await self._handle(event)
        key = (event.platform, event.update_id)
        if key in self._in_flight or await self.engine.update_handled(*key):
            log.info("ignoring redelivered update %s/%s", *key)
            return []
        self._in_flight.add(key)
        try:
            replies = await self._handle(event)
            try:
                await self.engine.mark_update_handled(*key)
            except Exception:
                log.exception("cannot record update %s/%s as handled", *key)
            return replies
        finally:
            self._in_flight.discard(key)

    async def _handle(self, event: Event) -> list[Reply]:
        try:
            ctx = await self.context(event)
        except Exception:
            log.exception("cannot load the user for %s", event)
            return [Reply.of(Msg(N_("Something went wrong. Please try again later.")))]
        staff = ctx.user.role.at_least(Role.MODERATOR)
        verdict = self.flood.take(f"u{ctx.user.id}", staff=staff)
        if verdict is not Verdict.PASS:
            log.info(
                "flood: user=%s role=%s kind=%s command=%s %s",
                ctx.user.id,
                ctx.user.role.value,
                event.kind.value,
                _what(event),
                "warned" if verdict is Verdict.WARN else "dropped",
            )
            if verdict is Verdict.WARN:
                return [Reply.of(Msg(TOO_FAST), alert=event.kind is EventKind.BUTTON)]
            return []
        try:
            return await self._route(ctx, event)
        except EngineError as exc:
            if isinstance(exc, Forbidden):
                self._log_refusal(ctx, event, exc.msgid)
            return [Reply.of(Msg(exc.msgid, exc.params), alert=event.kind is EventKind.BUTTON)]
        except Exception:
            log.exception("handler failed for %s", event)
            return [Reply.of(Msg(N_("Something went wrong. Please try again later.")))]

    async def _route(self, ctx: Context, event: Event) -> list[Reply]:
        if ctx.user.status == "blocked" and not _open_to_blocked(event):
            self._log_refusal(ctx, event, "blocked")
            return [
                ctx.text(
                    N_("Your account is blocked: %(reason)s"), reason=ctx.user.status_reason or "-"
                )
            ]
        if event.kind is EventKind.COMMAND:
            info = self.commands.get(event.command)
            refused = None if info is None else self._gate(ctx, event, info.role, info.admin_chat)
            if refused is not None:
                return refused  # a refused command changes nothing, not even the conversation
            if event.command != "cancel":
                await self.engine.end_conversation(ctx.user.id)
            if info is None:
                return [ctx.text(N_("Unknown command. Send /help to see what I can do."))]
            return await info.handler(ctx, event)
        if event.kind is EventKind.BUTTON:
            prefix = event.data.split(":", 1)[0]
            button = self.buttons.get(prefix)
            if button is None:
                return [Reply.of(Msg(N_("This button is no longer valid.")), alert=True)]
            refused = self._gate(ctx, event, button.role, button.admin_chat)
            if refused is not None:
                return refused
            return await button.handler(ctx, event)
        if event.kind is EventKind.DOCUMENT:
            if self.document_handler is None:
                return [ctx.text(N_("I cannot use files here."))]
            return await self.document_handler(ctx, event)
        for handler in self.text_handlers:
            replies = await handler(ctx, event)
            if replies:
                return replies
        return [ctx.text(N_("Send /task to get a task, or /help to see what I can do."))]

    def _gate(
        self, ctx: Context, event: Event, role: Role, admin_chat: bool
    ) -> list[Reply] | None:
        """None when the user may go on; else the refusal (answered with its reason, logged).
        The role is checked first: a worker is told the role is missing, wherever they are."""
        if not ctx.user.role.at_least(role):
            reason = ROLE_REFUSALS.get(role, N_("You are not allowed to do that."))
        elif admin_chat and not event.is_admin_chat:
            reason = WRONG_CHAT
        else:
            return None
        self._log_refusal(ctx, event, reason)
        return [Reply.of(Msg(reason), alert=event.kind is EventKind.BUTTON)]

    @staticmethod
    def _log_refusal(ctx: Context, event: Event, reason: str) -> None:
        """One line per refusal: ids, role and command only (no names, no texts)."""
        log.info(
            "refused: user=%s role=%s platform=%s kind=%s command=%s admin_chat=%s reason=%r",
            ctx.user.id,
            ctx.user.role.value,
            event.platform,
            event.kind.value,
            _what(event),
            event.is_admin_chat,
            reason,
        )


#: What a blocked account may still do: see and erase its own data (and read the help).
BLOCKED_COMMANDS = frozenset({"mydata", "forgetme", "help"})
BLOCKED_BUTTONS = frozenset({"fy", "fn"})  # the /forgetme confirmation


def _open_to_blocked(event: Event) -> bool:
    if event.kind is EventKind.COMMAND:
        return event.command in BLOCKED_COMMANDS
    return event.kind is EventKind.BUTTON and event.data.split(":", 1)[0] in BLOCKED_BUTTONS


def _what(event: Event) -> str:
    """What was asked for, without its arguments: the command or the button's prefix."""
    if event.kind is EventKind.COMMAND:
        raw = event.command
    elif event.kind is EventKind.BUTTON:
        raw = event.data.split(":", 1)[0]
    else:
        return event.kind.value
    return "".join(c for c in raw[:32] if c.isascii() and (c.isalnum() or c == "_")) or "?"


def yes_no(yes_data: str, no_data: str) -> tuple[tuple[Button, ...], ...]:
    return ((Button(Msg(N_("Yes")), yes_data), Button(Msg(N_("No")), no_data)),)


MAX_ID = 2**63 - 1  # the stores' integer range: a larger "id" names nothing


def parse_int(value: str) -> int | None:
    """An id or count typed or pressed by a user; None when it is not one the stores hold."""
    try:
        n = int(value)
    except ValueError:
        return None
    return n if -MAX_ID <= n <= MAX_ID else None


def _base_language(code: str) -> str:
    """ "pt-BR" -> "pt": the language a worker declares by their platform locale."""
    base = code.replace("_", "-").split("-")[0].lower()
    return base if 2 <= len(base) <= 3 and base.isalpha() else ""
