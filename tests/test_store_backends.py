"""Every content-equality store (SPEC section 4) behaves the same.

One behaviour suite runs on the Rust in-memory store, the reference
in-memory store and :class:`SqliteIdempotencyStore`; then the SQLite store's
own promises: persistence, type resolution across processes, atomic puts
across processes and a clean reopen after a SIGKILL.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from replaycore import _core, records
from replaycore.cache import SqliteResultCache, Success
from replaycore.errors import (
    IdempotencyConflict,
    InvalidArgumentType,
    StoreUnavailable,
)
from replaycore.keys import content_digest
from replaycore.postgres import PostgresIdempotencyStore
from replaycore.reference.store import IdempotencyStore as ReferenceStore
from replaycore.sqlite_store import SqliteIdempotencyStore
from replaycore.sqlite_store import StoreUnavailable as ReexportedStoreUnavailable
from replaycore.store import IdempotencyStoreProtocol
from replaycore.types import PutOutcome, Scope, StoreStats
from support import POSTGRES, BytesSub, Point

SCOPE = Scope("client", "adapter", "idem_0123456789abcdef")
PROCESSES = 4
SPAWN = multiprocessing.get_context("spawn")


def record(status: str = "ok", **changes: Any) -> records.JournalRecord:
    fields: dict[str, Any] = {
        "record_id": "r1",
        "journal_seq": 1,
        "run_id": "run-7",
        "payload": records.EffectResult(effect_id="pay-1", status=status),
    }
    fields.update(changes)
    return records.JournalRecord(**fields)


@pytest.fixture(params=["rust", "reference", "sqlite", POSTGRES])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Any]]:
    """A factory of empty stores of one backend (SQLite: one new file per call;
    PostgreSQL: one new schema per call)."""
    opened: list[Any] = []

    def make() -> Any:
        if request.param == "rust":
            return _core.IdempotencyStore()
        if request.param == "reference":
            return ReferenceStore()
        if request.param == "sqlite":
            store: Any = SqliteIdempotencyStore(tmp_path / f"store{len(opened)}.db")
        else:
            new_schema = request.getfixturevalue("pg_schemas")
            store = PostgresIdempotencyStore(request.getfixturevalue("pg_dsn"), schema=new_schema())
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(make_store: Callable[[], Any]) -> Any:
    return make_store()


# -- the shared behaviour suite ----------------------------------------------


def test_implements_the_protocol(store):
    assert isinstance(store, IdempotencyStoreProtocol)


def test_insert_returns_the_value_itself(store):
    value = record()
    out = store.put(SCOPE, value)
    assert type(out) is PutOutcome
    assert out.inserted is True
    assert out.value is value
    assert store.stats() == StoreStats(entries=1, inserts=1, replays=0, conflicts=0)


def test_replay_returns_a_fresh_value_of_the_stored_type(store):
    first = record()
    store.put(SCOPE, first)
    again = record()
    out = store.put(SCOPE, again)
    assert out.inserted is False
    assert type(out.value) is records.JournalRecord
    assert out.value == first
    assert out.value is not first
    assert out.value is not again
    assert type(store.get(SCOPE)) is records.JournalRecord
    assert store.stats() == StoreStats(entries=1, inserts=1, replays=1, conflicts=0)


@pytest.mark.parametrize(
    "value",
    [
        b"payload",
        b"",
        Point(1, 2),
        records.Custom(name="c", data={"b": [1, 2], "a": {"x": None}}),
        records.RunLifecycle(status="running"),
    ],
    ids=repr,
)
def test_get_and_replay_give_the_stored_type(store, value):
    store.put(SCOPE, value)
    got = store.get(SCOPE)
    assert type(got) is type(value)
    assert got == value
    out = store.put(SCOPE, value)
    assert out.inserted is False
    assert type(out.value) is type(value)
    assert out.value == value


def test_a_struct_defined_in_a_function_round_trips(store):
    class Local(msgspec.Struct, frozen=True):
        name: str
        size: int = 0

    store.put(SCOPE, Local("a", 3))
    got = store.get(SCOPE)
    assert type(got) is Local
    assert got == Local("a", 3)
    with pytest.raises(IdempotencyConflict, match="size") as info:
        store.put(SCOPE, Local("a", 4))
    assert info.value.differing_fields == ["size"]


def test_bytes_subclass_is_stored_as_bytes(store):
    value = BytesSub(b"sub")
    assert store.put(SCOPE, value).value is value
    assert type(store.get(SCOPE)) is bytes
    assert type(store.put(SCOPE, b"sub").value) is bytes


def test_conflict_names_digests_and_differing_fields(store):
    old, new = record("ok"), record("failed", at_ms=5)
    store.put(SCOPE, old)
    with pytest.raises(IdempotencyConflict, match="duplicate_id_conflict") as info:
        store.put(SCOPE, new)
    exc = info.value
    assert exc.scope == SCOPE
    assert exc.prior_digest == content_digest(old)
    assert exc.new_digest == content_digest(new)
    assert exc.differing_fields == ["at_ms", "payload.status"]
    assert store.get(SCOPE) == old
    assert store.stats() == StoreStats(entries=1, inserts=1, replays=0, conflicts=1)


def test_conflict_between_bytes_and_struct_has_no_fields(store):
    store.put(SCOPE, b"raw")
    with pytest.raises(IdempotencyConflict, match="sha256") as info:
        store.put(SCOPE, record())
    assert info.value.differing_fields == []
    assert info.value.prior_digest == content_digest(b"raw")
    assert store.get(SCOPE) == b"raw"


def test_nothing_is_overwritten_after_conflicts(store):
    store.put(SCOPE, record("ok"))
    for status in ("failed", "pending", "failed"):
        with pytest.raises(IdempotencyConflict, match=r"payload\.status"):
            store.put(SCOPE, record(status))
    assert store.get(SCOPE) == record("ok")
    assert store.put(SCOPE, record("ok")).inserted is False
    assert store.stats() == StoreStats(entries=1, inserts=1, replays=1, conflicts=3)


def test_equal_canonical_bytes_replay_as_the_first_type(store):
    rec = record()
    store.put(SCOPE, records.encode_canonical(rec))
    out = store.put(SCOPE, rec)
    assert out.inserted is False
    assert type(out.value) is bytes
    other = Scope("client", "adapter", "struct-first")
    store.put(other, rec)
    out = store.put(other, records.encode_canonical(rec))
    assert type(out.value) is records.JournalRecord


def test_stats_len_and_contains(store):
    assert len(store) == 0
    assert store.stats() == StoreStats(entries=0, inserts=0, replays=0, conflicts=0)
    scopes = [Scope("c", "a", f"k{i}") for i in range(5)]
    for i, scope in enumerate(scopes):
        store.put(scope, bytes([i]))
    for i, scope in enumerate(scopes[:3]):
        store.put(scope, bytes([i]))
    for scope in scopes[:2]:
        with pytest.raises(IdempotencyConflict, match="duplicate_id_conflict"):
            store.put(scope, b"other")
    assert len(store) == 5
    stats = store.stats()
    assert type(stats) is StoreStats
    assert stats == StoreStats(entries=5, inserts=5, replays=3, conflicts=2)
    assert all(scope in store for scope in scopes)
    assert Scope("c", "a", "k5") not in store
    for other in [("c", "a", "k0"), ["c", "a", "k0"], "c", None, b"x", 1, object()]:
        assert (other in store) is False


def test_get_missing_is_none(store):
    assert store.get(SCOPE) is None
    store.put(SCOPE, b"x")
    assert store.get(Scope("client", "adapter", "other")) is None


@pytest.mark.parametrize(
    "other",
    [
        Scope("client2", "adapter", "idem_0123456789abcdef"),
        Scope("client", "adapter2", "idem_0123456789abcdef"),
        Scope("client", "adapter", "idem_0123456789abcdee"),
        Scope("adapter", "client", "idem_0123456789abcdef"),
        Scope("client:adapter", "x", "idem_0123456789abcdef"),
        Scope("CLIENT", "adapter", "idem_0123456789abcdef"),
    ],
    ids=repr,
)
def test_scopes_differing_in_one_part_do_not_alias(store, other):
    store.put(SCOPE, b"one")
    assert store.put(other, b"two").inserted is True
    assert store.get(SCOPE) == b"one"
    assert store.get(other) == b"two"
    assert len(store) == 2


def test_joined_parts_do_not_alias(store):
    scopes = [
        Scope("a\x00b", "c", "k"),
        Scope("a", "b\x00c", "k"),
        Scope("a|b", "c", "k"),
        Scope("a", "b|c", "k"),
        Scope("a:b", "c", "k"),
        Scope("a", "b:c", "k"),
    ]
    for i, scope in enumerate(scopes):
        assert store.put(scope, bytes([i])).inserted is True
    assert [store.get(s) for s in scopes] == [bytes([i]) for i in range(len(scopes))]
    assert Scope("клиент", "adapter😀", "ключ") not in store
    store.put(Scope("клиент", "adapter😀", "ключ"), b"v")
    assert store.get(Scope("клиент", "adapter😀", "ключ")) == b"v"


@pytest.mark.parametrize("value", [{"a": 1}, "text", 1, None, bytearray(b"x"), [b"x"]], ids=repr)
def test_values_must_be_structs_or_bytes(store, value):
    with pytest.raises(InvalidArgumentType, match="value") as info:
        store.put(SCOPE, value)
    assert info.value.argument == "value"
    assert len(store) == 0


@pytest.mark.parametrize("scope", [("c", "a", "k"), "c/a/k", None], ids=repr)
def test_scope_must_be_a_scope(store, scope):
    with pytest.raises(InvalidArgumentType, match="scope") as info:
        store.put(scope, b"x")
    assert info.value.argument == "scope"
    with pytest.raises(InvalidArgumentType, match="scope"):
        store.get(scope)


# -- SQLite only --------------------------------------------------------------


def test_sqlite_entries_and_counters_persist(tmp_path):
    path = tmp_path / "s.db"
    with SqliteIdempotencyStore(path) as store:
        store.put(SCOPE, record())
        store.put(SCOPE, record())
        with pytest.raises(IdempotencyConflict, match=r"payload\.status"):
            store.put(SCOPE, record("failed"))
    with SqliteIdempotencyStore(path) as again:
        assert again.get(SCOPE) == record()
        assert SCOPE in again
        assert again.stats() == StoreStats(entries=1, inserts=1, replays=1, conflicts=1)


def test_sqlite_two_handles_on_one_file_share_entries(tmp_path):
    path = tmp_path / "s.db"
    with SqliteIdempotencyStore(path) as one, SqliteIdempotencyStore(path) as two:
        assert one.put(SCOPE, b"x").inserted is True
        assert two.put(SCOPE, b"x").inserted is False
        with pytest.raises(IdempotencyConflict, match="sha256"):
            two.put(SCOPE, b"y")
        assert one.stats() == StoreStats(entries=1, inserts=1, replays=1, conflicts=1)


def test_sqlite_fresh_process_resolves_the_type_by_import(tmp_path):
    path = tmp_path / "s.db"
    with SqliteIdempotencyStore(path) as store:
        store.put(SCOPE, record())
        store.put(Scope("c", "a", "raw"), b"raw")
    code = textwrap.dedent(
        f"""
        from replaycore.sqlite_store import SqliteIdempotencyStore
        from replaycore.types import Scope
        store = SqliteIdempotencyStore({str(path)!r})
        value = store.get(Scope("client", "adapter", "idem_0123456789abcdef"))
        raw = store.get(Scope("c", "a", "raw"))
        print(type(value).__module__, type(value).__qualname__, value.payload.status, raw)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == ["replaycore.records", "JournalRecord", "ok", "b'raw'"]


def _set_type(path: Path, name: str) -> None:
    with sqlite3.connect(path) as db:
        db.execute("UPDATE idempotency_entries SET value_type = ?", (name,))
    db.close()


@pytest.mark.parametrize(
    "name",
    [
        "no_such_module_for_replaycore:Thing",
        "replaycore.records:NoSuchRecord",
        "tests.somewhere:make.<locals>.Local",
        "replaycore.records:encode_canonical",
        "not-a-type-name",
    ],
)
def test_sqlite_unresolvable_type_is_store_unavailable(tmp_path, name):
    path = tmp_path / "s.db"
    with SqliteIdempotencyStore(path) as store:
        store.put(SCOPE, record())
    _set_type(path, name)
    with SqliteIdempotencyStore(path) as store:
        with pytest.raises(StoreUnavailable, match=r"cannot be resolved|not a msgspec Struct"):
            store.get(SCOPE)
        # a put that would need the prior value rolls back: no counter moves
        with pytest.raises(StoreUnavailable, match=name.split(":")[0]):
            store.put(SCOPE, record())
        assert store.stats() == StoreStats(entries=1, inserts=1, replays=0, conflicts=0)


def test_sqlite_value_that_no_longer_decodes_is_store_unavailable(tmp_path):
    path = tmp_path / "s.db"
    with SqliteIdempotencyStore(path) as store:
        store.put(SCOPE, Point(1, 2))
    _set_type(path, "replaycore.records:RunLifecycle")
    with SqliteIdempotencyStore(path) as store, pytest.raises(StoreUnavailable, match="decodes"):
        store.get(SCOPE)


def test_sqlite_closed_store_is_unavailable(tmp_path):
    store = SqliteIdempotencyStore(tmp_path / "s.db")
    store.put(SCOPE, b"x")
    store.close()
    with pytest.raises(ReexportedStoreUnavailable, match="closed"):
        store.get(SCOPE)
    with pytest.raises(StoreUnavailable, match="closed"):
        store.put(SCOPE, b"x")


def test_sqlite_unopenable_path_is_unavailable(tmp_path):
    with pytest.raises(StoreUnavailable, match="cannot"):
        SqliteIdempotencyStore(tmp_path / "missing-dir" / "s.db")


# -- processes ----------------------------------------------------------------

RACE_SCOPES = 40


def _race_puts(path: str, barrier: Any, worker: int, same: bool) -> list[str]:
    """Put every race scope once; report 'inserted', 'replay' or 'conflict' per scope."""
    store = SqliteIdempotencyStore(path)
    barrier.wait(timeout=60)
    seen = []
    for i in range(RACE_SCOPES):
        value = b"same" if same else f"worker-{worker}".encode()
        try:
            out = store.put(Scope("c", "a", f"k{i}"), value)
        except IdempotencyConflict:
            seen.append("conflict")
        else:
            seen.append("inserted" if out.inserted else "replay")
    store.close()
    return seen


def _race_entry(path: str, barrier: Any, worker: int, same: bool, results: Any) -> None:
    try:
        results.put((worker, _race_puts(path, barrier, worker, same)))
    except BaseException as exc:  # report at once instead of letting the parent time out
        results.put((worker, f"crashed: {exc!r}"))
        raise


def _run_race(path: Path, same: bool) -> dict[int, list[str]]:
    SqliteIdempotencyStore(path).close()  # create the schema before the race
    barrier = SPAWN.Barrier(PROCESSES)
    results = SPAWN.Queue()
    procs = [
        SPAWN.Process(target=_race_entry, args=(str(path), barrier, w, same, results))
        for w in range(PROCESSES)
    ]
    for proc in procs:
        proc.start()
    try:
        outcome = dict(results.get(timeout=60) for _ in procs)
        crashed = [v for v in outcome.values() if isinstance(v, str)]
        assert not crashed, crashed
    finally:
        for proc in procs:
            proc.join(timeout=60)
            if proc.is_alive():
                proc.kill()
    assert [proc.exitcode for proc in procs] == [0] * PROCESSES
    return outcome


def test_processes_racing_same_content_insert_each_scope_once(tmp_path):
    path = tmp_path / "race.db"
    outcome = _run_race(path, same=True)
    for i in range(RACE_SCOPES):
        column = [outcome[w][i] for w in range(PROCESSES)]
        assert sorted(column) == ["inserted"] + ["replay"] * (PROCESSES - 1)
    with SqliteIdempotencyStore(path) as store:
        assert store.stats() == StoreStats(
            entries=RACE_SCOPES,
            inserts=RACE_SCOPES,
            replays=RACE_SCOPES * (PROCESSES - 1),
            conflicts=0,
        )


def test_processes_racing_different_content_one_wins_per_scope(tmp_path):
    path = tmp_path / "race.db"
    outcome = _run_race(path, same=False)
    with SqliteIdempotencyStore(path) as store:
        for i in range(RACE_SCOPES):
            column = [outcome[w][i] for w in range(PROCESSES)]
            assert sorted(column) == ["conflict"] * (PROCESSES - 1) + ["inserted"]
            winner = column.index("inserted")
            assert store.get(Scope("c", "a", f"k{i}")) == f"worker-{winner}".encode()
        assert store.stats() == StoreStats(
            entries=RACE_SCOPES,
            inserts=RACE_SCOPES,
            replays=0,
            conflicts=RACE_SCOPES * (PROCESSES - 1),
        )


_PUT_LOOP = """
import sys
from replaycore import records
from replaycore.sqlite_store import SqliteIdempotencyStore
from replaycore.types import Scope
store = SqliteIdempotencyStore(sys.argv[1])
i = 0
while True:
    value = records.JournalRecord(
        record_id=f"r{i}", journal_seq=i + 1, run_id="run",
        payload=records.EffectResult(effect_id=f"e{i}", status="ok"),
    )
    store.put(Scope("client", "adapter", f"k{i}"), value)
    sys.stdout.write(f"{i}\\n")  # acknowledged only after put returned
    sys.stdout.flush()
    i += 1
"""


def test_sigkill_during_puts_keeps_every_acknowledged_entry(tmp_path):
    path = tmp_path / "crash.db"
    child = subprocess.Popen(
        [sys.executable, "-c", _PUT_LOOP, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None
    acked: list[int] = []
    try:
        while len(acked) < 150:
            line = child.stdout.readline()
            assert line, child.stderr.read().decode() if child.stderr else "child exited"
            acked.append(int(line))
        os.kill(child.pid, signal.SIGKILL)
        rest = child.stdout.read()
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    acked += [int(line) for line in rest.split(b"\n")[:-1]]  # the last piece may be torn
    assert acked == list(range(len(acked)))

    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()
    with SqliteIdempotencyStore(path) as store:
        for i in acked:
            got = store.get(Scope("client", "adapter", f"k{i}"))
            assert type(got) is records.JournalRecord
            assert got.record_id == f"r{i}"
        stats = store.stats()
        # the entry and its counter are written in one transaction
        assert stats.inserts == stats.entries == len(store) >= len(acked)
        assert stats.entries <= len(acked) + 1
        assert store.put(Scope("client", "adapter", "after"), b"x").inserted is True


def test_sqlite_store_and_result_cache_share_one_file(tmp_path):
    path = tmp_path / "both.db"
    with SqliteIdempotencyStore(path) as store, SqliteResultCache(path) as cache:
        assert store.put(SCOPE, b"x").inserted is True
        assert cache.execute("k", lambda: 1) == Success(1)
        assert store.get(SCOPE) == b"x"
        assert cache.get("k") is not None
        assert len(store) == len(cache) == 1
