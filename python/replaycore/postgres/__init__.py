"""The PostgreSQL engine (SPEC section 12): replaycore's stores in one
database that workers on many machines share.

``pip install "replaycore[postgres]"`` adds the driver (psycopg 3 and its
pool); ``import replaycore`` never imports it. One file per concern --
:mod:`.store` (SPEC 4), :mod:`.cache` (SPEC 5), :mod:`.outbox` (SPEC 10),
:mod:`.journal` (journals and run leases, SPEC 12) -- and the engine's
plumbing, written once: :mod:`._engine` (pool,
transactions, live connections, the mapping of every driver error to
:class:`~replaycore.errors.StoreUnavailable`, retries of rolled-back
transactions) and :mod:`.schema` (the tables as ordered migrations).
"""

from __future__ import annotations

from replaycore.postgres._engine import DEFAULT_SCHEMA
from replaycore.postgres.cache import PostgresResultCache
from replaycore.postgres.journal import PostgresJournal, RunLease
from replaycore.postgres.outbox import PostgresOutbox
from replaycore.postgres.store import PostgresIdempotencyStore

__all__ = [
    "DEFAULT_SCHEMA",
    "PostgresIdempotencyStore",
    "PostgresJournal",
    "PostgresOutbox",
    "PostgresResultCache",
    "RunLease",
]
