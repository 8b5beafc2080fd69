"""gettext catalogs and translatable messages.

Handlers never build user-visible text themselves: they return :class:`Msg` values (a
message id plus parameters) and the platform adapter renders them in the reader's
language with :meth:`Translator.render`. Catalogs live in
``locales/<lang>/LC_MESSAGES/polycrowd.po``; a compiled ``.mo`` beside it is used when it
is newer, otherwise the ``.po`` is compiled in memory, so a source checkout works without a
build step.
"""

from __future__ import annotations

import ast
import gettext
import io
import re
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DOMAIN = "polycrowd"
LOCALES_DIR = Path(__file__).parent / "locales"
RTL_LANGUAGES = frozenset({"ar", "he", "fa", "ur"})
#: Unicode isolates (UAX #9): parameters in right-to-left messages render in their own order.
LRI, FSI, PDI = "\u2066", "\u2068", "\u2069"
_ID_LIKE = re.compile(r"[\w.,:#+\-/%]*\d[\w.,:#+\-/%]*", re.ASCII)  # 42, 0.05, u17, 3-5
_COMMAND = re.compile(r"(?<![\w/.])/[a-z][a-z0-9_]*")


def N_(message: str) -> str:
    """Mark a string for extraction without translating it here."""
    return message


@dataclass(frozen=True, slots=True)
class Msg:
    """A translatable message: msgid, optional plural id + count, and parameters.

    Parameters are substituted after translation with ``%(name)s``; a parameter that is
    itself a ``Msg`` is rendered in the same language first. User-supplied text goes in
    parameters (adapters escape it), never in the msgid.
    """

    msgid: str
    params: Mapping[str, Any] = field(default_factory=dict)
    plural: str | None = None
    n: int = 1

    @classmethod
    def raw(cls, text: str) -> Msg:
        """Text shown as it is (an item, a name): never looked up in the catalog."""
        return cls("%(text)s", {"text": text})


def parse_po(text: str) -> dict[str | tuple[str, int], str]:
    """Parse a .po file into {msgid: msgstr} / {(msgid, n): msgstr[n]}; fuzzy entries skipped."""
    entries: dict[str | tuple[str, int], str] = {}
    cur: dict[str, str] = {}
    section = ""
    fuzzy = False

    def flush() -> None:
        nonlocal cur, fuzzy
        if "msgid" in cur and not fuzzy:
            msgid = cur["msgid"]
            if "msgid_plural" in cur:
                key_id = msgid + "\x00" + cur["msgid_plural"]
                idx = 0
                while f"msgstr[{idx}]" in cur:
                    if cur[f"msgstr[{idx}]"]:
                        entries[(key_id, idx)] = cur[f"msgstr[{idx}]"]
                    idx += 1
            elif cur.get("msgstr") or msgid == "":
                entries[msgid] = cur.get("msgstr", "")
        cur = {}
        fuzzy = False

    for raw_line in text.splitlines():
        line = raw_line.strip()
        if line.startswith("#,") and "fuzzy" in line:
            if "msgid" in cur:
                flush()
            fuzzy = True
            continue
        if not line or line.startswith("#"):
            if not line and "msgid" in cur:
                flush()
            continue
        if line.startswith('"'):
            cur[section] = cur.get(section, "") + ast.literal_eval(line)
            continue
        keyword, _, rest = line.partition(" ")
        if keyword == "msgid" and "msgid" in cur:
            flush()
        section = keyword
        cur[section] = ast.literal_eval(rest.strip())
    flush()
    return entries


def compile_mo(entries: Mapping[str | tuple[str, int], str]) -> bytes:
    """Build GNU .mo bytes from :func:`parse_po` output."""
    merged: dict[str, str] = {}
    plurals: dict[str, dict[int, str]] = {}
    for key, value in entries.items():
        if isinstance(key, tuple):
            plurals.setdefault(key[0], {})[key[1]] = value
        else:
            merged[key] = value
    for key_id, forms in plurals.items():
        merged[key_id] = "\x00".join(forms[i] for i in sorted(forms))
    ids = sorted(merged)
    kb = [k.encode() for k in ids]
    vb = [merged[k].encode() for k in ids]
    n = len(ids)
    key_start = 7 * 4 + 16 * n
    value_start = key_start + sum(len(k) + 1 for k in kb)
    offsets: list[int] = []
    pos = key_start
    for k in kb:
        offsets += [len(k), pos]
        pos += len(k) + 1
    pos = value_start
    for v in vb:
        offsets += [len(v), pos]
        pos += len(v) + 1
    header = struct.pack("Iiiiiii", 0x950412DE, 0, n, 7 * 4, 7 * 4 + n * 8, 0, 0)
    koffs = offsets[: 2 * n]
    voffs = offsets[2 * n :]
    out = io.BytesIO()
    out.write(header)
    out.write(struct.pack(f"{2 * n}i", *koffs))
    out.write(struct.pack(f"{2 * n}i", *voffs))
    for k in kb:
        out.write(k + b"\x00")
    for v in vb:
        out.write(v + b"\x00")
    return out.getvalue()


class Translator:
    """Loads every shipped catalog once and renders messages per language."""

    def __init__(self, locales_dir: Path = LOCALES_DIR, default: str = "en") -> None:
        self.locales_dir = locales_dir
        self.default = default
        self._catalogs: dict[str, gettext.NullTranslations] = {}
        self._languages: tuple[str, ...] | None = None

    @property
    def languages(self) -> tuple[str, ...]:
        """Shipped catalogs plus the source language (scanned once per translator)."""
        if self._languages is None:
            found = self.locales_dir.glob(f"*/LC_MESSAGES/{DOMAIN}.po")
            langs = {p.parent.parent.name for p in found}
            self._languages = tuple(sorted(langs | {self.default}))
        return self._languages

    def normalize(self, code: str | None) -> str:
        """Map a platform locale ("pt-BR", "en_US", "zh-hans") to a shipped language."""
        return self.shipped(code) or self.default

    def shipped(self, code: str | None) -> str | None:
        """The shipped language for a locale code ("zh-CN" -> "zh"), or None."""
        if not code:
            return None
        base = code.strip().replace("_", "-").split("-")[0].lower()
        return base if base in self.languages else None

    def pick(self, *codes: str | None) -> str:
        """The first of ``codes`` with a shipped catalog, else the default language.

        Called as ``pick(user.locale, event.locale)``: the user's choice, else the
        platform's language code, else English.
        """
        for code in codes:
            lang = self.shipped(code)
            if lang is not None:
                return lang
        return self.default

    def catalog(self, lang: str) -> gettext.NullTranslations:
        cat = self._catalogs.get(lang)
        if cat is None:
            cat = self._load(lang)
            self._catalogs[lang] = cat
        return cat

    def _load(self, lang: str) -> gettext.NullTranslations:
        po = self.locales_dir / lang / "LC_MESSAGES" / f"{DOMAIN}.po"
        mo = po.with_suffix(".mo")
        if mo.exists() and po.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            with mo.open("rb") as fh:
                return gettext.GNUTranslations(fh)
        if po.exists():
            data = compile_mo(parse_po(po.read_text(encoding="utf-8")))
            return gettext.GNUTranslations(io.BytesIO(data))
        return gettext.NullTranslations()

    def gettext(self, lang: str, msgid: str) -> str:
        return self.catalog(lang).gettext(msgid)

    def render(self, msg: Msg, lang: str, escape: Callable[[str], str] | None = None) -> str:
        """Translate ``msg`` into ``lang``; ``escape`` is applied to plain-string params."""
        cat = self.catalog(lang)
        if msg.msgid == "%(text)s":
            template = "%(text)s"
        elif msg.plural is not None:
            template = cat.ngettext(msg.msgid, msg.plural, msg.n)
        else:
            template = cat.gettext(msg.msgid)
        rtl = self.is_rtl(lang) and msg.msgid != "%(text)s"
        if rtl:
            template = _COMMAND.sub(lambda m: LRI + m.group(0) + PDI, template)
        if not msg.params and msg.plural is None:
            return template
        params: dict[str, Any] = {"n": isolate(msg.n) if rtl else msg.n}
        for key, value in msg.params.items():
            if isinstance(value, Msg):
                params[key] = self.render(value, lang, escape)
                continue
            if isinstance(value, str) and escape is not None:
                value = escape(value)
            params[key] = isolate(value) if rtl else value
        try:
            return template % params
        except (KeyError, ValueError, TypeError):
            # A broken translation must never hide the message: fall back to the source.
            source = msg.msgid if msg.plural is None or msg.n == 1 else msg.plural
            return source % params

    def render_all(
        self, parts: Iterable[Msg], lang: str, escape: Callable[[str], str] | None = None
    ) -> str:
        return "\n".join(self.render(p, lang, escape) for p in parts)

    def is_rtl(self, lang: str) -> bool:
        return lang in RTL_LANGUAGES


def isolate(value: object) -> str:
    """``value`` wrapped in Unicode isolates for a right-to-left message.

    Numbers and id-like tokens (``42``, ``0.05``, ``u17``) get LRI...PDI (always left to
    right); any other text FSI...PDI (its own first strong character decides). Inside the
    isolate the text keeps its order; outside, the message flows right to left.
    """
    text = str(value)
    if not text:
        return text
    if isinstance(value, int | float) or _ID_LIKE.fullmatch(text):
        return LRI + text + PDI
    return FSI + text + PDI
