"""Tiny real PNG files for tests, built with zlib and struct (no image library needed)."""

from __future__ import annotations

import base64
import random
import struct
import zlib


def _chunk(tag: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(tag + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)


def png(width: int = 8, height: int = 8, seed: int = 0, *, noise: bool = False) -> bytes:
    """A grey-scale ``width`` x ``height`` PNG; ``seed`` changes the pixels (and the bytes);
    ``noise`` makes random pixels (they do not compress: a large file)."""
    rng = random.Random(seed)
    rows = (
        b"\x00"
        + (
            rng.randbytes(width)
            if noise
            else bytes((x * 31 + y * 17 + seed * 7) % 256 for x in range(width))
        )
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + _chunk(b"IEND", b"")
    )


def data_uri(content: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(content).decode('ascii')}"
