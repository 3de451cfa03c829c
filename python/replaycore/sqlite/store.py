"""The durable content-equality store (SPEC section 4) in one SQLite file.

>>> import tempfile, pathlib
>>> from replaycore.types import Scope
>>> path = pathlib.Path(tempfile.mkdtemp()) / "idem.db"
>>> with SqliteIdempotencyStore(path) as store:
...     scope = Scope("billing", "stripe", "idem_0123456789abcdef")
...     store.put(scope, b"receipt").inserted, store.put(scope, b"receipt").inserted
(True, False)
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from replaycore.sqlite._engine import SqliteFile
from replaycore.store import (
    decode_value,
    encode_value,
    replay_or_conflict,
    scope_key,
)
from replaycore.types import PutOutcome, Scope, StoreStats

__all__ = ["SqliteIdempotencyStore"]

_FIND = (
    "SELECT value_type, data FROM idempotency_entries "
    "WHERE client_id = ? AND adapter_id = ? AND idempotency_key = ?"
)


class SqliteIdempotencyStore(SqliteFile):
    """The content-equality store of SPEC section 4, persisted in a SQLite file.

    Same behaviour as the in-memory :class:`~replaycore.IdempotencyStore`
    (it implements :class:`~replaycore.IdempotencyStoreProtocol`):

    * ``put(scope, value)`` stores a new scope and returns
      ``PutOutcome(True, value)`` (the very object passed in); equal content
      (equal canonical bytes) is a replay returning ``PutOutcome(False, prior)``
      with ``prior`` decoded to the type stored first; different content raises
      :class:`~replaycore.errors.IdempotencyConflict` with both digests and the
      ``differing_fields`` of two Structs. Nothing is ever overwritten.
    * Values are msgspec Structs or ``bytes`` (a ``bytes`` subclass is stored as
      ``bytes``); anything else raises
      :class:`~replaycore.errors.InvalidArgumentType` (argument ``"value"``).
      How types are named and resolved is described in :mod:`replaycore.store`.
    * ``stats()`` counters (``inserts``, ``replays``, ``conflicts``) are stored
      in the file too, so they count the puts of every process and every
      session that ever used it.

    Atomicity: each ``put`` is one ``BEGIN IMMEDIATE`` transaction (read the
    prior entry, decide, write entry and counter), so N threads or N processes
    racing on one scope get exactly one ``inserted=True``. A committed put
    survives a crash of the process (WAL, ``synchronous=FULL``).

    Thread-safe (one connection per thread) and process-safe. Reading a value
    whose class cannot be resolved or that no longer decodes as its class
    raises :class:`~replaycore.errors.StoreUnavailable`; so does any database
    failure. Use it as a context manager, or call :meth:`close`.

    >>> import tempfile, pathlib
    >>> from replaycore.types import Scope
    >>> store = SqliteIdempotencyStore(pathlib.Path(tempfile.mkdtemp()) / "s.db")
    >>> store.put(Scope("c", "a", "k"), b"v").inserted
    True
    >>> store.get(Scope("c", "a", "k"))
    b'v'
    >>> store.close()
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(path)

    def __repr__(self) -> str:
        return f"SqliteIdempotencyStore({str(self._db.path)!r})"

    def put(self, scope: Scope, value: Any) -> PutOutcome[Any]:
        """Store ``value`` under ``scope``, or replay, or raise a conflict.

        Atomic across threads and processes. Returns
        ``PutOutcome(inserted=True, value=value)`` for a new scope and
        ``PutOutcome(inserted=False, value=prior)`` when the stored content is
        equal. Different content raises ``IdempotencyConflict`` (digests and,
        for Structs, ``differing_fields``). When the stored value cannot be
        decoded the transaction is rolled back (no counter moves) and
        ``StoreUnavailable`` is raised.
        """
        key = scope_key(scope)
        name, data = encode_value(value)
        with self._db.write() as db:
            row = db.execute(_FIND, key).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO idempotency_entries VALUES (?, ?, ?, ?, ?)", (*key, name, data)
                )
                self._count(db, "inserts")
                return PutOutcome(True, value)
            prior_data = bytes(row[1])
            # decoded inside the transaction: an unreadable prior rolls back
            prior = decode_value(row[0], prior_data)
            self._count(db, "replays" if prior_data == data else "conflicts")
        return replay_or_conflict(scope, value, data, prior, prior_data)

    @staticmethod
    def _count(db: sqlite3.Connection, name: str) -> None:
        db.execute("UPDATE idempotency_counters SET value = value + 1 WHERE name = ?", (name,))

    def get(self, scope: Scope) -> Any | None:
        """The value stored under ``scope`` (a fresh object of the stored type), or None."""
        key = scope_key(scope)
        with self._db.read() as db:
            row = db.execute(_FIND, key).fetchone()
        return None if row is None else decode_value(row[0], bytes(row[1]))

    def stats(self) -> StoreStats:
        """Counters of every put ever made on this file, read as one snapshot."""
        with self._db.read() as db:
            (entries,) = db.execute("SELECT COUNT(*) FROM idempotency_entries").fetchone()
            counters = dict(db.execute("SELECT name, value FROM idempotency_counters").fetchall())
        return StoreStats(
            entries=entries,
            inserts=counters.get("inserts", 0),
            replays=counters.get("replays", 0),
            conflicts=counters.get("conflicts", 0),
        )

    def __len__(self) -> int:
        with self._db.read() as db:
            (count,) = db.execute("SELECT COUNT(*) FROM idempotency_entries").fetchone()
        return int(count)

    def __contains__(self, scope: object) -> bool:
        if not isinstance(scope, Scope):
            return False
        with self._db.read() as db:
            row = db.execute(_FIND, scope_key(scope)).fetchone()
        return row is not None
