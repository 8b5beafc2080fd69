"""Stores: the protocol (:mod:`.base`) and its implementations (:mod:`.sqlite`).

``from polycrowd.engine.store import Database`` is the SQLite store, as before.
"""

from polycrowd.engine.store.base import Diagnostics, Session, Store, StoreError, Transaction
from polycrowd.engine.store.sqlite import Database, Row, Tx

__all__ = [
    "Database",
    "Diagnostics",
    "Row",
    "Session",
    "Store",
    "StoreError",
    "Transaction",
    "Tx",
]
