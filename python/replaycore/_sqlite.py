"""SQLite groundwork shared by the durable stores (store, cache, outbox).

Every store opens its database through :class:`Database`: WAL journal mode
(readers never block the writer), ``synchronous=FULL`` (a committed write
survives power loss, not only a process crash), a busy timeout so concurrent
processes wait for each other instead of failing, and one connection per
thread. Writes go through :meth:`Database.write`, a ``BEGIN IMMEDIATE``
transaction: the write lock is taken before anything is read, so a
read-check-write sequence is atomic across threads *and* processes.

SQLite errors surface as :class:`~replaycore.errors.StoreUnavailable` with the
original error as ``__cause__``.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

from replaycore.errors import InvalidArgumentType, StoreUnavailable

__all__ = ["Database", "SqliteFile"]

#: How long a connection waits for another writer before giving up.
BUSY_TIMEOUT_S = 30.0


class Database:
    """A SQLite database file opened for a durable store.

    ``schema`` is a script of ``CREATE ... IF NOT EXISTS`` statements run once
    when the first connection of this object opens. Thread-safe: each thread
    gets its own connection; connections are closed by :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike[str], schema: str) -> None:
        self.path = Path(path)
        self._schema = schema
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._closed = False
        self._ensure_schema()

    def _open(self) -> sqlite3.Connection:
        try:
            connection = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open {self.path}: {exc}") from exc
        with self._lock:
            self._connections.append(connection)
        return connection

    def _ensure_schema(self) -> None:
        with self.write() as connection:
            for statement in self._schema.split(";"):
                if statement.strip():
                    connection.execute(statement)

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use)."""
        if self._closed:
            raise StoreUnavailable(f"{self.path} is closed")
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = self._open()
        return connection

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A ``BEGIN IMMEDIATE`` transaction: committed on success, rolled back on error.

        A ``sqlite3.Error`` raised inside the block surfaces as
        :class:`StoreUnavailable` (after the rollback); other exceptions pass
        through unchanged.
        """
        connection = self.connection()
        try:
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot write {self.path}: {exc}") from exc
        try:
            yield connection
        except BaseException as exc:
            connection.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreUnavailable(f"cannot write {self.path}: {exc}") from exc
            raise
        try:
            connection.execute("COMMIT")
        except sqlite3.Error as exc:
            connection.execute("ROLLBACK")
            raise StoreUnavailable(f"cannot commit to {self.path}: {exc}") from exc

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction (a consistent snapshot of the database); a
        ``sqlite3.Error`` inside it surfaces as :class:`StoreUnavailable`."""
        connection = self.connection()
        try:
            connection.execute("BEGIN")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot read {self.path}: {exc}") from exc
        try:
            yield connection
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot read {self.path}: {exc}") from exc
        finally:
            connection.execute("COMMIT")

    def close(self) -> None:
        """Close every connection this object opened."""
        with self._lock:
            self._closed = True
            for connection in self._connections:
                connection.close()
            self._connections.clear()


class SqliteFile:
    """Base of the stores kept in one SQLite file: opening it, ``path``,
    ``close()`` and use as a context manager (closing on exit)."""

    _db: Database

    def __init__(self, path: str | os.PathLike[str], schema: str) -> None:
        if not isinstance(path, str | os.PathLike):
            raise InvalidArgumentType(
                f"path must be a str or os.PathLike, not {type(path).__name__}", "path", path
            )
        self._db = Database(path, schema)

    @property
    def path(self) -> Path:
        """The database file."""
        return self._db.path

    def close(self) -> None:
        """Close every connection; later calls raise StoreUnavailable. Idempotent."""
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
