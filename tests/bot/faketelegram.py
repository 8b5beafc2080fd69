"""A fake Telegram Bot API server for end-to-end tests and benchmarks.

``FakeTelegram`` is a small aiohttp server that speaks enough of the Bot API for a real
python-telegram-bot ``Application`` (long polling) to run against it::

    async with FakeTelegram() as fake:
        app = (
            ApplicationBuilder()
            .token(fake.token)
            .base_url(fake.api_url)        # f"{fake.url}/bot"; PTB appends the token
            .base_file_url(fake.file_url)  # f"{fake.url}/file/bot"
            .build()
        )
        ...
        ann = fake.user(1, "Ann", language_code="de")
        fake.inject_message(ann, ann.id, "/start")
        call = await fake.wait_for(lambda c: c.ok and c.method == "sendMessage")

Conventions:

* Every API call is recorded in ``fake.calls`` as a :class:`Call` (failed ones too, with their
  HTTP status), after its answer was computed.  ``wait_for`` / ``wait_until`` wake on each new
  record through an ``asyncio.Condition``.
* Methods are matched case-insensitively, as Telegram does.  Methods the fake does not know are
  recorded and answered ``{"ok": true, "result": true}`` by default: python-telegram-bot maps an
  HTTP 404 to ``InvalidToken``, which would turn a harmless ``setMyDescription`` into a confusing
  failure.  ``FakeTelegram(strict=True)`` answers them like Telegram does (404, "Not Found").
  Methods that must return an object (``getChat``, ``copyMessage``...) are not faked: with the
  lenient default PTB fails to parse ``true`` for them.
* Texts with ``parse_mode`` HTML / MarkdownV2 / Markdown are parsed like Telegram does and
  malformed markup is refused with 400 "Bad Request: can't parse entities: ..." (turn off with
  ``validate_markup=False``); limits (4096 chars per message, 1024 per caption, 1..64 bytes of
  callback_data) are checked too.
* ``fake.listeners`` (callables taking a :class:`Call`) see every call as it is recorded:
  simulated users that react to what the bot sends (``tests/bot/simcrowd.py``).
* Nothing here imports python-telegram-bot or pytest at module level; the module can be loaded
  by path (``importlib.util.spec_from_file_location``) by benchmarks.
"""

import asyncio
import json
import math
import mimetypes
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Self

from aiohttp import MultipartReader, hdrs, web

__all__ = [
    "DEFAULT_TOKEN",
    "Call",
    "CallbackAnswer",
    "FakeTelegram",
    "FakeUser",
    "SentFile",
    "SentMessage",
    "UploadedFile",
]

JSON = dict[str, Any]

DEFAULT_TOKEN: Final = "123456789:AAFakeTokenForPolycrowdTests_0123456789"

# Parameters that stay strings even when they look like JSON (e.g. a text "123").  Every other
# form field is JSON-decoded when it parses (PTB sends ints, bools and objects JSON-encoded).
# fmt: off
_STRING_FIELDS: Final = frozenset({
    "text", "caption", "data", "callback_query_id", "inline_message_id", "file_id", "url",
    "secret_token", "ip_address", "parse_mode", "action", "language_code", "name", "title",
    "description", "short_description", "username", "query", "message_effect_id",
    "business_connection_id", "emoji", "custom_emoji_id",
    "document", "photo", "audio", "video", "voice", "animation", "sticker", "thumbnail",
})
# fmt: on

_MAX_TEXT: Final = 4096
_MAX_CAPTION: Final = 1024
_MAX_CALLBACK_DATA: Final = 64
_MEDIA_KEYS: Final = ("photo", "document", "audio", "video", "animation", "voice")

_COMMAND_RE: Final = re.compile(r"(?<![\w/])/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?(?![\w@/])")
_COMMAND_NAME_RE: Final = re.compile(r"[a-z0-9_]{1,32}")


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _now() -> int:
    return int(time.time())


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UploadedFile:
    """A file part of a multipart request."""

    filename: str
    content: bytes
    content_type: str


@dataclass(slots=True)
class Call:
    """One Bot API request as the fake saw it.

    ``params`` holds decoded values (ints, bools, dicts for ``reply_markup``...), ``files`` the
    multipart uploads by form field name.  ``time`` is ``time.monotonic()`` at arrival.
    ``status`` is the HTTP status answered (0 when the connection was dropped on purpose) and
    ``result`` the ``result`` object of a successful answer.
    """

    method: str
    params: JSON
    time: float
    token: str
    files: dict[str, UploadedFile] = field(default_factory=dict)
    status: int = 200
    result: Any = None
    description: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def chat_id(self) -> Any:
        return self.params.get("chat_id")


@dataclass(frozen=True, slots=True)
class SentMessage:
    """A text message the bot sent (``sendMessage``) or edited (``editMessageText`` /
    ``editMessageReplyMarkup``), or a caption it edited (``editMessageCaption``: ``text`` is
    then the caption).  ``text`` is the text as the bot sent it (with markup),
    ``plain`` the text Telegram shows (markup parsed away).  For a markup-only edit both are
    the message's current text.  ``chat_id``/``message_id`` are ``None`` for inline messages.
    """

    method: str
    chat_id: int | None
    message_id: int | None
    text: str
    plain: str
    parse_mode: str | None
    reply_markup: JSON | None
    time: float

    @property
    def buttons(self) -> list[list[JSON]]:
        """Rows of inline keyboard buttons (dicts with ``text``, ``callback_data``...)."""
        if not self.reply_markup:
            return []
        rows = self.reply_markup.get("inline_keyboard") or []
        return [list(row) for row in rows]

    @property
    def callback_data(self) -> list[str]:
        """All ``callback_data`` values of the inline keyboard, row by row."""
        return [b["callback_data"] for row in self.buttons for b in row if "callback_data" in b]


@dataclass(frozen=True, slots=True)
class SentFile:
    """A document or photo the bot sent.  ``content`` is empty when it was sent by URL or by
    an unknown ``file_id``; ``source`` says which (``upload``, ``file_id``, ``url``)."""

    method: str
    kind: str
    chat_id: int
    message_id: int
    filename: str
    content: bytes
    mime_type: str
    caption: str | None
    file_id: str
    source: str
    time: float


@dataclass(frozen=True, slots=True)
class CallbackAnswer:
    callback_query_id: str
    text: str | None
    show_alert: bool
    url: str | None
    params: JSON


@dataclass(frozen=True, slots=True)
class _Failure:
    status: int
    retry_after: float
    description: str | None
    drop_connection: bool


@dataclass(slots=True)
class _StoredFile:
    file_id: str
    file_unique_id: str
    file_path: str
    filename: str
    mime_type: str
    content: bytes


@dataclass(slots=True)
class _StoredMessage:
    obj: JSON
    raw_text: str | None
    parse_mode: str | None


@dataclass(slots=True)
class _Pending:
    update_id: int
    update: JSON
    payload: bytes
    delivered: bool = False


@dataclass(slots=True)
class _Bucket:
    tokens: float
    last: float


@dataclass(frozen=True, slots=True)
class _FloodLimits:
    per_chat: float | None
    chat_burst: float
    group_per_minute: float | None
    overall: float | None


class _ApiError(Exception):
    def __init__(self, status: int, description: str, parameters: JSON | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


def _bad(description: str) -> _ApiError:
    return _ApiError(400, f"Bad Request: {description}")


def _cant_parse(text: str, index: int, what: str) -> _ApiError:
    offset = len(text[:index].encode())
    return _bad(f"can't parse entities: {what} at byte offset {offset}")


# --------------------------------------------------------------------------------------------
# Markup parsing (what Telegram does to text with parse_mode)
# --------------------------------------------------------------------------------------------

# fmt: off
_HTML_TAGS: Final = frozenset({
    "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a",
    "tg-emoji", "code", "pre", "blockquote", "tg-time",
})
# fmt: on
_HTML_SPECIAL: Final = re.compile(r"[<&]")
_HTML_TAG: Final = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)((?:\s+[^<>]*)?)>")
_HTML_ENTITY: Final = re.compile(r"&(?:(lt|gt|amp|quot)|#([0-9]{1,7})|#[xX]([0-9a-fA-F]{1,6}));")
_HTML_NAMED: Final = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


def _parse_html(text: str) -> str:
    out: list[str] = []
    stack: list[tuple[str, int]] = []
    i = 0
    while True:
        m = _HTML_SPECIAL.search(text, i)
        if m is None:
            out.append(text[i:])
            break
        j = m.start()
        out.append(text[i:j])
        if text[j] == "&":
            e = _HTML_ENTITY.match(text, j)
            if e is None:
                out.append("&")
                i = j + 1
                continue
            if e.group(1):
                out.append(_HTML_NAMED[e.group(1)])
            else:
                code = int(e.group(2)) if e.group(2) else int(e.group(3), 16)
                out.append(chr(code) if 0 < code <= 0x10FFFF else "\ufffd")
            i = e.end()
            continue
        t = _HTML_TAG.match(text, j)
        if t is None:
            bad = re.match(r"</?([^\s<>]*)", text[j:])
            shown = bad.group(1) if bad else ""
            raise _cant_parse(text, j, f'Unsupported start tag "{shown}"')
        closing, name = t.group(1) == "/", str(t.group(2)).lower()
        if name not in _HTML_TAGS:
            kind = "end" if closing else "start"
            raise _cant_parse(text, j, f'Unsupported {kind} tag "{name}"')
        if closing:
            if not stack or stack[-1][0] != name:
                expected = f', expected "</{stack[-1][0]}>"' if stack else ""
                raise _cant_parse(text, j, f'Unmatched end tag{expected}, found "</{name}>"')
            stack.pop()
        else:
            stack.append((name, j))
        i = t.end()
    if stack:
        top, j = stack[-1]
        raise _cant_parse(text, j, f'Can\'t find end tag corresponding to start tag "{top}"')
    return "".join(out)


_MDV2_RESERVED: Final = frozenset("_*[]()~`>#+-=|{}.!")
_MDV2_NAMES: Final = {
    "*": "Bold",
    "_": "Italic",
    "__": "Underline",
    "~": "Strikethrough",
    "||": "Spoiler",
    "[": "TextUrl",
}


def _find_unescaped(text: str, marker: str, start: int) -> int:
    """Index of the next ``marker`` at or after ``start`` not escaped by a backslash."""
    i = start
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text.startswith(marker, i):
            return i
        i += 1
    return -1


def _unescape_mdv2(text: str) -> str:
    return re.sub(r"\\([\x01-\x7e])", r"\1", text)


def _parse_markdown_v2(text: str) -> str:
    out: list[str] = []
    stack: list[tuple[str, int]] = []
    n = len(text)
    i = 0
    while i < n:
        c = text[i]
        if c == "\\":
            if i + 1 < n and "\x01" <= text[i + 1] <= "\x7e":
                out.append(text[i + 1])
                i += 2
                continue
            out.append(c)  # lenient: a backslash before a non-ASCII char stays
            i += 1
            continue
        line_start = i == 0 or text[i - 1] == "\n"
        if c == "`":
            if text.startswith("```", i):
                end = _find_unescaped(text, "```", i + 3)
                if end < 0:
                    raise _cant_parse(text, i, "Can't find end of PreCode entity")
                body = text[i + 3 : end]
                first, nl, rest = body.partition("\n")
                if nl and first and re.fullmatch(r"[\w+#.-]+", first):
                    body = rest
                out.append(_unescape_mdv2(body))
                i = end + 3
            else:
                end = _find_unescaped(text, "`", i + 1)
                if end < 0:
                    raise _cant_parse(text, i, "Can't find end of Code entity")
                out.append(_unescape_mdv2(text[i + 1 : end]))
                i = end + 1
            continue
        if c == ">" and line_start:
            i += 1
            continue
        if line_start and text.startswith("**>", i):
            i += 3
            continue
        if c == "!" and text.startswith("![", i):
            c = "["
            i += 1
        if c == "[":
            stack.append(("[", i))
            i += 1
            continue
        if c == "]":
            if not stack or stack[-1][0] != "[":
                raise _cant_parse(text, i, "Character ']' is reserved and must be escaped")
            stack.pop()
            if not text.startswith("(", i + 1):
                raise _cant_parse(text, i, "Can't find end of a URL")
            end = _find_unescaped(text, ")", i + 2)
            if end < 0:
                raise _cant_parse(text, i, "Can't find end of a URL")
            i = end + 1
            continue
        marker = ""
        if c in "*~":
            marker = c
        elif c == "_":
            marker = "__" if text.startswith("__", i) else "_"
        elif c == "|" and text.startswith("||", i):
            marker = "||"
        if marker:
            if stack and stack[-1][0] == marker:
                stack.pop()
            elif any(name == marker for name, _ in stack):
                raise _cant_parse(text, i, f"Can't find end of {_MDV2_NAMES[marker]} entity")
            else:
                stack.append((marker, i))
            i += len(marker)
            continue
        if c in _MDV2_RESERVED:
            raise _cant_parse(
                text, i, f"Character '{c}' is reserved and must be escaped with the preceding '\\'"
            )
        out.append(c)
        i += 1
    if stack:
        marker, j = stack[-1]
        raise _cant_parse(text, j, f"Can't find end of {_MDV2_NAMES[marker]} entity")
    return "".join(out)


def _parse_markdown(text: str) -> str:
    """Legacy ``Markdown``: *bold*, _italic_, `code`, ```pre```, [text](url)."""
    out: list[str] = []
    n = len(text)
    i = 0
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n and text[i + 1] in "_*`[":
            out.append(text[i + 1])
            i += 2
            continue
        if c in "*_`":
            marker = "```" if text.startswith("```", i) else c
            end = text.find(marker, i + len(marker))
            if end < 0:
                raise _cant_parse(text, i, "Can't find end of the entity starting")
            out.append(text[i + len(marker) : end])
            i = end + len(marker)
            continue
        if c == "[":
            close = text.find("]", i + 1)
            if close < 0 or not text.startswith("(", close + 1) or text.find(")", close) < 0:
                raise _cant_parse(text, i, "Can't find end of the entity starting")
            out.append(text[i + 1 : close])
            i = text.find(")", close) + 1
            continue
        out.append(c)
        i += 1
    return "".join(out)


def render_text(text: str, parse_mode: str | None) -> str:
    """The text Telegram would show for ``text`` sent with ``parse_mode``.

    Raises ``ValueError`` with Telegram's description when the markup is malformed.
    """
    try:
        return _render(text, parse_mode)
    except _ApiError as exc:
        raise ValueError(exc.description) from None


def _render(text: str, parse_mode: str | None) -> str:
    mode = (parse_mode or "").lower()
    if not mode:
        return text
    if mode == "html":
        return _parse_html(text)
    if mode == "markdownv2":
        return _parse_markdown_v2(text)
    if mode == "markdown":
        return _parse_markdown(text)
    raise _bad(f"unsupported parse_mode {parse_mode}")


def command_entities(text: str) -> list[JSON]:
    """``bot_command`` entities for ``text`` as Telegram marks them (offsets in UTF-16)."""
    entities: list[JSON] = []
    for m in _COMMAND_RE.finditer(text):
        entities.append(
            {
                "type": "bot_command",
                "offset": _utf16_len(text[: m.start()]),
                "length": _utf16_len(m.group(0)),
            }
        )
    return entities


# --------------------------------------------------------------------------------------------
# Users
# --------------------------------------------------------------------------------------------


class FakeUser:
    """A Telegram user that can speak to the bot through the fake.

    ``chat_id`` defaults to the user's private chat (whose id is the user id).
    """

    __slots__ = ("fake", "first_name", "id", "language_code", "last_name", "username")

    def __init__(
        self,
        fake: "FakeTelegram",
        id: int,
        first_name: str,
        language_code: str | None = "en",
        username: str | None = None,
        last_name: str | None = None,
    ) -> None:
        self.fake = fake
        self.id = id
        self.first_name = first_name
        self.language_code = language_code
        self.username = username
        self.last_name = last_name

    def __repr__(self) -> str:
        return f"FakeUser(id={self.id}, first_name={self.first_name!r})"

    def to_dict(self) -> JSON:
        """The ``User`` object as it appears in updates."""
        user: JSON = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.last_name:
            user["last_name"] = self.last_name
        if self.username:
            user["username"] = self.username
        if self.language_code:
            user["language_code"] = self.language_code
        return user

    def say(self, text: str, chat_id: int | None = None, *, reply_to: int | None = None) -> JSON:
        """Inject a text message (commands get ``bot_command`` entities); returns the update."""
        return self.fake.inject_message(self, chat_id, text, reply_to=reply_to)

    def press(self, message_id: int, data: str, chat_id: int | None = None) -> JSON:
        """Inject an inline keyboard press on ``message_id``; returns the update."""
        return self.fake.inject_callback(self, chat_id, message_id, data)

    def upload(
        self,
        filename: str,
        content: bytes,
        caption: str | None = None,
        chat_id: int | None = None,
    ) -> JSON:
        """Inject a document message; returns the update."""
        return self.fake.inject_document(self, chat_id, filename, content, caption=caption)


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------

_Handler = Callable[[Call], Awaitable[Any]]


class FakeTelegram:
    """Fake Telegram Bot API server (see the module docstring)."""

    def __init__(
        self,
        *,
        token: str | None = None,
        bot_username: str = "polycrowd_test_bot",
        bot_first_name: str = "Polycrowd Test",
        strict: bool = False,
        validate_markup: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        """``token``: accept only this token (others get 401); ``None`` accepts any token.
        ``strict``: answer unknown methods 404 like Telegram instead of ``true``."""
        self.token = token or DEFAULT_TOKEN
        self._only_token = token
        self.bot_username = bot_username
        self.bot_first_name = bot_first_name
        self.strict = strict
        self.validate_markup = validate_markup
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self._closing = False

        # recordings
        self.calls: list[Call] = []
        self.callback_answers: list[CallbackAnswer] = []
        self.downloads: list[str] = []
        self.http_429 = 0
        self._sent: list[SentMessage] = []
        self._files_sent: list[SentFile] = []
        self._counts: dict[str, int] = {}
        self._cond = asyncio.Condition()
        self._waiters = 0
        self.polls_waiting = 0  # getUpdates requests now parked in a long poll
        # called with every recorded call, in order, on the server's loop (simulated users)
        self.listeners: list[Callable[[Call], None]] = []

        # state
        self._updates: deque[_Pending] = deque()
        self._update_event = asyncio.Event()
        self._next_update_id = 100_000
        self._last_batch_id: int | None = None
        self._message_ids: dict[int, int] = {}
        self._messages: dict[tuple[int, int], _StoredMessage] = {}
        self._chats: dict[int, JSON] = {}
        self._users: dict[int, FakeUser] = {}
        self._files: dict[str, _StoredFile] = {}
        self._file_paths: dict[str, _StoredFile] = {}
        self._next_file = 0
        self._callback_ids: set[str] = set()
        self._next_callback = 0
        self._commands: dict[tuple[str, str], list[JSON]] = {}
        self.webhook_url = ""
        self.webhook_secret: str | None = None
        self.blocked: set[int] = set()
        self._failures: dict[str, deque[_Failure]] = {}
        self._flood: _FloodLimits | None = None
        self._buckets: dict[Any, _Bucket] = {}

        handlers: dict[str, _Handler] = {
            "getMe": self._get_me,
            "logOut": self._true,
            "close": self._true,
            "getUpdates": self._get_updates,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "setMyCommands": self._set_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "getMyCommands": self._get_my_commands,
            "sendMessage": self._send_message,
            "editMessageText": self._edit_message_text,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "editMessageCaption": self._edit_message_caption,
            "deleteMessage": self._delete_message,
            "answerCallbackQuery": self._answer_callback_query,
            "sendDocument": self._send_document,
            "sendPhoto": self._send_photo,
            "getFile": self._get_file,
            "sendChatAction": self._send_chat_action,
        }
        self._methods: dict[str, tuple[str, _Handler]] = {
            name.lower(): (name, handler) for name, handler in handlers.items()
        }

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("FakeTelegram already started")
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)
        runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=1.0,
            handler_cancellation=True,
        )  # fmt: skip
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        await site.start()
        host, port = runner.addresses[0][:2]
        self._runner = runner
        self._closing = False
        self._url = f"http://{host}:{port}"

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._closing = True
        self._update_event.set()  # wake long polls so they answer at once
        await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` once started."""
        if self._url is None:
            raise RuntimeError("FakeTelegram is not started")
        return self._url

    @property
    def api_url(self) -> str:
        """Value for ``ApplicationBuilder.base_url`` (PTB appends the token, then /method)."""
        return f"{self.url}/bot"

    @property
    def file_url(self) -> str:
        """Value for ``ApplicationBuilder.base_file_url``."""
        return f"{self.url}/file/bot"

    def app_builder(self, token: str | None = None) -> Any:
        """A PTB ``ApplicationBuilder`` pointed at this fake (imports telegram lazily)."""
        from telegram.ext import ApplicationBuilder

        return (
            ApplicationBuilder()
            .token(token or self.token)
            .base_url(self.api_url)
            .base_file_url(self.file_url)
        )

    # ---------------------------------------------------------------- identities and chats

    def bot_user(self, token: str | None = None) -> JSON:
        prefix = (token or self.token).split(":", 1)[0]
        return {
            "id": int(prefix) if prefix.isdigit() else 1,
            "is_bot": True,
            "first_name": self.bot_first_name,
            "username": self.bot_username,
        }

    def user(
        self,
        id: int,
        first_name: str,
        language_code: str | None = "en",
        username: str | None = None,
        last_name: str | None = None,
    ) -> FakeUser:
        """Register a user (and their private chat) and return a helper to speak as them."""
        user = FakeUser(self, id, first_name, language_code, username, last_name)
        self._users[id] = user
        chat: JSON = {"id": id, "type": "private", "first_name": first_name}
        if username:
            chat["username"] = username
        self._chats[id] = chat
        return user

    def set_chat(self, chat_id: int, type: str, title: str | None = None) -> JSON:
        """Declare a chat's type (private, group, supergroup, channel) and title."""
        chat: JSON = {"id": chat_id, "type": type}
        if type == "private":
            chat["first_name"] = title or f"User {chat_id}"
        else:
            chat["title"] = title or f"Chat {chat_id}"
        self._chats[chat_id] = chat
        return chat

    def chat(self, chat_id: int) -> JSON:
        """The ``Chat`` object for ``chat_id``: positive ids are private chats, negative ids
        supergroups, unless declared otherwise with :meth:`set_chat`."""
        chat = self._chats.get(chat_id)
        if chat is None:
            if chat_id > 0:
                chat = {"id": chat_id, "type": "private", "first_name": f"User {chat_id}"}
            else:
                chat = {"id": chat_id, "type": "supergroup", "title": f"Group {chat_id}"}
            self._chats[chat_id] = chat
        return chat

    def block(self, chat_id: int) -> None:
        """The user blocked the bot: sends to this chat answer 403."""
        self.blocked.add(chat_id)

    def unblock(self, chat_id: int) -> None:
        self.blocked.discard(chat_id)

    # ---------------------------------------------------------------- injection

    def _next_message_id(self, chat_id: int) -> int:
        mid = self._message_ids.get(chat_id, 0) + 1
        self._message_ids[chat_id] = mid
        return mid

    def _user_message(
        self, user: FakeUser, chat_id: int | None, reply_to: int | None = None
    ) -> tuple[int, JSON]:
        cid = user.id if chat_id is None else chat_id
        msg: JSON = {
            "message_id": self._next_message_id(cid),
            "from": user.to_dict(),
            "chat": self.chat(cid),
            "date": _now(),
        }
        if reply_to is not None:
            stored = self._messages.get((cid, reply_to))
            if stored is not None:
                msg["reply_to_message"] = stored.obj
        return cid, msg

    def _store(self, chat_id: int, msg: JSON, raw: str | None, parse_mode: str | None) -> None:
        self._messages[(chat_id, msg["message_id"])] = _StoredMessage(msg, raw, parse_mode)

    def _enqueue(self, update: JSON) -> JSON:
        uid = update["update_id"]
        payload = json.dumps(update, separators=(",", ":"), ensure_ascii=False).encode()
        self._updates.append(_Pending(uid, update, payload))
        self._update_event.set()
        return update

    def _new_update(self, kind: str, obj: JSON) -> JSON:
        uid = self._next_update_id
        self._next_update_id += 1
        return self._enqueue({"update_id": uid, kind: obj})

    def inject_message(
        self,
        user: FakeUser,
        chat_id: int | None,
        text: str,
        *,
        reply_to: int | None = None,
    ) -> JSON:
        """Queue a text message from ``user`` in ``chat_id`` (``None``: their private chat).

        Commands (``/start``, ``/link ABC123``, ``/start@bot``) get ``bot_command`` entities.
        ``reply_to`` makes it a reply to that message id of the chat.  Returns the update.
        """
        cid, msg = self._user_message(user, chat_id, reply_to)
        msg["text"] = text
        entities = command_entities(text)
        if entities:
            msg["entities"] = entities
        self._store(cid, msg, text, None)
        return self._new_update("message", msg)

    def inject_callback(
        self, user: FakeUser, chat_id: int | None, message_id: int, data: str
    ) -> JSON:
        """Queue an inline keyboard press by ``user`` on message ``message_id`` of ``chat_id``.

        The update carries the message as the fake stored it (its last edit).  The callback
        query id is accepted once by ``answerCallbackQuery``.  Returns the update.
        """
        cid = user.id if chat_id is None else chat_id
        stored = self._messages.get((cid, message_id))
        if stored is not None:
            message = stored.obj
        else:  # a message the fake never saw: invent it (bot-authored) so edits work
            message = {
                "message_id": message_id,
                "from": self.bot_user(),
                "chat": self.chat(cid),
                "date": _now(),
                "text": "?",
            }
            self._store(cid, message, "?", None)
        self._next_callback += 1
        query_id = f"{4_000_000_000 + self._next_callback}"
        self._callback_ids.add(query_id)
        query: JSON = {
            "id": query_id,
            "from": user.to_dict(),
            "message": message,
            "chat_instance": str(-cid if cid < 0 else cid * 7 + 1),
            "data": data,
        }
        return self._new_update("callback_query", query)

    def _add_file(
        self, filename: str, content: bytes, mime: str | None, folder: str
    ) -> _StoredFile:
        self._next_file += 1
        n = self._next_file
        suffix = (
            re.sub(r"[^A-Za-z0-9.]", "", "." + filename.rsplit(".", 1)[1])
            if "." in filename
            else ""
        )
        mime_type = mime or mimetypes.guess_type(filename)[0] or "application/octet-stream"
        stored = _StoredFile(
            file_id=f"BQACAgIAAxkBAAI{n:08d}FakeFileId",
            file_unique_id=f"AgAD{n:08d}",
            file_path=f"{folder}/file_{n}{suffix[:16]}",
            filename=filename,
            mime_type=mime_type,
            content=content,
        )
        self._files[stored.file_id] = stored
        self._file_paths[stored.file_path] = stored
        return stored

    @staticmethod
    def _document_obj(f: _StoredFile) -> JSON:
        return {
            "file_id": f.file_id,
            "file_unique_id": f.file_unique_id,
            "file_name": f.filename,
            "mime_type": f.mime_type,
            "file_size": len(f.content),
        }

    @staticmethod
    def _photo_obj(f: _StoredFile) -> list[JSON]:
        return [
            {
                "file_id": f.file_id,
                "file_unique_id": f.file_unique_id,
                "width": 320,
                "height": 320,
                "file_size": len(f.content),
            }
        ]

    def inject_document(
        self,
        user: FakeUser,
        chat_id: int | None,
        filename: str,
        content: bytes,
        caption: str | None = None,
        mime_type: str | None = None,
    ) -> JSON:
        """Queue a document message; the file is stored so ``getFile`` and the download work."""
        stored = self._add_file(filename, content, mime_type, "documents")
        cid, msg = self._user_message(user, chat_id)
        msg["document"] = self._document_obj(stored)
        if caption is not None:
            msg["caption"] = caption
            entities = command_entities(caption)
            if entities:
                msg["caption_entities"] = entities
        self._store(cid, msg, caption, None)
        return self._new_update("message", msg)

    def inject_photo(
        self, user: FakeUser, chat_id: int | None, content: bytes, caption: str | None = None
    ) -> JSON:
        """Queue a photo message (one size, 320x320)."""
        stored = self._add_file("photo.jpg", content, "image/jpeg", "photos")
        cid, msg = self._user_message(user, chat_id)
        msg["photo"] = self._photo_obj(stored)
        if caption is not None:
            msg["caption"] = caption
        self._store(cid, msg, caption, None)
        return self._new_update("message", msg)

    def inject_raw(self, update: JSON) -> JSON:
        """Queue ``update`` as is (e.g. a copy of an earlier update to replay a duplicate).

        It is delivered once even if its ``update_id`` is below the client's offset.  Without
        an ``update_id`` it gets the next one.  Returns the update.
        """
        update = dict(update)
        if "update_id" not in update:
            update["update_id"] = self._next_update_id
        self._next_update_id = max(self._next_update_id, int(update["update_id"]) + 1)
        return self._enqueue(update)

    @property
    def pending_updates(self) -> int:
        return len(self._updates)

    # ---------------------------------------------------------------- failure injection

    def fail_next(
        self,
        method: str,
        times: int = 1,
        status: int = 429,
        retry_after: float = 1,
        *,
        description: str | None = None,
        drop_connection: bool = False,
    ) -> None:
        """Make the next ``times`` calls of ``method`` (``"*"``: any method) fail.

        ``status`` 429 answers "Too Many Requests: retry after N" with
        ``parameters.retry_after`` (PTB raises ``RetryAfter``; N must be > 0); other statuses
        answer ``{"ok": false, "error_code": status, "description": ...}`` (PTB: 400
        ``BadRequest``, 403 ``Forbidden``, 5xx ``NetworkError``).  ``drop_connection=True``
        closes the connection without an answer (PTB: ``NetworkError``).
        """
        if times < 1:
            raise ValueError("times must be >= 1")
        if status == 429 and retry_after <= 0:
            raise ValueError("retry_after must be > 0 (PTB ignores retry_after=0)")
        key = "*" if method == "*" else method.lower()
        queue = self._failures.setdefault(key, deque())
        failure = _Failure(status, retry_after, description, drop_connection)
        queue.extend([failure] * times)

    def set_flood_limits(
        self,
        *,
        per_chat: float | None = 1.0,
        chat_burst: float = 3.0,
        group_per_minute: float | None = 20.0,
        overall: float | None = 30.0,
    ) -> None:
        """Enforce Telegram-like flood limits on sendMessage/sendDocument/sendPhoto with token
        buckets: ``per_chat`` messages/s per chat (bursts of ``chat_burst``),
        ``group_per_minute`` per group chat, ``overall`` messages/s in all.  Excess calls are
        answered 429 with the time until a token is free (rounded up; counted in
        ``http_429``).  ``None`` disables one limit."""
        self._flood = _FloodLimits(per_chat, chat_burst, group_per_minute, overall)
        self._buckets.clear()

    def clear_flood_limits(self) -> None:
        self._flood = None
        self._buckets.clear()

    def _check_flood(self, chat_id: int) -> None:
        limits = self._flood
        if limits is None:
            return
        now = time.monotonic()
        wanted: list[tuple[Any, float, float]] = []
        if limits.per_chat:
            wanted.append((("chat", chat_id), limits.per_chat, limits.chat_burst))
        if limits.group_per_minute and chat_id < 0:
            wanted.append(
                (("group", chat_id), limits.group_per_minute / 60, limits.group_per_minute)
            )
        if limits.overall:
            wanted.append(("all", limits.overall, limits.overall))
        wait = 0.0
        buckets: list[_Bucket] = []
        for key, rate, burst in wanted:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(burst, now)
            bucket.tokens = min(burst, bucket.tokens + (now - bucket.last) * rate)
            bucket.last = now
            if bucket.tokens < 1:
                wait = max(wait, (1 - bucket.tokens) / rate)
            buckets.append(bucket)
        if wait > 0:
            raise self._too_many(max(1, math.ceil(wait)))
        for bucket in buckets:
            bucket.tokens -= 1

    @staticmethod
    def _too_many(retry_after: float) -> _ApiError:
        shown = int(retry_after) if float(retry_after).is_integer() else retry_after
        return _ApiError(429, f"Too Many Requests: retry after {shown}", {"retry_after": shown})

    # ---------------------------------------------------------------- recordings

    def sent_messages(self, chat_id: int | None = None) -> list[SentMessage]:
        """Messages the bot sent or edited, in order, optionally for one chat."""
        if chat_id is None:
            return list(self._sent)
        return [m for m in self._sent if m.chat_id == chat_id]

    def last_message(self, chat_id: int | None = None) -> SentMessage:
        msgs = self.sent_messages(chat_id)
        if not msgs:
            raise LookupError(f"no message sent to chat {chat_id}")
        return msgs[-1]

    def documents(self, chat_id: int | None = None) -> list[SentFile]:
        """Documents the bot sent, with their bytes, optionally for one chat."""
        return [
            f
            for f in self._files_sent
            if f.kind == "document" and (chat_id is None or f.chat_id == chat_id)
        ]

    def photos(self, chat_id: int | None = None) -> list[SentFile]:
        return [
            f
            for f in self._files_sent
            if f.kind == "photo" and (chat_id is None or f.chat_id == chat_id)
        ]

    def message(self, chat_id: int, message_id: int) -> JSON | None:
        """The current state (after edits) of a message the fake knows, or ``None``."""
        stored = self._messages.get((chat_id, message_id))
        return stored.obj if stored is not None else None

    def count(self, method: str) -> int:
        """How many successful calls of ``method`` were made (O(1))."""
        return self._counts.get(method, 0)

    def calls_of(self, method: str, *, ok: bool | None = None) -> list[Call]:
        return [c for c in self.calls if c.method == method and (ok is None or c.ok is ok)]

    def clear(self) -> None:
        """Forget recordings (calls, sent messages and files, answers, counters); keep state."""
        self.calls.clear()
        self.callback_answers.clear()
        self.downloads.clear()
        self._sent.clear()
        self._files_sent.clear()
        self._counts.clear()
        self.http_429 = 0

    async def _record(self, call: Call) -> None:
        self.calls.append(call)
        if call.status == 200:
            self._counts[call.method] = self._counts.get(call.method, 0) + 1
        elif call.status == 429:
            self.http_429 += 1
        for listener in self.listeners:
            listener(call)
        await self._notify()

    async def _notify(self) -> None:
        if self._waiters:
            async with self._cond:
                self._cond.notify_all()

    async def wait_for(
        self,
        predicate: Callable[[Call], bool],
        timeout: float = 5.0,  # noqa: ASYNC109
        *,
        since: int = 0,
    ) -> Call:
        """Return the first recorded call (from index ``since``) satisfying ``predicate``,
        waiting for new calls up to ``timeout`` seconds (``TimeoutError`` then).

        Calls recorded before this wait count too; pass ``since=len(fake.calls)`` to look
        only at later ones.  Failed calls are recorded too: check ``call.ok``.
        """
        i = since
        self._waiters += 1
        try:
            async with asyncio.timeout(timeout), self._cond:
                while True:
                    calls = self.calls
                    while i < len(calls):
                        call = calls[i]
                        i += 1
                        if predicate(call):
                            return call
                    await self._cond.wait()
        except TimeoutError:
            recent = ", ".join(f"{c.method}:{c.status}" for c in self.calls[-8:])
            raise TimeoutError(
                f"no matching Bot API call within {timeout}s (last calls: {recent or 'none'})"
            ) from None
        finally:
            self._waiters -= 1

    async def wait_for_message(
        self,
        chat_id: int | None = None,
        *,
        contains: str | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109
        since: int = 0,
    ) -> SentMessage:
        """Wait for a successful ``sendMessage`` (optionally to ``chat_id``, with ``contains``
        in its plain text) and return it as a :class:`SentMessage`."""

        def match(call: Call) -> bool:
            if not call.ok or call.method != "sendMessage":
                return False
            if chat_id is not None and call.params.get("chat_id") != chat_id:
                return False
            return contains is None or contains in call.result.get("text", "")

        call = await self.wait_for(match, timeout, since=since)
        key = (call.params["chat_id"], call.result["message_id"])
        for sent in reversed(self._sent):
            if sent.method == "sendMessage" and (sent.chat_id, sent.message_id) == key:
                return sent
        raise LookupError("message was cleared from the recordings")

    async def wait_until(
        self,
        condition: Callable[[], bool],
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> None:
        """Wait until ``condition()`` is true, re-checking after each recorded call (and when
        a long poll parks), e.g. ``await fake.wait_until(lambda: fake.count("sendMessage") >=
        1000, 30)`` or ``await fake.wait_until(lambda: fake.polls_waiting > 0)``."""
        self._waiters += 1
        try:
            async with asyncio.timeout(timeout), self._cond:
                await self._cond.wait_for(condition)
        except TimeoutError:
            raise TimeoutError(f"condition not met within {timeout}s") from None
        finally:
            self._waiters -= 1

    # ---------------------------------------------------------------- HTTP plumbing

    @staticmethod
    def _answer(status: int, body: bytes) -> web.Response:
        return web.Response(status=status, body=body, content_type="application/json")

    @classmethod
    def _error(cls, exc: _ApiError) -> web.Response:
        data: JSON = {"ok": False, "error_code": exc.status, "description": exc.description}
        if exc.parameters:
            data["parameters"] = exc.parameters
        return cls._answer(exc.status, json.dumps(data).encode())

    @staticmethod
    def _coerce(value: str) -> Any:
        if value and (value[0] in '{["-0123456789' or value in ("true", "false", "null")):
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value

    async def _read_params(self, request: web.Request) -> tuple[JSON, dict[str, UploadedFile]]:
        params: JSON = dict(request.query) if request.query_string else {}
        files: dict[str, UploadedFile] = {}
        if request.body_exists:
            ctype = request.content_type
            if ctype.startswith("multipart/"):
                reader = await request.multipart()
                await self._read_multipart(reader, params, files)
            elif ctype == "application/x-www-form-urlencoded":
                params.update(await request.post())
            else:
                body = await request.read()
                if body:
                    data = json.loads(body)
                    if not isinstance(data, dict):
                        raise ValueError("JSON body is not an object")
                    params.update(data)
        for key, value in params.items():
            if isinstance(value, str) and key not in _STRING_FIELDS:
                params[key] = self._coerce(value)
        return params, files

    async def _read_multipart(
        self, reader: MultipartReader, params: JSON, files: dict[str, UploadedFile]
    ) -> None:
        while (part := await reader.next()) is not None:
            if isinstance(part, MultipartReader):
                await self._read_multipart(part, params, files)
                continue
            name = part.name or ""
            if part.filename is not None:
                content = bytes(await part.read(decode=True))
                ctype = part.headers.get(hdrs.CONTENT_TYPE, "application/octet-stream")
                files[name] = UploadedFile(part.filename, content, ctype)
            else:
                params[name] = await part.text()

    def _take_failure(self, key: str) -> _Failure | None:
        for k in (key, "*"):
            queue = self._failures.get(k)
            if queue:
                failure = queue.popleft()
                if not queue:
                    del self._failures[k]
                return failure
        return None

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        token = request.match_info["token"]
        name = request.match_info["method"]
        if self._only_token is not None and token != self._only_token:
            call = Call(name, {}, time.monotonic(), token, status=401, description="Unauthorized")
            await self._record(call)
            return self._error(_ApiError(401, "Unauthorized"))
        key = name.lower()
        entry = self._methods.get(key)
        method = entry[0] if entry is not None else name
        call = Call(method, {}, time.monotonic(), token)
        try:
            call.params, call.files = await self._read_params(request)
        except ValueError:
            error = _bad("can't parse request parameters")
            call.status, call.description = error.status, error.description
            await self._record(call)
            return self._error(error)

        failure = self._take_failure(key) if self._failures else None
        try:
            if failure is not None:
                if failure.drop_connection:
                    call.status = 0
                    await self._record(call)
                    if request.transport is not None:
                        request.transport.abort()  # the client sees a reset, no answer
                    return web.Response(status=500)
                if failure.status == 429:
                    raise self._too_many(failure.retry_after)
                raise _ApiError(
                    failure.status, failure.description or self._describe(failure.status)
                )
            if entry is None:
                if self.strict:
                    raise _ApiError(404, "Not Found: method not found")
                result: Any = True
            else:
                result = await entry[1](call)
        except (ValueError, TypeError) as exc:  # a malformed parameter, e.g. offset="x"
            error = _bad(f"invalid parameters: {exc}")
            call.status, call.description = error.status, error.description
            await self._record(call)
            return self._error(error)
        except _ApiError as exc:
            call.status, call.description = exc.status, exc.description
            await self._record(call)
            return self._error(exc)

        call.result = result
        if isinstance(result, list) and result and isinstance(result[0], _Pending):
            call.result = [p.update for p in result]
            body = b'{"ok":true,"result":[' + b",".join(p.payload for p in result) + b"]}"
        else:
            body = b'{"ok":true,"result":' + json.dumps(result, ensure_ascii=False).encode() + b"}"
        await self._record(call)
        return self._answer(200, body)

    @staticmethod
    def _describe(status: int) -> str:
        return {
            400: "Bad Request",
            401: "Unauthorized",
            403: "Forbidden: bot was blocked by the user",
            404: "Not Found",
            409: "Conflict",
            500: "Internal Server Error",
            502: "Bad Gateway",
        }.get(status, f"Error {status}")

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        token = request.match_info["token"]
        path = request.match_info["path"]
        stored = self._file_paths.get(path)
        if stored is None or (self._only_token is not None and token != self._only_token):
            return self._error(_ApiError(404, "Not Found"))
        self.downloads.append(path)
        return web.Response(body=stored.content, content_type="application/octet-stream")

    # ---------------------------------------------------------------- methods

    async def _true(self, call: Call) -> bool:
        return True

    async def _get_me(self, call: Call) -> JSON:
        me = self.bot_user(call.token)
        me.update(
            can_join_groups=True,
            can_read_all_group_messages=False,
            supports_inline_queries=False,
            can_connect_to_business=False,
            has_main_web_app=False,
        )
        return me

    async def _get_updates(self, call: Call) -> list[_Pending]:
        if self.webhook_url:
            raise _ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        params = call.params
        offset = int(params.get("offset") or 0)
        limit = min(max(int(params.get("limit") or 100), 1), 100)
        timeout = max(float(params.get("timeout") or 0), 0.0)
        self._confirm(offset)
        if not self._updates and timeout > 0 and not self._closing:
            self._update_event.clear()
            self.polls_waiting += 1
            await self._notify()
            try:
                async with asyncio.timeout(timeout):
                    await self._update_event.wait()
            except TimeoutError:
                pass
            finally:
                self.polls_waiting -= 1
            self._confirm(offset)
        if self._closing:
            return []
        batch: list[_Pending] = []
        for pending in self._updates:
            if len(batch) >= limit:
                break
            pending.delivered = True
            batch.append(pending)
        self._last_batch_id = batch[-1].update_id if batch else None
        return batch

    def _confirm(self, offset: int) -> None:
        """Forget updates the client confirmed by asking for ``offset``."""
        updates = self._updates
        if offset < 0:
            while len(updates) > -offset:
                updates.popleft()
            return
        if self._last_batch_id is not None and offset > self._last_batch_id:
            # the client saw the last batch (which may hold replayed, out-of-order ids)
            while updates and updates[0].delivered:
                updates.popleft()
            self._last_batch_id = None
        while updates and updates[0].update_id < offset and updates[0].delivered:
            updates.popleft()

    async def _set_webhook(self, call: Call) -> bool:
        url = call.params.get("url") or ""
        if url and not str(url).startswith(("https://", "http://")):
            raise _bad("bad webhook: An HTTPS URL must be provided for webhook")
        self.webhook_url = str(url)
        self.webhook_secret = call.params.get("secret_token")
        if call.params.get("drop_pending_updates"):
            self._drop_updates()
        return True

    async def _delete_webhook(self, call: Call) -> bool:
        self.webhook_url = ""
        self.webhook_secret = None
        if call.params.get("drop_pending_updates"):
            self._drop_updates()
        return True

    def _drop_updates(self) -> None:
        self._updates.clear()
        self._last_batch_id = None

    async def _get_webhook_info(self, call: Call) -> JSON:
        return {
            "url": self.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }

    @staticmethod
    def _commands_key(params: JSON) -> tuple[str, str]:
        scope = params.get("scope") or {"type": "default"}
        return json.dumps(scope, sort_keys=True), str(params.get("language_code") or "")

    async def _set_my_commands(self, call: Call) -> bool:
        commands = call.params.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise _bad("can't parse commands JSON object")
        for cmd in commands:
            name = cmd.get("command") if isinstance(cmd, dict) else None
            desc = cmd.get("description") if isinstance(cmd, dict) else None
            if not isinstance(name, str) or not _COMMAND_NAME_RE.fullmatch(name):
                raise _bad("BOT_COMMAND_INVALID")
            if not isinstance(desc, str) or not 1 <= len(desc) <= 256:
                raise _bad("BOT_COMMAND_DESCRIPTION_INVALID")
        self._commands[self._commands_key(call.params)] = [
            {"command": c["command"], "description": c["description"]} for c in commands
        ]
        return True

    async def _delete_my_commands(self, call: Call) -> bool:
        self._commands.pop(self._commands_key(call.params), None)
        return True

    async def _get_my_commands(self, call: Call) -> list[JSON]:
        return self._commands.get(self._commands_key(call.params), [])

    def commands(self, language_code: str = "", scope: JSON | None = None) -> list[JSON]:
        """Commands set with setMyCommands for this scope and language."""
        params: JSON = {"language_code": language_code, "scope": scope}
        return self._commands.get(self._commands_key(params), [])

    # -- sending

    def _target_chat(self, params: JSON) -> int:
        chat_id = params.get("chat_id")
        if chat_id is None or chat_id == "":
            raise _bad("chat_id is empty")
        if isinstance(chat_id, bool) or not isinstance(chat_id, int):
            raise _bad("chat not found")
        if chat_id in self.blocked:
            raise _ApiError(403, "Forbidden: bot was blocked by the user")
        return chat_id

    def _render_checked(self, text: Any, parse_mode: Any, limit: int, what: str) -> str:
        text = str(text)
        plain = _render(text, parse_mode) if self.validate_markup and parse_mode else text
        if _utf16_len(plain) > limit:
            raise _bad(f"{what} is too long")
        return plain

    @staticmethod
    def _check_markup(markup: Any) -> JSON | None:
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise _bad("can't parse reply keyboard markup JSON object")
        rows = markup.get("inline_keyboard")
        if rows is None:
            return markup
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise _bad('can\'t parse inline keyboard button: field "inline_keyboard" is invalid')
        for row in rows:
            for button in row:
                if not isinstance(button, dict) or not button.get("text"):
                    raise _bad("can't parse inline keyboard button: Text buttons are unallowed")
                data = button.get("callback_data")
                if data is not None:
                    size = len(str(data).encode())
                    if not 1 <= size <= _MAX_CALLBACK_DATA:
                        raise _bad("BUTTON_DATA_INVALID")
        return markup

    def _bot_message(self, chat_id: int, token: str) -> JSON:
        return {
            "message_id": self._next_message_id(chat_id),
            "from": self.bot_user(token),
            "chat": self.chat(chat_id),
            "date": _now(),
        }

    async def _send_message(self, call: Call) -> JSON:
        params = call.params
        chat_id = self._target_chat(params)
        text = params.get("text")
        if text is None or str(text) == "":
            raise _bad("message text is empty")
        parse_mode = params.get("parse_mode")
        plain = self._render_checked(text, parse_mode, _MAX_TEXT, "message")
        if not plain.strip():
            raise _bad("message text is empty")
        markup = self._check_markup(params.get("reply_markup"))
        self._check_flood(chat_id)
        msg = self._bot_message(chat_id, call.token)
        msg["text"] = plain
        if markup is not None:
            msg["reply_markup"] = markup
        reply_to = params.get("reply_to_message_id")
        if reply_to is None and isinstance(params.get("reply_parameters"), dict):
            reply_to = params["reply_parameters"].get("message_id")
        if reply_to is not None:
            replied = self._messages.get((chat_id, reply_to))
            if replied is not None:
                msg["reply_to_message"] = replied.obj
        self._store(chat_id, msg, str(text), parse_mode)
        self._sent.append(
            SentMessage(
                "sendMessage", chat_id, msg["message_id"], str(text), plain, parse_mode,
                markup, call.time,
            )
        )  # fmt: skip
        return msg

    def _editable(self, params: JSON) -> tuple[int, int, _StoredMessage]:
        chat_id = self._target_chat(params)
        message_id = params.get("message_id")
        stored = self._messages.get((chat_id, message_id)) if isinstance(message_id, int) else None
        if stored is None or message_id is None:
            raise _bad("message to edit not found")
        if not stored.obj.get("from", {}).get("is_bot"):
            raise _bad("message can't be edited")
        return chat_id, message_id, stored

    async def _edit_message_text(self, call: Call) -> JSON | bool:
        params = call.params
        text = params.get("text")
        if text is None or str(text) == "":
            raise _bad("message text is empty")
        parse_mode = params.get("parse_mode")
        plain = self._render_checked(text, parse_mode, _MAX_TEXT, "message")
        markup = self._check_markup(params.get("reply_markup"))
        if params.get("inline_message_id"):
            self._sent.append(
                SentMessage(
                    "editMessageText", None, None, str(text), plain, parse_mode, markup, call.time
                )
            )
            return True
        chat_id, message_id, stored = self._editable(params)
        if "text" not in stored.obj:
            raise _bad("there is no text in the message to edit")
        if stored.raw_text == str(text) and stored.obj.get("reply_markup") == markup:
            raise _bad(
                "message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message"
            )
        msg = {k: v for k, v in stored.obj.items() if k != "reply_markup"}
        msg["text"] = plain
        msg["edit_date"] = _now()
        if markup is not None:
            msg["reply_markup"] = markup
        self._store(chat_id, msg, str(text), parse_mode)
        self._sent.append(
            SentMessage(
                "editMessageText", chat_id, message_id, str(text), plain, parse_mode, markup,
                call.time,
            )
        )  # fmt: skip
        return msg

    async def _edit_message_caption(self, call: Call) -> JSON | bool:
        params = call.params
        caption = params.get("caption")
        raw = "" if caption is None else str(caption)
        parse_mode = params.get("parse_mode")
        plain = (
            self._render_checked(raw, parse_mode, _MAX_CAPTION, "message caption") if raw else ""
        )
        markup = self._check_markup(params.get("reply_markup"))
        if params.get("inline_message_id"):
            self._sent.append(
                SentMessage(
                    "editMessageCaption", None, None, raw, plain, parse_mode, markup, call.time
                )
            )
            return True
        chat_id, message_id, stored = self._editable(params)
        if not any(k in stored.obj for k in _MEDIA_KEYS):
            raise _bad("there is no caption in the message to edit")
        if (stored.raw_text or "") == raw and stored.obj.get("reply_markup") == markup:
            raise _bad(
                "message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message"
            )
        msg = {k: v for k, v in stored.obj.items() if k not in ("reply_markup", "caption")}
        if plain:
            msg["caption"] = plain
        msg["edit_date"] = _now()
        if markup is not None:
            msg["reply_markup"] = markup
        self._store(chat_id, msg, raw or None, parse_mode)
        self._sent.append(
            SentMessage(
                "editMessageCaption", chat_id, message_id, raw, plain, parse_mode, markup,
                call.time,
            )
        )  # fmt: skip
        return msg

    async def _edit_message_reply_markup(self, call: Call) -> JSON | bool:
        params = call.params
        markup = self._check_markup(params.get("reply_markup"))
        if params.get("inline_message_id"):
            self._sent.append(
                SentMessage("editMessageReplyMarkup", None, None, "", "", None, markup, call.time)
            )
            return True
        chat_id, message_id, stored = self._editable(params)
        if stored.obj.get("reply_markup") == markup:
            raise _bad(
                "message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message"
            )
        msg = {k: v for k, v in stored.obj.items() if k != "reply_markup"}
        msg["edit_date"] = _now()
        if markup is not None:
            msg["reply_markup"] = markup
        self._store(chat_id, msg, stored.raw_text, stored.parse_mode)
        raw = stored.raw_text or ""
        self._sent.append(
            SentMessage(
                "editMessageReplyMarkup", chat_id, message_id, raw,
                str(msg.get("text", msg.get("caption", ""))), stored.parse_mode, markup,
                call.time,
            )
        )  # fmt: skip
        return msg

    async def _delete_message(self, call: Call) -> bool:
        chat_id = self._target_chat(call.params)
        message_id = call.params.get("message_id")
        if (
            not isinstance(message_id, int)
            or self._messages.pop((chat_id, message_id), None) is None
        ):
            raise _bad("message to delete not found")
        return True

    async def _answer_callback_query(self, call: Call) -> bool:
        params = call.params
        query_id = str(params.get("callback_query_id") or "")
        if query_id not in self._callback_ids:
            raise _bad("query is too old and response timeout expired or query ID is invalid")
        self._callback_ids.discard(query_id)
        text = params.get("text")
        if text is not None and len(str(text)) > 200:
            raise _bad("MESSAGE_TOO_LONG")
        self.callback_answers.append(
            CallbackAnswer(
                callback_query_id=query_id,
                text=None if text is None else str(text),
                show_alert=bool(params.get("show_alert")),
                url=params.get("url"),
                params=params,
            )
        )
        return True

    def _input_file(self, call: Call, field_name: str, folder: str) -> tuple[_StoredFile, str]:
        upload = call.files.get(field_name)
        value = call.params.get(field_name)
        if upload is None and isinstance(value, str) and value.startswith("attach://"):
            upload = call.files.get(value.removeprefix("attach://"))
        if upload is not None:
            ctype = upload.content_type
            mime = None if ctype in ("", "application/octet-stream") else ctype
            return self._add_file(upload.filename, upload.content, mime, folder), "upload"
        if isinstance(value, str) and value in self._files:
            return self._files[value], "file_id"
        if isinstance(value, str) and value.startswith(("http://", "https://")):
            filename = value.rsplit("/", 1)[-1].split("?", 1)[0] or "file"
            return self._add_file(filename, b"", None, folder), "url"
        raise _bad("wrong file identifier/HTTP URL specified")

    async def _send_file(self, call: Call, kind: str) -> JSON:
        params = call.params
        chat_id = self._target_chat(params)
        caption = params.get("caption")
        parse_mode = params.get("parse_mode")
        plain = (
            None
            if caption is None
            else self._render_checked(caption, parse_mode, _MAX_CAPTION, "message caption")
        )
        markup = self._check_markup(params.get("reply_markup"))
        stored, source = self._input_file(
            call, kind, "documents" if kind == "document" else "photos"
        )
        self._check_flood(chat_id)
        msg = self._bot_message(chat_id, call.token)
        if kind == "document":
            msg["document"] = self._document_obj(stored)
        else:
            msg["photo"] = self._photo_obj(stored)
        if plain is not None:
            msg["caption"] = plain
        if markup is not None:
            msg["reply_markup"] = markup
        self._store(chat_id, msg, None if caption is None else str(caption), parse_mode)
        self._files_sent.append(
            SentFile(
                method=call.method,
                kind=kind,
                chat_id=chat_id,
                message_id=msg["message_id"],
                filename=stored.filename,
                content=stored.content,
                mime_type=stored.mime_type,
                caption=plain,
                file_id=stored.file_id,
                source=source,
                time=call.time,
            )
        )
        return msg

    async def _send_document(self, call: Call) -> JSON:
        return await self._send_file(call, "document")

    async def _send_photo(self, call: Call) -> JSON:
        return await self._send_file(call, "photo")

    async def _get_file(self, call: Call) -> JSON:
        stored = self._files.get(str(call.params.get("file_id") or ""))
        if stored is None:
            raise _bad("invalid file_id")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(stored.content),
            "file_path": stored.file_path,
        }

    async def _send_chat_action(self, call: Call) -> bool:
        self._target_chat(call.params)
        if not call.params.get("action"):
            raise _bad("wrong parameter action in request")
        return True

    def __repr__(self) -> str:
        return f"FakeTelegram(url={self._url!r}, calls={len(self.calls)})"
