"""Image tasks in Telegram: sendPhoto with the answer keyboard, answers by button, caption
edits; real python-telegram-bot against the fake Bot API, real engine on SQLite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("telegram")

from polycrowd.engine.io import load_spec_text
from tests.bot.conftest import TelegramHarness
from tests.bot.faketelegram import Call, FakeUser
from tests.pngs import png

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

SPEC = """\
name: Pets
type: image
labels: [cat, dog]
instructions: "Is it a cat or a dog?"
overlap: 1
reward: 5
"""


async def image_project(h: TelegramHarness, tmp_path: Path, spec: str = SPEC) -> bytes:
    """A live image project of two items: a file next to the items file, and a URL."""
    picture = png(seed=4)
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "a.png").write_bytes(picture)
    items = tmp_path / "items.csv"
    items.write_text("id,image\na,pics/a.png\nb,https://example.org/pets/b.jpg\n")
    engine = h.app.engine
    project = await engine.create_project(None, load_spec_text(spec, "pets.yaml"))
    await engine.import_items(project.id, items)
    await engine.set_state(None, project.id, "live")
    return picture


async def onboard(h: TelegramHarness, worker: FakeUser) -> None:
    welcome = await h.say(worker, "/start", "Welcome", buttons=True)
    since = await h.press(worker, welcome, "lok")
    assert welcome.message_id is not None
    await h.edit(worker.id, welcome.message_id, since)


def keyboard(call: Call) -> list[str]:
    markup: Any = call.params.get("reply_markup") or {}
    return [b["callback_data"] for row in markup.get("inline_keyboard", []) for b in row]


async def photo(h: TelegramHarness, chat_id: int, since: int) -> Call:
    return await h.wait(
        lambda c: c.ok and c.method == "sendPhoto" and c.params.get("chat_id") == chat_id, since
    )


async def test_image_task_is_a_photo_answered_by_button_and_its_caption_edited(
    telegram_bot: TelegramHarness, tmp_path: Path
) -> None:
    h = telegram_bot
    picture = await image_project(h, tmp_path)
    ann = h.user(101, "Ann")
    await onboard(h, ann)

    since = h.mark()
    ann.say("/task")
    first = await photo(h, ann.id, since)
    sent = h.fake.photos(ann.id)
    assert len(sent) == 1 and sent[0].message_id == first.result["message_id"]
    assert sent[0].caption is not None and "Is it a cat or a dog?" in sent[0].caption
    assert "Task for project “Pets”" in sent[0].caption
    assert "pics/a.png" not in sent[0].caption and "example.org" not in sent[0].caption
    buttons = keyboard(first)
    assert [d.split(":")[0] for d in buttons] == ["a", "a", "s", "q"]  # cat, dog, skip, ask

    h.clock.advance(4)
    since = h.mark()
    h.fake.inject_callback(ann, ann.id, first.result["message_id"], buttons[1])  # "dog"
    edit = await h.wait(lambda c: c.ok and c.method == "editMessageCaption", since)
    assert edit.params["message_id"] == first.result["message_id"]
    assert "Your answer: dog" in edit.result["caption"] and "reply_markup" not in edit.result
    assert "photo" in edit.result  # still the photo, only its caption changed
    # the verdict rides on the next task's caption; the next item is the other one
    second = await photo(h, ann.id, since)
    assert "Accepted. +0.05, balance 0.05." in second.result["caption"]
    assert keyboard(second)[-2].startswith("s:")
    assert not h.fake.calls_of("editMessageText", ok=False)  # no failed text edit of a photo

    by_source = {f.source: f for f in h.fake.photos(ann.id)}
    assert set(by_source) == {"upload", "url"}
    assert by_source["upload"].content == picture and by_source["upload"].filename == "image.png"
    assert by_source["url"].filename == "b.jpg"
    async with h.app.db.read() as tx:
        rows = await tx.all("SELECT ref FROM ledger")
    assert [r["ref"] for r in rows if r["ref"].startswith("credit:")] and len(rows) == 1


async def test_a_text_over_the_caption_limit_follows_the_photo_with_the_buttons(
    telegram_bot: TelegramHarness, tmp_path: Path
) -> None:
    h = telegram_bot
    long = "Look closely. " * 90  # about 1260 characters: no room in a 1024-character caption
    await image_project(h, tmp_path, SPEC.replace("Is it a cat or a dog?", long))
    bob = h.user(102, "Bob")
    await onboard(h, bob)

    since = h.mark()
    bob.say("/task")
    first = await photo(h, bob.id, since)
    assert "caption" not in first.params and not keyboard(first)
    task = await h.message(bob.id, "Look closely.", since, buttons=True)
    assert task.message_id is not None and task.message_id > first.result["message_id"]

    h.clock.advance(4)
    since = await h.press(bob, task, task.callback_data[0])
    edited = await h.edit(bob.id, task.message_id, since)  # editMessageText on the text
    assert "Your answer: cat" in edited.plain and not edited.buttons
    assert not h.fake.calls_of("editMessageCaption")
