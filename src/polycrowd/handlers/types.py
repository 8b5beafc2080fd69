"""Platform-neutral events and replies.

An adapter turns a platform update into an :class:`Event`, calls the dispatcher, and turns
each :class:`Reply` back into platform calls (rendering :class:`~polycrowd.i18n.Msg` in the
reader's language, escaping parameters, mapping buttons to inline keyboards or components).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from polycrowd.i18n import Msg


class EventKind(StrEnum):
    COMMAND = "command"  # /task, /start ...
    TEXT = "text"  # a plain message (a text answer, a reply in a conversation)
    BUTTON = "button"  # a button press carrying Button.data
    DOCUMENT = "document"  # an uploaded file


@dataclass(frozen=True, slots=True)
class Document:
    filename: str
    content: bytes


@dataclass(frozen=True, slots=True)
class Photo:
    """An image to show with a message: its bytes, or a URL the platform fetches itself.
    The message's text becomes its caption where the platform allows one."""

    filename: str  # e.g. image.png (Discord embeds refer to it as attachment://image.png)
    data: bytes = b""
    url: str = ""


@dataclass(frozen=True, slots=True)
class Event:
    platform: str  # telegram | discord | memory
    user_id: str  # the platform's user id
    chat_id: str  # where to answer
    kind: EventKind
    command: str = ""  # without the slash, lower case
    args: tuple[str, ...] = ()
    text: str = ""
    data: str = ""  # button payload
    document: Document | None = None
    locale: str = ""  # platform language code (e.g. "pt-BR")
    display_name: str = ""
    update_id: str = ""  # for redelivery detection; "" when the platform has none
    is_admin_chat: bool = False  # sent from the moderators' chat/channel
    message_id: str = ""  # the message a button belongs to


@dataclass(frozen=True, slots=True)
class Button:
    label: Msg
    data: str  # <= 64 bytes (Telegram callback_data); opaque, validated on press


@dataclass(frozen=True, slots=True)
class Reply:
    parts: tuple[Msg, ...]
    buttons: tuple[tuple[Button, ...], ...] = ()
    chat_id: str = ""  # "" = the chat the event came from
    platform: str = ""  # "" = the event's platform
    document: Document | None = None
    photo: Photo | None = None  # a task of an image project; kept when the message is edited
    edit: bool = False  # replace the message the button belonged to
    ephemeral: bool = False  # only the user sees it (Discord); private data
    expects_text: bool = False  # the answer is free text (Discord opens a modal)
    lang: str = ""  # "" = the recipient's language
    alert: bool = False  # a short toast for a button press (callback answer)
    kind: str = "message"  # message | task | card (moderation) | verdict

    @classmethod
    def of(cls, *parts: Msg, **kw: object) -> Reply:
        return cls(parts=tuple(parts), **kw)  # type: ignore[arg-type]
