"""polycrowd in Telegram, through python-telegram-bot 22.

:class:`TelegramAdapter` turns updates into platform-neutral :class:`Event` values, lets the
:class:`~polycrowd.handlers.common.Dispatcher` answer them, and renders each
:class:`Reply` back into Bot API calls:

* text is rendered from the gettext catalog in the reader's language with every
  user-supplied parameter HTML-escaped, sent with ``parse_mode=HTML`` and split on line
  boundaries when it is longer than Telegram's 4096 characters;
* buttons become an inline keyboard (``callback_data`` is at most 64 bytes); a press is
  answered exactly once (with the reply's alert text, if any), and ``Reply.edit`` edits the
  message the button belonged to (a new message when that fails);
* documents are sent with ``sendDocument``; uploads are checked against
  ``max_upload_bytes`` *before* they are downloaded;
* a reply with a photo (a task of an image project) is sent with ``sendPhoto``, the text as
  its caption and the buttons under it; a text over the 1024-character caption limit goes in
  a text message after the photo, with the buttons. Edits of a captioned photo use
  ``editMessageCaption``;
* a plain reply followed by another message to the same chat is sent as one message (a
  verdict and the next task arrive together), which halves the messages a worker costs
  against Telegram's one-message-per-second-per-chat limit.

Every Bot API call goes through one :class:`~polycrowd.bot.outbound.OutboundQueue`
(Telegram's flood limits, retries on 429 and network errors), over aiohttp when it is
installed (PTB's httpx otherwise). Updates of different users are processed concurrently; the
updates of one user are processed one after the other, in order. Commands, plain text,
button presses and documents are handled (text and files only in private chats; in groups,
such as the moderators' chat, commands and buttons only).

The PTB ``Application`` is started and stopped by hand (:meth:`TelegramAdapter.start` /
:meth:`TelegramAdapter.stop`) so that it runs beside the scheduler in one event loop: long
polling by default, a webhook with a secret token when ``webhook_url`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from telegram import (
    BotCommand,
    BotCommandScopeChat,
    BotCommandScopeDefault,
    CallbackQuery,
    InputFile,
    Message,
    Update,
)
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, NetworkError, TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    BaseUpdateProcessor,
    TypeHandler,
)

from polycrowd.bot.budget import keep_share
from polycrowd.bot.escaping import clean, telegram_html
from polycrowd.bot.outbound import (
    AiohttpRequest,
    OutboundLimits,
    OutboundQueue,
    aiohttp_available,
    redact,
)
from polycrowd.bot.startup import telegram_api_root
from polycrowd.engine.types import Role
from polycrowd.handlers.types import Button, Document, Event, EventKind, Photo, Reply
from polycrowd.i18n import N_, Msg

if TYPE_CHECKING:
    from polycrowd.bot.app import App

log = logging.getLogger(__name__)

PLATFORM: Final = "telegram"
MAX_TEXT: Final = 4096  # characters (UTF-16 code units) per message
MAX_CAPTION: Final = 1024
MAX_CALLBACK_DATA: Final = 64  # bytes
MAX_ALERT: Final = 200  # characters of a callback answer
MAX_COMMAND_DESCRIPTION: Final = 256
ALLOWED_UPDATES: Final = ("message", "callback_query")
ALERT_EVERY_S: Final = 60.0  # at most one admin alert per kind of error in this time
ANSWERED_MEMORY: Final = 10_000  # callback query ids remembered against redelivery

TOO_LARGE = N_("The file is too large (at most %(mb)s MB).")
INVALID_BUTTON = N_("This button is no longer valid.")
SOMETHING_WRONG = N_("Something went wrong. Please try again later.")
BOT_ERROR = N_("The Telegram bot hit an error: %(error)s")

_COMMAND = re.compile(r"/([A-Za-z0-9_]{1,32})(?:@([A-Za-z0-9_]{3,64}))?")
_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")

TgApplication = Application[Any, Any, Any, Any, Any, Any]
Markup = dict[str, list[list[dict[str, str]]]]


def _markup(markup: Markup | None) -> dict[str, Any] | None:
    """``api_kwargs`` carrying a keyboard (PTB sends them as they are)."""
    return None if markup is None else {"reply_markup": markup}


class CallbackDataTooLong(ValueError):
    """A handler built a button whose data Telegram would refuse (a bug, never user input)."""


# Updates -> events ---------------------------------------------------------------------------


class PerUserUpdates(BaseUpdateProcessor):
    """Up to ``max_concurrent_updates`` updates at once, but one user's updates in order.

    A slow answer check for one worker never holds back the others, while two presses of
    the same worker are handled one after the other, as they were sent.
    """

    def __init__(self, max_concurrent_updates: int = 256) -> None:
        super().__init__(max_concurrent_updates)
        self._locks: dict[int, tuple[asyncio.Lock, list[int]]] = {}

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        key = _user_key(update)
        if key is None:
            await coroutine
            return
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = (asyncio.Lock(), [0])
        lock, users = entry
        users[0] += 1
        try:
            async with lock:
                await coroutine
        finally:
            users[0] -= 1
            if users[0] == 0:
                self._locks.pop(key, None)

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        """Nothing to free: the locks go with their last update."""


def _user_key(update: object) -> int | None:
    if not isinstance(update, Update):
        return None
    if update.effective_user is not None:
        return update.effective_user.id
    return update.effective_chat.id if update.effective_chat is not None else None


def parse_command(text: str, bot_username: str) -> tuple[str, tuple[str, ...]] | None:
    """``"/task@polycrowd_bot 3"`` -> ``("task", ("3",))``; ``None`` when ``text`` is no
    command. A command addressed to another bot (``/task@other_bot``) gives ``("", ())``."""
    if not text.startswith("/"):
        return None
    head, *args = text.split()
    m = _COMMAND.fullmatch(head)
    if m is None:
        return None
    mention = m.group(2)
    if mention and bot_username and mention.lower() != bot_username.lower():
        return "", ()
    return m.group(1).lower(), tuple(args)


# Text -----------------------------------------------------------------------------------------


def text_units(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


def split_text(text: str, limit: int = MAX_TEXT) -> list[str]:
    """Split ``text`` into messages of at most ``limit`` UTF-16 units, on line boundaries;
    a line that is longer on its own is cut at a space (never inside an HTML entity)."""
    if len(text) * 2 <= limit or text_units(text) <= limit:
        return [text]
    chunks: list[str] = []
    lines: list[str] = []
    size = 0
    for line in text.split("\n"):
        for piece in _cut_line(line, limit) if text_units(line) > limit else [line]:
            units = text_units(piece)
            if lines and size + 1 + units > limit:
                chunks.append("\n".join(lines))
                lines, size = [], 0
            size += units + (1 if lines else 0)
            lines.append(piece)
    if lines:
        chunks.append("\n".join(lines))
    return [c for c in chunks if c.strip()]


def _cut_line(line: str, limit: int) -> list[str]:
    pieces: list[str] = []
    while text_units(line) > limit:
        n = limit
        while (over := text_units(line[:n]) - limit) > 0:
            n -= max(1, over // 2)  # a code point is one or two units
        space = line.rfind(" ", max(1, n - 200), n)
        if space > 0:
            n = space + 1
        amp = line.rfind("&", max(0, n - 10), n)
        if amp > 0 and ";" not in line[amp:n]:
            n = amp  # keep "&amp;" and friends whole
        pieces.append(line[:n])
        line = line[n:]
    pieces.append(line)
    return pieces


def check_callback_data(data: str) -> str:
    if not 1 <= len(data.encode("utf-8")) <= MAX_CALLBACK_DATA:
        raise CallbackDataTooLong(f"callback_data must be 1-64 bytes: {data!r}")
    return data


@dataclass(slots=True)
class Outgoing:
    """One Telegram message to send (or edit), rendered."""

    chat_id: int | str
    text: str  # HTML, parameters escaped
    markup: Markup | None = None  # an inline keyboard as Bot API JSON
    document: Document | None = None
    edit_of: int | None = None  # edit this message instead of sending a new one
    photo: Photo | None = None

    @property
    def plain(self) -> bool:
        return (
            self.markup is None
            and self.document is None
            and self.photo is None
            and self.edit_of is None
        )


def chat_ref(chat_id: str | int) -> int | str:
    """Telegram chat ids are integers; ``@channelname`` stays a string."""
    if isinstance(chat_id, int):
        return chat_id
    try:
        return int(chat_id)
    except ValueError:
        return chat_id


# The adapter ----------------------------------------------------------------------------------


class TelegramAdapter:
    """The Telegram platform: long polling (or a webhook), replies, proactive sends."""

    name = PLATFORM

    def __init__(
        self,
        app: App,
        *,
        limits: OutboundLimits | None = None,
        concurrency: int = 256,
        connection_pool: int = 0,
        transport: str = "auto",
        poll_timeout: float = 10.0,
        coalesce: bool = True,
    ) -> None:
        self.app = app
        self.settings = app.settings
        self.translator = app.translator
        self.queue = OutboundQueue(limits)
        self.concurrency = concurrency
        wire = self.queue.limits.max_in_flight
        # a few connections beyond the queue's for downloads, which do not pass through it
        self.connection_pool = connection_pool or (wire + 4 if wire > 0 else 256)
        if transport == "auto":
            transport = "aiohttp" if aiohttp_available() else "httpx"
        if transport not in ("aiohttp", "httpx"):
            raise ValueError(f"unknown transport {transport!r}: aiohttp, httpx or auto")
        self.transport = transport
        self.poll_timeout = poll_timeout
        self.coalesce = coalesce
        self.username = ""
        self.webhook_secret = ""
        self._application: TgApplication | None = None
        self._last_alert: dict[str, float] = {}
        self._answered: dict[str, None] = {}  # recent callback query ids, oldest first
        self._requests: list[AiohttpRequest] = []
        self._share_task: asyncio.Task[None] | None = None

    # -- lifecycle

    @property
    def admin_chat_id(self) -> str:
        return self.settings.admin_chat

    @property
    def application(self) -> TgApplication:
        if self._application is None:
            raise RuntimeError("the Telegram adapter is not started")
        return self._application

    def build(self) -> TgApplication:
        """The PTB application, wired to the configured Bot API server."""
        s = self.settings
        if not s.telegram_token:
            raise ValueError("POLYCROWD_TELEGRAM_TOKEN is not set")
        api = telegram_api_root(s.telegram_api_url)  # the server root, or PTB's .../bot
        builder = (
            ApplicationBuilder()
            .token(s.telegram_token)
            .base_url(f"{api}/bot")
            .base_file_url(f"{api}/file/bot")
            .rate_limiter(self.queue)
            .concurrent_updates(PerUserUpdates(self.concurrency))
            .job_queue(None)  # the app's own scheduler runs the periodic work
        )
        if self.transport == "aiohttp":
            self._requests = [AiohttpRequest(self.connection_pool), AiohttpRequest(2)]
            builder = builder.request(self._requests[0])
            builder = builder.get_updates_request(self._requests[1])
        else:
            builder = builder.connection_pool_size(self.connection_pool)
        application: TgApplication = builder.build()
        application.add_handler(TypeHandler(Update, self._on_update))
        application.add_error_handler(self._on_error)
        return application

    async def start(self) -> None:
        httpx_log = logging.getLogger("httpx")
        if httpx_log.level == logging.NOTSET:
            httpx_log.setLevel(logging.WARNING)  # its INFO lines carry the bot token in URLs
        secret = self._secret() if self.settings.webhook_url else ""
        application = self.build()
        try:
            await application.initialize()  # getMe: checks the token
        except BaseException:
            for request in self._requests:  # PTB leaves them open when getMe fails
                with contextlib.suppress(Exception):
                    await request.shutdown()
            raise
        try:
            self.username = application.bot.username or ""
            await self._set_commands(application)
            await application.start()
            updater = application.updater
            assert updater is not None
            if self.settings.webhook_url:
                self.webhook_secret = secret
                await updater.start_webhook(
                    listen=self.settings.webhook_listen,
                    port=self.settings.webhook_port,
                    url_path=urlsplit(self.settings.webhook_url).path.lstrip("/"),
                    webhook_url=self.settings.webhook_url,
                    secret_token=self.webhook_secret,
                    allowed_updates=list(ALLOWED_UPDATES),
                )
                log.info("telegram: webhook %s", self.settings.webhook_url)
            else:
                await updater.start_polling(
                    poll_interval=0.0,
                    timeout=int(self.poll_timeout),
                    allowed_updates=list(ALLOWED_UPDATES),
                )
                log.info("telegram: long polling as @%s", self.username)
            self._share_task = asyncio.create_task(self._share_budget(application.bot.id))
        except BaseException:
            with contextlib.suppress(Exception):
                if application.running:
                    await application.stop()
            await application.shutdown()
            raise
        self._application = application

    def _secret(self) -> str:
        secret = self.settings.webhook_secret
        if not secret:
            return secrets.token_urlsafe(32)
        if not _SECRET.fullmatch(secret):
            raise ValueError(
                "POLYCROWD_WEBHOOK_SECRET may only hold A-Z, a-z, 0-9, _ and - (1-256 chars)"
            )
        return secret

    async def stop(self, flush_timeout: float = 5.0) -> None:
        """Stop fetching, finish the updates in hand, send what is queued, close."""
        application = self._application
        if application is None:
            return
        if self._share_task is not None:
            self._share_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._share_task
            self._share_task = None
        try:
            updater = application.updater
            if updater is not None and updater.running:
                await updater.stop()
            if application.running:
                await application.stop()  # waits for the updates being processed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.app.flush()), flush_timeout)
        finally:
            self._application = None
            await application.shutdown()

    async def _share_budget(self, bot_id: int) -> None:
        """Keep this process's share of the bot's overall budget current: every process that
        sends with this bot token on one PostgreSQL database holds a peer slot there, and
        each uses 1/N of the 30 messages/s (:meth:`OutboundQueue.set_share`)."""
        group = f"telegram:{bot_id}"
        db = self.app.engine.db
        await keep_share(lambda: db.peers(group), self.queue.set_share, PLATFORM)

    async def _set_commands(self, application: TgApplication) -> None:
        """The command menu: worker commands for everyone, moderation in the admin chat."""
        d = self.app.dispatcher
        everyone = d.command_list(Role.WORKER)
        moderation = [
            c
            for c in d.command_list(Role.MODERATOR)
            if c.role in (Role.MODERATOR, Role.ADMIN) or c.name == "help"
        ]
        scopes: list[tuple[Any, Sequence[Any]]] = [(BotCommandScopeDefault(), everyone)]
        admin = chat_ref(self.admin_chat_id) if self.admin_chat_id else None
        if admin is not None:
            scopes.append((BotCommandScopeChat(admin), moderation))
        languages = [""] + [x for x in self.translator.languages if x != "en"]
        for scope, infos in scopes:
            for lang in languages:
                commands = [
                    BotCommand(
                        c.name,
                        self.translator.render(Msg(c.description), lang or "en")[
                            :MAX_COMMAND_DESCRIPTION
                        ],
                    )
                    for c in infos
                ]
                try:
                    await application.bot.set_my_commands(
                        commands, scope=scope, language_code=lang or None
                    )
                except TelegramError as exc:
                    log.warning("setMyCommands (%s, %r) failed: %s", scope.type, lang, exc)

    # -- incoming

    async def _on_update(self, update: Update, context: Any) -> None:
        if update.callback_query is not None:
            await self._on_callback(update, update.callback_query)
        elif update.message is not None:
            await self._on_message(update, update.message)

    def _base(self, update: Update, chat_id: int, user: Any) -> dict[str, Any]:
        return {
            "platform": PLATFORM,
            "user_id": str(user.id),
            "chat_id": str(chat_id),
            "locale": user.language_code or "",
            "display_name": user.full_name,
            "update_id": str(update.update_id),
            "is_admin_chat": bool(self.admin_chat_id) and str(chat_id) == self.admin_chat_id,
        }

    async def _on_message(self, update: Update, message: Message) -> None:
        user = message.from_user
        if user is None or user.is_bot:
            return
        private = message.chat.type == "private"
        base = self._base(update, message.chat.id, user)
        if message.text is not None:
            command = parse_command(message.text, self.username)
            if command is not None:
                name, args = command
                if not name:
                    return  # addressed to another bot in a group
                event = Event(kind=EventKind.COMMAND, command=name, args=args, **base)
            elif private:
                event = Event(kind=EventKind.TEXT, text=message.text, **base)
            else:
                return  # group conversation is not for the bot
        elif message.document is not None and private:
            doc = await self._download(message, base)
            if doc is None:
                return
            event = Event(kind=EventKind.DOCUMENT, document=doc, **base)
        else:
            return
        replies = await self.app.dispatcher.handle(event)
        await self._deliver(event, replies)

    async def _download(self, message: Message, base: dict[str, Any]) -> Document | None:
        """The uploaded file, or ``None`` after refusing it (checked before downloading)."""
        doc = message.document
        assert doc is not None
        limit = self.settings.max_upload_bytes
        if doc.file_size is None or doc.file_size <= limit:
            try:
                tg_file = await doc.get_file()
                content = bytes(await tg_file.download_as_bytearray())
            except BadRequest as exc:  # "file is too big" (the Bot API serves up to 20 MB)
                log.info("cannot download %s: %s", doc.file_name, exc)
            else:
                if len(content) <= limit:
                    return Document(doc.file_name or "upload", content)
        event = Event(kind=EventKind.DOCUMENT, **base)
        refusal = Reply.of(Msg(TOO_LARGE, {"mb": f"{limit / (1024 * 1024):.3g}"}))
        await self._deliver(event, [refusal])
        return None

    async def _on_callback(self, update: Update, query: CallbackQuery) -> None:
        answered = False
        try:
            message = query.message
            if message is None or not query.data:  # an inline-mode message: not ours
                lang = self.translator.normalize(query.from_user.language_code)
                answered = True
                await self._answer(query, self.translator.render(Msg(INVALID_BUTTON), lang))
                return
            base = self._base(update, message.chat.id, query.from_user)
            event = Event(
                kind=EventKind.BUTTON,
                data=query.data,
                message_id=str(message.message_id),
                **base,
            )
            replies = await self.app.dispatcher.handle(event)
            alert = next((r for r in replies if r.alert), None)
            lang = ""
            text: str | None = None
            if alert is not None:
                replies = [r for r in replies if r is not alert]
                lang = alert.lang or await self._lang_of(event)
                text = self.translator.render_all(alert.parts, lang, clean)
            answered = True
            # the answer (which stops the button's spinner) and the edits travel side by side
            answer = asyncio.create_task(self._answer(query, text))
            try:
                await self._deliver(event, replies, lang)
            finally:
                await answer
        finally:
            if not answered:
                await self._answer(query, None)

    async def _answer(self, query: CallbackQuery, text: str | None) -> None:
        """Answer a button press once, even when Telegram delivers its update twice."""
        if query.id in self._answered:
            return
        self._answered[query.id] = None
        if len(self._answered) > ANSWERED_MEMORY:
            del self._answered[next(iter(self._answered))]
        try:
            await query.answer(None if text is None else text[:MAX_ALERT])
        except BadRequest as exc:  # too old (the bot was down for a while)
            log.info("callback %s not answered: %s", query.id, exc)

    async def _lang_of(self, event: Event) -> str:
        user = await self.app.engine.find_user(f"{PLATFORM}:{event.user_id}")
        return self.translator.pick(user.locale if user is not None else None, event.locale)

    # -- outgoing

    async def _deliver(self, event: Event, replies: Sequence[Reply], lang: str = "") -> None:
        """Render and send the replies to one event, in order."""
        if not replies:
            return
        outgoing: list[Outgoing] = []
        for reply in replies:
            if reply.platform and reply.platform != PLATFORM:
                await self._elsewhere(event, reply)
                continue
            if not reply.lang and not lang:
                lang = await self._lang_of(event)
            target = chat_ref(reply.chat_id or event.chat_id)
            if reply.ephemeral and not reply.chat_id and str(target) != event.user_id:
                target = chat_ref(event.user_id)  # private data goes to the private chat
            edit_of = None
            if reply.edit and event.message_id and str(target) == event.chat_id:
                edit_of = int(event.message_id)
            outgoing.append(self.render(reply, reply.lang or lang, target, edit_of))
        for out in self._coalesce(outgoing) if self.coalesce else outgoing:
            await self.post(out)

    async def _elsewhere(self, event: Event, reply: Reply) -> None:
        """A reply for another platform (e.g. after linking accounts)."""
        for adapter in self.app.adapters:
            if adapter.name == reply.platform and reply.chat_id:
                await adapter.send(reply.chat_id, reply, reply.lang or await self._lang_of(event))
                return
        log.warning("no %s adapter for a reply to chat %s", reply.platform, reply.chat_id)

    def render(
        self, reply: Reply, lang: str, chat_id: int | str, edit_of: int | None = None
    ) -> Outgoing:
        text = self.translator.render_all(reply.parts, lang, escape=telegram_html)
        return Outgoing(
            chat_id=chat_id,
            text=text,
            markup=self.keyboard(reply.buttons, lang),
            document=reply.document,
            edit_of=edit_of,
            photo=reply.photo,
        )

    def keyboard(self, rows: Sequence[Sequence[Button]], lang: str) -> Markup | None:
        """An inline keyboard, as the Bot API's JSON (sent as is, no PTB objects to build)."""
        if not rows:
            return None
        render = self.translator.render
        return {
            "inline_keyboard": [
                [
                    {
                        "text": render(b.label, lang, clean),
                        "callback_data": check_callback_data(b.data),
                    }
                    for b in row
                ]
                for row in rows
                if row
            ]
        }

    @staticmethod
    def _coalesce(outgoing: list[Outgoing]) -> list[Outgoing]:
        """Fold a plain message into the next new message to the same chat."""
        merged: list[Outgoing] = []
        carry: Outgoing | None = None
        for out in outgoing:
            if carry is not None:
                fits = text_units(carry.text) + 2 + text_units(out.text) <= MAX_TEXT
                if (
                    carry.chat_id == out.chat_id
                    and out.edit_of is None
                    and out.document is None
                    and out.text
                    and fits
                ):
                    out.text = f"{carry.text}\n\n{out.text}"
                else:
                    merged.append(carry)
                carry = None
            if out.plain and out.text:
                carry = out
            else:
                merged.append(out)
        if carry is not None:
            merged.append(carry)
        return merged

    async def send(self, chat_id: str, reply: Reply, lang: str = "en") -> None:
        """A proactive message (moderation cards, reminders) through the outbound queue."""
        target = chat_ref(reply.chat_id or chat_id)
        await self.post(self.render(reply, reply.lang or lang, target))

    async def post(self, out: Outgoing) -> None:
        """Send (or edit) one rendered message; long texts go out in several messages."""
        try:
            await self._post(out)
        except Forbidden as exc:  # the user blocked the bot, or it left the group
            log.info("cannot write to chat %s: %s", out.chat_id, exc)

    async def _post(self, out: Outgoing) -> None:
        if out.photo is not None and await self._post_photo(out, out.photo):
            return
        bot = self.application.bot
        chunks = split_text(out.text) if out.text else []
        caption = (
            out.document is not None
            and out.edit_of is None
            and len(chunks) == 1
            and text_units(chunks[0]) <= MAX_CAPTION
        )
        if out.document is not None and (caption or not chunks):
            await bot.send_document(
                out.chat_id,
                InputFile(out.document.content, filename=out.document.filename),
                caption=chunks[0] if chunks else None,
                parse_mode=ParseMode.HTML if chunks else None,
                api_kwargs=_markup(out.markup),
            )
            return
        last = len(chunks) - 1
        for i, chunk in enumerate(chunks):
            markup = out.markup if i == last and out.document is None else None
            if i == 0 and out.edit_of is not None and await self._edit(out, chunk, markup):
                continue
            await self._send_text(out.chat_id, chunk, markup)
        if out.document is not None:
            await bot.send_document(
                out.chat_id,
                InputFile(out.document.content, filename=out.document.filename),
                api_kwargs=_markup(out.markup),
            )

    async def _post_photo(self, out: Outgoing, photo: Photo) -> bool:
        """A photo with the text as its caption and the buttons under it (an edit changes the
        caption). A longer text follows the photo as text messages carrying the buttons (and
        an edit then changes that text). False: send it as text (the photo was refused)."""
        fits = bool(out.text) and text_units(out.text) <= MAX_CAPTION
        if out.edit_of is not None:
            if fits and await self._edit(out, out.text, out.markup, caption=True):
                return True
            if out.text and await self._edit(out, out.text, out.markup):
                return True  # the buttons were on the text after an uncaptioned photo
            out.edit_of = None
        if fits:
            return await self._send_photo(out.chat_id, photo, out.text, out.markup)
        if not await self._send_photo(out.chat_id, photo, None, None):
            return False
        if out.text:
            chunks = split_text(out.text)
            for i, chunk in enumerate(chunks):
                markup = out.markup if i == len(chunks) - 1 else None
                await self._send_text(out.chat_id, chunk, markup)
        return True

    async def _send_photo(
        self, chat_id: int | str, photo: Photo, caption: str | None, markup: Markup | None
    ) -> bool:
        bot = self.application.bot
        media: InputFile | str = photo.url or InputFile(photo.data, filename=photo.filename)
        try:
            try:
                await bot.send_photo(
                    chat_id,
                    media,
                    caption=caption,
                    parse_mode=ParseMode.HTML if caption else None,
                    api_kwargs=_markup(markup),
                )
            except BadRequest as exc:
                if caption is None or "can't parse entities" not in exc.message:
                    raise
                log.warning("HTML refused in chat %s (%s); sending plain text", chat_id, exc)
                await bot.send_photo(
                    chat_id, media, caption=html.unescape(caption), api_kwargs=_markup(markup)
                )
        except BadRequest as exc:  # an unreachable URL, a picture Telegram will not take
            log.warning("photo %s refused in chat %s: %s", photo.filename, chat_id, exc)
            return False
        return True

    async def _edit(
        self, out: Outgoing, text: str, markup: Markup | None, *, caption: bool = False
    ) -> bool:
        """Edit the message a button belonged to (its caption when ``caption``); False when a
        new message must be sent."""
        assert out.edit_of is not None
        bot = self.application.bot
        try:
            if caption:
                await bot.edit_message_caption(
                    chat_id=out.chat_id,
                    message_id=out.edit_of,
                    caption=text,
                    parse_mode=ParseMode.HTML,
                    api_kwargs=_markup(markup),
                )
            else:
                await bot.edit_message_text(
                    text,
                    chat_id=out.chat_id,
                    message_id=out.edit_of,
                    parse_mode=ParseMode.HTML,
                    api_kwargs=_markup(markup),
                )
        except BadRequest as exc:
            if "not modified" in exc.message:
                return True
            log.info("cannot edit message %s in %s: %s", out.edit_of, out.chat_id, exc)
            return False
        return True

    async def _send_text(self, chat_id: int | str, text: str, markup: Markup | None) -> None:
        bot = self.application.bot
        try:
            await bot.send_message(
                chat_id,
                text,
                parse_mode=ParseMode.HTML,
                api_kwargs=_markup(markup),
            )
        except BadRequest as exc:
            if "can't parse entities" not in exc.message:
                raise
            # a translation with a stray "<" or "&": show the text as it is
            log.warning("HTML refused in chat %s (%s); sending plain text", chat_id, exc)
            await bot.send_message(
                chat_id,
                html.unescape(text),
                api_kwargs=_markup(markup),
            )

    # -- errors

    async def _on_error(self, update: object, context: Any) -> None:
        """Log, tell the admin chat (at most once a minute per kind), apologise to the user."""
        error: BaseException | None = getattr(context, "error", None)
        if error is None:
            return
        log.error("telegram update %s failed", getattr(update, "update_id", "-"), exc_info=error)
        chat = update.effective_chat if isinstance(update, Update) else None
        if chat is not None and not isinstance(error, TelegramError):
            assert isinstance(update, Update)
            user = update.effective_user
            lang = self.translator.normalize(user.language_code if user else "")
            with contextlib.suppress(Exception):
                await self._send_text(
                    chat.id, self.translator.render(Msg(SOMETHING_WRONG), lang), None
                )
        await self.alert_admins(error)

    async def alert_admins(self, error: BaseException) -> None:
        if not self.admin_chat_id or self._application is None:
            return
        kind = type(error).__name__
        now = time.monotonic()
        if now - self._last_alert.get(kind, -ALERT_EVERY_S) < ALERT_EVERY_S:
            return
        self._last_alert[kind] = now
        detail = redact(f"{kind}: {error}")[:500]
        alert = Reply.of(Msg(BOT_ERROR, {"error": detail}), kind="card")
        try:
            await self.send(self.admin_chat_id, alert, self.settings.default_language)
        except (TelegramError, NetworkError) as exc:
            log.warning("cannot alert the admin chat: %s", exc)


__all__ = [
    "MAX_CALLBACK_DATA",
    "MAX_TEXT",
    "CallbackDataTooLong",
    "Outgoing",
    "PerUserUpdates",
    "TelegramAdapter",
    "parse_command",
    "split_text",
]
