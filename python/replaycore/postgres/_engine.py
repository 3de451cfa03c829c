"""The PostgreSQL plumbing of the durable stores, written once: the pool, the
transactions, the one error mapping, retries and schema versions.

Every PostgreSQL store holds an :class:`Engine`. It

* takes a connection string (and then owns a ``psycopg_pool.ConnectionPool``
  that :meth:`Engine.close` closes) or a pool of the caller's (left open);
* runs each store operation as one transaction -- a single statement, or a
  few statements sent together in pipeline mode so that the transaction costs
  one round trip -- and retries it when the server rolled it back for a
  deadlock or a serialization failure (nothing was committed, so the retry is
  exact);
* hands out only live connections: a pooled connection whose server went
  away while it sat idle (a restart, ``pg_terminate_backend``) has a readable
  socket -- the server's goodbye or the end of the stream -- and is replaced
  before anything is sent on it, so the first operation after the server
  comes back works;
* turns every driver error into :class:`~replaycore.errors.StoreUnavailable`
  with the driver's exception as ``__cause__`` (:func:`_unavailable`, the one
  mapping). An operation that raised it may or may not have committed (the
  connection can break after ``COMMIT`` was sent); every store operation is
  safe to retry.
* creates its schema and tables on first use and migrates them: a version
  row in ``<schema>.replaycore_schema`` counts the migrations applied
  (:mod:`replaycore.postgres.schema`); migrating takes a transaction-scoped
  advisory lock, so many processes starting at once migrate exactly once.
"""

from __future__ import annotations

import random
import re
import select
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from typing import Any, Self, TypeVar

import psycopg
import psycopg_pool
from psycopg import conninfo as _conninfo

from replaycore.errors import InvalidArgument, InvalidArgumentType, StoreUnavailable
from replaycore.postgres.schema import MIGRATIONS

__all__ = [
    "DEFAULT_SCHEMA",
    "Engine",
    "PostgresStore",
    "Statement",
    "check_schema",
    "lock_key",
]

T = TypeVar("T")

#: The schema that holds replaycore's tables unless ``schema=`` says otherwise.
DEFAULT_SCHEMA = "replaycore"
#: How long an operation waits for a connection (and a connection attempt
#: for the server) before raising StoreUnavailable.
DEFAULT_TIMEOUT_S = 10.0
#: Connections a store opens at most when it owns its pool.
DEFAULT_MAX_CONNECTIONS = 8

# A statement and its parameters.
Statement = tuple[str, Sequence[Any] | dict[str, Any] | None]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# PostgreSQL's NAMEDATALEN - 1: longer names are silently truncated, which
# would make two schemas one.
_MAX_IDENTIFIER_BYTES = 63
# Retries of a transaction the server rolled back (deadlock, serialization).
_ROLLBACK_RETRIES = 8

_MIGRATION_LOCK = zlib.crc32(b"replaycore schema migration") - 2**31


def check_schema(schema: Any) -> str:
    """``schema`` as a plain SQL identifier (letters, digits, ``_``; no quoting
    needed, so nothing can be injected through it), else InvalidArgument."""
    if not isinstance(schema, str):
        raise InvalidArgumentType(
            f"schema must be a str, not {type(schema).__name__}", "schema", schema
        )
    if not _IDENTIFIER.fullmatch(schema) or len(schema) > _MAX_IDENTIFIER_BYTES:
        raise InvalidArgument(
            "schema must be a plain identifier (a letter or _, then letters, digits or _, "
            f"at most {_MAX_IDENTIFIER_BYTES} characters), got {schema!r}",
            "schema",
            schema,
        )
    if schema.startswith("pg_"):
        raise InvalidArgument(
            f"schema must not start with 'pg_' (PostgreSQL reserves those names), got {schema!r}",
            "schema",
            schema,
        )
    return schema


def lock_key(namespace: str, key: bytes) -> tuple[int, int]:
    """The two int4 keys of a transaction advisory lock serializing ``key``
    within ``namespace`` (a hash collision only serializes two keys, never
    mixes them)."""
    return (
        zlib.crc32(namespace.encode()) - 2**31,
        zlib.crc32(key) - 2**31,
    )


def _masked(dsn: str) -> str:
    """The DSN as error messages show it: any password replaced by ``***``."""
    try:
        params = _conninfo.conninfo_to_dict(dsn)
    except psycopg.Error:
        return "<unparsable dsn>"
    if "password" in params:
        params["password"] = "***"
    return _conninfo.make_conninfo("", **params)


def _unavailable(what: str, exc: BaseException) -> StoreUnavailable:
    """The one mapping of driver errors: StoreUnavailable with ``exc`` as cause."""
    error = StoreUnavailable(f"PostgreSQL {what} failed: {type(exc).__name__}: {exc}".rstrip())
    error.__cause__ = exc
    return error


def _has_rows(cursor: psycopg.Cursor[Any]) -> bool:
    """Whether the cursor's statement returned rows (an empty set included):
    what ``cursor.description is not None`` says, without building a Column
    object per column on every call (measured: 22 us a call for a cache
    claim's 8 columns, 33 us for an outbox claim's 12; this takes 0.2 us)."""
    result = cursor.pgresult
    return result is not None and (
        result.nfields > 0 or result.status == psycopg.pq.ExecStatus.TUPLES_OK
    )


def _stale(connection: psycopg.Connection[Any]) -> bool:
    """True when an idle connection's socket is readable or gone: the server
    closed it (restart, ``pg_terminate_backend``) or sent something an idle
    connection never expects. Costs one ``poll``, no round trip."""
    if connection.closed or connection.broken:
        return True
    try:
        fd = connection.pgconn.socket
    except psycopg.Error:
        return True
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(0))
    readable, _, _ = select.select([fd], [], [], 0)  # pragma: no cover (Windows)
    return bool(readable)


class Engine:
    """A PostgreSQL database as the stores use it; thread-safe.

    ``dsn_or_pool`` is a libpq connection string (URI or ``key=value``) or a
    ``psycopg_pool.ConnectionPool``. ``owner`` names the store in messages.

    Raises:
        InvalidArgument / InvalidArgumentType: a blank or malformed DSN,
            something that is neither a string nor a pool, a bad ``schema``,
            ``timeout_s`` or ``max_connections``.
        StoreUnavailable: the server cannot be reached, refuses the login, or
            its schema is newer than this release knows.
    """

    def __init__(
        self,
        dsn_or_pool: str | psycopg_pool.ConnectionPool[Any],
        *,
        schema: str = DEFAULT_SCHEMA,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        owner: str = "store",
    ) -> None:
        self.schema = check_schema(schema)
        self.owner = owner
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float):
            raise InvalidArgumentType(
                f"timeout_s must be a number of seconds, not {type(timeout_s).__name__}",
                "timeout_s",
                timeout_s,
            )
        if not 0 < timeout_s < float("inf"):
            raise InvalidArgument(
                f"timeout_s must be a positive number, got {timeout_s!r}", "timeout_s", timeout_s
            )
        if isinstance(max_connections, bool) or not isinstance(max_connections, int):
            raise InvalidArgumentType(
                f"max_connections must be an int, not {type(max_connections).__name__}",
                "max_connections",
                max_connections,
            )
        if max_connections < 1:
            raise InvalidArgument(
                f"max_connections must be at least 1, got {max_connections}",
                "max_connections",
                max_connections,
            )
        self._timeout_s = float(timeout_s)
        self._closed = False
        self._lock = threading.Lock()
        if isinstance(dsn_or_pool, psycopg_pool.ConnectionPool):
            self._pool = dsn_or_pool
            self._owns_pool = False
            self.where = f"pool {dsn_or_pool.name!r}"
        elif isinstance(dsn_or_pool, str):
            self._pool = self._own_pool(dsn_or_pool, max_connections)
            self._owns_pool = True
        else:
            raise InvalidArgumentType(
                "dsn must be a connection string or a psycopg_pool.ConnectionPool, not "
                f"{type(dsn_or_pool).__name__}",
                "dsn",
                dsn_or_pool,
            )
        try:
            self.run(self._migrate)
        except BaseException:
            self.close()
            raise

    def _own_pool(self, dsn: str, max_connections: int) -> psycopg_pool.ConnectionPool[Any]:
        if not dsn.strip():
            raise InvalidArgument("dsn must not be blank", "dsn", dsn)
        try:
            params = _conninfo.conninfo_to_dict(dsn)
        except psycopg.ProgrammingError as exc:
            raise InvalidArgument(
                f"dsn is not a valid connection string: {exc}", "dsn", dsn
            ) from None
        for name, value in params.items():
            # libpq reads a blank value as "the default", which hides a typo
            # (host= without its host) behind a connection to somewhere else.
            if not str(value).strip():
                raise InvalidArgument(f"dsn gives {name} an empty value", "dsn", dsn)
        ports = str(params.get("port", "5432")).split(",")
        if not all(port.strip().isdigit() and 0 < int(port) < 65536 for port in ports):
            raise InvalidArgument(f"dsn port must be a number, got {params['port']!r}", "dsn", dsn)
        self.where = _masked(dsn)
        kwargs: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in params:
            # libpq's minimum is 2 s; without it an unreachable host hangs.
            kwargs["connect_timeout"] = max(2, round(self._timeout_s))
        # One direct attempt first, so a refused login or a server that is
        # down is reported at once with its own error, not after a pool timeout.
        try:
            psycopg.connect(dsn, **kwargs).close()
        except psycopg.Error as exc:
            raise _unavailable(f"connection to {self.where} (argument dsn)", exc) from exc
        return psycopg_pool.ConnectionPool(
            dsn,
            min_size=1,
            max_size=max_connections,
            kwargs=kwargs,
            open=True,
            timeout=self._timeout_s,
            # A failed reconnection is retried with a growing backoff until this
            # runs out, and a caller cannot start a fresh attempt meanwhile: kept
            # as short as a caller's wait, the first call after the server is
            # back connects at once instead of waiting for the next retry.
            reconnect_timeout=self._timeout_s,
            name=f"replaycore-{self.owner}",
        )

    # -- connections and transactions -------------------------------------------

    def _attempt(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run ``work`` on one live pooled connection (stale ones are replaced)."""
        if self._closed:
            raise StoreUnavailable(f"the {self.owner} on {self.where} is closed")
        for _ in range(self._pool.max_size + 1):
            with self._pool.connection() as connection:
                if _stale(connection):
                    connection.close()  # the pool discards it and opens another
                    continue
                return work(connection)
        raise StoreUnavailable(f"no live connection to {self.where}")

    def run(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run ``work(connection)`` inside one transaction, retrying it when the
        server rolled it back (deadlock, serialization failure), and map every
        driver error to StoreUnavailable. ``work`` must have no effects but its
        statements, since it may run more than once."""

        def transaction(connection: psycopg.Connection[Any]) -> T:
            with connection.transaction():
                return work(connection)

        return self._retrying(transaction)

    def _retrying(self, attempt: Callable[[psycopg.Connection[Any]], T]) -> T:
        for retry in range(_ROLLBACK_RETRIES + 1):
            try:
                return self._attempt(attempt)
            except psycopg.errors.TransactionRollback as exc:
                if retry == _ROLLBACK_RETRIES:
                    raise _unavailable(f"{self.owner} transaction on {self.where}", exc) from exc
                time.sleep(random.uniform(0, 0.002 * 2**retry))
            except psycopg_pool.PoolClosed as exc:
                raise StoreUnavailable(f"the {self.owner} on {self.where} is closed") from exc
            except psycopg.Error as exc:
                raise _unavailable(f"{self.owner} operation on {self.where}", exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def statements(
        self, batch: Sequence[Statement], *, binary: bool = False
    ) -> list[list[tuple[Any, ...]]]:
        """Run the statements in order as one transaction sent in one round trip
        (pipeline mode) and return each one's rows. A single statement runs on
        its own (an autocommit statement is its own transaction). ``binary``
        asks for results in binary format (``bytea`` arrives as raw bytes, not
        hex text)."""

        def attempt(connection: psycopg.Connection[Any]) -> list[list[tuple[Any, ...]]]:
            if len(batch) == 1 and connection.autocommit:
                sql, params = batch[0]
                cursor = connection.execute(sql, params, binary=binary)
                return [cursor.fetchall() if _has_rows(cursor) else []]
            cursors = []
            with connection.pipeline(), connection.transaction():
                for sql, params in batch:
                    cursors.append(connection.execute(sql, params, binary=binary))
            return [c.fetchall() if _has_rows(c) else [] for c in cursors]

        return self._retrying(attempt)

    def rows(
        self,
        sql: str,
        params: Sequence[Any] | dict[str, Any] | None = None,
        *,
        binary: bool = False,
    ) -> list[Any]:
        """The rows of one statement, run as its own transaction."""
        return self.statements([(sql, params)], binary=binary)[0]

    # -- schema ----------------------------------------------------------------

    def table(self, name: str) -> str:
        """``name`` qualified with this engine's schema, for SQL text."""
        return f'"{self.schema}".{name}'

    def _migrate(self, connection: psycopg.Connection[Any]) -> None:
        version_table = self.table("replaycore_schema")
        if self._version(connection, version_table) == len(MIGRATIONS):
            return
        # Serialize migrations of every schema of this database; the version is
        # read again under the lock, so the loser of a race finds it done.
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
        connection.execute(
            f"CREATE TABLE IF NOT EXISTS {version_table} ("
            "only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row), "
            "version integer NOT NULL)"
        )
        connection.execute(
            f"INSERT INTO {version_table} (version) VALUES (0) ON CONFLICT DO NOTHING"
        )
        version = self._version(connection, version_table)
        for number in range(version, len(MIGRATIONS)):
            for statement in MIGRATIONS[number]:
                connection.execute(statement.replace("{schema}", f'"{self.schema}"').encode())
            connection.execute(f"UPDATE {version_table} SET version = %s", (number + 1,))

    def _version(self, connection: psycopg.Connection[Any], version_table: str) -> int:
        (exists,) = connection.execute(
            "SELECT to_regclass(%s) IS NOT NULL", (version_table,)
        ).fetchone() or (False,)
        if not exists:
            return 0
        row = connection.execute(f"SELECT version FROM {version_table}").fetchone()
        version = 0 if row is None else int(row[0])
        if version > len(MIGRATIONS):
            raise StoreUnavailable(
                f"schema {self.schema!r} on {self.where} has version {version}, newer than the "
                f"{len(MIGRATIONS)} this replaycore release knows; upgrade replaycore"
            )
        return version

    @property
    def schema_version(self) -> int:
        """How many migrations the schema has had."""
        return self.run(lambda c: self._version(c, self.table("replaycore_schema")))

    def close(self) -> None:
        """Close the pool if this engine owns it; later operations raise
        StoreUnavailable. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._owns_pool and hasattr(self, "_pool"):
            self._pool.close()


class PostgresStore:
    """Base of the PostgreSQL stores: the engine, ``schema``, ``close()`` and
    use as a context manager (closing on exit).

    A store is thread-safe (its threads share the pool). Open one per process,
    after any ``fork``: a pooled connection must not be shared by two processes.
    """

    _engine: Engine

    @property
    def schema(self) -> str:
        """The PostgreSQL schema holding this store's tables."""
        return self._engine.schema

    def close(self) -> None:
        """Close the pool this store owns (a pool passed in stays open);
        later calls raise StoreUnavailable. Idempotent."""
        self._engine.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
