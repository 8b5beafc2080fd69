"""Image references of image projects: accepted forms, refusals, and what import stores."""

from __future__ import annotations

from pathlib import Path

import pytest

from polycrowd.engine import images
from polycrowd.engine.core import Engine
from polycrowd.engine.io import InputError, ItemsError, ProjectSpec, read_items
from polycrowd.engine.types import TaskType
from tests.pngs import data_uri, png

LANGS, LABELS = ("en",), ("cat", "dog")


def rows(source: Path | bytes, name: str = "") -> list[tuple[str, str]]:
    out = []
    for chunk in read_items(source, LANGS, LABELS, name=name, image_items=True):
        out += [(r.external_id, r.content) for r in chunk]
    return out


def bad_rows(source: Path | bytes, name: str = "") -> list[str]:
    with pytest.raises(ItemsError) as info:
        rows(source, name)
    return [str(e) for e in info.value.errors]


def test_a_path_relative_to_the_items_file_a_url_and_a_data_uri_are_accepted(
    tmp_path: Path,
) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "one.png").write_bytes(png(seed=1))
    inline = data_uri(png(seed=2))
    items = tmp_path / "items.csv"
    items.write_text(
        f'id,image\na,img/one.png\nb,https://example.org/cats/b.jpg?size=2\nc,"{inline}"\n'
    )
    assert rows(items) == [
        ("a", str((tmp_path / "img" / "one.png").resolve())),  # stored absolute
        ("b", "https://example.org/cats/b.jpg?size=2"),
        ("c", inline),
    ]
    loaded = images.load(str(tmp_path / "img" / "one.png"))
    assert loaded.data == png(seed=1) and loaded.filename == "image.png" and not loaded.url
    assert images.load(inline).data == png(seed=2)
    by_url = images.load("https://example.org/cats/b.jpg?size=2")
    assert by_url.url.startswith("https://") and by_url.filename == "b.jpg" and not by_url.data


def test_bad_references_are_refused_one_line_each_and_nothing_is_imported(
    tmp_path: Path,
) -> None:
    (tmp_path / "notes.txt").write_text("not a picture")
    (tmp_path / "ok.png").write_bytes(png())
    items = tmp_path / "items.jsonl"
    items.write_text(
        "\n".join(
            [
                '{"id": "1", "image": "ok.png"}',
                '{"id": "2", "image": "missing.png"}',
                '{"id": "3", "image": "ftp://example.org/x.png"}',
                '{"id": "4", "image": "notes.txt"}',
                '{"id": "5", "image": "data:image/png;base64,@@@"}',
                '{"id": "6", "image": "data:text/plain;base64,aGk="}',
                '{"id": "7", "image": "https:///no-host.png"}',
                '{"id": "8", "image": "file:///etc/passwd"}',
                '{"id": "9", "image": "' + data_uri(b"GIF8 but not really") + '"}',
            ]
        )
    )
    errors = bad_rows(items)
    assert errors == [
        "line 2: image file not found: missing.png",
        "line 3: unsupported image reference 'ftp:'; use a file path, an http(s) URL or a"
        " data:image/...;base64 URI",
        "line 4: not a PNG, JPEG, GIF or WebP image: notes.txt",
        "line 5: the data: URI is not valid base64",
        "line 6: a data: URI must be data:image/png|jpeg|gif|webp;base64,...; use a file path,"
        " an http(s) URL or a data:image/...;base64 URI",
        "line 7: not a valid image URL: https:///no-host.png",
        "line 8: unsupported image reference 'file:'; use a file path, an http(s) URL or a"
        " data:image/...;base64 URI",
        "line 9: the data: URI does not hold a PNG, JPEG, GIF or WebP image",
    ]
    assert all("\n" not in e for e in errors)


def test_an_upload_cannot_name_files_but_may_use_urls_and_data_uris(tmp_path: Path) -> None:
    (tmp_path / "ok.png").write_bytes(png())
    for ref in ("ok.png", str(tmp_path / "ok.png")):
        (error,) = bad_rows(f"id,image\n1,{ref}\n".encode(), "items.csv")
        assert "an uploaded items file cannot name image files" in error
    inline = data_uri(png())
    upload = f'id,url\n1,http://example.org/a.png\n2,"{inline}"\n'.encode()
    assert rows(upload, "items.csv") == [("1", "http://example.org/a.png"), ("2", inline)]


def test_a_large_data_uri_is_refused_but_a_large_file_is_not(tmp_path: Path) -> None:
    big = png(300, 300, seed=3, noise=True)  # about 90 kB: well over 64 KiB inline
    assert len(data_uri(big)) > images.MAX_DATA_URI_CHARS
    (error,) = bad_rows(f'id,image\n1,"{data_uri(big)}"\n'.encode(), "items.csv")
    assert "longer than 65536 characters" in error
    (tmp_path / "big.png").write_bytes(big)
    (tmp_path / "items.csv").write_text("id,image\n1,big.png\n")
    assert rows(tmp_path / "items.csv") == [("1", str(tmp_path.resolve() / "big.png"))]


def test_choice_projects_keep_their_text_items(tmp_path: Path) -> None:
    items = tmp_path / "items.csv"
    items.write_text("id,text\n1,missing.png\n")
    chunks = list(read_items(items, LANGS, LABELS))
    assert chunks[0][0].content == "missing.png"  # text, not a reference


async def test_engine_import_checks_refs_of_image_projects_only(
    engine: Engine, tmp_path: Path
) -> None:
    spec = ProjectSpec("pets", TaskType.IMAGE, {"en": "Cat or dog?"}, labels=LABELS)
    project = await engine.create_project(None, spec)
    (tmp_path / "a.png").write_bytes(png())
    (tmp_path / "good.csv").write_text("id,image\na,a.png\n")
    (tmp_path / "bad.csv").write_text("id,image\nb,gone.png\n")
    with pytest.raises(InputError, match=r"line 2: image file not found: gone\.png"):
        await engine.import_items(project.id, tmp_path / "bad.csv")
    report = await engine.import_items(project.id, tmp_path / "good.csv")
    assert report.imported == 1
