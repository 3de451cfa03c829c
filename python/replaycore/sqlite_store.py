"""Where SPEC section 4 places the SQLite store: :class:`SqliteIdempotencyStore`
lives in :mod:`replaycore.sqlite.store` (the SQLite engine's package) and is
importable from here, with the errors it raises."""

from __future__ import annotations

from replaycore.errors import (
    IdempotencyConflict,
    InvalidArgument,
    InvalidArgumentType,
    StoreUnavailable,
)
from replaycore.sqlite.store import SqliteIdempotencyStore

__all__ = [
    "IdempotencyConflict",
    "InvalidArgument",
    "InvalidArgumentType",
    "SqliteIdempotencyStore",
    "StoreUnavailable",
]
