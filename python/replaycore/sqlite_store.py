"""The durable content-equality store (SPEC section 4) in one SQLite file.

:class:`SqliteIdempotencyStore` has exactly the semantics of the in-memory
:class:`~replaycore.IdempotencyStore` (same key + same content is a replay,
same key + different content is an :class:`~replaycore.errors.IdempotencyConflict`
naming the fields that differ), but its entries and counters survive the
process and are shared by every process that opens the same file.

Each entry keeps the value's canonical bytes and the name of its type,
``"module:qualname"`` (``"builtins:bytes"`` for raw bytes). Reading an entry
resolves that name to a class: first through a per-process registry of the
classes this process has stored (so a class defined inside a function works
in the process that defined it), then by importing ``module`` and walking
``qualname``. A name that resolves to nothing usable raises
:class:`~replaycore.errors.StoreUnavailable` saying which type is missing.

>>> import tempfile, pathlib
>>> from replaycore.types import Scope
>>> path = pathlib.Path(tempfile.mkdtemp()) / "idem.db"
>>> with SqliteIdempotencyStore(path) as store:
...     scope = Scope("billing", "stripe", "idem_0123456789abcdef")
...     store.put(scope, b"receipt").inserted, store.put(scope, b"receipt").inserted
(True, False)
"""

from __future__ import annotations

import hashlib
import importlib
import os
import sqlite3
import threading
from typing import Any

import msgspec

from replaycore._sqlite import SqliteFile
from replaycore.errors import (
    IdempotencyConflict,
    InvalidArgument,
    InvalidArgumentType,
    StoreUnavailable,
)
from replaycore.records import decode_canonical, differing_fields, encode_canonical
from replaycore.types import PutOutcome, Scope, StoreStats

__all__ = [
    "IdempotencyConflict",
    "InvalidArgument",
    "InvalidArgumentType",
    "SqliteIdempotencyStore",
    "StoreUnavailable",
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS idempotency_entries (
    client_id TEXT NOT NULL,
    adapter_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    value_type TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (client_id, adapter_id, idempotency_key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idempotency_counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO idempotency_counters (name, value)
    VALUES ('inserts', 0), ('replays', 0), ('conflicts', 0)
"""

_BYTES_TYPE = "builtins:bytes"

# Classes this process has stored, by "module:qualname". Consulted before
# importlib so that classes defined inside functions (qualname "<locals>")
# resolve in the process that defined them; the latest class of a name wins.
_TYPES: dict[str, type] = {"builtins:bytes": bytes}
_TYPES_LOCK = threading.Lock()


def _type_name(kind: type) -> str:
    return f"{kind.__module__}:{kind.__qualname__}"


def _encode(value: Any) -> tuple[str, bytes]:
    """The stored type name of ``value`` and its canonical bytes."""
    if isinstance(value, bytes):
        return _BYTES_TYPE, bytes(value)
    if isinstance(value, msgspec.Struct):
        kind = type(value)
        data = encode_canonical(value)
        name = _type_name(kind)
        with _TYPES_LOCK:
            _TYPES[name] = kind
        return name, data
    raise InvalidArgumentType(
        f"value must be a msgspec Struct or bytes, not {type(value).__name__}", "value", value
    )


def _resolve(name: str) -> type:
    """The class a stored type name stands for, or StoreUnavailable."""
    with _TYPES_LOCK:
        kind = _TYPES.get(name)
    if kind is not None:
        return kind
    module_name, _, qualname = name.partition(":")
    if not module_name or not qualname or "<locals>" in qualname:
        raise StoreUnavailable(
            f"stored value type {name!r} cannot be resolved: it is not importable and was not "
            "stored by this process (define the class at module level to read it elsewhere)"
        )
    try:
        found: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        raise StoreUnavailable(f"stored value type {name!r} cannot be resolved: {exc}") from exc
    if not (isinstance(found, type) and issubclass(found, msgspec.Struct)):
        raise StoreUnavailable(
            f"stored value type {name!r} resolves to {found!r}, which is not a msgspec Struct"
        )
    with _TYPES_LOCK:
        _TYPES.setdefault(name, found)
    return found


def _decode(name: str, data: bytes) -> Any:
    if name == _BYTES_TYPE:
        return bytes(data)
    kind = _resolve(name)
    try:
        return decode_canonical(bytes(data), kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise StoreUnavailable(
            f"stored value no longer decodes as {name!r} (did the class change?): {exc}"
        ) from exc


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _scope_key(scope: Any, argument: str = "scope") -> tuple[str, str, str]:
    if not isinstance(scope, Scope):
        raise InvalidArgumentType(
            f"{argument} must be a Scope, not {type(scope).__name__}", argument, scope
        )
    return (scope.client_id, scope.adapter_id, scope.idempotency_key)


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
    * ``stats()`` counters (``inserts``, ``replays``, ``conflicts``) are stored
      in the file too, so they count the puts of every process and every
      session that ever used it.

    Atomicity: each ``put`` is one ``BEGIN IMMEDIATE`` transaction (read the
    prior entry, decide, write entry and counter), so N threads or N processes
    racing on one scope get exactly one ``inserted=True``. A committed put
    survives a crash of the process (WAL, ``synchronous=FULL``).

    Thread-safe (one connection per thread) and process-safe. Reading a value
    whose class cannot be resolved (see the module docstring) or that no
    longer decodes as its class raises
    :class:`~replaycore.errors.StoreUnavailable`; so does any database failure.
    Use it as a context manager, or call :meth:`close`.

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
        super().__init__(path, _SCHEMA)

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
        key = _scope_key(scope)
        name, data = _encode(value)
        with self._db.write() as db:
            row = db.execute(
                "SELECT value_type, data FROM idempotency_entries "
                "WHERE client_id = ? AND adapter_id = ? AND idempotency_key = ?",
                key,
            ).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO idempotency_entries VALUES (?, ?, ?, ?, ?)",
                    (*key, name, data),
                )
                self._count(db, "inserts")
                return PutOutcome(True, value)
            prior_name, prior_data = row[0], bytes(row[1])
            # decoded inside the transaction: an unreadable prior rolls back
            prior = _decode(prior_name, prior_data)
            self._count(db, "replays" if prior_data == data else "conflicts")
        if prior_data == data:
            return PutOutcome(False, prior)
        raise IdempotencyConflict(
            scope, _digest(prior_data), _digest(data), differing_fields(prior, value)
        )

    @staticmethod
    def _count(db: sqlite3.Connection, name: str) -> None:
        db.execute("UPDATE idempotency_counters SET value = value + 1 WHERE name = ?", (name,))

    def get(self, scope: Scope) -> Any | None:
        """The value stored under ``scope`` (a fresh object of the stored type), or None."""
        key = _scope_key(scope)
        with self._db.read() as db:
            row = db.execute(
                "SELECT value_type, data FROM idempotency_entries "
                "WHERE client_id = ? AND adapter_id = ? AND idempotency_key = ?",
                key,
            ).fetchone()
        return None if row is None else _decode(row[0], bytes(row[1]))

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
            row = db.execute(
                "SELECT 1 FROM idempotency_entries "
                "WHERE client_id = ? AND adapter_id = ? AND idempotency_key = ?",
                _scope_key(scope),
            ).fetchone()
        return row is not None
