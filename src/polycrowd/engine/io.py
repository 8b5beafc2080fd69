"""Project specs (YAML/JSON), item files (CSV/JSONL, streamed), result export.

Parsing is synchronous and chunked: callers on the event loop run :func:`read_items`
chunks in a worker thread. A file with any bad row is rejected whole, every bad row
reported with its line number and reason, so nothing is ever half-imported.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import stat
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import yaml

from polycrowd.engine import images
from polycrowd.engine.tasktypes import spec_of
from polycrowd.engine.types import TaskType

MAX_ITEM_CHARS = 3500  # leaves room for instructions in one 4096-char Telegram message
MAX_LABELS = 25  # Discord allows 5x5 buttons
MAX_LABEL_CHARS = 64
CHUNK_ROWS = 2000
MAX_REWARD = 1_000_000_000  # minor units per answer: far above any real reward, and sums of it
# over billions of answers still fit the ledger's 64-bit integers
MAX_IMPORT_ROWS = 100_000  # defaults of Settings.max_import_rows / max_upload_bytes
MAX_IMPORT_BYTES = 20 * 1024 * 1024
CHECKER_HEADS = ("similarity", "classifier", "tagger")  # models/bert.py HEADS
CHECKER_MODES = ("auto", "review")


class InputError(ValueError):
    """Bad user input; the message is one line a person can act on."""


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


class ItemsError(InputError):
    def __init__(self, errors: list[RowError], total_rows: int) -> None:
        self.errors = errors
        self.total_rows = total_rows
        first = errors[0]
        more = f" (and {len(errors) - 1} more bad rows)" if len(errors) > 1 else ""
        super().__init__(f"{first}{more}; nothing was imported")


@dataclass(frozen=True, slots=True)
class ProjectSpec:
    name: str
    task_type: TaskType
    instructions: Mapping[str, str]
    labels: tuple[str, ...] = ()
    languages: tuple[str, ...] = ("en",)
    skills: Mapping[str, float] = field(default_factory=dict)
    overlap: int = 3
    overlap_max: int = 3
    confidence_target: float = 0.9
    reward: int = 0
    gold_ratio: float = 0.0
    qualification: int = 0
    min_skill: float = 0.0
    assignment_ttl: float = 900.0
    checker: Mapping[str, Any] = field(default_factory=dict)
    target_lang: str | None = None
    deadline: float | None = None
    #: label display names per language: {"es": {"positive": "positiva"}}; answers, results
    #: and button data always carry the canonical label.
    label_names: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # model in the loop (engine/services/prelabels.py): {min_human_answers: N, retrain_every: M}
    model: Mapping[str, Any] = field(default_factory=dict)
    max_share: float = 1.0
    # create-then-verify on text projects (engine/services/verify.py): {overlap: N, reward: M};
    # the engine adds {project: id} (the verify project) and marks that one {of: id}
    verify: Mapping[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.task_type.value,
            "instructions": dict(self.instructions),
            "labels": list(self.labels),
            "languages": list(self.languages),
            "skills": dict(self.skills),
            "overlap": {"min": self.overlap, "max": self.overlap_max},
            "confidence_target": self.confidence_target,
            "reward": self.reward,
            "gold_ratio": self.gold_ratio,
            "qualification": self.qualification,
            "min_skill": self.min_skill,
            "assignment_ttl": self.assignment_ttl,
            "checker": dict(self.checker),
            "target_lang": self.target_lang,
            "deadline": self.deadline,
            "label_names": {lang: dict(names) for lang, names in self.label_names.items()},
            "model": dict(self.model) or None,
            "max_share": self.max_share,
            "verify": dict(self.verify) or None,
        }


SPEC_KEYS = frozenset(ProjectSpec("x", TaskType.CHOICE, {"en": "x"}).as_json()) | {"task_type"}


def _yaml_loader() -> type[yaml.SafeLoader]:
    """SafeLoader with YAML 1.2 booleans: labels such as yes/no/on/off stay strings."""

    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {
        key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
        for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:bool",
        re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
        list("tTfF"),
    )
    return Loader


def load_spec_text(text: str, source: str = "spec") -> ProjectSpec:
    try:
        if text.lstrip().startswith("{"):
            data = json.loads(text)
        else:
            data = yaml.load(text, Loader=_yaml_loader())
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        where = getattr(exc, "lineno", None) or getattr(
            getattr(exc, "problem_mark", None), "line", None
        )
        at = f" near line {where + 1 if isinstance(where, int) else where}" if where else ""
        raise InputError(f"{source}: not valid YAML or JSON{at}") from exc
    except (ValueError, RecursionError) as exc:  # 2001-02-30, a 5000-digit number, [[[[...
        raise InputError(f"{source}: not valid YAML or JSON ({_first_line(exc)})") from None
    if not isinstance(data, dict):
        raise InputError(f"{source}: expected a mapping of settings at the top level")
    return parse_spec(data, source)


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:120]


def load_spec(path: str | Path) -> ProjectSpec:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"spec file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read spec file {p}: {exc}") from None
    return load_spec_text(text, str(p))


def _num(data: Mapping[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    raw = data.get(key, default)
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise InputError(f"'{key}' must be a number")
    value = float(raw)
    if not lo <= value <= hi or math.isnan(value):
        raise InputError(f"'{key}' must be between {lo:g} and {hi:g}")
    return value


def _int(data: Mapping[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    """A whole number in [lo, hi]; 2.0 is 2, 2.5 is refused (never silently truncated)."""
    value = _num(data, key, default, lo, hi)
    if not value.is_integer():
        raise InputError(f"'{key}' must be a whole number")
    return int(value)


def _str_list(raw: Any, key: str, source: str) -> list[Any]:
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, dict):
        return list(raw)
    if not isinstance(raw, list | tuple):
        raise InputError(f"{source}: '{key}' must be a list")
    if any(isinstance(x, list | dict | bool) or x is None for x in raw):
        raise InputError(f"{source}: '{key}' must be a list of names")
    return list(raw)


def _checker(raw: Any, source: str) -> dict[str, Any]:
    """The free-form checker config, with the keys the engine and the models act on checked."""
    if not raw:
        return {}
    if not isinstance(raw, dict) or not all(isinstance(k, str) for k in raw):
        raise InputError(f"{source}: 'checker' must be a mapping")
    head = raw.get("head")
    if head is not None and head not in CHECKER_HEADS:
        raise InputError(f"{source}: checker 'head' must be one of {', '.join(CHECKER_HEADS)}")
    mode = raw.get("mode")
    if mode is not None and mode not in CHECKER_MODES:
        raise InputError(f"{source}: checker 'mode' must be one of {', '.join(CHECKER_MODES)}")
    try:
        if "drift_min_samples" in raw:
            _int(raw, "drift_min_samples", 20, 1, 1_000_000)
        for key in ("drift_threshold", "pause_below"):
            if key in raw:
                _num(raw, key, 0.0, 0.0, 1.0)
    except InputError as exc:
        raise InputError(f"{source}: checker {exc}") from None
    for key in ("model", "skill"):
        if key in raw and not isinstance(raw[key], str | None):
            raise InputError(f"{source}: checker '{key}' must be text")
    try:
        json.dumps(raw, allow_nan=False)
    except (TypeError, ValueError):
        raise InputError(f"{source}: 'checker' must hold only text, numbers and lists") from None
    return dict(raw)


def parse_spec(data: Mapping[str, Any], source: str = "spec") -> ProjectSpec:
    unknown = sorted(set(data) - SPEC_KEYS)
    if unknown:
        raise InputError(f"{source}: unknown setting '{unknown[0]}'")
    raw_name = data.get("name")
    name = raw_name.strip() if isinstance(raw_name, str) else ""
    if not _visible(name) or _bad_chars(name):
        raise InputError(f"{source}: 'name' is required")
    raw_type = str(data.get("type") or data.get("task_type") or "choice")
    try:
        task_type = TaskType(raw_type)
    except ValueError:
        kinds = ", ".join(t.value for t in TaskType)
        raise InputError(f"{source}: 'type' must be one of {kinds}") from None
    instructions = data.get("instructions") or {}
    if isinstance(instructions, str):
        instructions = {"en": instructions}
    if (
        not isinstance(instructions, dict)
        or not instructions
        or not all(isinstance(v, str) and v.strip() for v in instructions.values())
    ):
        raise InputError(f"{source}: 'instructions' must be text or a mapping language -> text")
    instructions = {str(k).strip().lower(): v for k, v in instructions.items()}
    languages = tuple(
        str(x).strip().lower()
        for x in _str_list(data.get("languages") or list(instructions), "languages", source)
    )
    if not languages or not all(
        2 <= len(x) <= 3 and x.isascii() and x.isalpha() for x in languages
    ):
        raise InputError(f"{source}: 'languages' must be ISO 639-1 codes such as en, es, ru")
    stray = [lang for lang in instructions if lang not in languages]
    if stray:
        raise InputError(
            f"{source}: 'instructions' language '{stray[0]}' is not one of the project's"
            f" languages ({', '.join(languages)})"
        )
    labels = tuple(str(x) for x in _str_list(data.get("labels") or [], "labels", source))
    if spec_of(task_type).needs_labels and len(labels) < 2:
        raise InputError(f"{source}: a {task_type.value} project needs at least 2 labels")
    if len(labels) > MAX_LABELS or len(set(labels)) != len(labels):
        raise InputError(f"{source}: 'labels' must be unique and at most {MAX_LABELS}")
    if any(
        not _visible(lab) or len(lab) > MAX_LABEL_CHARS or "|" in lab or _bad_chars(lab)
        for lab in labels
    ):
        raise InputError(f"{source}: each label must be 1-{MAX_LABEL_CHARS} chars without '|'")
    overlap_raw = data.get("overlap", 3)
    if isinstance(overlap_raw, dict):
        try:
            lo = _int(overlap_raw, "min", 3, 1, 100)
            hi = _int(overlap_raw, "max", lo, 1, 100)
        except InputError as exc:
            raise InputError(f"{source}: overlap {exc}") from None
    else:
        lo = hi = _int({"overlap": overlap_raw}, "overlap", 3, 1, 100)
    if hi < lo:
        raise InputError(f"{source}: overlap max must be >= min")
    skills_raw = data.get("skills") or {}
    if isinstance(skills_raw, list):
        skills_raw = dict.fromkeys(_str_list(skills_raw, "skills", source), 0.0)
    if not isinstance(skills_raw, dict):
        raise InputError(f"{source}: 'skills' must be a list or a mapping skill -> minimum")
    skills = {str(k): _num(skills_raw, k, 0.0, 0.0, 1.0) for k in skills_raw}
    checker = _checker(data.get("checker"), source)
    label_names = _label_names(data.get("label_names"), labels, languages, source)
    target_lang = data.get("target_lang")
    if target_lang not in (None, "") and (
        not isinstance(target_lang, str)
        or not 2 <= len(target_lang) <= 3
        or not target_lang.isascii()
        or not target_lang.isalpha()
    ):
        raise InputError(f"{source}: 'target_lang' must be an ISO 639-1 code such as es")
    deadline = _deadline(data.get("deadline"), source)
    model = data.get("model") or {}
    if not isinstance(model, dict) or set(model) - {"min_human_answers", "retrain_every"}:
        raise InputError(f"{source}: 'model' must be a mapping with min_human_answers")
    for key, lo_n in (("min_human_answers", 0), ("retrain_every", 1)):
        _int(model, key, max(lo_n, 1), lo_n, 1_000_000)
    verify = _verify(data.get("verify"), task_type, source)
    reward = data.get("reward", 0)
    if isinstance(reward, bool) or not isinstance(reward, int) or reward < 0:
        raise InputError(f"{source}: 'reward' must be a whole number of minor units (cents)")
    if reward > MAX_REWARD:
        raise InputError(f"{source}: 'reward' must be at most {MAX_REWARD} minor units")
    return ProjectSpec(
        name=name[:200],
        task_type=task_type,
        instructions=instructions,
        labels=labels,
        languages=languages,
        skills=skills,
        overlap=lo,
        overlap_max=hi,
        confidence_target=_num(data, "confidence_target", 0.9, 0.5, 1.0),
        reward=reward,
        gold_ratio=_num(data, "gold_ratio", 0.0, 0.0, 0.9),
        qualification=_int(data, "qualification", 0, 0, 100),
        min_skill=_num(data, "min_skill", 0.0, 0.0, 1.0),
        assignment_ttl=_num(data, "assignment_ttl", 900.0, 10.0, 7 * 86400.0),
        checker=checker,
        target_lang=target_lang.lower() if target_lang else None,
        deadline=deadline,
        label_names=label_names,
        model={str(k): int(v) for k, v in model.items()},
        max_share=_num(data, "max_share", 1.0, 0.01, 1.0),
        verify=verify,
    )


def _verify(raw: Any, task_type: TaskType, source: str) -> dict[str, int]:
    """``verify: {overlap: 2, reward: 1}`` (text projects only): each accepted answer is
    checked by ``overlap`` other workers (yes/no) before its credit is final."""
    if raw in (None, {}, False):
        return {}
    if raw is True:
        raw = {}
    if not isinstance(raw, dict) or set(raw) - {"overlap", "reward"}:
        raise InputError(f"{source}: 'verify' must be a mapping with overlap (and reward)")
    if not spec_of(task_type).verifiable:
        raise InputError(f"{source}: 'verify' applies to text projects only")
    out = {"overlap": _int(raw, "overlap", 2, 1, 9)}
    if "reward" in raw:
        reward = raw["reward"]
        if (
            isinstance(reward, bool)
            or not isinstance(reward, int)
            or not 0 <= reward <= MAX_REWARD
        ):
            raise InputError(
                f"{source}: verify 'reward' must be a whole number of minor units,"
                f" at most {MAX_REWARD}"
            )
        out["reward"] = reward
    return out


def _label_names(
    raw: Any, labels: tuple[str, ...], languages: tuple[str, ...], source: str
) -> dict[str, dict[str, str]]:
    """``label_names: {es: {positive: positiva, negative: negativa}}``, validated."""
    if raw in (None, {}):
        return {}
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise InputError(f"{source}: 'label_names' must map a language to {{label: name}}")
    out: dict[str, dict[str, str]] = {}
    for lang_raw, names in raw.items():
        lang = str(lang_raw).strip().lower()
        if lang not in languages:
            raise InputError(
                f"{source}: 'label_names' language '{lang}' is not one of the project's"
                f" languages ({', '.join(languages)})"
            )
        out[lang] = {}
        for label_raw, name_raw in names.items():
            label = str(label_raw)
            name = name_raw.strip() if isinstance(name_raw, str) else ""
            if label not in labels:
                raise InputError(f"{source}: 'label_names' {lang}: '{label}' is not a label")
            if not name or len(name) > MAX_LABEL_CHARS:
                raise InputError(
                    f"{source}: 'label_names' {lang}: the name of '{label}' must be"
                    f" 1-{MAX_LABEL_CHARS} chars"
                )
            out[lang][label] = name
    return out


def _deadline(raw: Any, source: str) -> float | None:
    if raw in (None, ""):
        return None
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        if not math.isfinite(raw) or not 0 <= raw < 1e11:
            raise InputError(f"{source}: 'deadline' must be an ISO date-time")
        return float(raw)
    if isinstance(raw, datetime):
        try:
            return raw.timestamp()
        except (ValueError, OverflowError, OSError):
            raise InputError(f"{source}: 'deadline' must be an ISO date-time") from None
    try:
        return datetime.fromisoformat(str(raw)).timestamp()
    except (ValueError, OverflowError, OSError):
        raise InputError(f"{source}: 'deadline' must be an ISO date-time") from None


# Items --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ItemRow:
    line: int
    external_id: str
    content: str
    lang: str
    gold: str | None


ID_KEYS = ("id", "item", "external_id")
TEXT_KEYS = ("text", "content", "image", "url")


@dataclass(frozen=True, slots=True)
class ImageItems:
    """Items are image references (an ``image`` project), relative to ``base_dir``: the items
    file's folder, None for an upload (see :mod:`polycrowd.engine.images`)."""

    base_dir: Path | None


def _visible(text: str) -> bool:
    """Has at least one character a person can see: not only spaces, zero-width, control or
    format characters (U+200B, U+2060, U+FEFF, bidi marks...)."""
    return any(unicodedata.category(ch)[0] not in "CZ" for ch in text)


def _bad_chars(text: str) -> bool:
    """NUL or a lone surrogate: no store can keep them (PostgreSQL refuses NUL, UTF-8 has no
    surrogates)."""
    return "\x00" in text or any(0xD800 <= ord(ch) <= 0xDFFF for ch in text)


def _scalar(raw: Any) -> str | None:
    """A cell's value as text: JSONL numbers become text; lists, objects and booleans are not
    an id, a language or a gold answer (None)."""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return str(raw)
    return None


def _row_to_item(
    line: int,
    rec: Mapping[str, Any],
    spec_langs: tuple[str, ...],
    labels: tuple[str, ...],
    image_items: ImageItems | None = None,
) -> ItemRow | RowError:
    id_raw = next((rec[k] for k in ID_KEYS if rec.get(k) not in (None, "")), "")
    content_raw = next((rec[k] for k in TEXT_KEYS if rec.get(k) not in (None, "")), "")
    ext_s = _scalar(id_raw)
    if ext_s is None:
        return RowError(line, "the id must be text or a number")
    if not isinstance(content_raw, str):
        what = "the image" if image_items else "the text"
        return RowError(line, f"{what} must be a string, not a JSON list or object")
    ext, content = ext_s.strip(), content_raw
    if not _visible(ext):
        return RowError(line, "missing id")
    if not _visible(content):
        what = "image" if image_items else "text"
        return RowError(line, f"missing {what} (only blank, invisible or control characters)")
    if _bad_chars(ext) or _bad_chars(content):
        return RowError(line, "NUL or invalid characters in the id or text")
    if image_items is not None:
        try:
            content = images.check_ref(content, image_items.base_dir)
        except images.ImageRefError as exc:
            return RowError(line, str(exc))
    elif len(content) > MAX_ITEM_CHARS:
        return RowError(line, f"text longer than {MAX_ITEM_CHARS} characters")
    lang_raw = rec.get("lang") or rec.get("language") or spec_langs[0]
    if not isinstance(lang_raw, str):
        return RowError(line, "the language must be a code such as en")
    lang = lang_raw.strip().lower()
    if lang not in spec_langs:
        return RowError(line, f"language '{lang}' is not one of the project's languages")
    gold_raw = rec.get("gold")
    gold = None if gold_raw in (None, "") else _scalar(gold_raw)
    if gold_raw not in (None, "") and (gold is None or _bad_chars(gold)):
        return RowError(line, "the gold answer must be text")
    if gold is not None and labels:
        parts = gold.split("|")
        if any(p not in labels for p in parts):
            return RowError(line, f"gold answer '{gold}' is not one of the labels")
    return ItemRow(line, ext, content, lang, gold)


def _records(fh: IO[str], fmt: str) -> Iterator[tuple[int, Mapping[str, Any] | str]]:
    """Yield (line number, record or error text)."""
    if fmt == "jsonl":
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                yield n, f"not valid JSON ({exc.msg})"
                continue
            except (ValueError, RecursionError) as exc:  # a 5000-digit number, [[[[...
                yield n, f"not valid JSON ({_first_line(exc)})"
                continue
            yield (n, rec) if isinstance(rec, dict) else (n, "expected a JSON object")
        return
    # strict: a quote left open is an error, not a field that swallows the rest of the file
    reader = csv.reader(fh, strict=True)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        return
    except csv.Error as exc:
        yield 1, f"bad CSV header ({exc})"
        return
    if not any(k in header for k in ID_KEYS) or not any(k in header for k in TEXT_KEYS):
        yield 1, "the header needs an 'id' column and a 'text' column"
        return
    while True:
        start = reader.line_num + 1  # the line the next record starts on
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if "unexpected end of data" in str(exc):
                yield start, "a quote opened here is never closed (unterminated quoted field)"
                return
            yield start, f"bad CSV ({exc})"
            continue
        if not values or all(not v.strip() for v in values):
            continue
        if len(values) != len(header):
            yield start, f"expected {len(header)} columns, found {len(values)}"
            continue
        yield start, dict(zip(header, values, strict=True))


def detect_format(name: str, explicit: str | None = None) -> str:
    if explicit:
        return explicit
    suffix = Path(name).suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".csv", ".tsv", ".txt"):
        return "csv"
    raise InputError(f"cannot tell the format of {name}: use a .csv or .jsonl file")


@dataclass(frozen=True, slots=True)
class ImportLimits:
    """How big one items file may be (from Settings.max_upload_bytes / max_import_rows)."""

    max_rows: int = MAX_IMPORT_ROWS
    max_bytes: int = MAX_IMPORT_BYTES


def _file_size(path: Path) -> int | None:
    """The size of a regular file; None for a pipe or a missing file (open() reports it)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def read_items(
    source: str | Path | bytes,
    spec_langs: tuple[str, ...],
    labels: tuple[str, ...],
    fmt: str | None = None,
    name: str = "",
    *,
    image_items: bool = False,
    limits: ImportLimits | None = None,
) -> Iterator[list[ItemRow]]:
    """Stream items in chunks. Raises ItemsError (after reading to the end) on bad rows.

    With ``image_items`` each item is an image reference, checked by
    :func:`polycrowd.engine.images.check_ref` (file paths relative to the items file).
    A file over ``limits`` (bytes, rows) is refused with InputError, nothing imported.
    """
    limits = limits or ImportLimits()
    base_dir = None if isinstance(source, bytes) else Path(source).resolve().parent
    refs = ImageItems(base_dir) if image_items else None
    size = len(source) if isinstance(source, bytes) else _file_size(Path(source))
    if size is not None and size > limits.max_bytes:
        raise InputError(
            f"the file is larger than {limits.max_bytes / 1024 / 1024:g} MB"
            " (POLYCROWD_MAX_UPLOAD_BYTES); nothing was imported"
        )
    if isinstance(source, bytes):
        try:
            text = source.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InputError("the file is not UTF-8 text") from None
        fh: IO[str] = io.StringIO(text, newline="")
        fmt = detect_format(name or "upload.csv", fmt)
    else:
        path = Path(source)
        fmt = detect_format(str(path), fmt)
        try:
            fh = path.open(encoding="utf-8-sig", newline="")
        except FileNotFoundError:
            raise InputError(f"file not found: {path}") from None
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror}") from None
    errors: list[RowError] = []
    seen: set[str] = set()
    chunk: list[ItemRow] = []
    total = 0
    with fh:
        try:
            for line, rec in _records(fh, fmt):
                total += 1
                if total > limits.max_rows:
                    raise InputError(
                        f"more than {limits.max_rows} items in one file"
                        " (POLYCROWD_MAX_IMPORT_ROWS); nothing was imported"
                    )
                parsed = (
                    RowError(line, rec)
                    if isinstance(rec, str)
                    else _row_to_item(line, rec, spec_langs, labels, refs)
                )
                if isinstance(parsed, ItemRow) and parsed.external_id in seen:
                    parsed = RowError(line, f"duplicate id '{parsed.external_id}'")
                if isinstance(parsed, RowError):
                    errors.append(parsed)
                    continue
                seen.add(parsed.external_id)
                if not errors:
                    chunk.append(parsed)
                    if len(chunk) >= CHUNK_ROWS:
                        yield chunk
                        chunk = []
        except UnicodeDecodeError:
            raise InputError("the file is not UTF-8 text") from None
    if errors:
        raise ItemsError(errors, total)
    if total == 0:
        raise InputError("the file has no items")
    if chunk:
        yield chunk


# Export -------------------------------------------------------------------------------------

EXPORT_FIELDS = (
    "item",
    "lang",
    "label",
    "confidence",
    "agreement",
    "method",
    "answers",
    "model",
    "gold",
    "worker_answers",
)


EXPORT_FORMATS = ("csv", "jsonl")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula (=, +, -, @, tab, CR first), defused
    with a leading single quote (OWASP CSV injection). Numbers and other cells are kept."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def write_results(
    rows: Iterable[Mapping[str, Any]], out: IO[str], fmt: str, *, header: bool = True
) -> int:
    """Write export rows. JSONL keeps every value exact; CSV, meant for spreadsheets, defuses
    text cells that start like a formula (:func:`csv_safe`), inside worker answers too;
    ``header=False`` appends to a CSV already begun."""
    n = 0
    if fmt == "jsonl":
        for row in rows:
            out.write(json.dumps(dict(row), ensure_ascii=False) + "\n")
            n += 1
        return n
    if fmt != "csv":
        raise InputError(f"unknown export format '{fmt}': use csv or jsonl")
    writer = csv.DictWriter(out, fieldnames=list(EXPORT_FIELDS), extrasaction="ignore")
    if header:
        writer.writeheader()
    for row in rows:
        flat = dict(row)
        flat["worker_answers"] = json.dumps(flat.get("worker_answers", []), ensure_ascii=False)
        writer.writerow({k: csv_safe(v) for k, v in flat.items()})
        n += 1
    return n
