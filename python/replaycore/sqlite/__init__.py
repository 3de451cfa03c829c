"""The SQLite engine: every durable store of replaycore in one SQLite file.

One file per concern -- :mod:`.store` (SPEC 4), :mod:`.cache` (SPEC 5),
:mod:`.outbox` (SPEC 10) -- and the engine's plumbing, written once:
:mod:`._engine` (connections, ``BEGIN IMMEDIATE`` transactions, the mapping of
every ``sqlite3.Error`` to :class:`~replaycore.errors.StoreUnavailable`) and
:mod:`.schema` (the tables of every store as ordered migrations, versioned
with ``PRAGMA user_version``). One file may hold all three stores.

The concern modules re-export these classes (``replaycore.cache.SqliteResultCache``,
``replaycore.outbox.SqliteOutbox``, ``replaycore.sqlite_store.SqliteIdempotencyStore``).
"""

from __future__ import annotations

from replaycore.sqlite.cache import SqliteResultCache
from replaycore.sqlite.outbox import SqliteOutbox
from replaycore.sqlite.store import SqliteIdempotencyStore

__all__ = ["SqliteIdempotencyStore", "SqliteOutbox", "SqliteResultCache"]
