"""What every adapter does to user-supplied text before a platform shows it.

Items, project names, questions, labels and workers' answers are parameters of a
:class:`~polycrowd.i18n.Msg`; the adapters render them through an ``escape`` function made
of :func:`clean` (platform-neutral) and the platform's own escaping (HTML for Telegram's
``parse_mode=HTML``, markdown and mentions for Discord).

:func:`clean` removes what could make a text lie about itself: the Unicode bidi embeddings,
overrides and isolates (U+202A-U+202E, U+2066-U+2069: "\\u202egnp.exe" shows as
"exe.png"), and the C0/C1 control characters (but tabs and line breaks). The isolates our
own right-to-left rendering adds (:func:`polycrowd.i18n.isolate`) are added after it.
"""

from __future__ import annotations

import html
import re

_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def clean(text: str) -> str:
    """``text`` without bidi overrides/isolates and control characters (tab, newline kept)."""
    return _UNSAFE.sub("", text)


def telegram_html(text: str) -> str:
    """Cleaned and HTML-escaped, for a message sent with ``parse_mode=HTML``."""
    return html.escape(clean(text))


__all__ = ["clean", "telegram_html"]
