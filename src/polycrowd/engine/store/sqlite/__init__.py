"""The SQLite store: the only place (with the PostgreSQL store) where SQL lives."""

from polycrowd.engine.store.sqlite.database import Database, Row, StoreError, Tx, backup_file

__all__ = ["Database", "Row", "StoreError", "Tx", "backup_file"]
