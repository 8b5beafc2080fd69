"""Specs, item files and export."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

from polycrowd.engine.core import Engine
from polycrowd.engine.io import InputError, ItemsError, load_spec, load_spec_text, read_items

from ..conftest import FakeClock, choice_spec, items_csv

SPEC = """
name: Sentiment
type: choice
labels: [yes, no, maybe]
languages: [en, es]
instructions:
  en: Is the review positive?
  es: ¿Es positiva la reseña?
overlap: {min: 2, max: 4}
reward: 3
gold_ratio: 0.1
"""


def test_yaml_spec_keeps_yes_no_labels_as_strings() -> None:
    spec = load_spec_text(SPEC)
    assert spec.labels == ("yes", "no", "maybe")
    assert (spec.overlap, spec.overlap_max) == (2, 4)
    assert spec.instructions["es"].startswith("¿")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\ntype: poll\n", "'type' must be one of"),
        ("type: choice\nlabels: [a, b]\n", "'name' is required"),
        ("name: x\nlabels: [a]\ninstructions: hi\n", "at least 2 labels"),
        ("name: x\nlabels: [a, b]\ninstructions: hi\ncolour: red\n", "unknown setting"),
        ("name: x\nlabels: [a, b]\ninstructions: hi\noverlap: 0\n", "between 1 and 100"),
        ("name: [unclosed\n", "not valid YAML"),
        ("- just\n- a list\n", "mapping"),
    ],
)
def test_bad_specs_get_one_clear_line(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("[", r"\[")) as err:
        load_spec_text(text)
    assert "\n" not in str(err.value)


def test_missing_spec_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        load_spec(tmp_path / "nope.yaml")


def test_bad_rows_reported_by_line_and_nothing_yielded() -> None:
    data = (
        b"id,text,lang,gold\na,hello,en,\n,missing id,en,\nc,,en,\nd,x,fr,\na,dup,en,\ne,x,en,no\n"
    )
    with pytest.raises(ItemsError) as err:
        list(read_items(data, ("en",), ("yes", "no"), name="x.csv"))
    lines = [(e.line, e.reason) for e in err.value.errors]
    assert [ln for ln, _ in lines] == [3, 4, 5, 6]
    assert "missing id" in lines[0][1] and "missing text" in lines[1][1]
    assert "language 'fr'" in lines[2][1] and "duplicate id 'a'" in lines[3][1]


def test_jsonl_and_bad_json() -> None:
    good = b'{"id": 1, "text": "hola", "lang": "es"}\n\n{"id": 2, "text": "hi"}\n'
    rows = [r for chunk in read_items(good, ("en", "es"), (), name="x.jsonl") for r in chunk]
    assert [(r.external_id, r.lang) for r in rows] == [("1", "es"), ("2", "en")]
    with pytest.raises(ItemsError, match="line 2: not valid JSON"):
        list(read_items(b'{"id": 1, "text": "a"}\n{oops\n', ("en",), (), name="x.jsonl"))


def test_header_and_encoding_errors() -> None:
    with pytest.raises(ItemsError, match="'id' column"):
        list(read_items(b"name,body\nx,y\n", ("en",), (), name="x.csv"))
    with pytest.raises(InputError, match="UTF-8"):
        list(read_items(b"id,text\n1,\xff\xfe\n", ("en",), (), name="x.csv"))
    with pytest.raises(InputError, match="no items"):
        list(read_items(b"id,text\n", ("en",), (), name="x.csv"))


async def test_import_is_all_or_nothing(engine: Engine) -> None:
    project = await engine.create_project(None, choice_spec())
    rows = ["id,text"] + [f"{i},item {i}" for i in range(5000)] + [",broken"]
    with pytest.raises(ItemsError):
        await engine.import_items(project.id, "\n".join(rows).encode(), name="x.csv")
    assert (await engine.status(project.id)).items == 0
    ok = await engine.import_items(project.id, "\n".join(rows[:-1]).encode(), name="x.csv")
    assert ok.imported == 5000
    with pytest.raises(InputError, match="already exists"):
        await engine.import_items(project.id, b"id,text\n7,again\n", name="x.csv")
    assert (await engine.status(project.id)).items == 5000


async def test_export_round_trip(engine: Engine, clock: FakeClock) -> None:
    project = await engine.create_project(None, choice_spec(overlap=2, overlap_max=2))
    await engine.import_items(project.id, b"id,text\na,one\nb,two\n", name="x.csv")
    await engine.set_state(None, project.id, "live")
    for n in range(2):
        w, _ = await engine.user_for("memory", str(n), "w", "en")
        while (task := await engine.next_task(w.id)) is not None:
            clock.advance(5)
            await engine.submit(w.id, task.assignment.id, "yes")
    await engine.aggregate_project(project.id)
    for fmt in ("csv", "jsonl"):
        buf = io.StringIO()
        n = await engine.export(project.id, buf, fmt)
        assert n == 2
        text = buf.getvalue()
        if fmt == "csv":
            rows = list(csv.DictReader(io.StringIO(text)))
            answers = json.loads(rows[0]["worker_answers"])
        else:
            rows = [json.loads(line) for line in text.splitlines()]
            answers = rows[0]["worker_answers"]
        assert {r["item"] for r in rows} == {"a", "b"}
        assert all(r["label"] == "yes" for r in rows)
        assert len(answers) == 2 and answers[0]["answer"] == "yes"
        assert all(a["worker"].startswith("w-") for a in answers)


async def test_export_streams_in_pages_that_add_up_to_the_whole(
    engine: Engine, clock: FakeClock
) -> None:
    project = await engine.create_project(None, choice_spec(overlap=2, overlap_max=2))
    await engine.import_items(project.id, items_csv(5), name="x.csv")
    await engine.set_state(None, project.id, "live")
    for n in range(3):
        w, _ = await engine.user_for("memory", str(n), "w", "en")
        while (task := await engine.next_task(w.id)) is not None:
            clock.advance(5)
            await engine.submit(w.id, task.assignment.id, "yes")
    whole = await engine.export_rows(project.id)
    pages = [p async for p in engine.results.export_pages(project.id, page=2)]
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [r for p in pages for r in p] == whole
    assert sum(len(r["worker_answers"]) for r in whole) == 10  # 5 items x overlap 2
    buf = io.StringIO()
    assert await engine.results.export(project.id, buf, "csv", page=2) == 5
    lines = buf.getvalue().splitlines()
    assert len(lines) == 6 and lines.count(lines[0]) == 1  # one header, five rows
    empty = await engine.create_project(None, choice_spec())
    buf = io.StringIO()
    assert await engine.export(empty.id, buf, "csv") == 0
    assert buf.getvalue().startswith("item,")


LABELLED = SPEC + "label_names:\n  es: {yes: sí, no: 'no', maybe: quizás}\n"


def test_label_names_per_language() -> None:
    spec = load_spec_text(LABELLED)
    assert spec.label_names == {"es": {"yes": "sí", "no": "no", "maybe": "quizás"}}
    assert spec.as_json()["label_names"] == {"es": {"yes": "sí", "no": "no", "maybe": "quizás"}}
    assert load_spec_text(SPEC).label_names == {}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("label_names:\n  fr: {yes: oui}\n", "language 'fr' is not one of the project's"),
        ("label_names:\n  es: {si: sí}\n", "es: 'si' is not a label"),
        ("label_names:\n  es: {yes: ''}\n", "the name of 'yes' must be 1-64 chars"),
        ("label_names:\n  es: [sí, no]\n", "must map a language to {label: name}"),
        ("label_names: sí\n", "must map a language to {label: name}"),
    ],
)
def test_bad_label_names_get_one_clear_line(extra: str, message: str) -> None:
    with pytest.raises(InputError, match=re.escape(message)) as err:
        load_spec_text(SPEC + extra)
    assert "\n" not in str(err.value)


async def test_label_names_are_stored_with_the_project(engine: Engine) -> None:
    project = await engine.create_project(None, load_spec_text(LABELLED))
    again = await engine.get_project(project.id)
    assert again.label_name("maybe", "fr", "es") == "quizás"  # first language that names it
    assert again.label_name("maybe", "en") == "maybe"  # no name: the canonical label
    assert again.labels == ("yes", "no", "maybe")
    assert again.instructions_in("ru", "es") == ("¿Es positiva la reseña?", "es")
    assert again.instructions_in("ru") == ("Is the review positive?", "en")  # the source
