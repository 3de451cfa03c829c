"""The PostgreSQL stores' own promises (SPEC section 12), beyond the behaviour suites.

The suites of test_store_backends.py, test_cache.py and test_outbox.py already
run every SPEC 4, 5 and 10 behaviour over PostgreSQL; this module checks what
only a shared database server adds:

* **Clocks.** With ``now=None`` / ``clock=None`` (the defaults) times come
  from the server's clock. This process's own clock is moved a year ahead
  (``skewed_local_clock``) so that a time taken from it cannot pass for the
  server's; leases and expiry are checked with short real sleeps.
* **Failures.** A crash (``pg_ctl stop -m immediate``) loses nothing that
  returned and the same store objects work again at once; while the server is
  down every call raises ``StoreUnavailable`` with the driver's error as
  cause; killed connections (idle or mid-operation) are replaced; bad
  connection strings and schema names are refused before anything is made.
* **Schema.** Tables on first use, the version row, a newer version refused,
  eight processes creating one schema at once, independent schemas, pools the
  caller owns, closing.
* **Processes** (``spawn``, barriers, SIGKILL) and **two hosts** (network
  namespaces, ``pg_hosts``): races on ``put`` and ``execute``, workers
  draining one outbox, a killed worker's claims delivered by another.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import psycopg
import psycopg_pool
import pytest
import replaycore.postgres._engine
from psycopg import sql
from replaycore.cache import CachedResult, Error, InProgress, Success
from replaycore.errors import (
    IdempotencyConflict,
    InvalidArgument,
    InvalidArgumentType,
    OutboxValidationError,
    StoreUnavailable,
)
from replaycore.outbox import OutboxDraft, ScopedOutbox
from replaycore.postgres import (
    DEFAULT_SCHEMA,
    PostgresIdempotencyStore,
    PostgresOutbox,
    PostgresResultCache,
)
from replaycore.postgres.schema import MIGRATIONS
from replaycore.types import PutOutcome, Scope, StoreStats
from support import (
    PROCESS_TIMEOUT,
    SPAWN,
    crash_while_writing,
    race_execute,
    run_processes,
    table,
)

if TYPE_CHECKING:
    from conftest import PostgresHosts
    from pg_server import PostgresServer

#: How long the stores of the failure tests wait for a connection.
TIMEOUT_S = 2
#: How far this process's clock is moved ahead in the clock tests.
#: Every table a schema holds (one list of migrations serves every store).
TABLES = [
    "cache_leases",
    "cache_results",
    "idempotency_counters",
    "idempotency_entries",
    "journal_records",
    "journal_runs",
    "outbox_dedupe_keys",
    "outbox_messages",
    "replaycore_schema",
]
STORES: dict[str, Callable[..., Any]] = {
    "store": PostgresIdempotencyStore,
    "cache": PostgresResultCache,
    "outbox": PostgresOutbox,
}


# -- helpers ------------------------------------------------------------------------------


def server_ms(server: PostgresServer) -> int:
    """The server's clock now, in epoch milliseconds (as the outbox stamps them)."""
    ((ms,),) = server.psql("SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint")
    return int(ms)


def server_s(server: PostgresServer) -> float:
    """The server's clock now, in epoch seconds (as the cache stamps them)."""
    ((seconds,),) = server.psql("SELECT extract(epoch FROM clock_timestamp())::float8")
    return float(seconds)


def namespaces(server: PostgresServer) -> list[str]:
    return [name for (name,) in server.psql("SELECT nspname FROM pg_namespace ORDER BY 1")]


def tables_of(server: PostgresServer, schema: str) -> list[str]:
    rows = server.psql(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY 1",
        [schema],
    )
    return [name for (name,) in rows]


def version_rows(server: PostgresServer, schema: str) -> list[tuple[Any, ...]]:
    return server.psql(sql.SQL("SELECT version FROM {}").format(table(schema, "replaycore_schema")))


def drop_schema(server: PostgresServer, name: str) -> None:
    with contextlib.suppress(psycopg.Error):
        server.psql(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def argument_of(exc: Exception) -> str | None:
    """The argument an argument error names: ``field`` for the outbox's errors."""
    if isinstance(exc, OutboxValidationError):
        return exc.field
    return getattr(exc, "argument", None)


def bad_argument_type(kind: str) -> type[Exception]:
    """What a store of ``kind`` raises for an argument of the wrong type."""
    return OutboxValidationError if kind == "outbox" else InvalidArgumentType


def bad_argument(kind: str) -> type[Exception]:
    """What a store of ``kind`` raises for an argument with a bad value."""
    return OutboxValidationError if kind == "outbox" else InvalidArgument


def assert_unavailable(exc: BaseException | None) -> None:
    """``exc`` is StoreUnavailable caused by a driver error, never a bare psycopg error."""
    assert isinstance(exc, StoreUnavailable), repr(exc)
    assert isinstance(exc.__cause__, psycopg.Error), repr(exc.__cause__)


def closed_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def open_stores(
    dsn: str, schema: str, **kw: Any
) -> tuple[PostgresIdempotencyStore, PostgresResultCache, PostgresOutbox]:
    return (
        PostgresIdempotencyStore(dsn, schema=schema, **kw),
        PostgresResultCache(dsn, schema=schema, **kw),
        PostgresOutbox(dsn, schema=schema, **kw),
    )


@contextlib.contextmanager
def stores(
    dsn: str, schema: str, **kw: Any
) -> Iterator[tuple[PostgresIdempotencyStore, PostgresResultCache, PostgresOutbox]]:
    opened = open_stores(dsn, schema, **kw)
    try:
        yield opened
    finally:
        for store in opened:
            store.close()


class NeverCalled:
    """A step that must not run: counts calls and raises."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> Any:
        self.calls += 1
        raise AssertionError("the step ran although its outcome was cached")


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Start ``fn`` in a thread; the list receives ``("ok", value)`` or ``("err", exc)``."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(("ok", fn()))
        except BaseException as exc:
            out.append(("err", exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


# -- clocks -------------------------------------------------------------------------------


def test_outbox_times_come_from_the_database_clock(
    pg_server, pg_dsn, pg_schema, skewed_local_clock
):
    with PostgresOutbox(pg_dsn, schema=pg_schema) as box:
        before = server_ms(pg_server)
        message = box.enqueue(OutboxDraft("jobs", "sink", {"n": 1}))
        clock = box.database_time_ms()
        after = server_ms(pg_server)
        assert before <= message.created_at == message.updated_at <= clock <= after
        assert (message.status, message.available_at, message.lease_expires_at) == (
            "pending",
            0,
            None,
        )

        before = server_ms(pg_server)
        (claimed,) = box.claim("jobs", "sink", 10, 300, "w1")
        after = server_ms(pg_server)
        assert before <= claimed.updated_at <= after
        assert claimed.created_at == message.created_at
        assert claimed.lease_expires_at == claimed.updated_at + 300
        assert (claimed.status, claimed.attempt_count, claimed.claimed_by) == ("claimed", 1, "w1")

        # The lease holds by the server's clock, then lapses by it.
        assert box.claim("jobs", "sink", 10, 300, "w2") == []
        time.sleep(0.4)
        (again,) = box.claim("jobs", "sink", 10, 300, "w2")
        assert (again.outbox_id, again.attempt_count, again.claimed_by) == (
            message.outbox_id,
            2,
            "w2",
        )
        assert again.updated_at >= claimed.lease_expires_at
        assert again.claim_token != claimed.claim_token
        assert box.ack(message.outbox_id, claimed.claim_token) is False
        assert box.ack(message.outbox_id, again.claim_token) is True
        delivered = box.get(message.outbox_id)
        assert delivered is not None
        assert delivered.status == "delivered"
        assert again.updated_at <= delivered.updated_at <= server_ms(pg_server)


def test_outbox_available_at_and_retry_at_are_on_the_database_clock(
    pg_server, pg_dsn, pg_schema, skewed_local_clock
):
    with PostgresOutbox(pg_dsn, schema=pg_schema) as box:
        later = box.enqueue(
            OutboxDraft("jobs", "sink", "later", available_at=box.database_time_ms() + 300)
        )
        assert box.claim("jobs", "sink", 10, 60_000, "w") == []
        time.sleep(0.4)
        (due,) = box.claim("jobs", "sink", 10, 60_000, "w")
        assert (due.outbox_id, due.attempt_count) == (later.outbox_id, 1)
        # The docstring's recipe: a retry scheduled from the claim's updated_at.
        assert box.nack(due.outbox_id, due.claim_token, "busy", due.updated_at + 300) == "requeued"
        assert box.claim("jobs", "sink", 10, 60_000, "w") == []
        time.sleep(0.4)
        (retried,) = box.claim("jobs", "sink", 10, 60_000, "w")
        assert (retried.outbox_id, retried.attempt_count, retried.last_error) == (
            later.outbox_id,
            2,
            "busy",
        )
        assert retried.available_at == due.updated_at + 300


def test_scoped_outbox_over_postgres_with_now_omitted(
    pg_server, pg_dsn, pg_schema, skewed_local_clock
):
    with PostgresOutbox(pg_dsn, schema=pg_schema) as inner:
        mine, other = ScopedOutbox(inner, "tenant-a"), ScopedOutbox(inner, "tenant-b")
        before = server_ms(pg_server)
        message = mine.enqueue(OutboxDraft("jobs", "sink", {"n": 1}, dedupe_key="k"))
        after = server_ms(pg_server)
        assert (message.lane, message.dedupe_key) == ("jobs", "k")
        assert before <= message.created_at == message.updated_at <= after
        assert mine.enqueue(OutboxDraft("jobs", "sink", "dup", dedupe_key="k")) == message

        assert other.claim("jobs", "sink", 10, 300, "w") == []
        before = server_ms(pg_server)
        (claimed,) = mine.claim("jobs", "sink", 10, 300, "w")
        after = server_ms(pg_server)
        assert claimed.lane == "jobs"
        assert before <= claimed.updated_at <= after
        assert claimed.lease_expires_at == claimed.updated_at + 300
        assert mine.claim("jobs", "sink", 10, 300, "w") == []
        time.sleep(0.4)
        (again,) = mine.claim("jobs", "sink", 10, 300, "w")
        assert (again.outbox_id, again.attempt_count) == (message.outbox_id, 2)

        assert other.ack(again.outbox_id, again.claim_token) is False
        assert other.nack(again.outbox_id, again.claim_token, "x", 0) == "lost_claim"
        retry_at = again.updated_at + 300
        assert mine.nack(again.outbox_id, again.claim_token, "later", retry_at) == "requeued"
        assert mine.claim("jobs", "sink", 10, 300, "w") == []
        time.sleep(0.4)
        (third,) = mine.claim("jobs", "sink", 10, 300, "w")
        assert (third.attempt_count, third.last_error) == (3, "later")
        assert mine.ack_many([(third.outbox_id, third.claim_token)]) == [True]

        assert [(m.outbox_id, m.status, m.lane) for m in mine.list()] == [
            (message.outbox_id, "delivered", "jobs")
        ]
        assert other.list() == []
        stored = inner.get(message.outbox_id)
        assert stored is not None
        assert (stored.lane, stored.dedupe_key) == ("tenant-a:jobs", "tenant-a:k")


def test_cache_times_come_from_the_database_clock(pg_server, pg_dsn, pg_schema, skewed_local_clock):
    with PostgresResultCache(pg_dsn, schema=pg_schema) as cache:
        assert cache.clock is None
        before = server_s(pg_server)
        assert cache.put(CachedResult.success("short", "i", "v", ttl_s=0.3)) is True
        assert cache.put(CachedResult.success("also-short", "i", "v", ttl_s=0.3)) is True
        assert cache.execute("long", lambda: "computed", ttl_s=3600) == Success("computed")
        after = server_s(pg_server)

        hit = cache.get("short")
        assert hit is not None
        assert before <= hit.stored_at <= after
        assert hit.expires_at == hit.stored_at + 0.3
        assert hit.access_count == 1
        long = cache.get("long")
        assert long is not None
        assert before <= long.stored_at <= after
        assert long.expires_at == long.stored_at + 3600

        stats = cache.stats()
        assert (stats.total_keys, stats.expired_keys) == (3, 0)
        time.sleep(0.4)  # the short entries expire by the server's clock
        assert cache.get("short") is None  # and an expired entry is removed on read
        stats = cache.stats()
        assert (stats.total_keys, stats.expired_keys) == (2, 1)
        assert cache.cleanup_expired() == 1
        assert len(cache) == 1
        assert cache.execute("long", NeverCalled()) == Success("computed")


def test_cache_lease_lapses_by_the_database_clock(pg_server, pg_dsn, pg_schema, skewed_local_clock):
    with PostgresResultCache(pg_dsn, schema=pg_schema, lease_s=0.3) as cache:
        entered, release = threading.Event(), threading.Event()

        def slow() -> str:
            entered.set()
            assert release.wait(PROCESS_TIMEOUT)
            return "first"

        before = server_s(pg_server)
        thread, first = in_thread(lambda: cache.execute("k", slow))
        try:
            assert entered.wait(PROCESS_TIMEOUT)
            with pytest.raises(InProgress) as info:
                cache.execute("k", lambda: "second")
            after = server_s(pg_server)
            assert before + 0.3 <= info.value.lease_expires_at <= after + 0.3
            time.sleep(0.4)  # the lease lapses by the server's clock
            assert cache.execute("k", lambda: "second") == Success("second")
        finally:
            release.set()
            thread.join(PROCESS_TIMEOUT)
        # The late caller gets its own outcome; the first completion stays cached.
        assert first == [("ok", Success("first"))]
        entry = cache.get("k")
        assert entry is not None
        assert entry.outcome == Success("second")


def test_explicit_clocks_still_work(pg_dsn, pg_schema):
    with (
        PostgresOutbox(pg_dsn, schema=pg_schema) as box,
        PostgresResultCache(pg_dsn, clock=lambda: 1_000.0, schema=pg_schema) as cache,
    ):
        message = box.enqueue(OutboxDraft("jobs", "sink", 1), now=5)
        assert (message.created_at, message.updated_at) == (5, 5)
        (claimed,) = box.claim("jobs", "sink", 1, 100, "w", now=10)
        assert (claimed.updated_at, claimed.lease_expires_at) == (10, 110)
        assert box.claim("jobs", "sink", 1, 100, "w", now=109) == []
        (again,) = box.claim("jobs", "sink", 1, 100, "w", now=110)
        assert again.attempt_count == 2
        assert cache.put(CachedResult.success("k", "i", "v", ttl_s=60)) is True
        entry = cache.get("k")
        assert entry is not None
        assert (entry.stored_at, entry.expires_at) == (1_000.0, 1_060.0)


# -- failures: crashes and outages ---------------------------------------------------------


def test_a_crash_loses_nothing_that_returned_and_the_same_stores_work_at_once(
    pg_server, pg_dsn, pg_schema
):
    scopes = [Scope("client", "adapter", f"k{i}") for i in range(20)]
    with stores(pg_dsn, pg_schema, timeout_s=TIMEOUT_S) as (store, cache, box):
        for i, scope in enumerate(scopes):
            assert store.put(scope, f"v{i}".encode()).inserted
        for i in range(5):
            assert cache.execute(f"k{i}", lambda i=i: i) == Success(i)
        assert cache.put(CachedResult.error("failed", "i", "ValueError", "boom", 3600)) is True
        messages = box.enqueue_many(
            [OutboxDraft("jobs", "sink", {"n": n}, dedupe_key=f"d{n}") for n in range(10)]
        )
        claimed = box.claim("jobs", "sink", 6, 600_000, "w")
        assert [m.outbox_id for m in claimed] == [m.outbox_id for m in messages[:6]]
        assert box.ack_many([(m.outbox_id, m.claim_token) for m in claimed[:4]]) == [True] * 4

        pg_server.crash()
        pg_server.start()

        # The very first call of each store after the restart works.
        never = NeverCalled()
        assert store.put(scopes[0], b"v0") == PutOutcome(False, b"v0")
        assert cache.execute("k0", never) == Success(0)
        assert box.ack(claimed[4].outbox_id, claimed[4].claim_token) is True

        # Everything that returned before the crash is there.
        assert [store.get(s) for s in scopes] == [f"v{i}".encode() for i in range(20)]
        assert store.stats() == StoreStats(entries=20, inserts=20, replays=1, conflicts=0)
        assert [cache.execute(f"k{i}", never) for i in range(5)] == [Success(i) for i in range(5)]
        assert never.calls == 0
        failed = cache.get("failed")
        assert failed is not None
        assert failed.outcome == Error("ValueError", "boom")
        statuses = ["delivered"] * 5 + ["claimed"] + ["pending"] * 4
        assert [(m.outbox_id, m.status) for m in box.list()] == [
            (m.outbox_id, status) for m, status in zip(messages, statuses, strict=True)
        ]
        assert box.ack(claimed[5].outbox_id, claimed[5].claim_token) is True


def test_a_crash_during_writes_keeps_every_acknowledged_write(pg_server, pg_dsn, pg_schema):
    """Writers in three threads run into a crash: every write that returned
    survives it, and retrying the write that raised is harmless."""
    acked: dict[str, list[int]] = {"put": [], "execute": [], "enqueue": []}
    failed: dict[str, tuple[int, BaseException]] = {}
    with (
        contextlib.ExitStack() as stack,
        stores(pg_dsn, pg_schema, timeout_s=TIMEOUT_S) as (store, cache, box),
    ):
        short_lease = PostgresResultCache(pg_dsn, schema=pg_schema, lease_s=1, timeout_s=TIMEOUT_S)
        stack.callback(short_lease.close)
        ops: dict[str, Callable[[int], Any]] = {
            "put": lambda i: store.put(Scope("c", "a", f"k{i}"), f"v{i}".encode()),
            "execute": lambda i: short_lease.execute(f"k{i}", lambda: i),
            "enqueue": lambda i: box.enqueue(OutboxDraft("jobs", "sink", i, dedupe_key=f"d{i}")),
        }

        def write(kind: str) -> None:
            i = 0
            try:
                while i < 100_000:
                    ops[kind](i)
                    acked[kind].append(i)
                    i += 1
            except BaseException as exc:
                failed[kind] = (i, exc)

        crash_while_writing(pg_server, write, acked, failed, 50)
        assert sorted(failed) == sorted(ops)
        for kind, (_, exc) in failed.items():
            assert_unavailable(exc)
            assert acked[kind] == list(range(len(acked[kind])))

        never = NeverCalled()
        for i in acked["put"]:
            assert store.get(Scope("c", "a", f"k{i}")) == f"v{i}".encode()
        for i in acked["execute"]:
            assert cache.execute(f"k{i}", never) == Success(i)
        assert never.calls == 0
        dedupe_keys = Counter(m.dedupe_key for m in box.list(limit=200_000))
        for i in acked["enqueue"]:
            assert dedupe_keys[f"d{i}"] == 1

        # A retry of the write that raised is harmless, whether or not it committed.
        i = failed["put"][0]
        assert store.put(Scope("c", "a", f"k{i}"), f"v{i}".encode()).value == f"v{i}".encode()
        assert store.stats().entries == len(acked["put"]) + 1
        i = failed["execute"][0]
        assert short_lease.execute(f"k{i}", lambda: i, wait=True) == Success(i)
        assert len(cache) == len(acked["execute"]) + 1
        i = failed["enqueue"][0]
        retried = box.enqueue(OutboxDraft("jobs", "sink", i, dedupe_key=f"d{i}"))
        assert (retried.dedupe_key, retried.payload) == (f"d{i}", i)
        assert len(box.list(limit=200_000)) == len(acked["enqueue"]) + 1


def _wal_syncs(dsn: str, gone: set[int]) -> int:
    """How many times the server has flushed its WAL to disk so far, once the
    backends ``gone`` (of a closed store) have exited: a backend reports its
    counts when it exits, which can be after its client has closed."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            (alive,) = connection.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (list(gone),)
            ).fetchone() or (0,)
            if not alive:
                break
            time.sleep(0.01)
        connection.execute("SELECT pg_stat_clear_snapshot()")
        row = connection.execute("SELECT wal_sync FROM pg_stat_wal").fetchone()
    assert row is not None
    return int(row[0])


def _backends(cache: PostgresResultCache) -> set[int]:
    """The backend pid of every connection ``cache``'s pool holds now."""
    return {cache._engine.rows("SELECT pg_backend_pid()")[0][0]}


def test_cache_hits_do_not_wait_for_the_disk_and_writes_do(pg_server, pg_dsn, pg_schema):
    """A hit changes only the access count, so it commits asynchronously;
    storing an outcome (and every other write) waits for its WAL flush. The
    server counts its flushes (``pg_stat_wal``); a backend reports its own
    counts when it exits, so each phase closes its cache and waits for that."""
    calls = 200
    with PostgresResultCache(pg_dsn, schema=pg_schema, max_connections=1) as cache:
        for i in range(calls):
            assert cache.execute(f"k{i}", lambda i=i: i) == Success(i)
        gone = _backends(cache)
    before_hits = _wal_syncs(pg_dsn, gone)
    with PostgresResultCache(pg_dsn, schema=pg_schema, max_connections=1) as cache:
        for i in range(calls):
            assert cache.execute(f"k{i}", NeverCalled()) == Success(i)
            assert cache.get(f"k{i}") is not None
        gone = _backends(cache)
    after_hits = _wal_syncs(pg_dsn, gone)
    with PostgresResultCache(pg_dsn, schema=pg_schema, max_connections=1) as cache:
        for i in range(calls):
            assert cache.put(CachedResult.success(f"p{i}", "i", i, ttl_s=3600)) is True
        gone = _backends(cache)
    after_puts = _wal_syncs(pg_dsn, gone)

    # Every durable write flushed (one client: no commit shares a flush) ...
    assert after_puts - after_hits >= calls
    # ... while 400 hits needed at most the WAL writer's periodic flushes.
    assert after_hits - before_hits < calls // 4
    with PostgresResultCache(pg_dsn, schema=pg_schema) as cache:
        assert [cache.get(f"k{i}").access_count for i in range(3)] == [3, 3, 3]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "outage_s",
    # One call of each kind while the server is down; then an outage of about
    # ten seconds (a restart, a failover) with calls all along.
    [0.0, 9.0],
    ids=["brief-outage", "ten-second-outage"],
)
def test_calls_while_the_server_is_down_raise_store_unavailable_and_work_once_it_is_back(
    outage_s, pg_server, pg_dsn, pg_schema
):
    scope = Scope("client", "adapter", "k")
    with stores(pg_dsn, pg_schema, timeout_s=TIMEOUT_S) as (store, cache, box):
        assert store.put(scope, b"v").inserted
        assert cache.put(CachedResult.success("k", "i", "cached", ttl_s=3600)) is True
        message = box.enqueue(OutboxDraft("jobs", "sink", 1, dedupe_key="d"))
        never = NeverCalled()
        while_down: dict[str, Callable[[], Any]] = {
            "put": lambda: store.put(scope, b"v"),
            "get": lambda: store.get(scope),
            "stats": store.stats,
            "execute": lambda: cache.execute("k2", never),
            "cache get": lambda: cache.get("k"),
            "enqueue": lambda: box.enqueue(OutboxDraft("jobs", "sink", 2, dedupe_key="d2")),
            "claim": lambda: box.claim("jobs", "sink", 10, 60_000, "w"),
            "ack": lambda: box.ack(message.outbox_id, "0" * 32),
        }
        once_back: dict[str, Callable[[], Any]] = {
            "store": lambda: store.put(scope, b"v"),
            "cache": lambda: cache.execute("k", never),
            "outbox": lambda: [m.outbox_id for m in box.claim("jobs", "sink", 10, 60_000, "w")],
        }
        down_results: dict[str, list[tuple[float, BaseException | None]]] = {
            name: [] for name in while_down
        }

        def call_while_down(name: str, until: float) -> None:
            while True:  # at least once, then until the outage ends
                started = time.monotonic()
                try:
                    while_down[name]()
                except BaseException as exc:
                    down_results[name].append((time.monotonic() - started, exc))
                else:
                    down_results[name].append((time.monotonic() - started, None))
                if time.monotonic() >= until:
                    return

        pg_server.crash()
        try:
            until = time.monotonic() + outage_s
            threads = [
                threading.Thread(target=call_while_down, args=(name, until), daemon=True)
                for name in while_down
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(outage_s + PROCESS_TIMEOUT)
        finally:
            pg_server.start()
        # The first call of each store once the server is back, all at once.
        first_calls = {kind: in_thread(call) for kind, call in once_back.items()}
        for thread, _ in first_calls.values():
            thread.join(PROCESS_TIMEOUT)

        for name, results in down_results.items():
            assert results, name
            for duration, exc in results:
                assert_unavailable(exc)
                assert duration < TIMEOUT_S + 1.5, (name, duration)
        assert never.calls == 0
        assert {kind: out for kind, (_, out) in first_calls.items()} == {
            "store": [("ok", PutOutcome(False, b"v"))],
            "cache": [("ok", Success("cached"))],
            "outbox": [("ok", [message.outbox_id])],
        }
        assert store.stats().entries == 1
        assert [m.dedupe_key for m in box.list()] == ["d"]


def terminate_client_backends(server: PostgresServer) -> int:
    """Kill every other client connection, wait until each backend is gone, return how many."""
    rows = server.psql(
        "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'"
    )
    assert all(killed for _, killed in rows)
    pids = [pid for pid, _ in rows]
    deadline = time.monotonic() + PROCESS_TIMEOUT
    while server.psql("SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s)", [pids]):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return len(pids)


def test_killed_idle_connections_are_replaced(pg_server, pg_dsn, pg_schema):
    with stores(pg_dsn, pg_schema, timeout_s=TIMEOUT_S) as (store, cache, box):
        # Several idle connections in each pool: calls from a few threads at once.
        def busy(n: int) -> None:
            store.put(Scope("c", "a", f"k{n}"), b"v")
            cache.execute(f"k{n}", lambda: n)
            box.enqueue(OutboxDraft("jobs", "sink", n))

        threads = [threading.Thread(target=busy, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(PROCESS_TIMEOUT)
        for round_ in range(2):
            # Killed while idle in the pools (the backends are gone before the next call).
            assert terminate_client_backends(pg_server) >= 3
            assert store.put(Scope("c", "a", "k0"), b"v") == PutOutcome(False, b"v")
            assert cache.execute("k1", NeverCalled()) == Success(1)
            claimed = box.claim("jobs", "sink", 2, 60_000, f"w{round_}")
            assert len(claimed) == 2
            assert box.ack_many([(m.outbox_id, m.claim_token) for m in claimed]) == [True, True]
        assert store.stats() == StoreStats(entries=4, inserts=4, replays=2, conflicts=0)
        assert [m.status for m in box.list()] == ["delivered"] * 4


def blocked_by(server: PostgresServer, blocker_pid: int, count: int) -> list[int]:
    """The pids of the ``count`` backends waiting on ``blocker_pid``'s locks."""
    deadline = time.monotonic() + PROCESS_TIMEOUT
    while True:
        rows = server.psql(
            "SELECT pid FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid)) ORDER BY pid",
            [blocker_pid],
        )
        if len(rows) >= count:
            return [pid for (pid,) in rows]
        assert time.monotonic() < deadline, rows
        time.sleep(0.02)


def test_a_connection_killed_during_an_operation_raises_store_unavailable(
    pg_server, pg_dsn, pg_schema
):
    with stores(pg_dsn, pg_schema, timeout_s=TIMEOUT_S) as (store, cache, box):
        assert cache.put(CachedResult.success("k", "i", "v", ttl_s=3600)) is True
        box.enqueue(OutboxDraft("jobs", "sink", 1))
        (claimed,) = box.claim("jobs", "sink", 1, 600_000, "w")
        with psycopg.connect(pg_dsn) as blocker:
            # One open transaction holding what each store's next call needs.
            blocker.execute(
                sql.SQL("INSERT INTO {} VALUES (%s, %s, %s, 'bytes', %s)").format(
                    table(pg_schema, "idempotency_entries")
                ),
                (b"c", b"a", b"k", b"blocker"),
            )
            blocker.execute(
                sql.SQL("SELECT 1 FROM {} WHERE key = %s FOR UPDATE").format(
                    table(pg_schema, "cache_results")
                ),
                (b"k",),
            )
            blocker.execute(
                sql.SQL("SELECT 1 FROM {} WHERE outbox_id = %s FOR UPDATE").format(
                    table(pg_schema, "outbox_messages")
                ),
                (claimed.outbox_id,),
            )
            calls = {
                "store": in_thread(lambda: store.put(Scope("c", "a", "k"), b"mine")),
                "cache": in_thread(lambda: cache.get("k")),
                "outbox": in_thread(lambda: box.ack(claimed.outbox_id, claimed.claim_token)),
            }
            victims = blocked_by(pg_server, blocker.info.backend_pid, 3)
            killed = pg_server.psql(
                "SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [victims]
            )
            assert killed == [(True,)] * 3
            for thread, _ in calls.values():
                thread.join(PROCESS_TIMEOUT)
            blocker.rollback()
        for kind, (_, out) in calls.items():
            assert len(out) == 1, kind
            what, exc = out[0]
            assert what == "err", (kind, exc)
            assert_unavailable(exc)
            assert isinstance(exc.__cause__, psycopg.errors.AdminShutdown), repr(exc.__cause__)
        # Nothing of the killed calls committed, and the same stores work.
        assert store.put(Scope("c", "a", "k"), b"mine") == PutOutcome(True, b"mine")
        entry = cache.get("k")
        assert entry is not None
        assert entry.access_count == 1
        assert box.ack(claimed.outbox_id, claimed.claim_token) is True


# -- failures: connection strings, schemas, arguments -------------------------------------


@pytest.mark.parametrize("kind", STORES)
def test_a_server_that_cannot_be_reached_is_refused_at_construction(kind, pg_server):
    port = closed_port()
    dsn = f"postgresql://postgres:hunter2@127.0.0.1:{port}/postgres"
    before = namespaces(pg_server)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as info:
        STORES[kind](dsn, schema="never_made", timeout_s=TIMEOUT_S)
    assert time.monotonic() - started < TIMEOUT_S
    assert isinstance(info.value.__cause__, psycopg.OperationalError)
    message = str(info.value)
    assert "host=127.0.0.1" in message
    assert f"port={port}" in message
    assert "hunter2" not in message
    assert "password=***" in message
    assert namespaces(pg_server) == before


@pytest.mark.parametrize("kind", STORES)
@pytest.mark.parametrize(
    ("user", "database", "named"),
    [("nosuchuser", "postgres", "user=nosuchuser"), ("postgres", "nosuchdb", "dbname=nosuchdb")],
)
def test_a_refused_login_is_store_unavailable(kind, user, database, named, pg_server):
    dsn = f"postgresql://{user}@127.0.0.1:{pg_server.port}/{database}"
    with pytest.raises(StoreUnavailable) as info:
        STORES[kind](dsn, timeout_s=TIMEOUT_S)
    assert isinstance(info.value.__cause__, psycopg.OperationalError)
    assert named in str(info.value)


@pytest.mark.parametrize("kind", STORES)
@pytest.mark.parametrize(
    "dsn",
    ["host=", "port=abc", "nonsense", "host=127.0.0.1 port", "postgresql://[bad", "", "  \t\n"],
)
def test_a_malformed_or_blank_dsn_is_an_invalid_argument(kind, dsn, pg_server):
    before = namespaces(pg_server)
    with pytest.raises(bad_argument(kind)) as info:
        STORES[kind](dsn, schema="never_made", timeout_s=TIMEOUT_S)
    assert argument_of(info.value) == "dsn"
    assert namespaces(pg_server) == before


@pytest.mark.parametrize("kind", STORES)
@pytest.mark.parametrize("dsn", [5, None, b"postgresql://postgres@127.0.0.1/postgres", ["dsn"]])
def test_a_dsn_that_is_neither_a_string_nor_a_pool_is_refused(kind, dsn):
    with pytest.raises(bad_argument_type(kind)) as info:
        STORES[kind](dsn)
    assert argument_of(info.value) == "dsn"


BAD_SCHEMAS = [
    "x; DROP TABLE y",
    "Robert'); --",
    'a"b',
    "",
    " ",
    "1abc",
    "a-b",
    "é",
    "a" * 64,
]


def assert_schema_refused(
    kind: str, schema: Any, error: type[Exception], pg_server: PostgresServer, pg_dsn: str
) -> None:
    """Opening a store of ``kind`` on ``schema`` raises ``error`` naming the
    argument, and no schema is made."""
    before = namespaces(pg_server)
    with pytest.raises(error) as info:
        STORES[kind](pg_dsn, schema=schema)
    assert argument_of(info.value) == "schema"
    assert namespaces(pg_server) == before


@pytest.mark.parametrize("kind", STORES)
@pytest.mark.parametrize("schema", BAD_SCHEMAS)
def test_a_bad_schema_name_is_refused_and_nothing_is_made(kind, schema, pg_server, pg_dsn):
    assert_schema_refused(kind, schema, bad_argument(kind), pg_server, pg_dsn)


@pytest.mark.parametrize("kind", STORES)
@pytest.mark.parametrize("schema", [5, None, b"replaycore"])
def test_a_schema_that_is_not_a_string_is_refused(kind, schema, pg_server, pg_dsn):
    assert_schema_refused(kind, schema, bad_argument_type(kind), pg_server, pg_dsn)


@pytest.mark.parametrize("kind", STORES)
@pytest.mark.parametrize("schema", ["pg_replaycore", "pg_catalog"])
def test_a_schema_name_postgresql_reserves_is_an_invalid_argument(kind, schema, pg_server, pg_dsn):
    """PostgreSQL refuses to create schemas named pg_*: a bad argument, not an outage."""
    assert_schema_refused(kind, schema, bad_argument(kind), pg_server, pg_dsn)


@pytest.mark.parametrize("kind", STORES)
@pytest.mark.parametrize(
    ("argument", "value", "wrong_type"),
    [
        ("timeout_s", 0, False),
        ("timeout_s", -1.0, False),
        ("timeout_s", math.inf, False),
        ("timeout_s", math.nan, False),
        ("timeout_s", "2", True),
        ("timeout_s", True, True),
        ("max_connections", 0, False),
        ("max_connections", 1.5, True),
        ("max_connections", True, True),
    ],
)
def test_bad_timeouts_and_pool_sizes_are_refused(kind, argument, value, wrong_type, pg_dsn):
    expected = bad_argument_type(kind) if wrong_type else bad_argument(kind)
    with pytest.raises(expected) as info:
        STORES[kind](pg_dsn, schema="never_made", **{argument: value})
    assert argument_of(info.value) == argument


@pytest.mark.parametrize(
    ("kind", "keyword"),
    [("store", "clock"), ("store", "now"), ("cache", "now"), ("outbox", "clock"), ("outbox", "x")],
)
def test_unknown_keyword_arguments_are_a_type_error(kind, keyword, pg_server, pg_dsn):
    before = namespaces(pg_server)
    with pytest.raises(TypeError, match=keyword):
        STORES[kind](pg_dsn, schema="never_made", **{keyword: None})
    assert namespaces(pg_server) == before


def test_names_postgresql_must_quote_are_kept_exactly(pg_server, pg_dsn):
    suffix = uuid.uuid4().hex[:8]
    names = [f"Mixed_{suffix}", f"mixed_{suffix}", f"t{suffix}" + "x" * (63 - 9), "select"]
    assert len(names[2]) == 63
    assert "select" not in namespaces(pg_server)
    try:
        for i, name in enumerate(names):
            with PostgresIdempotencyStore(pg_dsn, schema=name) as store:
                assert store.schema == name
                assert store.put(Scope("c", "a", "k"), f"{i}".encode()).inserted
            assert tables_of(pg_server, name) == TABLES
        # Mixed_ and mixed_ are two schemas: each kept its own value.
        for i, name in enumerate(names):
            with PostgresIdempotencyStore(pg_dsn, schema=name) as store:
                assert store.get(Scope("c", "a", "k")) == f"{i}".encode()
    finally:
        for name in names:
            drop_schema(pg_server, name)


def test_a_payload_that_cannot_be_encoded_writes_nothing(pg_server, pg_dsn, pg_schema):
    with PostgresOutbox(pg_dsn, schema=pg_schema) as box:
        spoiled = OutboxDraft("jobs", "sink", [1])
        spoiled.payload.append(object())  # after the draft checked it
        too_big = OutboxDraft("jobs", "sink", [1])
        too_big.payload.append(2**64)
        good = OutboxDraft("jobs", "sink", "fine", dedupe_key="good")
        for bad in (spoiled, too_big):
            with pytest.raises(OutboxValidationError) as info:
                box.enqueue(bad)
            assert info.value.field == "payload"
            with pytest.raises(OutboxValidationError) as info:
                box.enqueue_many([good, bad])
            assert info.value.field == "payload"
        count = sql.SQL("SELECT count(*) FROM {}").format(table(pg_schema, "outbox_messages"))
        assert pg_server.psql(count) == [(0,)]


# -- schema -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", STORES)
def test_tables_are_made_on_first_use_in_the_given_schema(kind, pg_server, pg_dsn, pg_schema):
    assert pg_schema not in namespaces(pg_server)
    with STORES[kind](pg_dsn, schema=pg_schema) as made:
        assert made.schema == pg_schema
        assert pg_schema in namespaces(pg_server)
        assert tables_of(pg_server, pg_schema) == TABLES
        assert version_rows(pg_server, pg_schema) == [(len(MIGRATIONS),)]
    with STORES[kind](pg_dsn, schema=pg_schema):  # a second open changes nothing
        assert version_rows(pg_server, pg_schema) == [(len(MIGRATIONS),)]


def test_the_default_schema_is_replaycore(pg_server, pg_dsn):
    existed = DEFAULT_SCHEMA in namespaces(pg_server)
    try:
        with PostgresIdempotencyStore(pg_dsn) as store:
            assert (DEFAULT_SCHEMA, store.schema) == ("replaycore", "replaycore")
            assert tables_of(pg_server, "replaycore") == TABLES
    finally:
        if not existed:
            drop_schema(pg_server, DEFAULT_SCHEMA)


@pytest.mark.parametrize("kind", STORES)
def test_a_schema_newer_than_this_release_is_refused(kind, pg_server, pg_dsn, pg_schema):
    PostgresIdempotencyStore(pg_dsn, schema=pg_schema).close()
    newer = len(MIGRATIONS) + 1
    pg_server.psql(
        sql.SQL("UPDATE {} SET version = %s").format(table(pg_schema, "replaycore_schema")),
        [newer],
    )
    with pytest.raises(StoreUnavailable, match="newer") as info:
        STORES[kind](pg_dsn, schema=pg_schema)
    assert f"version {newer}" in str(info.value)
    assert version_rows(pg_server, pg_schema) == [(newer,)]  # left alone
    assert tables_of(pg_server, pg_schema) == TABLES


def test_an_older_schema_is_migrated_and_keeps_its_data(pg_server, pg_dsn, pg_schema):
    with PostgresIdempotencyStore(pg_dsn, schema=pg_schema) as store:
        assert store.put(Scope("c", "a", "k"), b"v").inserted
    pg_server.psql(
        sql.SQL("UPDATE {} SET version = 0").format(table(pg_schema, "replaycore_schema"))
    )
    with PostgresIdempotencyStore(pg_dsn, schema=pg_schema) as store:
        assert version_rows(pg_server, pg_schema) == [(len(MIGRATIONS),)]
        assert store.get(Scope("c", "a", "k")) == b"v"
        assert store.stats() == StoreStats(entries=1, inserts=1, replays=0, conflicts=0)


def _schema_at_version(dsn: str, schema: str, version: int, monkeypatch: Any) -> None:
    """Make ``schema`` as a release whose migrations stopped at ``version``
    did: the engine itself migrates it, knowing only the first ``version``."""
    with monkeypatch.context() as patch:
        patch.setattr(replaycore.postgres._engine, "MIGRATIONS", MIGRATIONS[:version])
        PostgresIdempotencyStore(dsn, schema=schema).close()


def test_a_version_1_outbox_moves_its_dedupe_keys_and_keeps_every_message(
    pg_server, pg_dsn, pg_schema, monkeypatch
):
    """Version 2 moved dedupe keys out of outbox_messages: an outbox written
    by version 1 keeps its messages, their states and claims, and every
    dedupe key it held still returns its message."""
    _schema_at_version(pg_dsn, pg_schema, 1, monkeypatch)
    assert version_rows(pg_server, pg_schema) == [(1,)]
    messages = table(pg_schema, "outbox_messages")
    now = 1_000
    rows = [
        # id, dedupe key, status, claim token, lease expiry
        ("a" * 32, b"k-pending", "pending", None, None),
        ("b" * 32, b"k-claimed", "claimed", "c" * 32, now + 60_000),
        ("d" * 32, b"k-delivered", "delivered", "e" * 32, None),
        ("f" * 32, None, "pending", None, None),
    ]
    for outbox_id, key, status, token, lease in rows:
        pg_server.psql(
            sql.SQL(
                "INSERT INTO {} (outbox_id, lane, target, payload, dedupe_key, status, "
                "available_at, attempt_count, max_attempts, claimed_by, claim_token, "
                "lease_expires_at, created_at, updated_at) "
                "VALUES (%s, 'jobs', 'sink', %s, %s, %s, 0, %s, 5, %s, %s, %s, %s, %s)"
            ).format(messages),
            [
                outbox_id,
                msgspec.msgpack.encode(outbox_id[0]),
                key,
                status,
                0 if status == "pending" else 1,
                None if token is None else b"w1",
                token,
                lease,
                now,
                now,
            ],
        )
    before = pg_server.psql(sql.SQL("SELECT * FROM {} ORDER BY seq").format(messages))
    with PostgresOutbox(pg_dsn, schema=pg_schema) as box:
        assert version_rows(pg_server, pg_schema) == [(len(MIGRATIONS),)]
        assert pg_server.psql(sql.SQL("SELECT * FROM {} ORDER BY seq").format(messages)) == before
        assert tables_of(pg_server, pg_schema) == TABLES
        indexes = pg_server.psql(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = %s ORDER BY 1",
            [pg_schema, "outbox_messages"],
        )
        assert indexes == [("outbox_leases",), ("outbox_messages_pkey",), ("outbox_pending",)]
        for outbox_id, key, *_ in rows:
            if key is not None:
                again = box.enqueue(
                    OutboxDraft("jobs", "sink", "new", dedupe_key=key.decode()), now
                )
                assert (again.outbox_id, again.payload) == (outbox_id, outbox_id[0])
        fresh = box.enqueue(OutboxDraft("jobs", "sink", "new", dedupe_key="k-new"), now)
        assert box.enqueue(OutboxDraft("jobs", "sink", "x", dedupe_key="k-new"), now) == fresh
        assert box.ack("b" * 32, "c" * 32, now + 1) is True
        claimed = box.claim("jobs", "sink", 10, 1_000, "w2", now + 2)
        assert [m.outbox_id for m in claimed] == ["a" * 32, "f" * 32, fresh.outbox_id]
        assert box.ack_many([(m.outbox_id, m.claim_token) for m in claimed], now + 3) == [True] * 3
        assert [m.status for m in box.list()] == ["delivered"] * 5


def _open_at_once(dsn: str, schema: str, kind: str, barrier: Any, results: Any) -> None:
    try:
        barrier.wait(PROCESS_TIMEOUT)
        with STORES[kind](dsn, schema=schema) as made:
            if kind == "store":
                done: Any = made.put(Scope("c", "a", f"k{os.getpid()}"), b"v").inserted
            elif kind == "cache":
                done = made.execute(f"k{os.getpid()}", lambda: True) == Success(True)
            else:
                done = made.enqueue(OutboxDraft("jobs", "sink", os.getpid())).status == "pending"
        results.put((kind, done))
    except BaseException as exc:
        results.put((kind, f"crashed: {exc!r}"))
        raise


def lock_waiters(server: PostgresServer) -> int:
    ((count,),) = server.psql(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
    )
    return int(count)


def test_eight_processes_create_one_schema_at_once(pg_server, pg_dsn, pg_schema):
    """Eight processes open stores on one new schema at the same moment.

    So that they really meet inside the creation, the test holds an
    uncommitted ``CREATE SCHEMA`` of that name until all eight are waiting
    (or 10 s passed), then rolls it back: all of them try to create the
    schema at once, and every one must succeed.
    """
    kinds = [list(STORES)[i % 3] for i in range(8)]
    barrier = SPAWN.Barrier(len(kinds))
    with psycopg.connect(pg_dsn) as holder:
        holder.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(pg_schema)))

        def release_when_all_wait() -> None:
            deadline = time.monotonic() + 10
            while lock_waiters(pg_server) < len(kinds) and time.monotonic() < deadline:
                time.sleep(0.01)
            holder.rollback()

        reports = run_processes(
            _open_at_once,
            [(pg_dsn, pg_schema, k, barrier) for k in kinds],
            while_running=release_when_all_wait,
        )
    assert sorted(reports) == sorted((k, True) for k in kinds)
    assert version_rows(pg_server, pg_schema) == [(len(MIGRATIONS),)]
    assert tables_of(pg_server, pg_schema) == TABLES
    with stores(pg_dsn, pg_schema) as (store, cache, box):
        assert store.stats() == StoreStats(entries=3, inserts=3, replays=0, conflicts=0)
        assert len(cache) == 3
        assert len(box.list()) == 2


def test_two_schemas_on_one_database_are_independent(pg_dsn, pg_schemas):
    first, second = pg_schemas(), pg_schemas()
    scope = Scope("c", "a", "k")
    with stores(pg_dsn, first) as (store1, cache1, box1), stores(pg_dsn, second) as opened:
        store2, cache2, box2 = opened
        assert store1.put(scope, b"one") == PutOutcome(True, b"one")
        assert store2.put(scope, b"two") == PutOutcome(True, b"two")  # no conflict
        assert (store1.get(scope), store2.get(scope)) == (b"one", b"two")
        assert store1.stats() == StoreStats(entries=1, inserts=1, replays=0, conflicts=0)
        assert cache1.execute("k", lambda: 1) == Success(1)
        assert cache2.execute("k", lambda: 2) == Success(2)  # ran: a miss in its own schema
        m1 = box1.enqueue(OutboxDraft("jobs", "sink", 1, dedupe_key="d"))
        m2 = box2.enqueue(OutboxDraft("jobs", "sink", 2, dedupe_key="d"))
        assert m1.outbox_id != m2.outbox_id
        assert [m.outbox_id for m in box1.claim("jobs", "sink", 10, 60_000, "w")] == [m1.outbox_id]
        assert box1.get(m2.outbox_id) is None
        assert [m.status for m in box2.list()] == ["pending"]


@pytest.mark.parametrize("autocommit", [True, False], ids=["autocommit", "transactions"])
def test_a_pool_the_caller_owns_is_used_and_left_open(
    autocommit, pg_server, pg_dsn, pg_schema, caplog
):
    pool = psycopg_pool.ConnectionPool(
        pg_dsn, min_size=1, max_size=4, kwargs={"autocommit": autocommit}, open=True
    )
    try:
        with caplog.at_level(logging.WARNING, logger="psycopg"):
            store, cache, box = open_stores(pool, pg_schema)  # type: ignore[arg-type]
            assert store.put(Scope("c", "a", "k"), b"v").inserted
            assert cache.execute("k", lambda: 1) == Success(1)
            box.enqueue_many([OutboxDraft("jobs", "sink", n) for n in range(3)])
            claimed = box.claim("jobs", "sink", 2, 60_000, "w")
            assert box.ack_many([(m.outbox_id, m.claim_token) for m in claimed]) == [True, True]
            assert store.stats() == StoreStats(entries=1, inserts=1, replays=0, conflicts=0)
        # No connection came back to the pool inside a transaction.
        assert [r.getMessage() for r in caplog.records] == []
        # Every call committed: another connection sees it.
        status = sql.SQL("SELECT status, count(*) FROM {} GROUP BY 1 ORDER BY 1").format(
            table(pg_schema, "outbox_messages")
        )
        assert pg_server.psql(status) == [("delivered", 2), ("pending", 1)]
        count = sql.SQL("SELECT count(*) FROM {}")
        assert pg_server.psql(count.format(table(pg_schema, "idempotency_entries"))) == [(1,)]
        assert pg_server.psql(count.format(table(pg_schema, "cache_results"))) == [(1,)]

        for made in (store, cache, box):
            made.close()
            made.close()  # idempotent
        assert not pool.closed
        with pool.connection() as connection:
            assert connection.execute("SELECT 1").fetchone() == (1,)
        with pytest.raises(StoreUnavailable, match="closed"):
            store.get(Scope("c", "a", "k"))
        with pytest.raises(StoreUnavailable, match="closed"):
            cache.get("k")
        with pytest.raises(StoreUnavailable, match="closed"):
            box.list()

        # Another store on the same pool still works; once the caller closes
        # the pool, it is unavailable.
        with PostgresIdempotencyStore(pool, schema=pg_schema) as again:
            assert again.get(Scope("c", "a", "k")) == b"v"
            pool.close()
            with pytest.raises(StoreUnavailable) as info:
                again.get(Scope("c", "a", "k"))
            assert isinstance(info.value.__cause__, psycopg_pool.PoolClosed)
    finally:
        pool.close()


def connections_named(server: PostgresServer, name: str) -> int:
    ((count,),) = server.psql(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [name]
    )
    return int(count)


def wait_for_connections(server: PostgresServer, name: str, count: int) -> None:
    deadline = time.monotonic() + 10
    while connections_named(server, name) != count:
        assert time.monotonic() < deadline, connections_named(server, name)
        time.sleep(0.02)


@pytest.mark.parametrize("kind", STORES)
def test_the_context_manager_closes_the_pool_the_store_owns(kind, pg_server, pg_dsn, pg_schema):
    name = f"replaycore-test-{uuid.uuid4().hex[:8]}"
    with STORES[kind](f"{pg_dsn}?application_name={name}", schema=pg_schema) as made:
        assert connections_named(pg_server, name) >= 1
    wait_for_connections(pg_server, name, 0)
    calls: dict[str, Callable[[], Any]] = {
        "store": lambda: made.put(Scope("c", "a", "k"), b"v"),
        "cache": lambda: made.execute("k", lambda: 1),
        "outbox": lambda: made.enqueue(OutboxDraft("jobs", "sink", 1)),
    }
    with pytest.raises(StoreUnavailable, match="closed"):
        calls[kind]()
    made.close()  # idempotent
    assert connections_named(pg_server, name) == 0


def test_hot_statements_are_planned_once_per_connection(pg_dsn, pg_schema):
    """Every statement of the hot paths runs from a cached generic plan once
    warm: the server counts, per prepared statement, the executions it
    planned again (``custom_plans``), which only the first five should be.
    A statement the server keeps re-planning costs a planning per call --
    the claim's ``LIMIT $n`` and a one-message ack did."""
    pool = psycopg_pool.ConnectionPool(
        pg_dsn, min_size=1, max_size=1, kwargs={"autocommit": True}, open=True
    )
    try:
        store, cache, box = open_stores(pool, pg_schema)
        box.enqueue_many(
            [OutboxDraft("jobs", "sink", {"n": n}, dedupe_key=f"d{n}") for n in range(3_000)]
        )
        for i in range(20):
            store.put(Scope("c", "a", f"k{i}"), b"v")
            store.put(Scope("c", "a", f"k{i}"), b"v")
            assert store.get(Scope("c", "a", f"k{i}")) == b"v"
            assert cache.execute(f"k{i}", lambda i=i: i) == Success(i)
            assert cache.execute(f"k{i}", NeverCalled()) == Success(i)
            assert cache.get(f"k{i}") is not None
            box.enqueue(OutboxDraft("jobs", "sink", {"i": i}))
            for batch in (1, 100):
                claimed = box.claim("jobs", "sink", batch, 60_000, "w")
                assert len(claimed) == batch
                acks = box.ack_many([(m.outbox_id, m.claim_token) for m in claimed])
                assert acks == [True] * batch
            (one,) = box.claim("jobs", "sink", 1, 60_000, "w")
            assert box.ack(one.outbox_id, one.claim_token) is True
        with pool.connection() as connection:
            planned = connection.execute(
                "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
            ).fetchall()
    finally:
        pool.close()
    assert len(planned) >= 10  # every operation above was prepared
    replanned = [(text, custom) for text, _, custom in planned if custom > 5]
    assert replanned == []


def test_a_store_opens_at_most_max_connections(pg_server, pg_dsn, pg_schema):
    name = f"replaycore-test-{uuid.uuid4().hex[:8]}"
    with PostgresIdempotencyStore(
        f"{pg_dsn}?application_name={name}", schema=pg_schema, max_connections=2
    ) as store:
        seen: list[int] = []
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                seen.append(connections_named(pg_server, name))
                time.sleep(0.005)

        def work(n: int) -> None:
            for i in range(30):
                store.put(Scope("c", f"a{n}", f"k{i}"), b"v")

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        workers = [threading.Thread(target=work, args=(n,)) for n in range(6)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(PROCESS_TIMEOUT)
        stop.set()
        watcher.join(PROCESS_TIMEOUT)
        assert 1 <= max(seen) <= 2
        assert store.stats() == StoreStats(entries=180, inserts=180, replays=0, conflicts=0)


# -- many processes -----------------------------------------------------------------------

RACE_SCOPES = 50
PROCESSES = 4


def _race_puts(dsn: str, schema: str, worker: int, same: bool, barrier: Any, results: Any) -> None:
    try:
        with PostgresIdempotencyStore(dsn, schema=schema) as store:
            barrier.wait(PROCESS_TIMEOUT)
            seen = []
            value = b"same" if same else f"worker-{worker}".encode()
            for i in range(RACE_SCOPES):
                try:
                    out = store.put(Scope("c", "a", f"k{i}"), value)
                except IdempotencyConflict:
                    seen.append("conflict")
                else:
                    seen.append("inserted" if out.inserted else "replay")
        results.put((worker, seen))
    except BaseException as exc:
        results.put((worker, f"crashed: {exc!r}"))
        raise


def race_puts(dsn: str, schema: str, same: bool) -> dict[int, list[str]]:
    PostgresIdempotencyStore(dsn, schema=schema).close()  # the schema before the race
    barrier = SPAWN.Barrier(PROCESSES)
    reports = run_processes(_race_puts, [(dsn, schema, w, same, barrier) for w in range(PROCESSES)])
    return dict(reports)


def test_processes_racing_put_with_the_same_content_insert_each_scope_once(pg_dsn, pg_schema):
    outcome = race_puts(pg_dsn, pg_schema, same=True)
    for i in range(RACE_SCOPES):
        column = sorted(outcome[w][i] for w in range(PROCESSES))
        assert column == ["inserted"] + ["replay"] * (PROCESSES - 1), i
    with PostgresIdempotencyStore(pg_dsn, schema=pg_schema) as store:
        assert store.stats() == StoreStats(
            entries=RACE_SCOPES,
            inserts=RACE_SCOPES,
            replays=RACE_SCOPES * (PROCESSES - 1),
            conflicts=0,
        )


def test_processes_racing_put_with_different_contents_one_wins_per_scope(pg_dsn, pg_schema):
    outcome = race_puts(pg_dsn, pg_schema, same=False)
    with PostgresIdempotencyStore(pg_dsn, schema=pg_schema) as store:
        for i in range(RACE_SCOPES):
            column = [outcome[w][i] for w in range(PROCESSES)]
            assert sorted(column) == ["conflict"] * (PROCESSES - 1) + ["inserted"], i
            winner = column.index("inserted")
            assert store.get(Scope("c", "a", f"k{i}")) == f"worker-{winner}".encode()
        assert store.stats() == StoreStats(
            entries=RACE_SCOPES,
            inserts=RACE_SCOPES,
            replays=0,
            conflicts=RACE_SCOPES * (PROCESSES - 1),
        )


KEY = "idem_race"


def race_for_step(dsn: str, schema: str, tmp_path: Path, wait: bool) -> tuple[list[Any], list[str]]:
    """PROCESSES processes racing ``execute`` on one key; the step holds for 0.3 s."""
    log = tmp_path / "executions.log"
    where = ("postgres", dsn, schema)
    return race_execute(where, KEY, log, wait, PROCESSES, PROCESS_TIMEOUT, hold_s=0.3)


def test_processes_racing_execute_run_the_step_once(pg_dsn, pg_schema, tmp_path):
    messages, executions = race_for_step(pg_dsn, pg_schema, tmp_path, wait=False)
    assert len(executions) == 1
    executor = int(executions[0])
    assert [m for m in messages if m[0] == "entered"] == [("entered", executor)]
    assert [m for m in messages if m[0] == "done"] == [("done", executor)]
    busy = [m for m in messages if m[0] == "busy"]
    assert len(busy) == PROCESSES - 1
    assert len({lease for _, lease in busy}) == 1  # all saw the one lease
    with PostgresResultCache(pg_dsn, schema=pg_schema) as cache:
        entry = cache.get(KEY)
        assert entry is not None
        assert (entry.outcome, entry.access_count) == (Success(executor), 1)


def test_processes_racing_execute_with_wait_all_get_the_first_outcome(pg_dsn, pg_schema, tmp_path):
    messages, executions = race_for_step(pg_dsn, pg_schema, tmp_path, wait=True)
    assert len(executions) == 1
    executor = int(executions[0])
    assert [m for m in messages if m[0] == "entered"] == [("entered", executor)]
    assert sorted(m for m in messages if m[0] == "done") == [("done", executor)] * PROCESSES
    with PostgresResultCache(pg_dsn, schema=pg_schema) as cache:
        entry = cache.get(KEY)
        assert entry is not None
        # each waiter's answer was a hit, and so is this get
        assert (entry.outcome, entry.access_count) == (Success(executor), PROCESSES)


DELIVERIES = (
    "CREATE TABLE {} (outbox_id text NOT NULL, worker text NOT NULL, "
    "attempt integer NOT NULL, claimed_at bigint NOT NULL, address inet)"
)
RECORD = (
    "INSERT INTO {} (outbox_id, worker, attempt, claimed_at, address) "
    "SELECT unnest(%s::text[]), %s, unnest(%s::int[]), unnest(%s::bigint[]), inet_client_addr()"
)


def make_deliveries(server: PostgresServer, schema: str) -> None:
    server.psql(sql.SQL(DELIVERIES).format(table(schema, "deliveries")))


def record(connection: psycopg.Connection[Any], schema: str, worker: str, batch: list[Any]) -> None:
    """The side effect of delivering a batch: one row per message, committed."""
    connection.execute(
        sql.SQL(RECORD).format(table(schema, "deliveries")),
        (
            [m.outbox_id for m in batch],
            worker,
            [m.attempt_count for m in batch],
            [m.updated_at for m in batch],
        ),
    )


def deliveries(server: PostgresServer, schema: str) -> list[tuple[Any, ...]]:
    return server.psql(
        sql.SQL("SELECT outbox_id, worker, attempt, claimed_at, host(address) FROM {}").format(
            table(schema, "deliveries")
        )
    )


def _drain(
    dsn: str, schema: str, worker: str, barrier: Any, until: int | None, results: Any
) -> None:
    """Claim 50 at a time, record the deliveries, ack the batch: until a claim
    finds nothing or, with ``until``, until that many deliveries are recorded."""
    try:
        with (
            PostgresOutbox(dsn, schema=schema) as box,
            psycopg.connect(dsn, autocommit=True) as connection,
        ):
            if barrier is not None:
                barrier.wait(PROCESS_TIMEOUT)
            acked, refused = [], []
            deadline = time.monotonic() + PROCESS_TIMEOUT
            count = sql.SQL("SELECT count(*) FROM {}").format(table(schema, "deliveries"))
            while True:
                batch = box.claim("jobs", "sink", 50, 600_000, worker)
                if not batch:
                    if until is None or connection.execute(count).fetchone()[0] >= until:
                        break
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
                    continue
                record(connection, schema, worker, batch)
                oks = box.ack_many([(m.outbox_id, m.claim_token) for m in batch])
                for message, ok in zip(batch, oks, strict=True):
                    (acked if ok else refused).append(message.outbox_id)
        results.put((worker, (acked, refused)))
    except BaseException as exc:
        results.put((worker, f"crashed: {exc!r}"))
        raise


def test_four_processes_deliver_1000_messages_exactly_once(pg_server, pg_dsn, pg_schema):
    with PostgresOutbox(pg_dsn, schema=pg_schema) as box:
        enqueued = box.enqueue_many(
            [OutboxDraft("jobs", "sink", {"n": n}, dedupe_key=f"d{n}") for n in range(1000)]
        )
        make_deliveries(pg_server, pg_schema)
        barrier = SPAWN.Barrier(PROCESSES)
        workers = [f"p{i}" for i in range(PROCESSES)]
        reports = dict(
            run_processes(_drain, [(pg_dsn, pg_schema, w, barrier, None) for w in workers])
        )
        assert sorted(reports) == workers
        assert [refused for _, refused in reports.values()] == [[]] * PROCESSES
        ids = sorted(m.outbox_id for m in enqueued)
        assert sorted(i for acked, _ in reports.values() for i in acked) == ids
        rows = deliveries(pg_server, pg_schema)
        assert Counter(r[0] for r in rows) == Counter(ids)  # each delivered exactly once
        final = {m.outbox_id: m for m in box.list(limit=2000)}
        assert {m.status for m in final.values()} == {"delivered"}
        assert {m.attempt_count for m in final.values()} == {1}
        for outbox_id, worker, attempt, _, _ in rows:
            assert (final[outbox_id].claimed_by, attempt) == (worker, 1)


def _claim_then_hang(dsn: str, schema: str, lease_ms: int, pipe: Connection) -> None:
    """Claim five messages, report them once claim() returned, then wait to be killed."""
    box = PostgresOutbox(dsn, schema=schema)
    claimed = box.claim("jobs", "sink", 5, lease_ms, "doomed")
    pipe.send([(m.outbox_id, m.claim_token, m.lease_expires_at) for m in claimed])
    time.sleep(PROCESS_TIMEOUT)


KILLED_LEASE_MS = 1_000


def test_a_killed_workers_claims_are_delivered_by_another_after_the_lease(
    pg_server, pg_dsn, pg_schema
):
    with PostgresOutbox(pg_dsn, schema=pg_schema) as box:
        messages = box.enqueue_many([OutboxDraft("jobs", "sink", {"n": n}) for n in range(10)])
        make_deliveries(pg_server, pg_schema)
        parent, child = SPAWN.Pipe()
        proc = SPAWN.Process(
            target=_claim_then_hang, args=(pg_dsn, pg_schema, KILLED_LEASE_MS, child)
        )
        proc.start()
        try:
            assert parent.poll(PROCESS_TIMEOUT)
            held = parent.recv()
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.join(PROCESS_TIMEOUT)
            if proc.is_alive():
                proc.kill()
        assert proc.exitcode == -signal.SIGKILL
        doomed = [outbox_id for outbox_id, _, _ in held]
        assert doomed == [m.outbox_id for m in messages[:5]]
        for outbox_id, token, _ in held:
            stored = box.get(outbox_id)
            assert stored is not None
            assert (stored.status, stored.claimed_by, stored.claim_token) == (
                "claimed",
                "doomed",
                token,
            )

        # While the dead worker's leases hold, nobody takes its messages.
        early = box.claim("jobs", "sink", 10, 600_000, "early")
        assert [m.outbox_id for m in early] == [m.outbox_id for m in messages[5:]]
        with psycopg.connect(pg_dsn, autocommit=True) as connection:
            record(connection, pg_schema, "early", early)
        assert box.ack_many([(m.outbox_id, m.claim_token) for m in early]) == [True] * 5

        # Another worker process takes them once the leases ran out.
        ((_, (acked, refused)),) = run_processes(_drain, [(pg_dsn, pg_schema, "rescuer", None, 10)])
        assert (sorted(acked), refused) == (sorted(doomed), [])
        lease_ends = {outbox_id: expires for outbox_id, _, expires in held}
        rows = deliveries(pg_server, pg_schema)
        assert Counter(r[0] for r in rows) == Counter(m.outbox_id for m in messages)
        for outbox_id, worker, attempt, claimed_at, _ in rows:
            if outbox_id in lease_ends:
                assert (worker, attempt) == ("rescuer", 2)
                assert claimed_at >= lease_ends[outbox_id]
            else:
                assert (worker, attempt) == ("early", 1)
        final = {m.outbox_id: m for m in box.list()}
        for outbox_id in doomed:
            assert (final[outbox_id].status, final[outbox_id].attempt_count) == ("delivered", 2)
            assert final[outbox_id].claimed_by == "rescuer"
        assert {final[m.outbox_id].status for m in messages} == {"delivered"}
        assert box.ack_many([(i, t) for i, t, _ in held]) == [False] * 5  # the dead tokens


# -- two hosts ----------------------------------------------------------------------------

HOST_WORKER = r"""
import json, sys, time
import psycopg
from psycopg import sql
from replaycore.errors import IdempotencyConflict
from replaycore.postgres import PostgresIdempotencyStore, PostgresOutbox
from replaycore.types import Scope

role, dsn, schema, worker, expected, scopes = sys.argv[1:7]
expected, scopes = int(expected), int(scopes)
t = lambda name: sql.Identifier(schema, name)
connection = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
(address,) = connection.execute("SELECT host(inet_client_addr())").fetchone()


def barrier():
    # every worker has opened its store before any starts
    connection.execute(sql.SQL("INSERT INTO {} VALUES (%s)").format(t("ready")), (worker,))
    deadline = time.monotonic() + 60
    count = sql.SQL("SELECT count(*) FROM {}").format(t("ready"))
    while connection.execute(count).fetchone()[0] < expected:
        if time.monotonic() > deadline:
            raise TimeoutError("the other workers never came")
        time.sleep(0.01)


if role == "drain":
    record = sql.SQL(
        "INSERT INTO {} (outbox_id, worker, attempt, claimed_at, address) "
        "SELECT unnest(%s::text[]), %s, unnest(%s::int[]), unnest(%s::bigint[]), "
        "inet_client_addr()"
    ).format(t("deliveries"))
    with PostgresOutbox(dsn, schema=schema) as box:
        barrier()
        acked, refused = [], []
        while batch := box.claim("jobs", "sink", 50, 600_000, worker):
            connection.execute(record, (
                [m.outbox_id for m in batch], worker,
                [m.attempt_count for m in batch], [m.updated_at for m in batch],
            ))
            oks = box.ack_many([(m.outbox_id, m.claim_token) for m in batch])
            for message, ok in zip(batch, oks):
                (acked if ok else refused).append(message.outbox_id)
            time.sleep(0.02)  # the delivery takes a moment
    report = {"acked": acked, "refused": refused}
else:
    with PostgresIdempotencyStore(dsn, schema=schema) as store:
        barrier()
        seen = []
        for i in range(scopes):
            try:
                out = store.put(Scope("c", "a", f"k{i}"), b"same")
            except IdempotencyConflict:
                seen.append("conflict")
            else:
                seen.append("inserted" if out.inserted else "replay")
    report = {"seen": seen}
report.update(worker=worker, address=address)
print(json.dumps(report))
"""


@pytest.fixture
def hosts_schema(pg_hosts: PostgresHosts) -> Iterator[str]:
    """A fresh schema name on pg_hosts' server, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:8]}"
    yield name
    drop_schema(pg_hosts.server, name)


def run_on_hosts(
    pg_hosts: PostgresHosts, schema: str, role: str, per_host: int, scopes: int, cwd: Path
) -> list[dict[str, Any]]:
    """Start ``per_host`` workers of ``role`` in each namespace; their JSON reports."""
    server, hosts = pg_hosts
    count = per_host * len(hosts.hosts)
    procs = []
    try:
        for host in hosts.hosts:
            dsn = server.dsn(host=host.gateway)
            for i in range(per_host):
                argv = [sys.executable, "-c", HOST_WORKER, role, dsn, schema]
                argv += [f"{host.name}-w{i}", str(count), str(scopes)]
                procs.append(
                    subprocess.Popen(
                        host.command(argv),
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        text=True,
                        cwd=cwd,
                    )
                )
        outputs = [proc.communicate(timeout=PROCESS_TIMEOUT) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(PROCESS_TIMEOUT)
    assert [(proc.returncode, err) for proc, (_, err) in zip(procs, outputs, strict=True)] == [
        (0, "")
    ] * count
    return [json.loads(out) for out, _ in outputs]


def test_workers_on_two_hosts_deliver_1000_messages_exactly_once(pg_hosts, hosts_schema, tmp_path):
    server, hosts = pg_hosts
    with PostgresOutbox(server.dsn(), schema=hosts_schema) as box:
        enqueued = box.enqueue_many(
            [OutboxDraft("jobs", "sink", {"n": n}, dedupe_key=f"d{n}") for n in range(1000)]
        )
        make_deliveries(server, hosts_schema)
        server.psql(sql.SQL("CREATE TABLE {} (worker text)").format(table(hosts_schema, "ready")))
        reports = run_on_hosts(pg_hosts, hosts_schema, "drain", 2, 0, tmp_path)
        addresses = {host.name: host.address for host in hosts.hosts}
        for report in reports:
            assert report["refused"] == []
            assert report["address"] == addresses[report["worker"].rsplit("-", 1)[0]]
        ids = sorted(m.outbox_id for m in enqueued)
        assert sorted(i for r in reports for i in r["acked"]) == ids
        rows = deliveries(server, hosts_schema)
        assert Counter(r[0] for r in rows) == Counter(ids)  # each delivered exactly once
        # The server saw the deliveries come from both hosts.
        assert {r[4] for r in rows} == set(addresses.values())
        final = {m.outbox_id: m for m in box.list(limit=2000)}
        assert {m.status for m in final.values()} == {"delivered"}
        for outbox_id, worker, attempt, _, address in rows:
            assert (final[outbox_id].claimed_by, attempt) == (worker, 1)
            assert address == addresses[worker.rsplit("-", 1)[0]]


def test_one_worker_per_host_racing_put_inserts_each_scope_once(pg_hosts, hosts_schema, tmp_path):
    server, hosts = pg_hosts
    scopes = 100
    with PostgresIdempotencyStore(server.dsn(), schema=hosts_schema) as store:
        server.psql(sql.SQL("CREATE TABLE {} (worker text)").format(table(hosts_schema, "ready")))
        reports = run_on_hosts(pg_hosts, hosts_schema, "put", 1, scopes, tmp_path)
        assert sorted(r["address"] for r in reports) == sorted(h.address for h in hosts.hosts)
        for i in range(scopes):
            assert sorted(r["seen"][i] for r in reports) == ["inserted", "replay"], i
        assert store.stats() == StoreStats(
            entries=scopes, inserts=scopes, replays=scopes, conflicts=0
        )
