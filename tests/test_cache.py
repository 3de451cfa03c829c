"""The result cache with expiry (SPEC section 5) on both backends.

Every behaviour test runs against :class:`ResultCache` and
:class:`SqliteResultCache` through the ``make_cache`` fixture, with a fake
clock. Leases are tested with real threads (Events, no sleeps) and, for
SQLite, with real processes: four racing on one key, and one SIGKILLed while
it holds the lease.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import multiprocessing
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from replaycore import cache as cache_module
from replaycore.cache import (
    CachedResult,
    CacheStats,
    Error,
    InProgress,
    Killed,
    ReplayedError,
    ResultCache,
    ResultCacheProtocol,
    SqliteResultCache,
    StoreUnavailable,
    Success,
    Timeout,
    idempotent,
)
from replaycore.errors import InvalidArgument, InvalidArgumentType
from replaycore.postgres import PostgresResultCache
from support import POSTGRES, race_execute

KEY = "idem_0123456789abcdef"
PROCESSES = 4
SPAWN = multiprocessing.get_context("spawn")
WAIT_S = 30  # bound on every Event wait / join: a hang fails instead of blocking


def run(coro: Any) -> Any:
    """``asyncio.run`` bounded by WAIT_S, so a broken lease cannot hang the suite."""
    return asyncio.run(asyncio.wait_for(coro, WAIT_S))


class FakeClock:
    """A clock tests move by hand; it counts calls so a test can see a waiter poll."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.calls = 0
        self._cond = threading.Condition()

    def __call__(self) -> float:
        with self._cond:
            self.calls += 1
            self._cond.notify_all()
            return self.now

    def advance(self, seconds: float) -> None:
        with self._cond:
            self.now += seconds

    def wait_for_calls(self, count: int) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: self.calls >= count, timeout=WAIT_S)


class Receipt(msgspec.Struct, frozen=True):
    order: str
    cents: int


MakeCache = Callable[..., Any]


@pytest.fixture(params=["memory", "sqlite", POSTGRES])
def make_cache(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeCache]:
    """``make(clock=..., lease_s=..., shared=False)``: a cache of one backend.

    SQLite and PostgreSQL caches made with ``shared=True`` open the same file
    or schema as the first one (a second handle, as another process would);
    in memory they are the same object. Every cache here runs on the test's
    fake clock; the PostgreSQL tests check the database's clock.
    """
    opened: list[Any] = []
    schemas: list[str] = []

    def make(clock: Callable[[], float] | None = None, lease_s: float = 60.0, shared=False):
        clock = clock if clock is not None else FakeClock()
        if request.param == "memory":
            if shared and opened:
                return opened[0]
            made: Any = ResultCache(clock=clock, lease_s=lease_s)
        elif request.param == "sqlite":
            name = "cache.db" if shared or not opened else f"cache{len(opened)}.db"
            made = SqliteResultCache(tmp_path / name, clock=clock, lease_s=lease_s)
        else:
            if not (shared and schemas):
                schemas.append(request.getfixturevalue("pg_schemas")())
            schema = schemas[0] if shared else schemas[-1]
            dsn = request.getfixturevalue("pg_dsn")
            made = PostgresResultCache(dsn, clock=clock, lease_s=lease_s, schema=schema)
        opened.append(made)
        return made

    yield make
    for made in opened:
        if not isinstance(made, ResultCache):
            made.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cache(make_cache: MakeCache, clock: FakeClock) -> Any:
    return make_cache(clock)


class Counter:
    """A step function that counts its calls and returns (or raises) what it is told."""

    def __init__(self, result: Any = "done", error: BaseException | None = None) -> None:
        self.calls = 0
        self.result = result
        self.error = error

    def __call__(self) -> Any:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return self.result


# -- outcomes, entries, factories ---------------------------------------------


def test_outcomes_are_tagged_frozen_structs():
    assert Success(1).value == 1
    assert Error("ValueError", "bad") == Error(code="ValueError", message="bad")
    assert Timeout() == Timeout()
    assert Killed() != Timeout()
    for outcome in (Success([1]), Error("E", "m"), Timeout(), Killed()):
        with pytest.raises(AttributeError):
            outcome.x = 1  # type: ignore[union-attr]
        data = msgspec.msgpack.encode(outcome)
        assert msgspec.msgpack.decode(data, type=cache_module.Outcome) == outcome
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(Killed())) == {"kind": "killed"}


def test_factories_build_unstored_entries():
    ok = CachedResult.success(KEY, "intent-1", {"a": 1}, 60)
    assert ok == CachedResult(KEY, "intent-1", Success({"a": 1}), 60.0, 0.0, 0.0, 0)
    assert type(ok.ttl_s) is float
    err = CachedResult.error(KEY, "intent-2", "ValueError", "bad", ttl_s=1.5)
    assert err.outcome == Error("ValueError", "bad")
    assert (err.key, err.intent_id, err.ttl_s, err.access_count) == (KEY, "intent-2", 1.5, 0)
    assert CachedResult(KEY, "", Timeout(), 1).outcome == Timeout()


@pytest.mark.parametrize(
    ("build", "error", "argument"),
    [
        (lambda: CachedResult.success("", "i", 1, 60), InvalidArgument, "key"),
        (lambda: CachedResult.success(b"k", "i", 1, 60), InvalidArgumentType, "key"),
        (lambda: CachedResult.success("\ud800", "i", 1, 60), InvalidArgument, "key"),
        (lambda: CachedResult.success("k", None, 1, 60), InvalidArgumentType, "intent_id"),
        (lambda: CachedResult.success("k", "i", 1, 0), InvalidArgument, "ttl_s"),
        (lambda: CachedResult.success("k", "i", 1, -1), InvalidArgument, "ttl_s"),
        (lambda: CachedResult.success("k", "i", 1, math.nan), InvalidArgument, "ttl_s"),
        (lambda: CachedResult.success("k", "i", 1, True), InvalidArgumentType, "ttl_s"),
        (lambda: CachedResult.success("k", "i", 1, "60"), InvalidArgumentType, "ttl_s"),
        (lambda: CachedResult.error("k", "i", 1, "m", 60), InvalidArgumentType, "code"),
        (lambda: CachedResult("k", "i", "ok", 60), InvalidArgumentType, "outcome"),  # type: ignore[arg-type]
    ],
)
def test_entries_are_validated(build, error, argument):
    with pytest.raises(error, match=argument) as info:
        build()
    assert info.value.argument == argument


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [({"lease_s": 0}, "lease_s"), ({"lease_s": math.inf}, "lease_s"), ({"clock": 5}, "clock")],
)
def test_cache_arguments_are_validated(tmp_path, kwargs, argument):
    with pytest.raises(InvalidArgument, match=argument):
        ResultCache(**kwargs)
    with pytest.raises(InvalidArgument, match=argument):
        SqliteResultCache(tmp_path / "c.db", **kwargs)


def test_both_caches_implement_the_protocol(cache):
    assert isinstance(cache, ResultCacheProtocol)
    assert cache.lease_s == 60.0


# -- get / put / expiry / cleanup / stats -----------------------------------------


def test_put_stamps_a_copy_and_get_counts_accesses(cache, clock):
    entry = CachedResult.success(KEY, "intent-1", {"order": "o-1"}, ttl_s=30)
    assert cache.put(entry) is True
    assert entry.stored_at == 0.0  # the caller's entry is not changed
    first = cache.get(KEY)
    assert first == CachedResult(
        KEY, "intent-1", Success({"order": "o-1"}), 30.0, 1000.0, 1030.0, 1
    )
    assert cache.get(KEY).access_count == 2
    assert cache.get(KEY).access_count == 3
    assert cache.get("other") is None


def test_a_later_put_replaces(cache, clock):
    assert cache.put(CachedResult.success(KEY, "a", 1, 10)) is True
    cache.get(KEY)
    clock.advance(5)
    assert cache.put(CachedResult.error(KEY, "b", "E", "m", 20)) is False
    got = cache.get(KEY)
    assert got == CachedResult(KEY, "b", Error("E", "m"), 20.0, 1005.0, 1025.0, 1)


def test_put_keeps_the_given_access_count_and_other_outcomes(cache):
    cache.put(CachedResult(KEY, "", Timeout(), 10, access_count=7))
    cache.put(CachedResult("k2", "", Killed(), 10))
    assert cache.get(KEY).outcome == Timeout()
    assert cache.get(KEY).access_count == 9
    assert cache.get("k2").outcome == Killed()


def test_expired_entry_is_removed_on_read(cache, clock):
    cache.put(CachedResult.success(KEY, "", 1, 10))
    clock.advance(9.999)
    assert cache.get(KEY) is not None
    clock.advance(0.001)  # live while clock() < expires_at
    assert cache.stats().expired_keys == 1
    assert cache.get(KEY) is None
    assert cache.stats().total_keys == 0
    assert cache.put(CachedResult.success(KEY, "", 2, 10)) is True


def test_an_infinite_ttl_never_expires(cache, clock):
    cache.put(CachedResult.success(KEY, "", 1, math.inf))
    clock.advance(1e12)
    assert cache.get(KEY).expires_at == math.inf
    assert cache.cleanup_expired() == 0


def test_cleanup_expired_removes_and_counts(cache, clock):
    for i, ttl in enumerate([5, 10, 10, 50]):
        cache.put(CachedResult.success(f"k{i}", "", i, ttl))
    assert cache.cleanup_expired() == 0
    clock.advance(10)
    assert cache.cleanup_expired() == 3
    assert cache.cleanup_expired() == 0
    assert [cache.get(f"k{i}") is None for i in range(4)] == [True, True, True, False]
    assert cache.stats().total_keys == 1


def test_stats(cache, clock):
    assert cache.stats() == CacheStats(
        total_keys=0, expired_keys=0, hit_rate=0.0, average_ttl_hours=0.0
    )
    cache.put(CachedResult.success("a", "", 1, 3600))
    cache.put(CachedResult.success("b", "", 2, 7200))
    cache.put(CachedResult.success("c", "", 3, 60))
    for _ in range(3):
        cache.get("a")
    cache.get("b")
    clock.advance(61)
    stats = cache.stats()
    assert type(stats) is CacheStats
    assert stats.total_keys == 3
    assert stats.expired_keys == 1
    assert stats.hit_rate == pytest.approx(4 / 3)
    assert stats.average_ttl_hours == pytest.approx((3600 + 7200 + 60) / 3 / 3600)


def test_values_round_trip_as_builtins(cache):
    value = {"n": 2**63 - 1, "f": 1.5, "s": "é", "b": b"\x00", "l": [None, True], "d": {}}
    cache.put(CachedResult.success(KEY, "", value, 60))
    assert cache.get(KEY).outcome == Success(value)
    cache.put(CachedResult.success("struct", "", Receipt("o-1", 5), 60))
    assert cache.get("struct").outcome == Success({"order": "o-1", "cents": 5})


def test_unencodable_value_is_refused(cache):
    with pytest.raises(InvalidArgumentType, match="value"):
        cache.put(CachedResult.success(KEY, "", object(), 60))
    with pytest.raises(InvalidArgument, match="value"):
        cache.put(CachedResult.success(KEY, "", 2**64, 60))
    assert cache.get(KEY) is None


def test_put_and_get_check_their_arguments(cache):
    with pytest.raises(InvalidArgumentType, match="entry"):
        cache.put(Success(1))
    with pytest.raises(InvalidArgumentType, match="key"):
        cache.get(1)
    with pytest.raises(InvalidArgument, match="key"):
        cache.get("")


# -- execute / aexecute ---------------------------------------------------------


def test_execute_miss_then_hit(cache, clock):
    value = {"status": "sent"}
    fn = Counter(value)
    first = cache.execute(KEY, fn, intent_id="intent-1", ttl_s=120)
    assert first == Success(value)
    assert first.value is value  # a miss returns fn's own object
    assert cache.execute(KEY, fn) == Success({"status": "sent"})
    assert cache.execute(KEY, Counter("other")) == Success({"status": "sent"})
    assert fn.calls == 1
    entry = cache.get(KEY)
    # two hits of execute and this get are accesses
    assert (entry.intent_id, entry.ttl_s, entry.stored_at, entry.access_count) == (
        "intent-1",
        120.0,
        1000.0,
        3,
    )


def test_execute_stamps_the_time_fn_finished(cache, clock):
    def slow() -> int:
        clock.advance(7)
        return 1

    cache.execute(KEY, slow, ttl_s=10)
    entry = cache.get(KEY)
    assert (entry.stored_at, entry.expires_at) == (1007.0, 1017.0)


def test_execute_caches_an_error(cache):
    fn = Counter(error=ValueError("bad input"))
    assert cache.execute(KEY, fn) == Error("ValueError", "bad input")
    assert cache.execute(KEY, fn) == Error("ValueError", "bad input")
    assert fn.calls == 1
    assert cache.get(KEY).outcome == Error("ValueError", "bad input")


def test_execute_runs_again_after_expiry(cache, clock):
    fn = Counter(1)
    cache.execute(KEY, fn, ttl_s=10)
    clock.advance(10)
    assert cache.execute(KEY, fn, ttl_s=10) == Success(1)
    assert fn.calls == 2


def test_execute_value_type_decodes_hits(cache):
    receipt = Receipt("o-1", 500)
    assert cache.execute(KEY, lambda: receipt, value_type=Receipt).value is receipt
    hit = cache.execute(KEY, Counter(), value_type=Receipt)
    assert type(hit.value) is Receipt
    assert hit == Success(receipt)
    assert cache.execute(KEY, Counter()) == Success({"order": "o-1", "cents": 500})
    with pytest.raises(InvalidArgument, match="value_type"):
        cache.execute(KEY, Counter(), value_type=int)
    with pytest.raises(InvalidArgumentType, match="value_type"):
        cache.execute(KEY, Counter(), value_type=5)


def test_execute_does_not_cache_base_exceptions(cache):
    class Stop(BaseException):
        pass

    with pytest.raises(Stop):
        cache.execute(KEY, Counter(error=Stop()))
    assert cache.get(KEY) is None
    assert cache.execute(KEY, Counter(2)) == Success(2)  # the lease was released


def test_execute_does_not_cache_a_nested_in_progress(cache):
    with pytest.raises(InProgress):
        cache.execute(KEY, Counter(error=InProgress("inner", 5.0)))
    assert cache.get(KEY) is None
    assert cache.execute(KEY, Counter(3)) == Success(3)


def test_execute_with_an_unencodable_value_caches_nothing(cache):
    with pytest.raises(InvalidArgumentType, match="value"):
        cache.execute(KEY, Counter(object()))
    assert cache.get(KEY) is None
    assert cache.execute(KEY, Counter(4)) == Success(4)


def test_execute_refuses_a_coroutine_function(cache):
    async def step() -> int:
        return 1

    with pytest.raises(InvalidArgumentType, match="aexecute"):
        cache.execute(KEY, step)
    assert cache.execute(KEY, Counter(5)) == Success(5)


@pytest.mark.parametrize(
    ("kwargs", "error", "argument"),
    [
        ({"key": ""}, InvalidArgument, "key"),
        ({"key": None}, InvalidArgumentType, "key"),
        ({"fn": "not callable"}, InvalidArgumentType, "fn"),
        ({"ttl_s": 0}, InvalidArgument, "ttl_s"),
        ({"intent_id": 3}, InvalidArgumentType, "intent_id"),
    ],
)
def test_execute_checks_arguments_before_running(cache, kwargs, error, argument):
    fn = Counter()
    call: dict[str, Any] = {"key": KEY, "fn": fn, **kwargs}
    with pytest.raises(error, match=argument):
        cache.execute(call.pop("key"), call.pop("fn"), **call)
    assert fn.calls == 0


def test_aexecute_miss_hit_and_error(cache):
    calls = []

    async def step(value: Any) -> Any:
        calls.append(value)
        await asyncio.sleep(0)
        if isinstance(value, Exception):
            raise value
        return value

    async def main() -> None:
        assert await cache.aexecute(KEY, lambda: step([1])) == Success([1])
        assert await cache.aexecute(KEY, lambda: step([2])) == Success([1])
        assert await cache.aexecute("e", lambda: step(KeyError("k"))) == Error("KeyError", "'k'")
        assert await cache.aexecute("e", lambda: step(0)) == Error("KeyError", "'k'")
        with pytest.raises(InvalidArgumentType, match="awaitable"):
            await cache.aexecute("sync", lambda: 5)
        assert await cache.aexecute("sync", lambda: step(6)) == Success(6)

    run(main())
    assert len(calls) == 3


def test_aexecute_cancellation_caches_nothing(cache):
    async def main() -> None:
        started = asyncio.Event()

        async def forever() -> None:
            started.set()
            await asyncio.Event().wait()

        task = asyncio.ensure_future(cache.aexecute(KEY, forever))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert cache.get(KEY) is None
        assert await cache.aexecute(KEY, lambda: asyncio.sleep(0), value_type=None) == Success(None)

    run(main())


def test_aexecute_second_task_in_progress_or_waits(cache):
    async def main() -> None:
        entered, release = asyncio.Event(), asyncio.Event()
        runs = []

        async def step() -> str:
            runs.append(1)
            entered.set()
            await release.wait()
            return "first"

        first = asyncio.ensure_future(cache.aexecute(KEY, step))
        await entered.wait()
        with pytest.raises(InProgress) as info:
            await cache.aexecute(KEY, step)
        assert info.value.key == KEY
        waiter = asyncio.ensure_future(cache.aexecute(KEY, step, wait=True))
        await asyncio.sleep(0.01)  # let the waiter poll at least once
        release.set()
        assert await first == Success("first")
        assert await waiter == Success("first")
        assert runs == [1]

    run(main())


# -- the decorator ------------------------------------------------------------


def test_decorator_on_def(cache):
    calls = []

    @idempotent(cache, key=lambda order, cents=0: f"charge:{order}", ttl_s=60)
    def charge(order: str, cents: int = 0) -> Receipt:
        """Charge an order."""
        calls.append(order)
        return Receipt(order, cents)

    first = charge("o-1", 500)
    assert first == Receipt("o-1", 500)
    again = charge("o-1", cents=999)  # the key ignores cents: a replay
    assert type(again) is Receipt  # decoded as the return annotation
    assert again == Receipt("o-1", 500)
    assert charge(order="o-2") == Receipt("o-2", 0)
    assert calls == ["o-1", "o-2"]
    assert cache.get("charge:o-1").ttl_s == 60.0
    assert charge.__name__ == "charge"
    assert charge.__doc__ == "Charge an order."
    assert inspect.signature(charge) == inspect.signature(charge.__wrapped__)
    assert str(inspect.signature(charge)) == "(order: 'str', cents: 'int' = 0) -> 'Receipt'"


def test_decorator_error_propagates_then_replays(cache):
    calls = []
    boom = ValueError("card declined")

    @idempotent(cache, key="pay-once")
    def pay() -> None:
        calls.append(1)
        raise boom

    with pytest.raises(ValueError, match="card declined") as info:
        pay()
    assert info.value is boom
    with pytest.raises(ReplayedError) as replayed:
        pay()
    assert (replayed.value.code, replayed.value.message) == ("ValueError", "card declined")
    assert calls == [1]
    assert cache.get("pay-once").outcome == Error("ValueError", "card declined")


def test_decorator_replays_timeout_and_killed_as_errors(cache):
    @idempotent(cache, key=lambda name: name)
    def step(name: str) -> int:
        return 1

    cache.put(CachedResult("t", "", Timeout(), 60))
    cache.put(CachedResult("k", "", Killed(), 60))
    with pytest.raises(ReplayedError, match="Timeout"):
        step("t")
    with pytest.raises(ReplayedError, match="Killed"):
        step("k")


def test_decorator_keeps_builtins_when_the_annotation_does_not_fit(cache):
    @idempotent(cache, key="k")
    def step() -> int:
        return "not an int"  # type: ignore[return-value]

    assert step() == "not an int"
    assert step() == "not an int"


def test_decorator_on_async_def(cache):
    calls = []

    @idempotent(cache, key=lambda order: f"ship:{order}")
    async def ship(order: str) -> Receipt:
        calls.append(order)
        await asyncio.sleep(0)
        if order == "bad":
            raise RuntimeError("no address")
        return Receipt(order, 1)

    async def main() -> None:
        assert await ship("o-1") == Receipt("o-1", 1)
        again = await ship("o-1")
        assert type(again) is Receipt
        assert again == Receipt("o-1", 1)
        with pytest.raises(RuntimeError, match="no address"):
            await ship("bad")
        with pytest.raises(ReplayedError, match="no address") as info:
            await ship("bad")
        assert info.value.code == "RuntimeError"

    run(main())
    assert calls == ["o-1", "bad"]
    assert inspect.iscoroutinefunction(ship)
    assert str(inspect.signature(ship)) == "(order: 'str') -> 'Receipt'"


def test_decorator_checks_its_arguments(cache):
    with pytest.raises(InvalidArgument, match="key"):
        idempotent(cache, key="")
    with pytest.raises(InvalidArgumentType, match="key"):
        idempotent(cache, key=5)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="ttl_s"):
        idempotent(cache, key="k", ttl_s=-1)


# -- leases: threads ------------------------------------------------------------


class Blocking:
    """A step that signals ``entered`` and returns ``result`` once ``release`` is set."""

    def __init__(self, result: Any) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.result = result
        self.calls = 0

    def __call__(self) -> Any:
        self.calls += 1
        self.entered.set()
        assert self.release.wait(WAIT_S)
        return self.result


def _in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    box: list[Any] = []

    def run() -> None:
        try:
            box.append(fn())
        except BaseException as exc:
            box.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, box


def test_second_caller_gets_in_progress(make_cache, clock):
    first_cache = make_cache(clock, lease_s=30, shared=True)
    other_cache = make_cache(clock, lease_s=30, shared=True)
    step = Blocking("first")
    thread, box = _in_thread(lambda: first_cache.execute(KEY, step))
    assert step.entered.wait(WAIT_S)
    second = Counter("second")
    with pytest.raises(InProgress) as info:
        other_cache.execute(KEY, second)
    assert (info.value.key, info.value.lease_expires_at) == (KEY, 1030.0)
    assert other_cache.execute("another-key", second) == Success("second")  # not blocked
    step.release.set()
    thread.join(WAIT_S)
    assert box == [Success("first")]
    assert other_cache.execute(KEY, second) == Success("first")
    assert (step.calls, second.calls) == (1, 1)


def test_wait_returns_the_first_callers_outcome(make_cache, clock):
    first_cache = make_cache(clock, shared=True)
    other_cache = make_cache(clock, shared=True)
    step = Blocking({"n": 1})
    first, first_box = _in_thread(lambda: first_cache.execute(KEY, step))
    assert step.entered.wait(WAIT_S)
    second = Counter("never")
    calls_before = clock.calls
    waiter, waiter_box = _in_thread(lambda: other_cache.execute(KEY, second, wait=True))
    clock.wait_for_calls(calls_before + 3)  # the waiter has polled: it is waiting
    assert waiter.is_alive()
    step.release.set()
    first.join(WAIT_S)
    waiter.join(WAIT_S)
    assert first_box == [Success({"n": 1})]
    assert waiter_box == [Success({"n": 1})]
    assert second.calls == 0


def test_wait_returns_a_cached_error_too(make_cache, clock):
    first_cache = make_cache(clock, shared=True)
    other_cache = make_cache(clock, shared=True)
    step = Blocking(None)

    def failing() -> None:
        step()
        raise OSError("disk full")

    first, _ = _in_thread(lambda: first_cache.execute(KEY, failing))
    assert step.entered.wait(WAIT_S)
    calls_before = clock.calls
    waiter, box = _in_thread(lambda: other_cache.execute(KEY, Counter(), wait=True))
    clock.wait_for_calls(calls_before + 2)
    step.release.set()
    first.join(WAIT_S)
    waiter.join(WAIT_S)
    assert box == [Error("OSError", "disk full")]


def test_lease_expiry_after_a_crash_lets_another_caller_run(make_cache, clock):
    """A caller stuck inside fn (as good as crashed) blocks the key only for the lease."""
    first_cache = make_cache(clock, lease_s=60, shared=True)
    other_cache = make_cache(clock, lease_s=60, shared=True)
    stuck = Blocking("late")
    first, first_box = _in_thread(lambda: first_cache.execute(KEY, stuck))
    assert stuck.entered.wait(WAIT_S)
    with pytest.raises(InProgress):
        other_cache.execute(KEY, Counter())
    clock.advance(59.999)
    with pytest.raises(InProgress):
        other_cache.execute(KEY, Counter())
    clock.advance(0.001)
    rescue = Counter("rescued")
    assert other_cache.execute(KEY, rescue) == Success("rescued")
    assert rescue.calls == 1
    # the stuck caller finishes late: it gets its own outcome, the first stored one stays
    stuck.release.set()
    first.join(WAIT_S)
    assert first_box == [Success("late")]
    assert other_cache.get(KEY).outcome == Success("rescued")


def test_a_waiter_takes_over_when_the_lease_lapses(make_cache, clock):
    first_cache = make_cache(clock, lease_s=10, shared=True)
    other_cache = make_cache(clock, lease_s=10, shared=True)
    stuck = Blocking("late")
    first, _ = _in_thread(lambda: first_cache.execute(KEY, stuck))
    assert stuck.entered.wait(WAIT_S)
    calls_before = clock.calls
    rescue = Counter("rescued")
    waiter, box = _in_thread(lambda: other_cache.execute(KEY, rescue, wait=True))
    clock.wait_for_calls(calls_before + 2)
    assert waiter.is_alive()
    clock.advance(10)
    waiter.join(WAIT_S)
    assert box == [Success("rescued")]
    stuck.release.set()
    first.join(WAIT_S)


def test_threads_racing_execute_run_fn_once(make_cache):
    threads = 8
    caches = [make_cache(time.time, shared=True) for _ in range(threads)]
    barrier = threading.Barrier(threads)
    runs: list[int] = []
    lock = threading.Lock()

    def step(i: int) -> int:
        with lock:
            runs.append(i)
        return i

    def work(i: int) -> Any:
        barrier.wait(WAIT_S)
        return caches[i].execute(KEY, lambda: step(i), wait=True)

    pairs = [_in_thread(lambda i=i: work(i)) for i in range(threads)]
    for thread, _ in pairs:
        thread.join(WAIT_S)
    results = [box[0] for _, box in pairs]
    assert len(runs) == 1
    assert results == [Success(runs[0])] * threads


# -- SQLite only ----------------------------------------------------------------


def test_sqlite_entries_persist_across_handles(tmp_path):
    clock = FakeClock()
    with SqliteResultCache(tmp_path / "c.db", clock=clock) as first:
        first.execute(KEY, lambda: [1, "two"], intent_id="i-1", ttl_s=50)
    with SqliteResultCache(tmp_path / "c.db", clock=clock) as second:
        assert second.execute(KEY, Counter()) == Success([1, "two"])
        assert second.get(KEY) == CachedResult(
            KEY, "i-1", Success([1, "two"]), 50.0, 1000.0, 1050.0, 2
        )
        assert len(second) == 1


def test_sqlite_closed_cache_is_unavailable(tmp_path):
    cache = SqliteResultCache(tmp_path / "c.db")
    cache.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        cache.get(KEY)
    with pytest.raises(StoreUnavailable, match="closed"):
        cache.execute(KEY, Counter())


# -- processes ----------------------------------------------------------------


def _race(tmp_path: Path, wait: bool) -> tuple[list[tuple[str, Any]], list[str]]:
    where = ("sqlite", str(tmp_path / "race.db"))
    return race_execute(where, KEY, tmp_path / "executions.log", wait, PROCESSES, WAIT_S)


def test_four_processes_racing_with_wait_execute_once(tmp_path):
    messages, executions = _race(tmp_path, wait=True)
    assert len(executions) == 1
    executor = int(executions[0])
    assert [m for m in messages if m[0] == "entered"] == [("entered", executor)]
    assert sorted(m for m in messages if m[0] == "done") == [("done", executor)] * PROCESSES


def test_four_processes_racing_without_wait_execute_once(tmp_path):
    messages, executions = _race(tmp_path, wait=False)
    assert len(executions) == 1
    executor = int(executions[0])
    assert [m for m in messages if m[0] == "done"] == [("done", executor)]
    busy = [m for m in messages if m[0] == "busy"]
    assert len(busy) == PROCESSES - 1
    assert len({lease for _, lease in busy}) == 1  # all saw the one lease


def _crasher(path: str, entered: Any) -> None:
    cache = SqliteResultCache(path, lease_s=60)

    def step() -> str:
        entered.set()
        time.sleep(600)  # SIGKILLed long before this ends
        return "never"

    cache.execute(KEY, step)


def test_process_killed_holding_the_lease_blocks_only_until_it_lapses(tmp_path):
    path = tmp_path / "crash.db"
    SqliteResultCache(path).close()
    entered = SPAWN.Event()
    child = SPAWN.Process(target=_crasher, args=(str(path), entered))
    child.start()
    try:
        assert entered.wait(WAIT_S)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.join(WAIT_S)
        if child.is_alive():
            child.kill()
    assert child.exitcode == -signal.SIGKILL

    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()
    rescue = Counter("rescued")
    with SqliteResultCache(path) as now:
        with pytest.raises(InProgress) as info:
            now.execute(KEY, rescue)
        assert info.value.lease_expires_at > time.time()
    # another process, later: once the lease has lapsed it claims the key and runs
    later = info.value.lease_expires_at + 1
    with SqliteResultCache(path, clock=lambda: later) as after:
        assert after.execute(KEY, rescue) == Success("rescued")
        assert after.execute(KEY, Counter()) == Success("rescued")
    assert rescue.calls == 1
