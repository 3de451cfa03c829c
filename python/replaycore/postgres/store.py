"""The content-equality store (SPEC sections 4 and 12) in PostgreSQL, shared
by every worker on every machine that points at the same database."""

from __future__ import annotations

from typing import Any

import psycopg_pool

from replaycore.postgres._engine import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_SCHEMA,
    DEFAULT_TIMEOUT_S,
    Engine,
    PostgresStore,
)
from replaycore.postgres.schema import COUNTER_SHARDS
from replaycore.store import decode_value, encode_value, replay_or_conflict, scope_key
from replaycore.types import PutOutcome, Scope, StoreStats

__all__ = ["PostgresIdempotencyStore"]


def _key(scope: Any) -> tuple[bytes, bytes, bytes]:
    client, adapter, key = scope_key(scope)
    # Scope refuses lone surrogates, so every part encodes.
    return (client.encode(), adapter.encode(), key.encode())


class PostgresIdempotencyStore(PostgresStore):
    """The content-equality store of SPEC section 4 in PostgreSQL.

    Same behaviour as the in-memory :class:`~replaycore.IdempotencyStore` and
    :class:`~replaycore.sqlite.SqliteIdempotencyStore` (one behaviour suite
    runs over all of them): ``put`` inserts, replays equal content
    (``PutOutcome(False, prior)``, ``prior`` decoded as the type stored
    first) or raises :class:`~replaycore.errors.IdempotencyConflict` with
    both digests and the ``differing_fields``; nothing is ever overwritten.
    Values are msgspec Structs or ``bytes``; how types are kept is described
    in :mod:`replaycore.store`.

    ``dsn_or_pool`` is a connection string (the store then owns a pool of up
    to ``max_connections`` connections, closed by :meth:`close`) or a
    ``psycopg_pool.ConnectionPool`` (left open). Tables live in ``schema``
    (created on first use). ``timeout_s`` bounds the wait for a connection.

    Concurrency: a put is ``INSERT ... ON CONFLICT DO NOTHING``, so any number
    of processes racing on one scope get exactly one ``inserted=True``; the
    others wait for that insert to commit and then replay or conflict. The
    counters of ``stats()`` are kept in the database and count every
    process's puts. A put that returned survives a server crash.

    Raises:
        InvalidArgument / InvalidArgumentType: a bad argument, naming it.
        StoreUnavailable: the server is unreachable or the connection broke
            (with the driver's error as ``__cause__``; the put may or may not
            have committed and is safe to retry: a retry of a committed put is
            a replay), or a stored value cannot be decoded.

    >>> import os
    >>> from replaycore.types import Scope
    >>> with PostgresIdempotencyStore(os.environ["REPLAYCORE_TEST_DSN"]) as store:  # doctest: +SKIP
    ...     store.put(Scope("billing", "stripe", "idem_0123456789abcdef"), b"r").inserted
    True
    """

    def __init__(
        self,
        dsn_or_pool: str | psycopg_pool.ConnectionPool[Any],
        *,
        schema: str = DEFAULT_SCHEMA,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        self._engine = engine = Engine(
            dsn_or_pool,
            schema=schema,
            timeout_s=timeout_s,
            max_connections=max_connections,
            owner="idempotency store",
        )
        entries = engine.table("idempotency_entries")
        counters = engine.table("idempotency_counters")
        shard = f"mod(pg_backend_pid(), {COUNTER_SHARDS})"
        # Insert and count in one statement: the counter row is bumped only
        # when the insert happened.
        self._insert = (
            f"WITH ins AS (INSERT INTO {entries} VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT DO NOTHING RETURNING 1), "
            f"bump AS (UPDATE {counters} SET value = value + 1 "
            f"WHERE name = 'inserts' AND shard = {shard} AND EXISTS (SELECT FROM ins)) "
            "SELECT EXISTS (SELECT FROM ins)"
        )
        self._find = (
            f"SELECT value_type, data FROM {entries} "
            "WHERE client_id = %s AND adapter_id = %s AND idempotency_key = %s"
        )
        self._count = f"UPDATE {counters} SET value = value + 1 WHERE name = %s AND shard = {shard}"
        self._stats = (
            f"SELECT (SELECT count(*) FROM {entries}), name, sum(value) FROM {counters} "
            "GROUP BY name"
        )
        self._len = f"SELECT count(*) FROM {entries}"

    def __repr__(self) -> str:
        return f"PostgresIdempotencyStore({self._engine.where!r}, schema={self.schema!r})"

    def put(self, scope: Scope, value: Any) -> PutOutcome[Any]:
        """Store ``value`` under ``scope``, or replay, or raise a conflict.

        Atomic across processes and machines (see the class docstring). When
        the stored value cannot be decoded no counter moves and
        ``StoreUnavailable`` is raised.
        """
        key = _key(scope)
        name, data = encode_value(value)
        ((inserted,),) = self._engine.rows(self._insert, (*key, name, data))
        if inserted:
            return PutOutcome(True, value)

        def replay(connection: Any) -> tuple[Any, bytes]:
            # The entry exists (the insert found it) and is never changed, so
            # reading it in a second transaction decides the same.
            name_, prior_data = connection.execute(self._find, key).fetchone()
            prior = decode_value(name_, prior_data)  # unreadable: roll back, count nothing
            connection.execute(self._count, ("replays" if prior_data == data else "conflicts",))
            return prior, bytes(prior_data)

        prior, prior_data = self._engine.run(replay)
        return replay_or_conflict(scope, value, data, prior, prior_data)

    def get(self, scope: Scope) -> Any | None:
        """The value stored under ``scope`` (a fresh object of the stored type), or None."""
        rows = self._engine.rows(self._find, _key(scope))
        return None if not rows else decode_value(rows[0][0], rows[0][1])

    def stats(self) -> StoreStats:
        """Counters of every put ever made on this schema, read as one snapshot."""
        rows = self._engine.rows(self._stats)
        counters = {name: int(total) for _, name, total in rows}
        return StoreStats(
            entries=int(rows[0][0]) if rows else 0,
            inserts=counters.get("inserts", 0),
            replays=counters.get("replays", 0),
            conflicts=counters.get("conflicts", 0),
        )

    def __len__(self) -> int:
        ((count,),) = self._engine.rows(self._len)
        return int(count)

    def __contains__(self, scope: object) -> bool:
        if not isinstance(scope, Scope):
            return False
        return bool(self._engine.rows(self._find, _key(scope)))
