"""The result cache (SPEC sections 5 and 12) in PostgreSQL, shared by every
worker on every machine that points at the same database."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg_pool

from replaycore.cache import (
    DEFAULT_LEASE_S,
    CacheStats,
    _BaseCache,
    _Claim,
    _Fresh,
    _stats,
    _Stored,
)
from replaycore.postgres._engine import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_SCHEMA,
    DEFAULT_TIMEOUT_S,
    Engine,
    PostgresStore,
    lock_key,
)

__all__ = ["PostgresResultCache"]

# The time a statement works with: the caller's clock when it gave one, else
# the database's (the start of the statement, in seconds).
_NOW = "COALESCE(%(now)s::float8, extract(epoch FROM statement_timestamp())::float8)"
_COLUMNS = "intent_id, outcome, ttl_s, stored_at, expires_at, access_count"
# Makes the current transaction's commit asynchronous: it returns without
# waiting for the WAL flush, for transactions that change only statistics.
_ASYNC_COMMIT = "set_config('synchronous_commit', 'off', true) AS async_commit"


def _stored(row: tuple[Any, ...]) -> _Stored:
    return _Stored(bytes(row[0]).decode(), bytes(row[1]), row[2], row[3], row[4], int(row[5]))


class PostgresResultCache(_BaseCache, PostgresStore):
    """The result cache of SPEC section 5 in PostgreSQL.

    Same behaviour as :class:`~replaycore.cache.ResultCache` and
    :class:`~replaycore.sqlite.SqliteResultCache` (one behaviour suite runs
    over all of them): ``get`` / ``put`` / ``cleanup_expired`` / ``stats``,
    and ``execute`` / ``aexecute`` / :func:`~replaycore.cache.idempotent`
    running a step at most once per live key, with in-progress leases that
    lapse after ``lease_s`` seconds so a crashed caller blocks a key only
    that long.

    **Clock.** ``clock=None`` (the default) stamps entries and leases with the
    database server's clock, so workers whose own clocks disagree still agree
    on what has expired; times are then the server's epoch seconds. A
    callable ``clock`` (tests, or a shared clock of your own) is used as in
    the other caches; every process sharing a schema should then use the
    same one.

    **Concurrency.** ``execute`` claims its key with one call of the
    schema's ``cache_claim`` function (one round trip: a hit with its access
    counted, another caller's live lease, or a new lease) and stores the
    outcome with ``cache_complete``; both take a transaction-level advisory
    lock on the key first, so claims and outcomes are serialized per key
    across every process, and N callers racing ``execute`` on one key run
    ``fn`` once. Every operation is one transaction; what returned survives a
    server crash, with one exception: the access count. A hit (of ``get`` or
    ``execute``) writes nothing but the entry's ``access_count``, a
    statistic, so it commits asynchronously (``synchronous_commit = off`` for
    that transaction only) and returns without waiting for the disk: about a
    durable flush faster. A server crash can lose the last fraction of a
    second of access counts; entries, outcomes and leases are never lost.

    ``dsn_or_pool``, ``schema``, ``timeout_s`` and ``max_connections`` are
    those of :class:`~replaycore.postgres.PostgresIdempotencyStore`.

    Raises:
        InvalidArgument / InvalidArgumentType: a bad argument, naming it.
        StoreUnavailable: the server is unreachable or the connection broke,
            with the driver's error as ``__cause__``. The operation may or may
            not have committed; each is safe to retry (an ``execute`` whose
            outcome was stored is a hit when retried; one whose lease was
            taken but whose outcome was not stored finds the key in progress
            until the lease lapses).
    """

    def __init__(
        self,
        dsn_or_pool: str | psycopg_pool.ConnectionPool[Any],
        clock: Callable[[], float] | None = None,
        lease_s: float = DEFAULT_LEASE_S,
        *,
        schema: str = DEFAULT_SCHEMA,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        _BaseCache.__init__(self, clock, lease_s)
        self._engine = engine = Engine(
            dsn_or_pool,
            schema=schema,
            timeout_s=timeout_s,
            max_connections=max_connections,
            owner="result cache",
        )
        results = engine.table("cache_results")
        leases = engine.table("cache_leases")
        # The key's advisory locks of this schema's cache (see schema.py).
        self._lock_space = lock_key(f"{engine.schema}.cache", b"")[0]
        # A live entry with its access counted; an expired one is deleted.
        # Neither needs to wait for the disk (see the class docstring).
        self._read_sql = (
            f"WITH t AS (SELECT {_NOW} AS now, {_ASYNC_COMMIT}), "
            f"hit AS (UPDATE {results} r SET access_count = r.access_count + 1 FROM t "
            f"WHERE r.key = %(key)s AND t.now < r.expires_at RETURNING {_COLUMNS}), "
            f"gone AS (DELETE FROM {results} r USING t "
            "WHERE r.key = %(key)s AND t.now >= r.expires_at) "
            "SELECT * FROM hit"
        )
        self._claim_sql = (
            f"SELECT * FROM {engine.table('cache_claim')}"
            "(%(lock)s, %(key)s, %(token)s, %(now)s, %(lease)s)"
        )
        self._complete_sql = (
            f"SELECT FROM {engine.table('cache_complete')}(%(lock)s, %(key)s, %(token)s, "
            "%(now)s, %(intent_id)s, %(outcome)s, %(ttl_s)s, %(access_count)s)"
        )
        # Store or replace; xmax = 0 tells a fresh insert from a replacement.
        self._write_sql = (
            f"WITH t AS (SELECT {_NOW} AS now) "
            f"INSERT INTO {results} (key, {_COLUMNS}) "
            "SELECT %(key)s, %(intent_id)s, %(outcome)s, %(ttl_s)s, t.now, "
            "t.now + %(ttl_s)s, %(access_count)s FROM t "
            "ON CONFLICT (key) DO UPDATE SET intent_id = EXCLUDED.intent_id, "
            "outcome = EXCLUDED.outcome, ttl_s = EXCLUDED.ttl_s, "
            "stored_at = EXCLUDED.stored_at, expires_at = EXCLUDED.expires_at, "
            "access_count = EXCLUDED.access_count "
            f"RETURNING (xmax = 0)"
        )
        self._cleanup_sql = (
            f"WITH t AS (SELECT {_NOW} AS now), "
            f"gone AS (DELETE FROM {results} r USING t WHERE r.expires_at <= t.now RETURNING 1), "
            f"lapsed AS (DELETE FROM {leases} l USING t WHERE l.expires_at <= t.now) "
            "SELECT count(*) FROM gone"
        )
        self._stats_sql = (
            f"WITH t AS (SELECT {_NOW} AS now) "
            "SELECT count(*), count(*) FILTER (WHERE r.expires_at <= t.now), "
            "COALESCE(sum(r.access_count), 0), COALESCE(sum(r.ttl_s), 0.0) "
            f"FROM {results} r, t"
        )
        self._len_sql = f"SELECT count(*) FROM {results}"

    def __repr__(self) -> str:
        return (
            f"PostgresResultCache({self._engine.where!r}, schema={self.schema!r}, "
            f"lease_s={self._lease_s})"
        )

    def __len__(self) -> int:
        ((count,),) = self._engine.rows(self._len_sql)
        return int(count)

    def _read(self, key: str, now: float | None) -> _Stored | None:
        rows = self._engine.rows(self._read_sql, {"key": key.encode(), "now": now})
        return _stored(rows[0]) if rows else None

    def _write(self, key: str, fresh: _Fresh, now: float | None) -> bool:
        rows = self._engine.rows(self._write_sql, _params(key.encode(), fresh, now))
        return bool(rows[0][0])

    def _claim(self, key: str, token: str, now: float | None) -> _Claim:
        params = {
            "lock": self._lock_space,
            "key": key.encode(),
            "token": token,
            "now": now,
            "lease": self._lease_s,
        }
        ((what, *row, held_until),) = self._engine.rows(self._claim_sql, params)
        if what == "hit":
            return _Claim(hit=_stored(tuple(row)))
        if what == "held":
            return _Claim(lease_expires_at=float(held_until))
        return _Claim(claimed=True)

    def _complete(self, key: str, token: str, fresh: _Fresh | None, now: float | None) -> None:
        raw = key.encode()
        if fresh is None:
            params: dict[str, Any] = {
                "key": raw,
                "now": now,
                "intent_id": None,
                "outcome": None,
                "ttl_s": None,
                "access_count": None,
            }
        else:
            params = _params(raw, fresh, now)
        self._engine.rows(self._complete_sql, params | {"lock": self._lock_space, "token": token})

    def cleanup_expired(self) -> int:
        """Remove every expired entry and lapsed lease; return how many entries."""
        ((count,),) = self._engine.rows(self._cleanup_sql, {"now": self._now()})
        return int(count)

    def stats(self) -> CacheStats:
        """A :class:`CacheStats` snapshot (expired entries not yet removed count)."""
        ((total, expired, accesses, ttl_sum),) = self._engine.rows(
            self._stats_sql, {"now": self._now()}
        )
        return _stats(int(total), int(expired), int(accesses), float(ttl_sum))


def _params(key: bytes, fresh: _Fresh, now: float | None) -> dict[str, Any]:
    return {
        "key": key,
        "now": now,
        "intent_id": fresh.intent_id.encode(),
        "outcome": fresh.outcome,
        "ttl_s": fresh.ttl_s,
        "access_count": fresh.access_count,
    }
