"""Image tasks through the memory adapter: the photo is on the message, kept by the edit."""

from __future__ import annotations

from pathlib import Path

from polycrowd.engine.io import load_spec_text
from tests.pngs import data_uri, png

from .conftest import World

SPEC = """\
name: pets
type: image
labels: [cat, dog]
instructions: Is it a cat or a dog?
overlap: 1
"""


async def image_project(w: World, items: Path) -> None:
    engine = w.app.engine
    project = await engine.create_project(None, load_spec_text(SPEC, "pets.yaml"))
    await engine.import_items(project.id, items)
    await engine.set_state(None, project.id, "live")


async def test_image_task_carries_its_photo_through_answer_and_edit(
    world: World, tmp_path: Path
) -> None:
    picture, inline = png(seed=6), png(seed=7)
    (tmp_path / "a.png").write_bytes(picture)
    (tmp_path / "items.csv").write_text(f'id,image\na,a.png\nb,"{data_uri(inline)}"\n')
    await image_project(world, tmp_path / "items.csv")
    ann = await world.worker(1)

    (first,) = await world.chat.command(ann, "/task")
    assert first.photo is not None and first.photo.filename == "image.png"
    assert first.photo.data in (picture, inline) and not first.photo.url
    assert "Is it a cat or a dog?" in first.text
    assert "a.png" not in first.text and "base64" not in first.text
    world.clock.advance(10)
    replies = await world.chat.press(ann, first.button("dog"), first.id)
    assert replies[0] is first and first.edited == 1
    assert "Your answer: dog" in first.text and first.photo is not None
    assert "Accepted" in replies[1].text
    second = replies[2]
    assert second.photo is not None and {first.photo.data, second.photo.data} == {picture, inline}
    assert second.reply.kind == "task" and second.button("cat").startswith("a:")


async def test_an_image_gone_since_import_leaves_a_note_and_skip(
    world: World, tmp_path: Path
) -> None:
    (tmp_path / "a.png").write_bytes(png())
    (tmp_path / "items.csv").write_text("id,image\na,a.png\n")
    await image_project(world, tmp_path / "items.csv")
    (tmp_path / "a.png").unlink()
    ann = await world.worker(1)
    (task,) = await world.chat.command(ann, "/task")
    assert task.photo is None
    assert "The image of this task cannot be shown. Please press Skip." in task.text
    assert task.button("Skip").startswith("s:")
