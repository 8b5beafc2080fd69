"""Requester flows: guided creation, uploads with error reports, status, export."""

from __future__ import annotations

import csv
import dataclasses
import io

from .conftest import SPEC, World


async def test_guided_newproject_then_upload_launch_status_export(world: World) -> None:
    chat, req = world.chat, world.requester
    await chat.command(req, "/newproject")
    await chat.say(req, "Animals")
    [kind] = chat.history("u1")[-1:]
    assert "What kind of task" in kind.text
    await chat.press(req, kind.button(data_prefix="np:choice"), kind.id)
    await chat.say(req, "cat, dog")
    await chat.say(req, "Which animal?")
    await chat.say(req, "en")
    await chat.say(req, "1")
    [created] = await chat.say(req, "5")
    assert "created" in created.text
    [bad] = await chat.upload(req, "items.csv", b"id,text\n1,a\n2,\n3,c\n")
    assert "1 bad row" in bad.text and bad.document is not None
    assert b"line 3: missing text" in bad.document.content
    [ok] = await chat.upload(req, "items.csv", b"id,text\n1,a cat\n2,a dog\n")
    assert "Imported 2 items" in ok.text
    [live] = await chat.press(req, ok.button(data_prefix="pl:"), ok.id)
    assert "is live" in live.text
    ann = await world.worker(1)
    [task] = await chat.command(ann, "/task")
    world.clock.advance(5)
    await chat.press(ann, task.button("cat"), task.id)
    [status] = await chat.command(req, "/status")
    assert "Items done: 1 of 2" in status.text and "█" in status.text
    [export] = await chat.command(req, "/export")
    assert export.document is not None
    rows = list(csv.DictReader(io.StringIO(export.document.content.decode())))
    assert {r["item"] for r in rows} == {"1", "2"}
    assert next(r for r in rows if r["item"] == "1")["label"] == "cat"


async def test_bad_spec_and_wrong_files_change_nothing(world: World) -> None:
    chat, req = world.chat, world.requester
    [bad] = await chat.upload(req, "p.yaml", b"name: x\ntype: poll\n")
    assert "not valid" in bad.text
    [wrong] = await chat.upload(req, "p.exe", b"MZ")
    assert ".csv" in wrong.text
    [none] = await chat.command(req, "/status")
    assert "no projects" in none.text
    assert await world.app.engine.projects() == []


async def test_workers_cannot_upload(world: World) -> None:
    ann = await world.worker(1)
    [reply] = await world.chat.upload(ann, "items.csv", b"id,text\n1,a\n")
    assert "Only requesters can do that." in reply.text


async def test_chat_uploads_obey_the_import_row_limit(world: World) -> None:
    d = world.app.dispatcher
    d.settings = dataclasses.replace(d.settings, max_import_rows=2)
    await world.chat.upload(world.requester, "pets.yaml", SPEC.encode())
    items = "id,text,lang\n1,a,en\n2,b,en\n3,c,en\n"
    [refused] = await world.chat.upload(world.requester, "items.csv", items.encode())
    assert "more than 2 items in one file" in refused.text
    project = (await world.app.engine.projects())[0]
    assert (await world.app.engine.status(project.id)).items == 0
