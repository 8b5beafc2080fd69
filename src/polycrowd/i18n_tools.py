"""Message extraction and catalog maintenance (stdlib only, no import of the scanned code).

Usage, from the repository root::

    python -m polycrowd.i18n_tools extract   # src/polycrowd/**/*.py -> locales/polycrowd.pot
    python -m polycrowd.i18n_tools update    # merge the .pot into every locales/<lang>/... .po
    python -m polycrowd.i18n_tools compile   # write the .mo files beside the .po files
    python -m polycrowd.i18n_tools check     # exit 1 on missing/untranslated/broken messages

What is extracted (by reading the syntax tree, never by importing):

- ``N_("...")``, ``_("...")`` and ``gettext("...")``: one msgid;
- ``ngettext("one", "many", n)``: a plural pair;
- ``Msg("...", ...)``: the first argument, and with ``plural="..."`` (keyword or third
  positional argument) a plural pair; both may be wrapped in ``N_()`` or be the name of a
  module-level constant assigned a string (also one imported from another polycrowd
  module with ``from polycrowd.x import NAME``).

Msgids made only of placeholders (``"%(text)s"``, ``"/%(cmd)s — %(desc)s"``) are skipped.
A marker called with something other than a string literal (an f-string, a variable) is
reported as a problem by ``extract`` and ``check``.
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import difflib
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from polycrowd.i18n import DOMAIN, compile_mo, parse_po

PACKAGE_DIR = Path(__file__).resolve().parent
LOCALES_DIR = PACKAGE_DIR / "locales"
POT_NAME = f"{DOMAIN}.pot"
PROJECT = "polycrowd"

#: Catalogs that ``update`` creates when missing.
LANGUAGES: tuple[str, ...] = ("es", "ru", "ar", "pt", "fr", "zh", "hi", "id", "tr")

#: ``Plural-Forms`` header per language (the formulas of the GNU gettext manual / CLDR).
PLURAL_FORMS: dict[str, str] = {
    "en": "nplurals=2; plural=(n != 1);",
    "es": "nplurals=2; plural=(n != 1);",
    "pt": "nplurals=2; plural=(n != 1);",
    "de": "nplurals=2; plural=(n != 1);",
    "it": "nplurals=2; plural=(n != 1);",
    "fr": "nplurals=2; plural=(n > 1);",
    "tr": "nplurals=2; plural=(n != 1);",
    "ru": "nplurals=3; plural=(n%10==1 && n%100!=11 ? 0 : n%10>=2 && n%10<=4 && "
    "(n%100<10 || n%100>=20) ? 1 : 2);",
    "uk": "nplurals=3; plural=(n%10==1 && n%100!=11 ? 0 : n%10>=2 && n%10<=4 && "
    "(n%100<10 || n%100>=20) ? 1 : 2);",
    "pl": "nplurals=3; plural=(n==1 ? 0 : n%10>=2 && n%10<=4 && (n%100<10 || n%100>=20) ? 1 : 2);",
    "ar": "nplurals=6; plural=(n==0 ? 0 : n==1 ? 1 : n==2 ? 2 : n%100>=3 && n%100<=10 ? 3 "
    ": n%100>=11 ? 4 : 5);",
    "zh": "nplurals=1; plural=0;",
    "id": "nplurals=1; plural=0;",
    "ja": "nplurals=1; plural=0;",
    "hi": "nplurals=2; plural=(n != 1);",
}
LANGUAGE_TEAMS: dict[str, str] = {
    "es": "Spanish",
    "ru": "Russian",
    "ar": "Arabic",
    "pt": "Portuguese (Brazil)",
    "fr": "French",
    "zh": "Chinese (Simplified)",
    "hi": "Hindi",
    "id": "Indonesian",
    "tr": "Turkish",
}

_SINGULAR_MARKERS = frozenset({"N_", "_", "gettext"})
_PLURAL_MARKERS = frozenset({"ngettext"})
_MSG = "Msg"
_PLACEHOLDER = re.compile(r"%\((\w+)\)[-#0 +]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa]")
_FORMAT_TOKEN = re.compile(r"%%|%\((\w+)\)[-#0 +]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa]|%")
_NPLURALS = re.compile(r"nplurals\s*=\s*(\d+)")
_COMMAND = re.compile(r"(?<![\w/.])/[a-z][a-z0-9_]*")
_BIDI_CONTROLS = re.compile("[\u200e\u200f\u202a-\u202e\u2066-\u2069\u061c]")


# -- messages and catalogs ------------------------------------------------------------------
@dataclass
class Message:
    """One catalog entry; ``msgstr`` has one form, or ``nplurals`` forms when plural."""

    msgid: str
    plural: str | None = None
    msgstr: list[str] = field(default_factory=lambda: [""])
    refs: list[str] = field(default_factory=list)
    flags: set[str] = field(default_factory=set)
    comments: list[str] = field(default_factory=list)  # translator comments ("# ...")
    extracted: list[str] = field(default_factory=list)  # "#. ..." comments
    previous: list[str] = field(default_factory=list)  # "#| ..." lines
    obsolete: bool = False

    @property
    def fuzzy(self) -> bool:
        return "fuzzy" in self.flags

    def translated(self) -> bool:
        return not self.fuzzy and bool(self.msgstr) and all(self.msgstr)


@dataclass
class Catalog:
    header: dict[str, str] = field(default_factory=dict)
    header_comments: list[str] = field(default_factory=list)
    header_fuzzy: bool = False
    messages: dict[str, Message] = field(default_factory=dict)  # by msgid, obsolete too

    def active(self) -> list[Message]:
        return [m for m in self.messages.values() if not m.obsolete]


@dataclass(frozen=True, slots=True)
class Problem:
    where: str
    text: str

    def __str__(self) -> str:
        return f"{self.where}: {self.text}"


def placeholders(text: str) -> set[str]:
    """The ``%(name)s`` parameter names used in ``text``."""
    return set(_PLACEHOLDER.findall(text))


def has_words(msgid: str) -> bool:
    """False for templates made only of placeholders and punctuation."""
    return any(ch.isalpha() for ch in _FORMAT_TOKEN.sub("", msgid))


def format_errors(text: str) -> list[str]:
    """Stray ``%`` signs that make ``text % params`` raise (a literal percent is ``%%``)."""
    return [f"stray '%' at {m.start()}" for m in _FORMAT_TOKEN.finditer(text) if m.group(0) == "%"]


def commands(text: str) -> set[str]:
    """The ``/command`` names in ``text``; a translation keeps them as they are."""
    return set(_COMMAND.findall(text))


def nplurals_of(plural_forms: str) -> int | None:
    m = _NPLURALS.search(plural_forms)
    return int(m.group(1)) if m else None


# -- extraction -----------------------------------------------------------------------------
def _call_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _literal(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _module_name(path: Path, package_dir: Path) -> str:
    rel = path.relative_to(package_dir).with_suffix("")
    parts = [package_dir.name, *rel.parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _module_constants(tree: ast.Module) -> dict[str, str]:
    """Module-level ``NAME = "..."`` / ``NAME = N_("...")`` assignments."""
    found: dict[str, str] = {}
    for node in tree.body:
        targets: list[ast.expr]
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        text = _literal(value)
        if (
            text is None
            and isinstance(value, ast.Call)
            and _call_name(value.func) in _SINGULAR_MARKERS
            and value.args
        ):
            text = _literal(value.args[0])
        if text is None:
            continue
        for target in targets:
            if isinstance(target, ast.Name):
                found[target.id] = text
    return found


class _Collector(ast.NodeVisitor):
    def __init__(self, ref: str, names: dict[str, str]) -> None:
        self.ref = ref
        self.names = names
        self.singulars: list[tuple[str, int]] = []
        self.pairs: list[tuple[str, str, int]] = []
        self.problems: list[Problem] = []
        self.consumed: set[int] = set()  # N_() calls already taken as part of a plural pair

    def _string(self, node: ast.expr | None) -> str | None:
        """A literal, ``N_(literal)`` or the name of a known string constant."""
        text = _literal(node)
        if text is not None:
            return text
        if isinstance(node, ast.Call) and _call_name(node.func) in _SINGULAR_MARKERS:
            return _literal(node.args[0]) if node.args else None
        if isinstance(node, ast.Name):
            return self.names.get(node.id)
        return None

    def _bad(self, node: ast.Call, what: str) -> None:
        self.problems.append(Problem(f"{self.ref}:{node.lineno}", what))

    def visit_Call(self, node: ast.Call) -> None:
        name = _call_name(node.func)
        line = node.lineno
        if id(node) in self.consumed:
            pass
        elif name in _SINGULAR_MARKERS and node.args:
            text = _literal(node.args[0])
            if text is not None:
                self.singulars.append((text, line))
            elif name == "N_":
                self._bad(node, "N_() needs a string literal (no f-string, no variable)")
        elif name in _PLURAL_MARKERS and len(node.args) >= 2:
            one, many = _literal(node.args[0]), _literal(node.args[1])
            if one is not None and many is not None:
                self.pairs.append((one, many, line))
            elif (one is None) != (many is None) or any(
                isinstance(a, ast.JoinedStr) for a in node.args[:2]
            ):
                self._bad(node, f"{name}() needs two string literals")
        elif name == _MSG and isinstance(node.func, ast.Name):
            self._msg(node)
        self.generic_visit(node)

    def _msg(self, node: ast.Call) -> None:
        first = node.args[0] if node.args else None
        plural_node = next((k.value for k in node.keywords if k.arg == "plural"), None)
        if plural_node is None and len(node.args) >= 3:
            plural_node = node.args[2]
        if isinstance(first, ast.JoinedStr) or isinstance(plural_node, ast.JoinedStr):
            self._bad(node, "Msg() with an f-string: put the values in the parameters")
            return
        one = self._string(first)
        if plural_node is None:
            if one is not None and not _is_marker(first):
                self.singulars.append((one, node.lineno))
            return
        many = self._string(plural_node)
        if one is not None and many is not None:
            self.pairs.append((one, many, node.lineno))
            self.consumed |= {id(n) for n in (first, plural_node) if _is_marker(n)}
        elif (one is None) != (many is None):
            self._bad(node, "Msg() plural: give both ids as literals, N_() or constants")


def _is_marker(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Call) and _call_name(node.func) in _SINGULAR_MARKERS


def source_files(package_dir: Path) -> list[Path]:
    return sorted(
        p
        for p in package_dir.rglob("*.py")
        if not any(part.startswith(".") or part == "__pycache__" for part in p.parts)
    )


def extract(
    package_dir: Path = PACKAGE_DIR, ref_base: Path | None = None
) -> tuple[Catalog, list[Problem]]:
    """Collect every translatable message under ``package_dir`` (sorted by msgid)."""
    base = ref_base if ref_base is not None else package_dir.parent.parent
    parsed: dict[str, tuple[ast.Module, str, Path]] = {}
    problems: list[Problem] = []
    for path in source_files(package_dir):
        try:
            ref = path.relative_to(base).as_posix()
        except ValueError:
            ref = path.as_posix()
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except (SyntaxError, UnicodeDecodeError) as exc:
            problems.append(Problem(ref, f"cannot parse: {exc}"))
            continue
        parsed[_module_name(path, package_dir)] = (tree, ref, path)
    constants = {mod: _module_constants(tree) for mod, (tree, _, _) in parsed.items()}

    singulars: dict[str, list[str]] = {}
    pairs: dict[str, tuple[str, list[str]]] = {}
    for mod, (tree, ref, _) in parsed.items():
        names = dict(constants[mod])
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in constants:
                for alias in node.names:
                    value = constants[node.module].get(alias.name)
                    if value is not None:
                        names.setdefault(alias.asname or alias.name, value)
        collector = _Collector(ref, names)
        collector.visit(tree)
        problems += collector.problems
        for text, line in collector.singulars:
            singulars.setdefault(text, []).append(f"{ref}:{line}")
        for one, many, line in collector.pairs:
            known = pairs.get(one)
            if known is not None and known[0] != many:
                problems.append(
                    Problem(f"{ref}:{line}", f"{one!r} has two plurals: {known[0]!r}, {many!r}")
                )
                continue
            pairs.setdefault(one, (many, []))[1].append(f"{ref}:{line}")

    catalog = Catalog()
    plural_ids = {many for many, _ in pairs.values()}
    for one, (many, refs) in pairs.items():
        refs = refs + singulars.get(one, []) + singulars.get(many, [])
        catalog.messages[one] = Message(one, many, ["", ""], _unique(refs))
    for text, refs in singulars.items():
        if text in pairs or text in plural_ids or not text:
            continue
        catalog.messages[text] = Message(text, None, [""], _unique(refs))
    for msgid in list(catalog.messages):
        msg = catalog.messages[msgid]
        if not has_words(msgid) and (msg.plural is None or not has_words(msg.plural)):
            del catalog.messages[msgid]
        elif "%" in msgid or (msg.plural and "%" in msg.plural):
            msg.flags.add("python-format")
    catalog.messages = dict(sorted(catalog.messages.items()))
    return catalog, problems


def _unique(items: Iterable[str]) -> list[str]:
    def key(ref: str) -> tuple[str, int]:
        path, _, line = ref.rpartition(":")
        return path, int(line) if line.isdigit() else 0

    return sorted(set(items), key=key)


# -- reading .po files --------------------------------------------------------------------
def _unquote(text: str) -> str:
    value = ast.literal_eval(text.strip())
    if not isinstance(value, str):
        raise ValueError(f"not a string: {text!r}")
    return value


def read_po(text: str) -> Catalog:
    """Parse a .po/.pot file with comments, flags, plural forms and obsolete entries."""
    catalog = Catalog()
    for block in re.split(r"\n\s*\n", text):
        msg = _parse_block(block)
        if msg is None:
            continue
        if msg.msgid == "" and not msg.obsolete:
            catalog.header_comments = msg.comments
            catalog.header_fuzzy = msg.fuzzy
            for line in msg.msgstr[0].splitlines():
                key, sep, value = line.partition(":")
                if sep:
                    catalog.header[key.strip()] = value.strip()
            continue
        known = catalog.messages.get(msg.msgid)
        if known is None or known.obsolete:
            catalog.messages[msg.msgid] = msg
    return catalog


def _parse_block(block: str) -> Message | None:
    msg = Message("")
    fields: dict[str, str] = {}
    section = ""
    obsolete = False
    for raw in block.splitlines():
        line = raw.strip()
        if line.startswith("#~"):
            obsolete = True
            line = line[2:].strip()
            if line.startswith("|"):
                continue
        if not line:
            continue
        if line.startswith("#:"):
            msg.refs += line[2:].split()
        elif line.startswith("#,"):
            msg.flags |= {f.strip() for f in line[2:].split(",") if f.strip()}
        elif line.startswith("#."):
            msg.extracted.append(line[2:].strip())
        elif line.startswith("#|"):
            msg.previous.append(line[2:].strip())
        elif line.startswith("#"):
            msg.comments.append(line[1:].strip())
        elif line.startswith('"'):
            fields[section] = fields.get(section, "") + _unquote(line)
        else:
            keyword, _, rest = line.partition(" ")
            section = keyword
            fields[section] = _unquote(rest)
    if "msgid" not in fields:
        return None
    msg.msgid = fields["msgid"]
    msg.obsolete = obsolete
    if "msgid_plural" in fields:
        msg.plural = fields["msgid_plural"]
        forms: list[str] = []
        while f"msgstr[{len(forms)}]" in fields:
            forms.append(fields[f"msgstr[{len(forms)}]"])
        msg.msgstr = forms or [""]
    else:
        msg.msgstr = [fields.get("msgstr", "")]
    return msg


# -- writing .po files ------------------------------------------------------------------------
def _escape(text: str) -> str:
    return (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\t", "\\t")
        .replace("\r", "\\r")
    )


def _chunks(text: str, room: int) -> Iterator[str]:
    """Split an escaped string after ``\\n`` and at spaces into pieces of <= room chars."""
    for segment in re.split(r"(?<=\\n)", _escape(text)):
        if not segment:
            continue
        while len(segment) > room:
            cut = segment.rfind(" ", 0, room)
            if cut <= 0:
                cut = room
                run = len(segment[:cut]) - len(segment[:cut].rstrip("\\"))
                if run % 2:
                    cut -= 1  # never split an escape sequence
            yield segment[: cut + 1] if segment[cut : cut + 1] == " " else segment[:cut]
            segment = segment[cut + 1 :] if segment[cut : cut + 1] == " " else segment[cut:]
        if segment:
            yield segment


def _field(keyword: str, text: str, prefix: str = "", width: int = 79) -> list[str]:
    escaped = _escape(text)
    single = f'{prefix}{keyword} "{escaped}"'
    if len(single) <= width and "\\n" not in escaped[:-2]:
        return [single]
    room = width - len(prefix) - 2
    return [f'{prefix}{keyword} ""', *(f'{prefix}"{c}"' for c in _chunks(text, room))]


def _wrap_refs(refs: Sequence[str], width: int = 79) -> list[str]:
    lines: list[str] = []
    cur = "#:"
    for ref in refs:
        if len(cur) + 1 + len(ref) > width and cur != "#:":
            lines.append(cur)
            cur = "#:"
        cur += " " + ref
    if cur != "#:":
        lines.append(cur)
    return lines


def _format_message(msg: Message, with_refs: bool = True) -> list[str]:
    prefix = "#~ " if msg.obsolete else ""
    lines = [f"# {c}".rstrip() for c in msg.comments]
    if not msg.obsolete:
        lines += [f"#. {c}" for c in msg.extracted]
        if with_refs:
            lines += _wrap_refs(msg.refs)
    flags = sorted(msg.flags, key=lambda f: (f != "fuzzy", f))
    if flags:
        lines.append("#, " + ", ".join(flags))
    if not msg.obsolete:
        lines += [f"#| {p}" for p in msg.previous]
    lines += _field("msgid", msg.msgid, prefix)
    if msg.plural is None:
        lines += _field("msgstr", msg.msgstr[0] if msg.msgstr else "", prefix)
    else:
        lines += _field("msgid_plural", msg.plural, prefix)
        for i, form in enumerate(msg.msgstr):
            lines += _field(f"msgstr[{i}]", form, prefix)
    return lines


def format_po(catalog: Catalog) -> str:
    header = "".join(f"{k}: {v}\n" for k, v in catalog.header.items())
    head = Message("", None, [header], comments=list(catalog.header_comments))
    if catalog.header_fuzzy:
        head.flags.add("fuzzy")
    blocks = [_format_message(head)]
    active = sorted(catalog.active(), key=lambda m: m.msgid)
    obsolete = sorted((m for m in catalog.messages.values() if m.obsolete), key=lambda m: m.msgid)
    blocks += [_format_message(m) for m in active]
    blocks += [_format_message(m) for m in obsolete]
    return "\n\n".join("\n".join(b) for b in blocks) + "\n"


# -- extract / update / compile / check ---------------------------------------------------------
def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M+0000")


def make_pot(catalog: Catalog, version: str = "0.1.0") -> Catalog:
    pot = Catalog(messages=catalog.messages, header_fuzzy=True)
    pot.header_comments = [
        f"Translations template for {PROJECT}.",
        f"This file is distributed under the same license as the {PROJECT} project.",
        "Generated by: python -m polycrowd.i18n_tools extract",
        "",
    ]
    pot.header = {
        "Project-Id-Version": f"{PROJECT} {version}",
        "Report-Msgid-Bugs-To": "",
        "POT-Creation-Date": _now(),
        "PO-Revision-Date": "YEAR-MO-DA HO:MI+ZONE",
        "Last-Translator": "FULL NAME <EMAIL@ADDRESS>",
        "Language-Team": "LANGUAGE <LL@li.org>",
        "MIME-Version": "1.0",
        "Content-Type": "text/plain; charset=UTF-8",
        "Content-Transfer-Encoding": "8bit",
        "Plural-Forms": "nplurals=INTEGER; plural=EXPRESSION;",
    }
    return pot


def _same_ignoring(old: str, new: str, key: str) -> bool:
    def strip(text: str) -> str:
        return "\n".join(line for line in text.splitlines() if not line.startswith(f'"{key}:'))

    return strip(old) == strip(new)


def _version(package_dir: Path) -> str:
    init = package_dir / "__init__.py"
    if init.exists():
        m = re.search(r"__version__\s*=\s*['\"]([^'\"]+)['\"]", init.read_text(encoding="utf-8"))
        if m:
            return m.group(1)
    return "0.0.0"


def write_pot(
    package_dir: Path = PACKAGE_DIR, pot_path: Path | None = None
) -> tuple[Path, Catalog, list[Problem], bool]:
    """Extract and write the template; the file is left untouched when nothing changed
    but the creation date. Returns (path, catalog, problems, changed)."""
    pot_path = pot_path or package_dir / "locales" / POT_NAME
    catalog, problems = extract(package_dir)
    text = format_po(make_pot(catalog, _version(package_dir)))
    old = pot_path.read_text(encoding="utf-8") if pot_path.exists() else None
    changed = old is None or not _same_ignoring(old, text, "POT-Creation-Date")
    if changed:
        pot_path.parent.mkdir(parents=True, exist_ok=True)
        pot_path.write_text(text, encoding="utf-8")
    return pot_path, catalog, problems, changed


def catalog_paths(locales_dir: Path = LOCALES_DIR) -> dict[str, Path]:
    return {
        p.parent.parent.name: p for p in sorted(locales_dir.glob(f"*/LC_MESSAGES/{DOMAIN}.po"))
    }


def _header_for(lang: str, old: dict[str, str], pot: Catalog) -> dict[str, str]:
    team = LANGUAGE_TEAMS.get(lang, lang)
    header = {
        "Project-Id-Version": pot.header.get("Project-Id-Version", PROJECT),
        "Report-Msgid-Bugs-To": "",
        "POT-Creation-Date": pot.header.get("POT-Creation-Date", _now()),
        "PO-Revision-Date": old.get("PO-Revision-Date", _now()),
        "Last-Translator": old.get("Last-Translator", f"{PROJECT} translators"),
        "Language": lang,
        "Language-Team": old.get("Language-Team", team),
        "MIME-Version": "1.0",
        "Content-Type": "text/plain; charset=UTF-8",
        "Content-Transfer-Encoding": "8bit",
        "Plural-Forms": PLURAL_FORMS.get(lang) or old.get("Plural-Forms", ""),
    }
    if not header["Plural-Forms"]:
        header["Plural-Forms"] = "nplurals=2; plural=(n != 1);"
    return header


def _resize(forms: list[str], size: int) -> list[str]:
    return (forms + [""] * size)[:size]


def merge(pot: Catalog, old: Catalog, lang: str, keep_obsolete: bool = True) -> Catalog:
    """Merge the template into a language's catalog (what ``msgmerge`` does)."""
    header = _header_for(lang, old.header, pot)
    nplurals = nplurals_of(header["Plural-Forms"]) or 2
    new = Catalog(header=header, header_comments=old.header_comments or _comments(lang))
    unused = {k: m for k, m in old.messages.items() if k not in pot.messages and any(m.msgstr)}
    for msgid, tmpl in pot.messages.items():
        prev = old.messages.get(msgid)
        msg = Message(msgid, tmpl.plural, refs=list(tmpl.refs), flags=set(tmpl.flags))
        msg.extracted = list(tmpl.extracted)
        size = nplurals if tmpl.plural is not None else 1
        if prev is not None:
            msg.comments = list(prev.comments)
            forms = prev.msgstr
            fuzzy = prev.fuzzy or (prev.obsolete and not prev.translated())
            if (prev.plural is None) != (tmpl.plural is None) or prev.plural != tmpl.plural:
                fuzzy = fuzzy or any(forms)
                if tmpl.plural is not None and prev.plural is None:
                    forms = forms * size
            msg.msgstr = _resize(forms, size)
            if fuzzy and any(msg.msgstr):
                msg.flags.add("fuzzy")
                msg.previous = list(prev.previous)
        else:
            msg.msgstr = [""] * size
            similar = _similar(msgid, unused)
            if similar is not None:
                msg.msgstr = _resize(
                    similar.msgstr * (size if similar.plural is None else 1), size
                )
                msg.flags.add("fuzzy")
                msg.previous = [f'msgid "{_escape(similar.msgid)}"']
        new.messages[msgid] = msg
    if keep_obsolete:
        for msgid, prev in old.messages.items():
            if msgid not in pot.messages and any(prev.msgstr):
                gone = Message(prev.msgid, prev.plural, list(prev.msgstr), obsolete=True)
                gone.comments = list(prev.comments)
                gone.flags = {f for f in prev.flags if f == "fuzzy"}
                new.messages[msgid] = gone
    return new


def _similar(msgid: str, candidates: dict[str, Message]) -> Message | None:
    """The closest old translated message, for a fuzzy suggestion."""
    if not candidates:
        return None
    best = difflib.get_close_matches(msgid, list(candidates), n=1, cutoff=0.8)
    return candidates[best[0]] if best else None


def _comments(lang: str) -> list[str]:
    team = LANGUAGE_TEAMS.get(lang, lang)
    return [
        f"{team} translations for {PROJECT}.",
        f"This file is distributed under the same license as the {PROJECT} project.",
        "",
    ]


def update(
    locales_dir: Path = LOCALES_DIR,
    languages: Iterable[str] = (),
    keep_obsolete: bool = True,
    pot_path: Path | None = None,
) -> list[Path]:
    """Merge the .pot into every existing catalog and into ``languages`` (created if new)."""
    pot = read_po((pot_path or locales_dir / POT_NAME).read_text(encoding="utf-8"))
    paths = catalog_paths(locales_dir)
    for lang in languages:
        paths.setdefault(lang, locales_dir / lang / "LC_MESSAGES" / f"{DOMAIN}.po")
    written: list[Path] = []
    for lang, path in sorted(paths.items()):
        old_text = path.read_text(encoding="utf-8") if path.exists() else ""
        old = read_po(old_text) if old_text else Catalog()
        text = format_po(merge(pot, old, lang, keep_obsolete))
        if text != old_text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written


def compile_catalogs(locales_dir: Path = LOCALES_DIR) -> list[Path]:
    written: list[Path] = []
    for path in catalog_paths(locales_dir).values():
        mo = path.with_suffix(".mo")
        mo.write_bytes(compile_mo(parse_po(path.read_text(encoding="utf-8"))))
        written.append(mo)
    return written


def check_translation(msg: Message, where: str) -> list[Problem]:
    """Placeholder and format problems of one translated (or partly translated) entry."""
    problems: list[Problem] = []
    source_names = placeholders(msg.msgid)
    if msg.plural is None:
        allowed = required = source_names
    else:
        allowed = source_names | placeholders(msg.plural)
        required = allowed if "n" in source_names else allowed - {"n"}
    check_format = "%" in msg.msgid or (msg.plural is not None and "%" in msg.plural)
    for i, form in enumerate(msg.msgstr):
        if not form:
            continue
        label = f"{where} msgstr[{i}]" if msg.plural is not None else where
        names = placeholders(form)
        if not required <= names <= allowed:
            missing = ", ".join(sorted(required - names))
            extra = ", ".join(sorted(names - allowed))
            detail = "; ".join(
                t for t in (missing and f"missing {missing}", extra and f"unknown {extra}") if t
            )
            problems.append(Problem(label, f"placeholders differ ({detail}) in {msg.msgid!r}"))
        if check_format:
            problems += [Problem(label, f"{e} in {form!r}") for e in format_errors(form)]
        lost = commands(msg.msgid) - commands(form)
        if lost:
            problems.append(Problem(label, f"commands {sorted(lost)} missing in {form!r}"))
        if _BIDI_CONTROLS.search(form):
            problems.append(Problem(label, f"bidi control characters in {form!r}"))
    return problems


def check_catalog(
    source: Catalog, lang: str, path: Path, strict_header: bool = True
) -> list[Problem]:
    """Everything wrong with one catalog against the messages found in the source."""
    where = f"{lang} ({path.name})"
    text = path.read_text(encoding="utf-8")
    try:
        catalog = read_po(text)
        runtime = parse_po(text)
    except (ValueError, SyntaxError) as exc:
        return [Problem(where, f"cannot parse: {exc}")]
    problems: list[Problem] = []
    plural_forms = catalog.header.get("Plural-Forms", "")
    nplurals = nplurals_of(plural_forms)
    expected = PLURAL_FORMS.get(lang)
    if nplurals is None:
        problems.append(Problem(where, "no Plural-Forms in the header"))
    elif strict_header and expected is not None and plural_forms != expected:
        problems.append(Problem(where, f"Plural-Forms should be {expected!r}"))
    if "charset=utf-8" not in catalog.header.get("Content-Type", "").lower():
        problems.append(Problem(where, "Content-Type must say charset=UTF-8"))
    if catalog.header_fuzzy:
        problems.append(Problem(where, "the header is marked fuzzy"))
    for src in source.messages.values():
        msg = catalog.messages.get(src.msgid)
        if msg is None or msg.obsolete:
            problems.append(Problem(where, f"missing msgid {src.msgid!r}"))
            continue
        if msg.plural != src.plural:
            problems.append(
                Problem(where, f"msgid {src.msgid!r} needs msgid_plural {src.plural!r}")
            )
            continue
        if not msg.translated():
            state = "fuzzy" if msg.fuzzy else "untranslated"
            problems.append(Problem(where, f"{state} msgid {src.msgid!r}"))
        elif msg.plural is not None and nplurals is not None and len(msg.msgstr) != nplurals:
            problems.append(
                Problem(where, f"{src.msgid!r} has {len(msg.msgstr)} forms, not {nplurals}")
            )
        elif msg.plural is None and src.msgid not in runtime:
            problems.append(Problem(where, f"{src.msgid!r} is not seen by i18n.parse_po"))
        problems += check_translation(msg, f"{where} {src.msgid!r}")
    return problems


def check(
    package_dir: Path = PACKAGE_DIR,
    locales_dir: Path | None = None,
    languages: Iterable[str] = LANGUAGES,
) -> list[Problem]:
    """All problems: extraction, a stale .pot, and every catalog against the source."""
    locales_dir = locales_dir or package_dir / "locales"
    source, problems = extract(package_dir)
    pot_path = locales_dir / POT_NAME
    if not pot_path.exists():
        problems.append(Problem(str(pot_path), "missing: run extract"))
    else:
        pot = read_po(pot_path.read_text(encoding="utf-8"))
        stale = {(m.msgid, m.plural) for m in source.messages.values()} != {
            (m.msgid, m.plural) for m in pot.active()
        }
        if stale:
            problems.append(Problem(POT_NAME, "out of date: run extract and update"))
    paths = catalog_paths(locales_dir)
    for lang in languages:
        if lang not in paths:
            problems.append(Problem(lang, "no catalog: run update"))
    for lang, path in paths.items():
        problems += check_catalog(source, lang, path)
    return problems


# -- command line -----------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m polycrowd.i18n_tools", description="gettext catalogs of polycrowd"
    )
    parser.add_argument("--package", type=Path, default=PACKAGE_DIR, help="sources to scan")
    parser.add_argument("--locales", type=Path, default=None, help="catalog folder")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("extract", help="write locales/polycrowd.pot from the sources")
    up = sub.add_parser("update", help="merge the .pot into every catalog")
    up.add_argument("-l", "--lang", action="append", default=[], help="also create this catalog")
    up.add_argument("--no-obsolete", action="store_true", help="drop removed messages")
    sub.add_parser("compile", help="write .mo files beside the .po files")
    sub.add_parser("check", help="fail on missing, untranslated or broken messages")
    args = parser.parse_args(argv)
    package_dir: Path = args.package.resolve()
    locales_dir: Path = (args.locales or package_dir / "locales").resolve()

    if args.command == "extract":
        path, catalog, problems, changed = write_pot(package_dir, locales_dir / POT_NAME)
        n_plural = sum(1 for m in catalog.messages.values() if m.plural is not None)
        state = "written" if changed else "unchanged"
        print(f"{path}: {len(catalog.messages)} messages ({n_plural} plural), {state}")
        for problem in problems:
            print(f"warning: {problem}", file=sys.stderr)
        return 0
    if args.command == "update":
        langs = [*LANGUAGES, *args.lang]
        written = update(locales_dir, langs, keep_obsolete=not args.no_obsolete)
        for path in written:
            print(f"updated {path}")
        if not written:
            print("all catalogs up to date")
        return 0
    if args.command == "compile":
        for path in compile_catalogs(locales_dir):
            print(f"compiled {path}")
        return 0
    problems = check(package_dir, locales_dir)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s)", file=sys.stderr)
        return 1
    source, _ = extract(package_dir)
    print(f"ok: {len(source.messages)} messages in {len(catalog_paths(locales_dir))} catalogs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
