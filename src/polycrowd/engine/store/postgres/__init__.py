"""The PostgreSQL store (asyncpg): the only place (with the SQLite store) where SQL lives."""

from polycrowd.engine.store.postgres.database import PgDatabase, PgTx, redact_dsn

__all__ = ["PgDatabase", "PgTx", "redact_dsn"]
