"""The SQLite plumbing of the durable stores, written once: connections,
transactions, the one error mapping and schema versions.

Every store opens its file through :class:`Database`: WAL journal mode
(readers never block the writer), ``synchronous=FULL`` (a committed write
survives power loss, not only a process crash), a busy timeout so concurrent
processes wait for each other instead of failing, and one connection per
thread. Writes go through :meth:`Database.write`, a ``BEGIN IMMEDIATE``
transaction: the write lock is taken before anything is read, so a
read-check-write sequence is atomic across threads *and* processes.

Every ``sqlite3.Error`` -- opening, ``BEGIN``, a statement, ``COMMIT`` and
``ROLLBACK`` included -- surfaces as
:class:`~replaycore.errors.StoreUnavailable` with the original error as
``__cause__``, through :func:`_unavailable`, the one place that maps them.

Schema versions: a database's ``PRAGMA user_version`` counts the migrations
applied to it; :class:`Database` applies the missing ones in order, in the
``BEGIN IMMEDIATE`` transaction that also bumps the version, so processes
opening one file at once migrate it exactly once. A file whose version is
newer than this release knows is refused rather than misread.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import Self

from replaycore.errors import InvalidArgumentType, StoreUnavailable
from replaycore.sqlite.schema import MIGRATIONS

__all__ = ["BUSY_TIMEOUT_S", "Database", "SqliteFile"]

#: How long a connection waits for another writer before giving up.
BUSY_TIMEOUT_S = 30.0


@contextmanager
def _unavailable(action: str, path: Path) -> Iterator[None]:
    """Turn a ``sqlite3.Error`` raised inside into StoreUnavailable (the one mapping)."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreUnavailable(f"cannot {action} {path}: {exc}") from exc


class Database:
    """A SQLite database file opened for durable stores.

    ``migrations`` are SQL scripts; script ``i`` (0-based) takes the file from
    ``user_version`` ``i`` to ``i + 1``. They run when this object is created,
    inside one ``BEGIN IMMEDIATE`` transaction. Thread-safe: each thread gets
    its own connection; :meth:`close` closes them all.

    Raises:
        StoreUnavailable: the file cannot be opened or migrated, or its schema
            version is newer than ``len(migrations)``.
    """

    def __init__(self, path: str | os.PathLike[str], migrations: Sequence[str]) -> None:
        self.path = Path(path)
        self._migrations = tuple(migrations)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._closed = False
        self._migrate()

    def _open(self) -> sqlite3.Connection:
        with _unavailable("open", self.path):
            connection = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=FULL")
                connection.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            except sqlite3.Error:
                connection.close()
                raise
        with self._lock:
            self._connections.append(connection)
        return connection

    def _migrate(self) -> None:
        with self.write() as connection:
            (version,) = connection.execute("PRAGMA user_version").fetchone()
            if version > len(self._migrations):
                raise StoreUnavailable(
                    f"{self.path} has schema version {version}, newer than the "
                    f"{len(self._migrations)} this replaycore release knows; upgrade replaycore"
                )
            for number in range(version, len(self._migrations)):
                for statement in self._migrations[number].split(";"):
                    if statement.strip():
                        connection.execute(statement)
                # PRAGMA takes no parameters; the number is an int we computed.
                connection.execute(f"PRAGMA user_version = {number + 1}")

    @property
    def schema_version(self) -> int:
        """The file's ``PRAGMA user_version``: how many migrations it has."""
        with self.read() as connection:
            (version,) = connection.execute("PRAGMA user_version").fetchone()
        return int(version)

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use)."""
        if self._closed:
            raise StoreUnavailable(f"{self.path} is closed")
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = self._open()
        return connection

    def _discard(self, connection: sqlite3.Connection) -> None:
        """Forget a connection whose ROLLBACK failed: the next call opens a fresh one."""
        if getattr(self._local, "connection", None) is connection:
            self._local.connection = None
        with self._lock:
            if connection in self._connections:
                self._connections.remove(connection)
        with suppress(sqlite3.Error):
            connection.close()

    def _rollback(self, connection: sqlite3.Connection) -> None:
        """Roll back if a transaction is open; a failing ROLLBACK discards the
        connection (SQLite has then rolled back, or the connection is unusable)."""
        try:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
        except sqlite3.Error:
            self._discard(connection)

    @contextmanager
    def _transaction(self, begin: str, action: str) -> Iterator[sqlite3.Connection]:
        connection = self.connection()
        with _unavailable(action, self.path):
            connection.execute(begin)
        try:
            with _unavailable(action, self.path):
                yield connection
        except BaseException:
            self._rollback(connection)
            raise
        try:
            with _unavailable(f"commit {action} to", self.path):
                connection.execute("COMMIT")
        except StoreUnavailable:
            self._rollback(connection)
            raise

    def write(self) -> AbstractContextManager[sqlite3.Connection]:
        """A ``BEGIN IMMEDIATE`` transaction: committed on success, rolled back on error.

        A ``sqlite3.Error`` inside the block, at ``BEGIN``, ``COMMIT`` or
        ``ROLLBACK`` surfaces as :class:`StoreUnavailable` (after the
        rollback); other exceptions pass through unchanged.
        """
        return self._transaction("BEGIN IMMEDIATE", "write")

    def read(self) -> AbstractContextManager[sqlite3.Connection]:
        """A read transaction (one consistent snapshot of the database); errors
        as in :meth:`write`."""
        return self._transaction("BEGIN", "read")

    def close(self) -> None:
        """Close every connection this object opened."""
        with self._lock:
            self._closed = True
            for connection in self._connections:
                connection.close()
            self._connections.clear()


class SqliteFile:
    """Base of the stores kept in one SQLite file: opening it (migrated to the
    current schema of every store, so one file may hold several stores),
    ``path``, ``close()`` and use as a context manager (closing on exit)."""

    _db: Database

    def __init__(self, path: str | os.PathLike[str]) -> None:
        if not isinstance(path, str | os.PathLike):
            raise InvalidArgumentType(
                f"path must be a str or os.PathLike, not {type(path).__name__}", "path", path
            )
        self._db = Database(path, MIGRATIONS)

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
