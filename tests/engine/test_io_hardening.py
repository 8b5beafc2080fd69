"""Issue 17: hostile or sloppy input files and specs, and spreadsheet-safe CSV export.

Every refusal is one line naming the line or setting at fault, and it changes nothing: the
engine tests run on both stores and check the database after the refusal.
"""

from __future__ import annotations

import csv
import io
import json

import pytest

from polycrowd.engine.core import Engine
from polycrowd.engine.io import (
    MAX_REWARD,
    ImportLimits,
    InputError,
    ItemsError,
    csv_safe,
    load_spec_text,
    read_items,
    write_results,
)

from ..conftest import FakeClock

SPEC = "name: cats\ntype: choice\nlabels: [yes, no]\ninstructions: Is it a cat?\n"


def _items(data: bytes, name: str = "up.csv", **kw: object) -> list[str]:
    chunks = read_items(data, ("en",), ("yes", "no"), name=name, **kw)  # type: ignore[arg-type]
    return [r.external_id for chunk in chunks for r in chunk]


async def _item_count(engine: Engine, project_id: int) -> int:
    return (await engine.status(project_id)).items


# CSV and JSONL items ----------------------------------------------------------------------


def test_an_unterminated_quote_is_refused_with_the_line_it_opens_on() -> None:
    data = b'id,text\n1,a cat\n2,"a dog\n3,a bird\n4,a fish\n'
    with pytest.raises(ItemsError) as info:
        _items(data)
    assert info.value.errors[0].line == 3
    assert "never closed" in str(info.value) and str(info.value).startswith("line 3:")


def test_a_closed_multiline_quote_is_still_one_item() -> None:
    assert _items(b'id,text\n1,"two\nlines"\n2,ok\n') == ["1", "2"]


def test_a_quote_followed_by_text_is_refused() -> None:
    with pytest.raises(ItemsError, match="line 2: bad CSV"):
        _items(b'id,text\n1,"a"b\n2,ok\n')


@pytest.mark.parametrize(
    "value", ['["a", "b"]', '{"x": 1}', "true", "3"], ids=["list", "object", "bool", "number"]
)
def test_jsonl_text_must_be_a_string(value: str) -> None:
    data = f'{{"id": 1, "text": "fine"}}\n{{"id": 2, "text": {value}}}\n'.encode()
    with pytest.raises(ItemsError, match="line 2: the text must be a string"):
        _items(data, "up.jsonl")


def test_jsonl_ids_may_be_numbers_but_not_lists() -> None:
    assert _items(b'{"id": 7, "text": "a cat"}\n', "up.jsonl") == ["7"]
    with pytest.raises(ItemsError, match="line 1: the id must be text or a number"):
        _items(b'{"id": [7], "text": "a cat"}\n', "up.jsonl")


@pytest.mark.parametrize(
    "text",
    ["\u200b\u200b", "\ufeff", "\u2060 \u200e", "\x01\x02\x03", "\u202e\u202c", "\t \u3000"],
)
def test_text_of_only_invisible_or_control_characters_is_refused(text: str) -> None:
    data = json.dumps({"id": "a", "text": text}).encode() + b"\n"
    with pytest.raises(ItemsError, match="line 1: missing text"):
        _items(data, "up.jsonl")
    with pytest.raises(ItemsError, match="line 2: missing text"):
        _items(b"id,text\n" + f'b,"{text}"\n'.encode())


def test_nul_and_lone_surrogates_are_refused() -> None:
    with pytest.raises(ItemsError, match="line 1: NUL or invalid"):
        _items(b'{"id": "a", "text": "a\\u0000cat"}\n', "up.jsonl")
    with pytest.raises(ItemsError, match="line 1: NUL or invalid"):
        _items(b'{"id": "a", "text": "a \\ud800 cat"}\n', "up.jsonl")


def test_visible_text_with_joiners_is_kept() -> None:
    data = json.dumps({"id": "a", "text": "\u200bcat \u200d\U0001f408"}).encode() + b"\n"
    assert _items(data, "up.jsonl") == ["a"]


def test_row_and_byte_limits() -> None:
    data = b"id,text\n" + b"".join(f"{i},item {i}\n".encode() for i in range(5))
    assert len(_items(data, limits=ImportLimits(max_rows=5))) == 5
    with pytest.raises(InputError, match="more than 4 items"):
        _items(data, limits=ImportLimits(max_rows=4))
    with pytest.raises(InputError, match="larger than"):
        _items(data, limits=ImportLimits(max_bytes=len(data) - 1))


async def test_refused_imports_change_nothing(engine: Engine) -> None:
    project = await engine.create_project(None, load_spec_text(SPEC))
    bad = [
        (b'id,text\n1,a cat\n2,"a dog\n3,a bird\n', "up.csv", None),
        (b'{"id": 1, "text": "ok"}\n{"id": 2, "text": ["x"]}\n', "up.jsonl", None),
        (b"id,text\n1,a cat\n2,\xe2\x80\x8b\n", "up.csv", None),
        (b"id,text\n1,a\n2,b\n3,c\n", "up.csv", ImportLimits(max_rows=2)),
    ]
    for data, name, limits in bad:
        with pytest.raises(InputError):
            await engine.import_items(project.id, data, name=name, limits=limits)
        assert await _item_count(engine, project.id) == 0
    report = await engine.import_items(project.id, b"id,text\n1,a\n2,b\n", name="up.csv")
    assert report.imported == 2 and await _item_count(engine, project.id) == 2


# Specs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("overlap: {min: 2.5}", "overlap 'min' must be a whole number"),
        ("overlap: {min: 2, max: 3.5}", "overlap 'max' must be a whole number"),
        ("overlap: 1.5", "'overlap' must be a whole number"),
        ("qualification: 0.5", "'qualification' must be a whole number"),
        ("model: {min_human_answers: 2.5}", "'min_human_answers' must be a whole number"),
        ("checker: {head: gpt}", "checker 'head' must be one of similarity, classifier, tagger"),
        ("checker: {mode: lenient}", "checker 'mode' must be one of"),
        ("checker: {drift_threshold: 7}", "'drift_threshold' must be between 0 and 1"),
        ("checker: {drift_min_samples: many}", "'drift_min_samples' must be a number"),
        ("checker: {when: 2020-01-01}", "'checker' must hold only text, numbers and lists"),
        ("reward: 100000000000000000000000000000", "'reward' must be at most"),
        ("labels: yes", "a choice project needs at least 2 labels"),
        ("labels: 5", "'labels' must be a list"),
        ("languages: 5", "'languages' must be a list"),
        ("deadline: .inf", "'deadline' must be an ISO date-time"),
        ("target_lang: [es]", "'target_lang' must be an ISO 639-1 code"),
    ],
)
def test_spec_refusals(extra: str, message: str) -> None:
    base = SPEC.replace("labels: [yes, no]\n", "") if extra.startswith("labels") else SPEC
    with pytest.raises(InputError) as info:
        load_spec_text(base + extra + "\n")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_whole_numbers_written_as_floats_are_accepted() -> None:
    spec = load_spec_text(SPEC + "overlap: {min: 2.0, max: 4}\n")
    assert (spec.overlap, spec.overlap_max) == (2, 4)
    assert load_spec_text(SPEC + f"reward: {MAX_REWARD}\n").reward == MAX_REWARD


def test_instructions_in_a_language_the_project_does_not_have() -> None:
    text = (
        "name: x\nlabels: [a, b]\nlanguages: [en, es]\n"
        "instructions: {en: Pick one, fr: Choisissez}\n"
    )
    with pytest.raises(InputError, match=r"'fr' is not one of the project's languages \(en, es\)"):
        load_spec_text(text)
    ok = load_spec_text(text.replace("fr: Choisissez", "ES: Elige"))
    assert dict(ok.instructions) == {"en": "Pick one", "es": "Elige"}


def test_known_checker_heads_are_accepted() -> None:
    for head in ("similarity", "classifier", "tagger"):
        assert (
            load_spec_text(SPEC + f"checker: {{head: {head}, mode: review}}\n").checker["head"]
            == head
        )


async def test_a_huge_reward_never_reaches_the_store(engine: Engine) -> None:
    with pytest.raises(InputError):
        await engine.create_project(None, load_spec_text(SPEC + f"reward: {10**20}\n"))
    assert await engine.projects() == []


# Export -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"])
def test_csv_safe_defuses_formula_starts(value: str) -> None:
    assert csv_safe(value) == "'" + value
    assert csv_safe("a" + value) == "a" + value
    assert csv_safe(0.5) == 0.5 and csv_safe(None) is None


def test_csv_export_defuses_formulas_and_jsonl_keeps_them() -> None:
    row = {
        "item": '=HYPERLINK("http://evil")',
        "lang": "en",
        "label": "@cmd",
        "confidence": 0.75,
        "agreement": 1.0,
        "method": "mv",
        "answers": 2,
        "model": "-m",
        "gold": "+1",
        "worker_answers": [{"worker": "w-1", "answer": "=1+1"}],
    }
    out = io.StringIO()
    write_results([row], out, "csv")
    (cells,) = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert cells["item"] == '\'=HYPERLINK("http://evil")'
    assert (cells["label"], cells["model"], cells["gold"]) == ("'@cmd", "'-m", "'+1")
    assert cells["confidence"] == "0.75" and cells["answers"] == "2"
    assert json.loads(cells["worker_answers"])[0]["answer"] == "=1+1"  # inside JSON: inert
    out = io.StringIO()
    write_results([row], out, "jsonl")
    assert json.loads(out.getvalue()) == row


async def test_exported_answers_and_ids_are_defused_in_csv(
    engine: Engine, clock: FakeClock
) -> None:
    spec = "name: f\ntype: choice\nlabels: ['=1+1', '-2']\ninstructions: Pick\noverlap: 1\n"
    project = await engine.create_project(None, load_spec_text(spec))
    await engine.import_items(project.id, b"id,text\n=A1,one\n@B2,two\n", name="up.csv")
    await engine.set_state(None, project.id, "live")
    worker, _ = await engine.user_for("telegram", "11")
    for _ in range(2):
        task = await engine.next_task(worker.id)
        assert task is not None
        clock.advance(10)
        await engine.submit(worker.id, task.assignment.id, "=1+1")
    await engine.aggregate_project(project.id, "mv")
    out = io.StringIO()
    await engine.export(project.id, out, "csv")
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert sorted(r["item"] for r in rows) == ["'=A1", "'@B2"]
    assert {r["label"] for r in rows} == {"'=1+1"}
    out = io.StringIO()
    await engine.export(project.id, out, "jsonl")
    exact = [json.loads(line) for line in out.getvalue().splitlines()]
    assert sorted(r["item"] for r in exact) == ["=A1", "@B2"]
    assert {r["label"] for r in exact} == {"=1+1"}
