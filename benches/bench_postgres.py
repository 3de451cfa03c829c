"""PostgreSQL stores (SPEC section 12) side by side with their SQLite twins.

Every group holds one operation on ``Postgres*`` and on ``Sqlite*``, on
identical data (same scopes, values, keys, drafts and counts); ``python
benches/report.py`` prints ops/s or messages/s for both and their ratio.

* store put (a new scope each call) and get (of a stored scope);
* cache ``execute``: a miss (a first execution: claim a lease, run the step,
  store its outcome) and a hit (a replay of a stored outcome);
* outbox enqueue (``enqueue`` / ``enqueue_many`` of 100), claim
  (``claim(limit=1 / 100)``) and ack (``ack`` / ``ack_many`` of 100);
* end-to-end delivery: N messages enqueued, then 1 or 4 worker processes
  (spawned, started together at a barrier) each loop ``claim(limit=B)`` +
  ``ack_many`` until a claim comes back empty, B = 1 and 100. One round is
  timed from the barrier's release to the last worker's report; messages/s =
  N / median round. Beside the two stores runs a bare psycopg loop on a
  minimal table (a ``FOR UPDATE SKIP LOCKED`` claim and a one-statement
  ``id = ANY(...)`` ack; no leases, tokens, attempts or dead letters), the
  floor the report states PostgresOutbox's figures against. Each round drains
  a fresh schema (or file) filled with N messages; both PostgreSQL tables are
  then ANALYZEd, as autovacuum would soon do to a table that just took N
  inserts, so that its analyze never lands inside a timed round.

The claim groups, as in ``bench_outbox.py``, claim from a full outbox without
acking: the messages claimed so far stay in flight (up to 1,000 at batch 1,
5,000 at batch 100).

Durability is never relaxed: the server of ``tests/pg_server.py`` runs with
fsync and synchronous_commit on, SQLite in WAL mode with ``synchronous=FULL``;
both keep their files under /tmp, on the same disk. PostgreSQL stores use the
database's clock (``now=None``, ``clock=None``, their defaults); SQLite ones
the caller's, as they must.

With ``--benchmark-disable`` (CI) every function runs once on small data.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import queue
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from replaycore import Scope
from replaycore.cache import Success
from replaycore.outbox import OutboxDraft, OutboxMessage

ROUNDS = 1000  # timed calls of a single-operation group
OUTBOX_ROUNDS = {1: 1000, 100: 50}
BATCHES = [1, 100]
WORKERS = [1, 4]
# End-to-end: messages per round and rounds, by batch size.
E2E_MESSAGES = {1: 4_000, 100: 40_000}
E2E_ROUNDS = {1: 3, 100: 5}
E2E_MESSAGES_DISABLED = {1: 40, 100: 400}
ENQUEUE_CHUNK = 1000  # drafts per enqueue_many when filling an outbox
TIMEOUT_S = 300.0  # the longest a worker or the parent waits for the other side

LANE, TARGET = "email", "smtp"
LEASE_MS = 60_000
PAYLOAD = {"to": "user@example.com", "template": "welcome", "vars": {"name": "Ada", "n": 0}}
VALUE = b'{"status":"delivered","n":%d}' + b"." * 64

STORES = ["postgres", "sqlite"]
E2E_STORES = ["postgres", "sqlite", "bare"]
PREFIX = "pg: "  # every group of this file; report.py strips it


def _ms() -> int:
    """The caller's clock in epoch ms, what a SQLite outbox is given as ``now``."""
    return time.time_ns() // 1_000_000


def _rounds(benchmark: Any, rounds: int) -> int:
    # pedantic runs the function once under --benchmark-disable: fill for one call.
    return 1 if benchmark.disabled else rounds


def _label(benchmark: Any, group: str, store: str, per_call: int, unit: str) -> None:
    benchmark.group = PREFIX + group
    benchmark.extra_info.update(suite="postgres", store=store, per_call=per_call, unit=unit)


def drafts(count: int, start: int = 0) -> list[OutboxDraft]:
    return [
        OutboxDraft(LANE, TARGET, PAYLOAD | {"n": i}, dedupe_key=f"m-{i}")
        for i in range(start, start + count)
    ]


class Stores:
    """Opens the PostgreSQL or SQLite store of one test, and closes them after."""

    def __init__(self, kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
        self.kind = kind
        self.postgres = kind == "postgres"
        self._tmp_path = tmp_path
        self._opened: list[Any] = []
        self._files = itertools.count()
        if self.postgres:
            # The server (or a skip saying why there is none), set up before this
            # fixture so that the schemas are dropped after its stores are closed.
            self._dsn: str = request.getfixturevalue("pg_dsn")
            self._schemas: Callable[[], str] = request.getfixturevalue("pg_schemas")
        # A SQLite outbox needs the caller's time; a PostgreSQL one uses the database's.
        self.now: Callable[[], int | None] = (lambda: None) if self.postgres else _ms

    def _open(self, store: Any) -> Any:
        self._opened.append(store)
        return store

    def _pg(self) -> tuple[str, str]:
        return self._dsn, self._schemas()

    def _file(self) -> Path:
        return self._tmp_path / f"store-{next(self._files)}.db"

    def idempotency(self) -> Any:
        if self.postgres:
            from replaycore.postgres import PostgresIdempotencyStore

            dsn, schema = self._pg()
            return self._open(PostgresIdempotencyStore(dsn, schema=schema))
        from replaycore.sqlite import SqliteIdempotencyStore

        return self._open(SqliteIdempotencyStore(self._file()))

    def cache(self) -> Any:
        if self.postgres:
            from replaycore.postgres import PostgresResultCache

            dsn, schema = self._pg()
            return self._open(PostgresResultCache(dsn, schema=schema))
        from replaycore.sqlite import SqliteResultCache

        return self._open(SqliteResultCache(self._file()))

    def outbox(self) -> Any:
        if self.postgres:
            from replaycore.postgres import PostgresOutbox

            dsn, schema = self._pg()
            return self._open(PostgresOutbox(dsn, schema=schema))
        from replaycore.sqlite import SqliteOutbox

        return self._open(SqliteOutbox(self._file()))

    def close(self) -> None:
        for store in self._opened:
            store.close()


@pytest.fixture(params=STORES)
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    opened = Stores(request.param, request, tmp_path)
    yield opened
    opened.close()


# -- idempotency store -------------------------------------------------------------


def _scopes(count: int) -> list[Scope]:
    return [Scope("client-a", f"adapter-{i % 7}", f"idem_{i:016x}") for i in range(count)]


def _values(count: int) -> list[bytes]:
    return [VALUE % i for i in range(count)]


def test_store_put(benchmark: Any, stores: Stores) -> None:
    _label(benchmark, "store put (new scope)", stores.kind, 1, "ops")
    store = stores.idempotency()
    rounds = _rounds(benchmark, ROUNDS)
    scopes, values = _scopes(rounds), _values(rounds)
    calls = itertools.count()

    def run() -> None:
        i = next(calls)
        assert store.put(scopes[i], values[i]).inserted

    benchmark.pedantic(run, rounds=rounds, iterations=1)
    assert len(store) == next(calls)


def test_store_get(benchmark: Any, stores: Stores) -> None:
    _label(benchmark, "store get (stored scope)", stores.kind, 1, "ops")
    store = stores.idempotency()
    rounds = _rounds(benchmark, ROUNDS)
    scopes, values = _scopes(rounds), _values(rounds)
    for scope, value in zip(scopes, values, strict=True):
        store.put(scope, value)
    calls = itertools.count()

    def run() -> None:
        i = next(calls)
        assert store.get(scopes[i]) == values[i]

    benchmark.pedantic(run, rounds=rounds, iterations=1)
    assert next(calls) == rounds


# -- result cache ------------------------------------------------------------------


def _step_value(i: int) -> dict[str, Any]:
    return {"status": "delivered", "n": i, "receipt": "r" * 32}


def test_cache_execute_miss(benchmark: Any, stores: Stores) -> None:
    _label(benchmark, "cache execute miss (first execution)", stores.kind, 1, "ops")
    cache = stores.cache()
    rounds = _rounds(benchmark, ROUNDS)
    keys = [f"step-{i}" for i in range(rounds)]
    calls = itertools.count()

    def run() -> None:
        i = next(calls)
        assert cache.execute(keys[i], lambda: _step_value(i)) == Success(_step_value(i))

    benchmark.pedantic(run, rounds=rounds, iterations=1)
    assert len(cache) == next(calls)


def test_cache_execute_hit(benchmark: Any, stores: Stores) -> None:
    _label(benchmark, "cache execute hit (replay)", stores.kind, 1, "ops")
    cache = stores.cache()
    rounds = _rounds(benchmark, ROUNDS)
    keys = [f"step-{i}" for i in range(rounds)]
    for i, key in enumerate(keys):
        cache.execute(key, lambda i=i: _step_value(i))
    calls = itertools.count()

    def never() -> Any:
        raise AssertionError("a replay ran the step")

    def run() -> None:
        i = next(calls)
        assert cache.execute(keys[i], never) == Success(_step_value(i))

    benchmark.pedantic(run, rounds=rounds, iterations=1)
    assert next(calls) == rounds


# -- outbox ------------------------------------------------------------------------


@pytest.mark.parametrize("batch", BATCHES)
def test_outbox_enqueue(benchmark: Any, stores: Stores, batch: int) -> None:
    what = "enqueue" if batch == 1 else "enqueue_many"
    _label(benchmark, f"outbox {what} (batch {batch})", stores.kind, batch, "msg")
    box, now = stores.outbox(), stores.now
    rounds = _rounds(benchmark, OUTBOX_ROUNDS[batch])
    batches = [drafts(batch, r * batch) for r in range(rounds)]
    calls = itertools.count()

    def run() -> None:
        todo = batches[next(calls)]
        if batch == 1:
            box.enqueue(todo[0], now())
        else:
            box.enqueue_many(todo, now())

    benchmark.pedantic(run, rounds=rounds, iterations=1)
    assert len(box.list(limit=10**6)) == next(calls) * batch


@pytest.mark.parametrize("batch", BATCHES)
def test_outbox_claim(benchmark: Any, stores: Stores, batch: int) -> None:
    _label(benchmark, f"outbox claim (batch {batch})", stores.kind, batch, "msg")
    box, now = stores.outbox(), stores.now
    rounds = _rounds(benchmark, OUTBOX_ROUNDS[batch])
    for start in range(0, rounds * batch, ENQUEUE_CHUNK):
        box.enqueue_many(drafts(min(ENQUEUE_CHUNK, rounds * batch - start), start), now())
    claimed: list[int] = []

    def run() -> None:
        claimed.append(len(box.claim(LANE, TARGET, batch, LEASE_MS, "bench", now())))

    benchmark.pedantic(run, rounds=rounds, iterations=1)
    assert claimed == [batch] * rounds
    assert len(box.list("claimed", limit=10**6)) == rounds * batch


@pytest.mark.parametrize("batch", BATCHES)
def test_outbox_ack(benchmark: Any, stores: Stores, batch: int) -> None:
    what = "ack" if batch == 1 else "ack_many"
    _label(benchmark, f"outbox {what} (batch {batch})", stores.kind, batch, "msg")
    box, now = stores.outbox(), stores.now
    rounds = _rounds(benchmark, OUTBOX_ROUNDS[batch])
    for start in range(0, rounds * batch, ENQUEUE_CHUNK):
        box.enqueue_many(drafts(min(ENQUEUE_CHUNK, rounds * batch - start), start), now())

    def setup() -> tuple[tuple[list[tuple[str, str]]], dict[str, Any]]:
        messages = box.claim(LANE, TARGET, batch, LEASE_MS, "bench", now())
        return ([(m.outbox_id, m.claim_token) for m in messages],), {}

    acked: list[bool] = []

    def run(claims: list[tuple[str, str]]) -> None:
        if batch == 1:
            acked.append(box.ack(*claims[0], now()))
        else:
            acked.extend(box.ack_many(claims, now()))

    benchmark.pedantic(run, setup=setup, rounds=rounds, iterations=1)
    assert acked == [True] * rounds * batch
    assert len(box.list("delivered", limit=10**6)) == rounds * batch


# -- end-to-end delivery -----------------------------------------------------------

_BARE_TABLE = """
CREATE SCHEMA {schema};
CREATE TABLE {schema}.q (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    status  text   NOT NULL DEFAULT 'pending',
    payload bytea  NOT NULL
);
CREATE INDEX q_pending ON {schema}.q (id) WHERE status = 'pending'
"""
_BARE_FILL = "INSERT INTO {schema}.q (payload) SELECT %s FROM generate_series(1, %s)"
_BARE_CLAIM = (
    "WITH c AS (SELECT id FROM {schema}.q WHERE status = 'pending' ORDER BY id LIMIT %s "
    "FOR UPDATE SKIP LOCKED) "
    "UPDATE {schema}.q q SET status = 'claimed' FROM c WHERE q.id = c.id "
    "RETURNING q.id, q.payload"
)
_BARE_ACK = "UPDATE {schema}.q SET status = 'delivered' WHERE id = ANY(%s) AND status = 'claimed'"

# One claim + ack; returns (messages claimed, messages acked).
Step = Callable[[], tuple[int, int]]


def _outbox_step(box: Any, batch: int, now: Callable[[], int | None]) -> Step:
    consumer = f"worker-{os.getpid()}"

    def step() -> tuple[int, int]:
        messages: list[OutboxMessage] = box.claim(LANE, TARGET, batch, LEASE_MS, consumer, now())
        if not messages:
            return 0, 0
        acked = box.ack_many([(m.outbox_id, m.claim_token) for m in messages], now())
        return len(messages), sum(acked)

    return step


def _open_worker(kind: str, where: str, schema: str, batch: int) -> tuple[Step, Callable[[], None]]:
    """A worker's loop step and its closer, connected and warmed up."""
    if kind == "postgres":
        from replaycore.postgres import PostgresOutbox

        box = PostgresOutbox(where, schema=schema)
        box.database_time_ms()  # the pool's connection is open and used once
        return _outbox_step(box, batch, lambda: None), box.close
    if kind == "sqlite":
        from replaycore.sqlite import SqliteOutbox

        box = SqliteOutbox(where)
        box.get("warm-up")
        return _outbox_step(box, batch, _ms), box.close
    import psycopg

    connection = psycopg.connect(where, autocommit=True)
    claim, ack = _BARE_CLAIM.format(schema=schema), _BARE_ACK.format(schema=schema)
    connection.execute("SELECT 1")

    def step() -> tuple[int, int]:
        rows = connection.execute(claim, (batch,)).fetchall()
        if not rows:
            return 0, 0
        done = connection.execute(ack, ([row[0] for row in rows],)).rowcount
        return len(rows), done

    return step, connection.close


def _deliver(kind: str, where: str, schema: str, batch: int, barrier: Any, reports: Any) -> None:
    """A worker process: connect, report ready, wait at the barrier, drain, report."""
    try:
        step, close = _open_worker(kind, where, schema, batch)
        try:
            reports.put(("ready", os.getpid(), None))
            barrier.wait(TIMEOUT_S)
            start = time.perf_counter()
            claimed = acked = 0
            while True:
                got, done = step()
                if not got:
                    break
                claimed += got
                acked += done
            reports.put(("done", os.getpid(), (claimed, acked, start, time.perf_counter())))
        finally:
            close()
    except BaseException:
        reports.put(("error", os.getpid(), traceback.format_exc()))


class Crew:
    """``workers`` spawned processes waiting at a barrier to drain one outbox."""

    _context = multiprocessing.get_context("spawn")

    def __init__(self, kind: str, where: str, schema: str, batch: int, workers: int) -> None:
        self.barrier = self._context.Barrier(workers + 1)
        self.reports = self._context.Queue()
        self.workers = workers
        self.processes = [
            self._context.Process(
                target=_deliver,
                args=(kind, where, schema, batch, self.barrier, self.reports),
                daemon=True,
            )
            for _ in range(workers)
        ]
        self.results: list[tuple[int, int, float, float]] = []
        for process in self.processes:
            process.start()
        self._collect("ready")

    def _collect(self, kind: str) -> list[Any]:
        """Every worker's ``kind`` report; raises when one fails, dies or hangs first."""
        got: dict[int, Any] = {}
        deadline = time.monotonic() + TIMEOUT_S
        while len(got) < self.workers:
            try:
                what, pid, value = self.reports.get(timeout=1.0)
            except queue.Empty:
                waiting = [p for p in self.processes if p.pid not in got]
                if time.monotonic() > deadline or not all(p.is_alive() for p in waiting):
                    self.stop()
                    raise RuntimeError(f"a worker died or hung before reporting {kind}") from None
                continue
            if what == "error":
                self.stop()
                raise RuntimeError(f"worker {pid} failed:\n{value}")
            assert what == kind, (what, kind)
            got[pid] = value
        return list(got.values())

    def go(self) -> None:
        """Release the barrier and wait for every worker to drain: the timed part."""
        self.barrier.wait(TIMEOUT_S)
        self.results = self._collect("done")

    def stop(self) -> None:
        """Wait for the workers to exit; without results, release them from the barrier first."""
        if not self.results:
            self.barrier.abort()
        for process in self.processes:
            process.join(TIMEOUT_S if self.results else 5.0)
            if process.is_alive():
                process.kill()
                process.join()

    @property
    def messages_per_s(self) -> float:
        """N / (last worker's end - first worker's start), by the workers' own clocks."""
        start = min(r[2] for r in self.results)
        end = max(r[3] for r in self.results)
        return sum(r[1] for r in self.results) / (end - start)


class Fill:
    """Makes one round's full outbox: a fresh schema or file holding ``count`` messages."""

    def __init__(self, kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
        self.kind = kind
        self._request = request
        self._tmp_path = tmp_path
        self._rounds = itertools.count()

    def __call__(self, count: int) -> tuple[str, str]:
        """(dsn or path, schema) of a new outbox holding ``count`` pending messages."""
        if self.kind == "sqlite":
            from replaycore.sqlite import SqliteOutbox

            path = self._tmp_path / f"delivery-{next(self._rounds)}.db"
            with SqliteOutbox(path) as box:
                now = _ms()
                for start in range(0, count, ENQUEUE_CHUNK):
                    box.enqueue_many(drafts(min(ENQUEUE_CHUNK, count - start), start), now)
            return str(path), ""
        import psycopg

        dsn: str = self._request.getfixturevalue("pg_dsn")
        schema: str = self._request.getfixturevalue("pg_schemas")()
        if self.kind == "postgres":
            from replaycore.postgres import PostgresOutbox

            with PostgresOutbox(dsn, schema=schema) as box:
                for start in range(0, count, ENQUEUE_CHUNK):
                    box.enqueue_many(drafts(min(ENQUEUE_CHUNK, count - start), start))
            table = f"{schema}.outbox_messages"
        else:
            payload = msgspec.msgpack.encode(PAYLOAD)
            with psycopg.connect(dsn, autocommit=True) as connection:
                for statement in _BARE_TABLE.format(schema=schema).split(";"):
                    connection.execute(statement)
                connection.execute(_BARE_FILL.format(schema=schema), (payload, count))
            table = f"{schema}.q"
        # Fresh statistics for both PostgreSQL tables, as autovacuum would have
        # them by then, so its analyze does not land inside a timed round.
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(f"ANALYZE {table}")
        return dsn, schema


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("workers", WORKERS)
@pytest.mark.parametrize("store", E2E_STORES)
def test_delivery(
    benchmark: Any,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    store: str,
    workers: int,
    batch: int,
) -> None:
    count = (E2E_MESSAGES_DISABLED if benchmark.disabled else E2E_MESSAGES)[batch]
    plural = "s" if workers > 1 else ""
    _label(
        benchmark,
        f"delivery, {workers} worker{plural}, batch {batch} ({count:,} messages)",
        store,
        count,
        "msg",
    )
    benchmark.extra_info.update(workers=workers, batch=batch)
    if store != "sqlite":
        benchmark.extra_info["server"] = request.getfixturevalue("pg_settings")
    fill = Fill(store, request, tmp_path)
    crews: list[Crew] = []

    def setup() -> tuple[tuple[Crew], dict[str, Any]]:
        where, schema = fill(count)
        crews.append(Crew(store, where, schema, batch, workers))
        return (crews[-1],), {}

    try:
        benchmark.pedantic(Crew.go, setup=setup, rounds=E2E_ROUNDS[batch], iterations=1)
    finally:
        for crew in crews:
            crew.stop()
    for crew in crews:
        assert sum(r[1] for r in crew.results) == count, crew.results
    benchmark.extra_info["workers_messages_per_s"] = [round(c.messages_per_s) for c in crews]
