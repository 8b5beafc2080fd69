"""Image tasks in Discord: an embed whose image is the item (an attachment or a URL), the
answer buttons, the edit after an answer; real discord.py against the simcord harness."""

from __future__ import annotations

from pathlib import Path

from polycrowd.bot.discord import Renderer
from polycrowd.engine.io import load_spec_text
from polycrowd.handlers.types import Button, Photo, Reply
from polycrowd.i18n import Msg, Translator
from tests.bot.test_discord import discord_world, locales, task_id
from tests.pngs import png

__all__ = ["locales"]  # the fixture, shared with the Discord tests

SPEC = """\
name: pets
type: image
labels: [cat, dog]
instructions: Is it a cat or a dog?
languages: [en]
overlap: 1
reward: 5
"""


async def test_image_task_is_an_embed_with_the_picture_and_buttons(
    tmp_path: Path, locales: Path
) -> None:
    picture = png(seed=5)
    (tmp_path / "a.png").write_bytes(picture)
    items = b"id,image\na,a.png\n"
    (tmp_path / "items.csv").write_bytes(items)
    async with discord_world(tmp_path, locales) as w:
        h = w.h
        pid = (await w.app.engine.create_project(None, load_spec_text(SPEC, "pets.yaml"))).id
        await w.app.engine.import_items(pid, tmp_path / "items.csv")
        await w.app.engine.set_state(None, pid, "live")
        alice = await w.worker("alice")

        task = await h.slash(alice, "task")
        assert task.response is not None and not task.errors
        embed = task.response.embed
        assert embed.title == "Task for project “pets”"
        assert embed.description == "Is it a cat or a dog?"  # no file path shown
        assert embed.image.url == "attachment://image.png"
        assert task.response.file("image.png").data == picture
        aid = task_id(task.response)
        assert task.response.buttons == (
            ("cat", f"pc:a:{aid}:0"),
            ("dog", f"pc:a:{aid}:1"),
            ("Skip", f"pc:s:{aid}"),
            ("Ask a question", f"pc:q:{aid}"),
        )

        w.clock.advance(30)
        click = await h.click(alice, task.response, f"pc:a:{aid}:0")
        assert click.deferred and not click.errors
        answered = h.refresh(task.response)
        assert answered.embed.description == "Is it a cat or a dog?\nYour answer: cat"
        assert answered.embed.image.url == "attachment://image.png"
        assert answered.file("image.png").data == picture and answered.components == ()
        assert click.followups[0].content == "Accepted. +0.05, balance 0.05."
        user = await w.user(alice)
        assert (await w.app.engine.get_user(user.id)).balance == 5


def test_a_url_photo_is_the_embed_image_and_a_long_text_comes_first() -> None:
    renderer = Renderer(Translator())
    by_url = Photo("b.jpg", url="https://example.org/b.jpg")
    buttons = ((Button(Msg.raw("cat"), "a:1:0"),),)
    short = Reply(
        parts=(Msg.raw("title"), Msg.raw("short")), buttons=buttons, photo=by_url, kind="task"
    )
    (out,) = renderer.render(short, "en")
    assert out.embed is not None and out.embed.image.url == "https://example.org/b.jpg"
    assert out.files() == [] and out.rows  # nothing to upload: Discord fetches the URL

    inline = Photo("image.png", data=png())
    long = Reply(
        parts=(Msg.raw("title"), Msg.raw("x" * 5000)), buttons=buttons, photo=inline, kind="task"
    )
    *texts, last = renderer.render(long, "en")
    assert texts and all(t.embed is None and not t.rows for t in texts)
    assert last.embed is not None and last.embed.image.url == "attachment://image.png"
    assert [f.filename for f in last.files()] == ["image.png"] and last.rows
