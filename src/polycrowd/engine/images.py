"""Image references: what an ``image`` project's item may point at, checked at import.

An image item's content is exactly one of

* an ``http://`` or ``https://`` URL with a host (the chat platform fetches it; stored as is);
* a ``data:image/<png|jpeg|gif|webp>;base64,...`` URI of at most :data:`MAX_DATA_URI_CHARS`
  characters (stored as is);
* a path to a PNG, JPEG, GIF or WebP file of at most :data:`MAX_IMAGE_BYTES`, relative to the
  items file's folder (or absolute). It is stored as the resolved absolute path and read when
  the task is sent, so the bot must run where the files are. A file uploaded through the chat
  has no folder: it may only use URLs and data URIs (a path would let a requester make the bot
  send any image on the server).

Anything else (another scheme, a missing file, a file that is not an image) is refused with a
one-line reason. The type of every image is taken from its first bytes, never from its name.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

MAX_IMAGE_BYTES = 10_000_000  # Telegram's limit for an uploaded photo
MAX_DATA_URI_CHARS = 65_536  # inline images are for small pictures: they live in the database
MAX_URL_CHARS = 2048

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")  # two letters at least: C:\ is a path
_DATA = re.compile(r"^data:image/(png|jpeg|gif|webp);base64,(.*)$", re.I | re.S)
HINT = "use a file path, an http(s) URL or a data:image/...;base64 URI"


class ImageRefError(ValueError):
    """A bad image reference; the message is one line a requester can act on."""


@dataclass(frozen=True, slots=True)
class Image:
    """An image ready to send: bytes (``data``) or a ``url`` the platform fetches."""

    filename: str
    data: bytes = b""
    url: str = ""


def sniff(head: bytes) -> str | None:
    """The file extension of an image from its first 12 bytes, or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def _decode_data(ref: str) -> bytes:
    match = _DATA.match(ref)
    if match is None:
        raise ImageRefError(f"a data: URI must be data:image/png|jpeg|gif|webp;base64,...; {HINT}")
    try:
        data = base64.b64decode(re.sub(r"\s", "", match.group(2)), validate=True)
    except (binascii.Error, ValueError):
        raise ImageRefError("the data: URI is not valid base64") from None
    if sniff(data[:12]) is None:
        raise ImageRefError("the data: URI does not hold a PNG, JPEG, GIF or WebP image")
    return data


def check_ref(ref: str, base_dir: Path | None) -> str:
    """The reference to store for ``ref``, or :class:`ImageRefError`.

    ``base_dir`` is the items file's folder; None for an upload (no file paths then).
    """
    ref = ref.strip()
    if not ref:
        raise ImageRefError(f"missing image; {HINT}")
    scheme_match = _SCHEME.match(ref)
    scheme = scheme_match.group(1).lower() if scheme_match else ""
    if scheme in ("http", "https"):
        parts = urlsplit(ref)
        if not parts.hostname or any(c.isspace() for c in ref) or len(ref) > MAX_URL_CHARS:
            raise ImageRefError(f"not a valid image URL: {ref[:80]}")
        return ref
    if scheme == "data":
        if len(ref) > MAX_DATA_URI_CHARS:
            raise ImageRefError(
                f"the data: URI is longer than {MAX_DATA_URI_CHARS} characters;"
                " put larger images in files or behind a URL"
            )
        _decode_data(ref)
        return ref
    if scheme:
        raise ImageRefError(f"unsupported image reference '{scheme}:'; {HINT}")
    if base_dir is None:
        raise ImageRefError(
            "an uploaded items file cannot name image files; use an http(s) URL or a data: URI"
        )
    path = Path(ref)
    path = (path if path.is_absolute() else base_dir / path).resolve()
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise ImageRefError(f"not a file: {ref}")
        with path.open("rb") as fh:
            head = fh.read(12)
    except FileNotFoundError:
        raise ImageRefError(f"image file not found: {ref}") from None
    except OSError as exc:
        raise ImageRefError(f"cannot read image file {ref}: {exc.strerror}") from None
    if size > MAX_IMAGE_BYTES:
        raise ImageRefError(f"image file larger than {MAX_IMAGE_BYTES // 1_000_000} MB: {ref}")
    if sniff(head) is None:
        raise ImageRefError(f"not a PNG, JPEG, GIF or WebP image: {ref}")
    return str(path)


def load(ref: str) -> Image:
    """The image a stored reference points at (reads a file: call it in a worker thread).

    Raises :class:`ImageRefError` when it cannot be shown (the file went away since import).
    """
    scheme_match = _SCHEME.match(ref)
    scheme = scheme_match.group(1).lower() if scheme_match else ""
    if scheme in ("http", "https"):
        name = urlsplit(ref).path.rsplit("/", 1)[-1] or "image"
        return Image(filename=name, url=ref)
    if scheme == "data":
        data = _decode_data(ref)
    elif scheme:
        raise ImageRefError(f"unsupported image reference '{scheme}:'")
    else:
        try:
            data = Path(ref).read_bytes()
        except OSError as exc:
            raise ImageRefError(f"cannot read image file {ref}: {exc.strerror}") from None
    kind = sniff(data[:12])
    if kind is None or len(data) > MAX_IMAGE_BYTES:
        raise ImageRefError(f"not a PNG, JPEG, GIF or WebP image of at most 10 MB: {ref[:80]}")
    return Image(filename=f"image.{kind}", data=data)


__all__ = ["MAX_DATA_URI_CHARS", "MAX_IMAGE_BYTES", "Image", "ImageRefError", "check_ref", "load"]
