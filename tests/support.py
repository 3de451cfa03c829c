"""Helpers shared by the test modules: ``outcome``, hypothesis strategies and
the PostgreSQL parameter of the store fixtures."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import strategies as st
from replaycore import records
from replaycore.errors import IdempotencyConflict

MAX_COUNTER = 2**63 - 1

#: The parameter of a store fixture that runs its tests on PostgreSQL. Marked,
#: so REPLAYCORE_REQUIRE_POSTGRES=1 counts those tests and ``-m postgres``
#: selects them; the fixture asks for ``pg_schemas`` only for this parameter.
POSTGRES = pytest.param("postgres", marks=pytest.mark.postgres)


def outcome(fn: Callable[..., Any], *args: Any, **kw: Any) -> tuple[Any, ...]:
    """``("ok", value)`` or ``("err", type(exc), exc.argument)`` of ``fn(*args, **kw)``.

    Any exception is caught, not only replaycore's, so a backend raising a
    bare ``OverflowError`` where the other raises ``InvalidArgument`` shows up
    as a difference instead of crashing the test. For an
    ``IdempotencyConflict`` the third item holds its attributes instead.
    """
    try:
        value = fn(*args, **kw)
    except Exception as exc:
        if isinstance(exc, IdempotencyConflict):
            detail: Any = (exc.scope, exc.prior_digest, exc.new_digest, exc.differing_fields)
        else:
            detail = getattr(exc, "argument", None)
        return ("err", type(exc), detail)
    return ("ok", value)


def same(left: tuple[Any, ...], right: tuple[Any, ...]) -> bool:
    """Two outcomes are equal, and ok values have the same type too."""
    if left != right:
        return False
    return left[0] != "ok" or type(left[1]) is type(right[1])


# -- text -------------------------------------------------------------------

#: Pieces that make key material ambiguous or hard to encode.
AWKWARD = [":", "::", "\x00", "\n", " ", "é", "ß", "٣", "\u200b", "😀", "\ud800", "\udfff", "idem_"]

#: Any text, lone surrogates included (codec=None lets st.characters produce them).
pieces = st.one_of(st.characters(codec=None), st.sampled_from(AWKWARD))
texts = st.lists(pieces, max_size=12).map("".join)

#: Text without lone surrogates.
clean_texts = st.lists(
    st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from([a for a in AWKWARD if a not in ("\ud800", "\udfff")]),
    ),
    max_size=12,
).map("".join)

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False),
    st.binary(max_size=4).map(bytearray),
    st.just(object()),
    st.tuples(st.integers()),
)

big_ints = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**300), max_value=2**300),
    st.sampled_from([0, 127, 128, 255, 256, -1, -128, -129, 2**63, -(2**63), 2**64, 2**200]),
)

good_parts = st.one_of(texts, st.binary(max_size=16), big_ints)
parts = st.one_of(good_parts, good_parts, good_parts, junk)

step_indexes = st.one_of(
    st.integers(min_value=0, max_value=2**32 - 1),
    st.sampled_from([0, 2**32 - 1, 2**32, -1, 2**64, -(2**64), 2**100]),
    st.integers(),
    junk,
)


# -- values for the store ---------------------------------------------------

short = st.sampled_from(["", "a", "b", "ok", "failed", "é", "x::y"])
opt_short = st.one_of(st.none(), short)

plain_data = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 5), short, st.binary(max_size=3)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(short, inner, max_size=3)),
    max_leaves=6,
)

payloads = st.one_of(
    st.builds(records.EffectResult, effect_id=short, status=short, output_ref=opt_short),
    st.builds(records.RunLifecycle, status=short),
    st.builds(records.EffectIntent, effect_id=short, effect_kind=short, idempotency_key=opt_short),
    st.builds(records.TerminalResult, effect_id=short, terminal_status=short),
    st.builds(records.Custom, name=short, data=plain_data),
)

journal_records = st.builds(
    records.JournalRecord,
    record_id=short,
    journal_seq=st.integers(1, 3),
    run_id=short,
    content_refs=st.lists(short, max_size=2),
    payload=payloads,
)


class Point(msgspec.Struct):
    """A user Struct outside replaycore.records (not frozen, positional)."""

    x: int
    y: int


class BytesSub(bytes):
    pass


class StrSub(str):
    pass


#: Values a store accepts (mostly) and a few it must reject.
store_values = st.one_of(
    st.binary(max_size=6),
    st.binary(max_size=6),
    st.binary(max_size=3).map(BytesSub),
    payloads,
    journal_records,
    journal_records,
    st.builds(Point, x=st.integers(-2, 2), y=st.integers(-2, 2)),
    st.sampled_from(
        [
            records.Custom(name="bad", data=object()),
            records.Custom(name="bad", data={object()}),
            "text",
            bytearray(b"x"),
            None,
            {"a": 1},
        ]
    ),
)


# -- PostgreSQL tests: processes, clocks, names ---------------------------------------

SPAWN = multiprocessing.get_context("spawn")
#: The bound on every wait for a test process: a hang fails instead of blocking.
PROCESS_TIMEOUT = 60
#: How far ``skewed_local_clock`` moves this process's clock ahead.
SKEW_S = 365 * 86_400


def table(schema: str, name: str) -> Any:
    """``schema.name`` as a psycopg SQL identifier (psycopg imported only here)."""
    from psycopg import sql

    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))


def run_processes(
    target: Callable[..., None],
    arg_lists: list[tuple[Any, ...]],
    while_running: Callable[[], None] | None = None,
) -> list[Any]:
    """Run ``target(*args, results)`` in one spawned process per args, call
    ``while_running()`` once they are started, and return what each put on
    ``results`` (one item each), after checking every one exited 0."""
    results = SPAWN.Queue()
    procs = [SPAWN.Process(target=target, args=(*args, results)) for args in arg_lists]
    for proc in procs:
        proc.start()
    try:
        if while_running is not None:
            while_running()
        reports = [results.get(timeout=PROCESS_TIMEOUT) for _ in procs]
    finally:
        for proc in procs:
            proc.join(PROCESS_TIMEOUT)
            if proc.is_alive():
                proc.kill()
                proc.join(PROCESS_TIMEOUT)
    crashed = [r for r in reports if isinstance(r[1], str) and r[1].startswith("crashed")]
    assert crashed == []
    assert [proc.exitcode for proc in procs] == [0] * len(procs)
    return reports


# -- processes racing ResultCache.execute on one key ------------------------------------


def open_cache(where: tuple[str, ...]) -> Any:
    """A durable result cache from picklable arguments: ``("sqlite", path)`` or
    ``("postgres", dsn, schema)``, so a spawned process can open its own."""
    if where[0] == "sqlite":
        from replaycore.sqlite import SqliteResultCache

        return SqliteResultCache(where[1])
    from replaycore.postgres import PostgresResultCache

    return PostgresResultCache(where[1], schema=where[2])


def _execute_racer(
    where: tuple[str, ...],
    key: str,
    log: str,
    hold_s: float,
    timeout: float,
    barrier: Any,
    release: Any,
    wait: bool,
    results: Any,
) -> None:
    """One racer: call ``execute(key)`` with the others; the step logs a line
    per execution and waits for ``release``; report each stage on ``results``."""
    from replaycore.errors import InProgress

    try:
        cache = open_cache(where)

        def step() -> int:
            with open(log, "a") as out:  # one line per execution, whichever process
                out.write(f"{os.getpid()}\n")
            results.put(("entered", os.getpid()))
            assert release.wait(timeout)
            time.sleep(hold_s)
            return os.getpid()

        barrier.wait(timeout)
        results.put(("calling", os.getpid()))
        try:
            outcome = cache.execute(key, step, wait=wait)
        except InProgress as exc:
            results.put(("busy", exc.lease_expires_at))
        else:
            results.put(("done", outcome.value))
        cache.close()
    except BaseException as exc:  # report at once instead of letting the parent time out
        results.put(("crashed", repr(exc)))
        raise


def race_execute(
    where: tuple[str, ...],
    key: str,
    log: Path,
    wait: bool,
    processes: int,
    timeout: float,
    hold_s: float = 0.0,
) -> tuple[list[tuple[str, Any]], list[str]]:
    """``processes`` spawned processes racing ``execute(key)`` on the cache
    ``where``: what they reported, and one log line per run of the step.

    The executing process is released only once every process has called
    execute and (without ``wait``) the others have been turned away.
    """
    open_cache(where).close()  # the schema exists before the race starts
    barrier, release, results = SPAWN.Barrier(processes), SPAWN.Event(), SPAWN.Queue()
    args = (where, key, str(log), hold_s, timeout, barrier, release, wait, results)
    procs = [SPAWN.Process(target=_execute_racer, args=args) for _ in range(processes)]
    for proc in procs:
        proc.start()
    messages: list[tuple[str, Any]] = []
    try:
        needed = {"calling": processes, "entered": 1, "busy": 0 if wait else processes - 1}
        while any(sum(m[0] == k for m in messages) < n for k, n in needed.items()):
            messages.append(results.get(timeout=timeout))
            assert messages[-1][0] != "crashed", messages[-1]
        release.set()
        while sum(m[0] in ("done", "busy") for m in messages) < processes:
            messages.append(results.get(timeout=timeout))
            assert messages[-1][0] != "crashed", messages[-1]
    finally:
        release.set()
        for proc in procs:
            proc.join(timeout)
            if proc.is_alive():
                proc.kill()
    assert [proc.exitcode for proc in procs] == [0] * processes
    return messages, log.read_text().splitlines() if log.exists() else []


def crash_while_writing(
    server: Any,
    write: Callable[[Any], None],
    acked: dict[Any, list[Any]],
    failed: dict[Any, Any],
    minimum: int,
) -> None:
    """Run ``write(key)`` in a thread per key of ``acked`` until every key
    has ``minimum`` acknowledged writes, then crash ``server`` (``crash()``,
    ``start()``, ``running``) under them and wait for every writer to stop.
    The writers append what returned to ``acked[key]`` and put what raised in
    ``failed[key]``; none may fail before the crash. The server is running
    again afterwards, whatever happened."""
    threads = [threading.Thread(target=write, args=(key,), daemon=True) for key in acked]
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + PROCESS_TIMEOUT
        while min(len(done) for done in acked.values()) < minimum:
            assert time.monotonic() < deadline, {k: len(v) for k, v in acked.items()}
            assert not failed, failed
            time.sleep(0.01)
        server.crash()
        for thread in threads:
            thread.join(PROCESS_TIMEOUT)
    finally:
        if not server.running:
            server.start()
