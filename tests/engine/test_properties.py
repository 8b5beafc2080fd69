"""Property-based tests (issue 17, point 7): the spec parser and the CSV and JSONL item
parsers take any input and give a result or a clear InputError - never another exception -
and a refused import or spec leaves the database exactly as it was. Both stores.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from typing import Any

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from polycrowd.engine.core import Engine
from polycrowd.engine.io import (
    SPEC_KEYS,
    ImportLimits,
    InputError,
    ProjectSpec,
    load_spec_text,
    parse_spec,
    read_items,
)

FAST = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI stays reproducible
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# hostile text: control, zero-width, bidi, surrogates, NUL, formula starts, quotes, newlines
NASTY = st.sampled_from(
    ["\x00", "\u200b", "\ufeff", "\u202e", "\ud800", "\r", "\n", '"', ",", "=", "@", "|", "\t"]
)
TEXT = st.lists(st.one_of(st.characters(), NASTY), max_size=12).map("".join)
SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
    st.sampled_from(["choice", "multi", "text", "spans", "image", "en", "es", "review"]),
)
VALUE = st.recursive(
    SCALAR,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=12,
)
GOOD = {"name": "p", "type": "choice", "labels": ["yes", "no"], "instructions": {"en": "Pick"}}
SPEC_DATA = st.builds(
    lambda base, extra: {**base, **extra},
    st.sampled_from([{}, GOOD]),
    st.dictionaries(st.sampled_from(sorted(SPEC_KEYS)), VALUE, max_size=6),
)


def _parse(data: dict[str, Any]) -> ProjectSpec | None:
    try:
        return parse_spec(data)
    except InputError as exc:
        assert str(exc) and "\n" not in str(exc)
        return None


async def _counts(engine: Engine) -> tuple[int, int]:
    async with engine.db.read() as tx:
        projects = len(await tx.projects.ids(None))
        items = sum([await tx.items.count(pid) for pid in await tx.projects.ids(None)])
    return projects, items


@FAST
@given(data=SPEC_DATA)
async def test_any_spec_mapping_is_a_spec_or_a_clear_error(engine: Engine, data: Any) -> None:
    spec = _parse(data)
    if spec is None:
        return
    before = await _counts(engine)
    project = await engine.create_project(None, spec)  # an accepted spec always stores
    assert (await _counts(engine))[0] == before[0] + 1
    assert project.reward == spec.reward and project.overlap == spec.overlap


@FAST
@given(data=SPEC_DATA, as_json=st.booleans())
def test_any_spec_file_text_is_a_spec_or_a_clear_error(data: Any, as_json: bool) -> None:
    try:
        text = json.dumps(data) if as_json else yaml.safe_dump(data, allow_unicode=True)
    except (ValueError, yaml.YAMLError):
        return  # not representable in that format (a lone surrogate in YAML)
    try:
        load_spec_text(text)
    except InputError as exc:
        assert "\n" not in str(exc)


@FAST
@given(text=st.text(max_size=200))
@example("name: 2001-02-30")  # YAML timestamps that are no dates
@example("name: x\nreward: 1" + "0" * 5000)  # past Python's int-digits limit
@example("[" * 3000)  # past the recursion limit
@example("name: x\ninstructions: hi\nlabels: [a, b]\nlabel_names: {en: {a: [1]}}")
def test_any_text_as_a_spec_file(text: str) -> None:
    with contextlib.suppress(InputError):
        load_spec_text(text)


def _read(data: bytes, name: str, labels: tuple[str, ...] = ("yes", "no")) -> int | None:
    """Items read, or None for a clear refusal."""
    try:
        chunks = read_items(data, ("en", "es"), labels, name=name, limits=ImportLimits(50))
        return sum(len(c) for c in chunks)
    except InputError as exc:
        assert str(exc) and "\n" not in str(exc)
        return None


@FAST
@given(data=st.binary(max_size=300), fmt=st.sampled_from(["up.csv", "up.jsonl"]))
@example(b'{"id": 1, "text": ' + b"1" * 5000 + b"}\n", "up.jsonl")
@example(b"[" * 100_000 + b"\n", "up.jsonl")
@example(b'id,text\n1,"never closed\n2,b\n', "up.csv")
@example(b"id,text\n1,\x00\n", "up.csv")
def test_any_bytes_are_items_or_a_clear_error(data: bytes, fmt: str) -> None:
    _read(data, fmt)


ROW = st.fixed_dictionaries(
    {"id": st.one_of(TEXT, st.integers()), "text": st.one_of(TEXT, VALUE)},
    optional={"lang": st.one_of(TEXT, VALUE, st.sampled_from(["en", "es"])), "gold": VALUE},
)


def _csv_bytes(rows: list[dict[str, Any]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["id", "text", "lang", "gold"])
    for r in rows:
        writer.writerow([r["id"], r["text"], r.get("lang", ""), r.get("gold", "")])
    return buf.getvalue().encode("utf-8", "surrogatepass")


def _jsonl_bytes(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


@settings(FAST, max_examples=60)
@given(rows=st.lists(ROW, min_size=1, max_size=6), as_csv=st.booleans())
async def test_an_import_is_all_rows_or_none(
    engine: Engine, rows: list[dict[str, Any]], as_csv: bool
) -> None:
    data, name = (_csv_bytes(rows), "up.csv") if as_csv else (_jsonl_bytes(rows), "up.jsonl")
    expected = _read(data, name)
    spec = parse_spec({**GOOD, "languages": ["en", "es"], "instructions": {"en": "Pick"}})
    project = await engine.create_project(None, spec)
    before = await _counts(engine)
    try:
        report = await engine.import_items(project.id, data, name=name)
    except InputError:
        assert expected is None
        assert await _counts(engine) == before  # nothing of a refused file was stored
        return
    assert expected is not None and report.imported == expected
    assert await _counts(engine) == (before[0], before[1] + expected)
    stored = await engine.export_rows(project.id)
    assert len(stored) == expected
    for row in stored:  # what was stored is text a person can see
        assert isinstance(row["item"], str) and row["item"].strip()
