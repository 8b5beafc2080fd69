"""The ledger key and the checkpoint file: what authenticates the ledger from outside it.

The key is never stored in the database. It comes from ``POLYCROWD_LEDGER_KEY`` (at least
32 characters; 64 hex digits are read as 32 bytes) or from a key file: by default
``<db>.ledger.key`` beside a SQLite file, or ``$XDG_CONFIG_HOME/polycrowd/`` for a
PostgreSQL database. The file holds 32 random bytes in hex, is created on the first write
with mode 0600 (atomically: written aside, then linked into place, so two processes that
start together end up with the same key), and the key is never logged or printed.

Checkpoints of the chain head are appended to a JSON-lines file (``<db>.checkpoints`` by
default); everything here blocks, so the engine calls it through ``asyncio.to_thread``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from polycrowd.engine.errors import PolycrowdError
from polycrowd.i18n import N_
from polycrowd.settings import Settings

MIN_ENV_KEY = 32


class LedgerKeyError(PolycrowdError):
    """The ledger key is missing, unreadable or unusable."""


def _config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "polycrowd"


def _pg_stem(dsn: str) -> str:
    """A file name for a PostgreSQL database: its name plus a digest of where it lives."""
    parts = urlsplit(dsn)
    where = f"{parts.hostname or ''}:{parts.port or ''}{parts.path}?{parts.query}"
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", parts.path.strip("/") or "postgres")
    return f"{name}-{hashlib.sha256(where.encode()).hexdigest()[:12]}"


@dataclass(frozen=True)
class LedgerKeyring:
    """Where the key and the checkpoints live. ``key_file`` None: an in-memory database,
    whose key lives (randomly) as long as this object."""

    env_key: str = ""
    key_file: Path | None = None
    checkpoint_file: Path | None = None
    _cache: dict[str, bytes] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def for_store(cls, db_path: str, settings: Settings) -> LedgerKeyring:
        key_file = Path(settings.ledger_key_file) if settings.ledger_key_file else None
        checkpoints = Path(settings.checkpoint_file) if settings.checkpoint_file else None
        if db_path.startswith(("postgresql://", "postgres://")):
            stem = _pg_stem(db_path)
            key_file = key_file or _config_dir() / f"{stem}.ledger.key"
            checkpoints = checkpoints or _config_dir() / f"{stem}.checkpoints"
        elif db_path and db_path != ":memory:":
            key_file = key_file or Path(f"{db_path}.ledger.key")
            checkpoints = checkpoints or Path(f"{db_path}.checkpoints")
        return cls(settings.ledger_key, key_file, checkpoints)

    @property
    def where(self) -> str:
        """Where the key comes from, for messages (never the key itself)."""
        if self.env_key:
            return "POLYCROWD_LEDGER_KEY"
        return str(self.key_file) if self.key_file is not None else "memory"

    def cached_key(self) -> bytes | None:
        """The key if it was already read (no I/O)."""
        return self._cache.get("key")

    def key(self, *, create: bool) -> bytes | None:
        """The key; None when there is none and ``create`` is false. Blocking."""
        if "key" in self._cache:
            return self._cache["key"]
        key: bytes | None
        if self.env_key:
            key = _parse_env_key(self.env_key)
        elif self.key_file is None:
            key = secrets.token_bytes(32)
        else:
            key = _read_key_file(self.key_file)
            if key is None and create:
                key = _create_key_file(self.key_file)
        if key is not None:
            self._cache["key"] = key
        return key

    def key_file_exposed(self) -> bool:
        """True when the key file can be read by group or others."""
        if self.env_key or self.key_file is None:
            return False
        try:
            mode = self.key_file.stat().st_mode
        except OSError:
            return False
        return bool(mode & (stat.S_IRWXG | stat.S_IRWXO))

    def copy_to(self, other: LedgerKeyring) -> None:
        """Give ``other`` (a copy of this database) this key file and checkpoints, where it
        has none of its own. Blocking."""
        pairs = ((self.key_file, other.key_file), (self.checkpoint_file, other.checkpoint_file))
        for src, dst in pairs:
            if src is None or dst is None or src == dst or dst.exists() or not src.exists():
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, src.read_bytes())
                os.fsync(fd)
            finally:
                os.close(fd)

    def append_checkpoint(self, record: dict[str, Any]) -> None:
        """Append one checkpoint line and flush it to disk. Blocking."""
        if self.checkpoint_file is None:
            return
        self.checkpoint_file.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n"
        fd = os.open(self.checkpoint_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)

    def latest_checkpoint(self) -> dict[str, Any] | None:
        """The last well-formed line of the checkpoint file; None when there is none."""
        if self.checkpoint_file is None:
            return None
        try:
            text = self.checkpoint_file.read_text("utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise LedgerKeyError(
                N_("cannot read the checkpoint file %(path)s"), path=str(self.checkpoint_file)
            ) from exc
        for line in reversed(text.splitlines()):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                return record
        return None


def _parse_env_key(value: str) -> bytes:
    if re.fullmatch(r"[0-9a-fA-F]{64}", value):
        return bytes.fromhex(value)
    if len(value) < MIN_ENV_KEY:
        raise LedgerKeyError(
            N_("POLYCROWD_LEDGER_KEY is too short: use at least %(length)s characters"),
            length=MIN_ENV_KEY,
        )
    return value.encode("utf-8")


def _read_key_file(path: Path) -> bytes | None:
    try:
        text = path.read_text("ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise LedgerKeyError(
            N_("cannot read the ledger key file %(path)s"), path=str(path)
        ) from exc
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise LedgerKeyError(N_("cannot read the ledger key file %(path)s"), path=str(path))
    return bytes.fromhex(text)


def _create_key_file(path: Path) -> bytes:
    """Write a new key beside ``path`` (0600), then link it into place; if another process
    won the race, its key is the key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (key.hex() + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        existing = _read_key_file(path)
        if existing is None:  # pragma: no cover - removed between link and read
            raise
        key = existing
    finally:
        tmp.unlink(missing_ok=True)
    return key
