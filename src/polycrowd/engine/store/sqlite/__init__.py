"""The SQLite store: the only place (with the PostgreSQL store) where SQL lives."""

from polycrowd.engine.store.sqlite.backup import (
    BackupError,
    BackupInfo,
    backup_file,
    discard_file,
    inspect_backup,
    restore_file,
)
from polycrowd.engine.store.sqlite.database import Database, Row, StoreError, Tx

__all__ = [
    "BackupError",
    "BackupInfo",
    "Database",
    "Row",
    "StoreError",
    "Tx",
    "backup_file",
    "discard_file",
    "inspect_backup",
    "restore_file",
]
