"""An in-process chat adapter: drives the handlers exactly as a chat platform would.

Used by ``polycrowd demo`` and by tests. Each user has a private chat; messages are
rendered in the user's language through the same catalogs the real bots use, buttons are
kept with their data so a test (or a simulated worker) can press them, edits replace
the message a button belonged to, and a task's image is kept on its message as ``photo``
(an edit keeps it, as a caption edit does on Telegram).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from polycrowd.handlers.common import Dispatcher
from polycrowd.handlers.types import Button, Document, Event, EventKind, Photo, Reply
from polycrowd.i18n import Translator

PLATFORM = "memory"


@dataclass
class ChatMessage:
    id: int
    chat_id: str
    text: str
    buttons: list[list[tuple[str, str]]]  # rows of (label, data)
    document: Document | None
    reply: Reply
    edited: int = 0
    photo: Photo | None = None

    def button(self, label: str | None = None, data_prefix: str | None = None) -> str:
        """The data of the first button whose label or data matches."""
        for row in self.buttons:
            for lab, data in row:
                if (label is not None and label in lab) or (
                    data_prefix is not None and data.startswith(data_prefix)
                ):
                    return data
        raise LookupError(f"no button {label or data_prefix!r} in message {self.id}")

    @property
    def button_data(self) -> list[str]:
        return [data for row in self.buttons for _, data in row]


@dataclass
class MemoryUser:
    id: str
    name: str
    locale: str = "en"
    admin_chat: bool = False


@dataclass
class MemoryChat:
    """A fake chat platform in memory."""

    dispatcher: Dispatcher
    translator: Translator
    admin_chat_id: str = "admin"
    messages: dict[str, list[ChatMessage]] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _updates: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _langs: dict[str, str] = field(default_factory=dict)  # chat id -> rendering language

    name = PLATFORM

    def chat_of(self, user: MemoryUser) -> str:
        return self.admin_chat_id if user.admin_chat else f"u{user.id}"

    async def command(self, user: MemoryUser, text: str) -> list[ChatMessage]:
        name, *args = text.lstrip("/").split()
        return await self._send(user, EventKind.COMMAND, command=name.lower(), args=tuple(args))

    async def say(self, user: MemoryUser, text: str) -> list[ChatMessage]:
        if text.startswith("/"):
            return await self.command(user, text)
        return await self._send(user, EventKind.TEXT, text=text)

    async def press(self, user: MemoryUser, data: str, message_id: int = 0) -> list[ChatMessage]:
        return await self._send(user, EventKind.BUTTON, data=data, message_id=str(message_id))

    async def upload(self, user: MemoryUser, filename: str, content: bytes) -> list[ChatMessage]:
        return await self._send(user, EventKind.DOCUMENT, document=Document(filename, content))

    async def redeliver(self, event: Event) -> list[ChatMessage]:
        return await self.deliver(event)

    async def _send(self, user: MemoryUser, kind: EventKind, **kw: object) -> list[ChatMessage]:
        event = Event(
            platform=PLATFORM,
            user_id=user.id,
            chat_id=self.chat_of(user),
            kind=kind,
            locale=user.locale,
            display_name=user.name,
            update_id=str(next(self._updates)),
            is_admin_chat=user.admin_chat,
            **kw,  # type: ignore[arg-type]
        )
        self.last_event = event
        return await self.deliver(event)

    async def deliver(self, event: Event) -> list[ChatMessage]:
        replies = await self.dispatcher.handle(event)
        lang = await self._lang_of(event)
        out: list[ChatMessage] = []
        for reply in replies:
            out.append(
                self.post(
                    reply,
                    reply.chat_id or event.chat_id,
                    reply.lang or lang,
                    edit_of=event.message_id if reply.edit else "",
                )
            )
        return out

    async def _lang_of(self, event: Event) -> str:
        user = await self.dispatcher.engine.find_user(f"{event.platform}:{event.user_id}")
        return self.translator.pick(user.locale if user else None, event.locale)

    def render_buttons(
        self, rows: Sequence[Sequence[Button]], lang: str
    ) -> list[list[tuple[str, str]]]:
        return [[(self.translator.render(b.label, lang), b.data) for b in row] for row in rows]

    def post(self, reply: Reply, chat_id: str, lang: str, edit_of: str = "") -> ChatMessage:
        text = self.translator.render_all(reply.parts, lang)
        buttons = self.render_buttons(reply.buttons, lang)
        history = self.messages.setdefault(chat_id, [])
        if edit_of:
            for msg in history:
                if str(msg.id) == edit_of:
                    msg.text, msg.buttons, msg.reply = text, buttons, reply
                    msg.photo = reply.photo or msg.photo
                    msg.edited += 1
                    return msg
        msg = ChatMessage(
            next(self._ids), chat_id, text, buttons, reply.document, reply, photo=reply.photo
        )
        history.append(msg)
        return msg

    async def send(self, chat_id: str, reply: Reply, lang: str = "en") -> None:
        """Proactive message (admin cards, reminders)."""
        self.post(reply, chat_id, lang)

    def history(self, chat_id: str) -> list[ChatMessage]:
        return self.messages.get(chat_id, [])

    def last(self, chat_id: str) -> ChatMessage:
        return self.messages[chat_id][-1]
