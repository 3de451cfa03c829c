"""PostgresJournal and run leases (SPEC 12 "Journals" and "Run leases"; issue 9).

* **Appending.** One transaction, all or nothing: ``journal_seq`` 0 is
  numbered after the run's last record, an explicit seq must be above it, a
  record of another run is refused; a refused batch leaves both tables exactly
  as they were (checked on the tables themselves, ``dump``). Four processes
  appending to one run at once get seqs 1..1000, none shared, none skipped.
* **Replaying.** A differential test over the generated journals of
  ``journals.py``: a run's ``replay`` (in pages of three records) equals
  ``replaycore.replay`` of the same records written to a ``.rcj`` file by
  ``JournalWriter``, and the reference's, in every mode, strictness and
  content-ref policy, violations included; ``replay_many`` equals the per-run
  results and ``replaycore.replay_many`` of the files.
* **Leases.** acquire, renew, release, claim_abandoned and fenced appends,
  on the database's clock by default (this process's clock is moved a year
  ahead so that a local time cannot pass for it) and on explicit ``now``s;
  sealed runs are never handed out; two claimers (threads, processes) never
  get the same run.
* **Crashes.** What returned before ``pg_ctl stop -m immediate`` is there
  afterwards and the same journal object works again; an append cut off by
  the crash is retried with its explicit seqs, harmlessly.
* **The harness scenario** (issue 9 item 5). ``HARNESS`` is a small worker
  loop: take a run (claim_abandoned, else acquire a run nobody started),
  replay it, and for each step append an ``effect_intent``, perform the
  effect (a row of an ``effects`` table, committed before the result), append
  the ``effect_result``, renew; finally ``run_lifecycle`` "completed". Its
  policy for a non-idempotent effect left pending (an intent without a
  result, which the replay reports as unsafe): never perform it again, but
  append a ``recovery`` record naming it and ``run_lifecycle`` "failed", so
  the run is sealed for an operator to repair. Every record id starts with
  the token of the lease it was appended under, so the table says which
  lease wrote what. Workers run on two hosts (network namespaces, pg_hosts):
  one is SIGKILLed and one SIGSTOPped mid-effect; the survivors take their
  runs over. A second test runs the harness on localhost through a server
  crash, with idempotent effects that the survivors may retry.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import psycopg
import pytest
import replaycore
from hypothesis import given, settings
from hypothesis import strategies as st
from journals import MODES, TERMINAL_STATUSES, journals, outcome, replay_options
from psycopg import sql
from replaycore import reference
from replaycore.errors import (
    InvalidArgument,
    InvalidArgumentType,
    ReplayViolation,
    StaleLease,
    StoreUnavailable,
)
from replaycore.journal import JournalWriter, read_journal
from replaycore.postgres import PostgresJournal, RunLease
from replaycore.records import (
    Checkpoint,
    Custom,
    EffectIntent,
    EffectResult,
    JournalRecord,
    OutputIntent,
    OutputReconciliation,
    PendingSideEffect,
    Recovery,
    RunLifecycle,
    TerminalResult,
)
from support import (
    PROCESS_TIMEOUT,
    SPAWN,
    crash_while_writing,
    run_processes,
    table,
)

if TYPE_CHECKING:
    from conftest import PostgresHosts
    from pg_server import PostgresServer

#: How long the journals of the failure tests wait for a connection.
TIMEOUT_S = 2
#: How far this process's clock is moved ahead in the clock tests.
RUN = "run-1"
HOUR_MS = 3_600_000

replace = msgspec.structs.replace


# -- helpers ------------------------------------------------------------------------------


def rec(record_id: str, payload: Any = None, seq: int = 0, run: str = RUN, **kw: Any) -> Any:
    """A record of ``run`` (a note when no payload is given)."""
    if payload is None:
        payload = Custom(name="note", data=record_id)
    return JournalRecord(record_id=record_id, journal_seq=seq, run_id=run, payload=payload, **kw)


def new_run() -> str:
    return f"run-{uuid.uuid4().hex[:12]}"


def server_ms(server: PostgresServer) -> int:
    """The server's clock now, in epoch milliseconds (as the leases use it)."""
    ((ms,),) = server.psql("SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint")
    return int(ms)


def dump(server: PostgresServer, schema: str) -> tuple[list[Any], list[Any]]:
    """Every row of the journal's two tables, in key order: what "nothing was
    written" compares."""
    runs = server.psql(
        sql.SQL("SELECT * FROM {} ORDER BY run_id").format(table(schema, "journal_runs"))
    )
    records = server.psql(
        sql.SQL("SELECT * FROM {} ORDER BY run_id, journal_seq").format(
            table(schema, "journal_records")
        )
    )
    return runs, records


def write_rcj(path: Path, records: list[Any]) -> Path:
    """``records`` in a ``.rcj`` file written by JournalWriter (the oracle's input)."""
    with JournalWriter(path, fsync="never") as writer:
        written = writer.append_many(records)
    assert written == records
    return path


def numbered(records: list[Any]) -> tuple[list[Any], set[int]]:
    """``records`` as an append should store them (seq 0 becomes the previous
    seq + 1, starting after 0), and the indexes a refusal may name: negative
    seqs, and explicit seqs not above the seq the records before them end on."""
    out, bad, last = [], set(), 0
    for i, record in enumerate(records):
        seq = record.journal_seq
        if seq < 0 or 0 < seq <= last:
            bad.add(i)
            continue
        last = seq or last + 1
        out.append(replace(record, journal_seq=last))
    return out, bad


def store_generated(
    journal: PostgresJournal, server: PostgresServer, schema: str, records: list[Any]
) -> tuple[str, list[Any]]:
    """Append a generated journal to a new run: with its own seqs when they can
    be stored; otherwise, after checking that the batch is refused whole, with
    every seq left to the journal. Returns the run and its records as stored."""
    run = new_run()
    records = [replace(r, run_id=run) for r in records]
    expected, bad = numbered(records)
    if bad:
        before = dump(server, schema)
        with pytest.raises(InvalidArgument) as info:
            journal.append(run, records)
        match = re.fullmatch(r"records\[(\d+)\]\.journal_seq", info.value.argument or "")
        assert match is not None, info.value.argument
        assert int(match.group(1)) in bad
        assert dump(server, schema) == before
        records = [replace(r, journal_seq=0) for r in records]
        expected, _ = numbered(records)
    stored = journal.append(run, records)
    assert stored == expected
    return run, stored


def is_terminal(record: Any) -> bool:
    payload = record.payload
    return isinstance(payload, TerminalResult) or (
        isinstance(payload, RunLifecycle) and payload.status in TERMINAL_STATUSES
    )


@pytest.fixture
def journal(pg_dsn: str, pg_schema: str) -> Iterator[PostgresJournal]:
    """A journal on a fresh schema that reads three records per round trip."""
    with PostgresJournal(pg_dsn, schema=pg_schema, fetch_records=3) as made:
        yield made


# -- appending ----------------------------------------------------------------------------


def test_seq_zero_is_numbered_after_the_runs_last_and_explicit_seqs_are_kept(journal):
    first = journal.append(RUN, [rec("a"), rec("b")])
    assert [(r.record_id, r.journal_seq) for r in first] == [("a", 1), ("b", 2)]
    # explicit above the last (a gap is allowed), then 0 continues after it
    mixed = journal.append(RUN, [rec("c", seq=5), rec("d"), rec("e", seq=9), rec("f")])
    assert [r.journal_seq for r in mixed] == [5, 6, 9, 10]
    assert journal.append(RUN, [rec("g")])[0].journal_seq == 11
    assert journal.last_seq(RUN) == 11
    # the records are returned as stored, otherwise unchanged
    assert mixed[0] == rec("c", seq=5)
    assert mixed[1] == rec("d", seq=6)
    assert list(journal.read(RUN)) == [*first, *mixed, rec("g", seq=11)]
    # runs are independent: another run starts at 1
    assert journal.append("run-2", [rec("a", run="run-2")])[0].journal_seq == 1
    assert journal.last_seq(RUN) == 11


@pytest.mark.parametrize(
    ("seqs", "bad"),
    [
        ([4], 0),  # equal to the last
        ([2], 0),  # below it
        ([0, 0, 5], 2),  # the batch's own zeros reach 6 before it
        ([7, 7], 1),  # not above the batch's previous
        ([8, 0, 3, 0], 2),
        ([0, 5], 1),  # the 0 became 5
    ],
)
def test_an_explicit_seq_at_or_below_the_last_refuses_the_whole_batch(
    journal, pg_server, pg_schema, seqs, bad
):
    journal.append(RUN, [rec("a"), rec("b"), rec("c"), rec("d")])  # last seq 4
    before = dump(pg_server, pg_schema)
    batch = [rec(f"n{i}", seq=s) for i, s in enumerate(seqs)]
    with pytest.raises(InvalidArgument) as info:
        journal.append(RUN, batch)
    assert type(info.value) is InvalidArgument
    assert info.value.argument == f"records[{bad}].journal_seq"
    assert info.value.value == seqs[bad]
    assert dump(pg_server, pg_schema) == before
    assert journal.last_seq(RUN) == 4
    assert [r.record_id for r in journal.read(RUN)] == ["a", "b", "c", "d"]


def test_a_refused_batch_with_a_terminal_record_does_not_seal_the_run(journal):
    lease = journal.acquire(RUN, "w", 1, now=0)
    journal.append(RUN, [rec("a", seq=3)], lease=lease)
    with pytest.raises(InvalidArgument):
        journal.append(RUN, [rec("done", RunLifecycle(status="completed")), rec("x", seq=2)])
    with pytest.raises(InvalidArgument):
        journal.append(RUN, [rec("done", TerminalResult(effect_id="e", terminal_status="ok")), 5])
    assert journal.last_seq(RUN) == 3
    # the run is not sealed: its expired lease is still handed out
    assert [c.run_id for c in journal.claim_abandoned("rescuer", HOUR_MS, 10)] == [RUN]


def test_the_largest_seq_is_stored_and_nothing_can_follow_it(journal, pg_server, pg_schema):
    top = 2**63 - 1
    assert journal.append(RUN, [rec("a", seq=top)])[0].journal_seq == top
    before = dump(pg_server, pg_schema)
    for batch in ([rec("b")], [rec("b", seq=top)]):
        with pytest.raises(InvalidArgument) as info:
            journal.append(RUN, batch)
        assert info.value.argument == "records[0].journal_seq"
    with pytest.raises(InvalidArgument) as info:
        journal.append(RUN, [rec("b", seq=2**63)])
    assert info.value.argument == "records[0].journal_seq"
    assert dump(pg_server, pg_schema) == before
    assert journal.last_seq(RUN) == top


def test_records_of_another_run_are_refused(journal, pg_server, pg_schema):
    journal.append(RUN, [rec("a")])
    before = dump(pg_server, pg_schema)
    for batch, bad in (
        ([rec("b", run="run-2")], 0),
        ([rec("b"), rec("c"), rec("d", run="run-2"), rec("e")], 2),
        ([rec("b"), rec("c", run="run-1 ")], 1),  # not the same id
    ):
        with pytest.raises(InvalidArgument) as info:
            journal.append(RUN, batch)
        assert type(info.value) is InvalidArgument
        assert info.value.argument == f"records[{bad}].run_id"
        assert info.value.value == batch[bad].run_id
    assert dump(pg_server, pg_schema) == before
    assert journal.runs() == [RUN]


@pytest.mark.parametrize(
    "bad",
    [
        "not a record",
        b"\x00",
        None,
        {"record_id": "x"},
        Custom(name="note", data=1),
        RunLease(RUN, "w", "t", 0),
    ],
    ids=["str", "bytes", "None", "dict", "payload", "lease"],
)
def test_something_that_is_not_a_journal_record_is_refused(journal, pg_server, pg_schema, bad):
    journal.append(RUN, [rec("a")])
    before = dump(pg_server, pg_schema)
    with pytest.raises(InvalidArgumentType) as info:
        journal.append(RUN, [rec("b"), bad])
    assert info.value.argument == "records[1]"
    assert dump(pg_server, pg_schema) == before


@pytest.mark.parametrize(
    "payload",
    [
        Custom(name="note", data=[object()]),
        Custom(name="note", data=2**64),
        Custom(name="\ud800", data=1),
    ],
    ids=["unencodable-object", "int-too-large", "lone-surrogate"],
)
def test_a_record_that_cannot_be_encoded_is_refused_naming_it(
    journal, pg_server, pg_schema, payload
):
    journal.append(RUN, [rec("a")])
    before = dump(pg_server, pg_schema)
    with pytest.raises(InvalidArgument) as info:
        journal.append(RUN, [rec("b"), rec("c", payload), rec("d")])
    assert dump(pg_server, pg_schema) == before
    # which argument: the record at index 1 (or a field of it)
    assert (info.value.argument or "").startswith("records[1]"), info.value.argument


@pytest.mark.parametrize(
    "spoil",
    [
        lambda r: replace(r, schema=True),
        lambda r: replace(r, at_ms="soon"),
        lambda r: replace(r, content_refs="ref-a"),
        lambda r: replace(r, idempotency_key=7),
        lambda r: replace(r, record_id=5),
        lambda r: replace(r, payload="effect_intent"),
    ],
    ids=["schema-bool", "at-ms-str", "content-refs-str", "key-int", "record-id-int", "payload-str"],
)
def test_a_record_that_would_not_read_back_is_refused_naming_it(
    journal, pg_server, pg_schema, spoil
):
    """A JournalRecord is a msgspec Struct, which does not check its fields when
    built: one whose field holds a value of the wrong type encodes, but does
    not decode back to a record. It must be refused like any other bad record
    -- a typed error naming ``records[1]``, nothing written -- since a stored
    body that does not decode makes the whole run unreadable (``read`` raises
    msgspec's ValidationError, ``replay`` JournalCorruption) for good."""
    journal.append(RUN, [rec("a")])
    before = dump(pg_server, pg_schema)
    with pytest.raises(InvalidArgument) as info:
        journal.append(RUN, [rec("b"), spoil(rec("c")), rec("d")])
    assert (info.value.argument or "").startswith("records[1]"), info.value.argument
    assert dump(pg_server, pg_schema) == before
    assert [r.record_id for r in journal.read(RUN)] == ["a"]
    assert journal.replay(RUN).records_applied == 1


@pytest.mark.parametrize("run_id", ["", " ", "\t\n"])
def test_blank_run_ids_are_refused_everywhere(journal, pg_server, pg_schema, run_id):
    journal.append(RUN, [rec("a")])
    before = dump(pg_server, pg_schema)
    calls: list[Callable[[], Any]] = [
        lambda: journal.append(run_id, [rec("b", run=run_id)]),
        lambda: journal.append(run_id, []),
        lambda: journal.read(run_id),
        lambda: journal.last_seq(run_id),
        lambda: journal.replay(run_id),
        lambda: journal.replay_many([RUN, run_id]),
        lambda: journal.acquire(run_id, "w", 1000),
    ]
    for i, call in enumerate(calls):
        with pytest.raises(InvalidArgument) as info:
            call()
        assert type(info.value) is InvalidArgument, i
        assert info.value.argument == ("run_ids[1]" if i == 5 else "run_id"), i
    assert dump(pg_server, pg_schema) == before


@pytest.mark.parametrize("run_id", [None, 5, b"run-1", ["run-1"], "run-\ud800"])
def test_run_ids_that_are_not_strings_are_refused(journal, pg_server, pg_schema, run_id):
    before = dump(pg_server, pg_schema)
    expected = InvalidArgument if isinstance(run_id, str) else InvalidArgumentType
    for call in (
        lambda: journal.append(run_id, [rec("a")]),
        lambda: journal.read(run_id),
        lambda: journal.last_seq(run_id),
        lambda: journal.replay(run_id),
        lambda: journal.acquire(run_id, "w", 1000),
    ):
        with pytest.raises(expected) as info:
            call()
        assert info.value.argument == "run_id"
    with pytest.raises(expected) as info:
        journal.replay_many([RUN, run_id])
    assert info.value.argument == "run_ids[1]"
    assert dump(pg_server, pg_schema) == before


@pytest.mark.parametrize(
    "records", ["ab", b"ab", None, 5, rec("a")], ids=["str", "bytes", "None", "int", "record"]
)
def test_records_that_are_not_an_iterable_of_records_are_refused(journal, records):
    with pytest.raises(InvalidArgumentType) as info:
        journal.append(RUN, records)
    assert info.value.argument == "records"
    assert journal.runs() == []


def test_an_empty_batch_writes_nothing(journal, pg_server, pg_schema):
    before = dump(pg_server, pg_schema)
    assert journal.append(RUN, []) == []
    assert journal.append(RUN, iter(())) == []
    assert dump(pg_server, pg_schema) == before
    assert journal.runs() == []
    assert journal.last_seq(RUN) == 0
    # any iterable of records works
    stored = journal.append(RUN, (rec(f"r{i}") for i in range(3)))
    assert [r.journal_seq for r in stored] == [1, 2, 3]


# -- reading ------------------------------------------------------------------------------


def test_read_after_seq_last_seq_and_runs(journal):
    records = journal.append(
        RUN, [rec(f"r{i}", seq=s) for i, s in enumerate([1, 2, 4, 5, 8, 9, 10])]
    )
    assert list(journal.read(RUN)) == records
    assert list(journal.read(RUN, 0)) == records
    assert list(journal.read(RUN, after_seq=2)) == records[2:]
    assert list(journal.read(RUN, after_seq=3)) == records[2:]  # a gap
    assert list(journal.read(RUN, after_seq=9)) == records[-1:]
    assert list(journal.read(RUN, after_seq=10)) == []
    assert list(journal.read(RUN, after_seq=2**63 - 1)) == []
    assert journal.last_seq(RUN) == 10
    journal.append("b-run", [rec("x", run="b-run")])
    journal.append("a-run", [rec("x", run="a-run")])
    journal.acquire("leased-only", "w", 1000)  # a lease is not a record
    assert journal.runs() == ["a-run", "b-run", RUN]
    assert journal.last_seq("leased-only") == 0
    # every page boundary (three records per round trip) and more than one page
    many = journal.append("long", [rec(f"r{i}", run="long") for i in range(20)])
    for after in range(22):
        assert list(journal.read("long", after)) == many[after:]


def test_run_ids_postgresql_text_could_not_hold_are_kept_exactly(journal):
    odd = ["run\x00nul", "ünïcödé-run", "run/with spaces", "😀", "a" * 2000]
    for run in odd:
        stored = journal.append(run, [rec("x", run=run)])
        assert list(journal.read(run)) == stored
        assert journal.last_seq(run) == 1
        assert journal.acquire(run, "w", 1000) is not None
    assert journal.runs() == sorted(odd, key=lambda r: r.encode())


@pytest.mark.parametrize(
    ("after", "error"),
    [
        (-1, InvalidArgument),
        (True, InvalidArgumentType),
        (1.5, InvalidArgumentType),
        ("1", InvalidArgumentType),
    ],
)
def test_bad_after_seq_is_refused(journal, after, error):
    with pytest.raises(error) as info:
        journal.read(RUN, after)
    assert info.value.argument == "after_seq"


def test_an_unknown_run_is_an_empty_journal(journal, tmp_path):
    journal.append(RUN, [rec("a")])
    unknown = "never-written"
    assert journal.last_seq(unknown) == 0
    assert list(journal.read(unknown)) == []
    assert unknown not in journal.runs()
    empty = tmp_path / "empty.rcj"
    empty.write_bytes(b"RCJ1")
    for mode in MODES:
        for strict in (None, True, False):
            got = journal.replay(unknown, mode=mode, strict=strict)
            assert got == replaycore.replay(b"RCJ1", mode=mode, strict=strict)
            assert got == replaycore.replay(empty, mode=mode, strict=strict)
            assert got == reference.replay(empty, mode=mode, strict=strict)
        assert (
            journal.replay_many([unknown, unknown], mode=mode)
            == [replaycore.replay(b"RCJ1", mode=mode)] * 2
        )
    assert journal.replay(unknown).latest_journal_seq == 0
    assert journal.replay_many([]) == []
    # replaying wrote nothing
    assert journal.runs() == [RUN]
    assert journal.last_seq(unknown) == 0


@pytest.mark.parametrize("fetch", [0, -1, True, 1.5])
def test_bad_fetch_records_is_refused(pg_dsn, pg_schema, fetch):
    expected = InvalidArgument if type(fetch) is int else InvalidArgumentType
    with pytest.raises(expected) as info:
        PostgresJournal(pg_dsn, schema=pg_schema, fetch_records=fetch)
    assert info.value.argument == "fetch_records"


def test_bad_replay_options_are_the_errors_replay_gives(journal):
    journal.append(RUN, [rec("a")])
    for options in (
        {"mode": "bogus"},
        {"missing_content_policy": "ignore"},
        {"strict": "yes"},
        {"available_content_refs": 5},
    ):
        expected = outcome(replaycore.replay, b"RCJ1", **options)
        assert expected[0] == "err", options
        assert outcome(journal.replay, RUN, **options) == expected, options
        assert outcome(journal.replay_many, [RUN], **options) == expected, options
    expected = outcome(replaycore.replay, b"RCJ1", no_such_option=1)
    assert expected[:2] == ("err", TypeError)
    assert outcome(journal.replay, RUN, no_such_option=1) == expected


# -- replaying: differential --------------------------------------------------------------

stricts = st.sampled_from([None, None, True, False])


@settings(max_examples=250)
@given(records=journals(), options=replay_options(), strict=stricts)
def test_generated_journals_replay_as_the_same_records_in_a_file(
    journal, pg_server, pg_schema, tmp_path_factory, records, options, strict
):
    run, stored = store_generated(journal, pg_server, pg_schema, records)
    assert list(journal.read(run)) == stored
    path = write_rcj(tmp_path_factory.mktemp("rcj") / "run.rcj", stored)
    assert list(read_journal(path)) == stored
    for mode in MODES:
        got = outcome(journal.replay, run, mode=mode, strict=strict, **options)
        assert got == outcome(replaycore.replay, path, mode=mode, strict=strict, **options), mode
        assert got == outcome(reference.replay, path, mode=mode, strict=strict, **options), mode
        if got[0] == "err":
            assert got[1] is ReplayViolation, got


@settings(max_examples=40)
@given(
    runs=st.lists(journals(), min_size=1, max_size=4),
    unknown=st.booleans(),
    options=replay_options(),
    strict=stricts,
    threads=st.sampled_from([None, 1, 3]),
)
def test_replay_many_is_replay_of_each_run(
    pg_server, pg_dsn, pg_schema, tmp_path_factory, runs, unknown, options, strict, threads
):
    with (
        PostgresJournal(pg_dsn, schema=pg_schema, fetch_records=3) as paged,
        PostgresJournal(pg_dsn, schema=pg_schema) as whole,
    ):
        folder = tmp_path_factory.mktemp("many")
        ids, paths = [], []
        for i, records in enumerate(runs):
            run, stored = store_generated(paged, pg_server, pg_schema, records)
            ids.append(run)
            paths.append(write_rcj(folder / f"{i}.rcj", stored))
        if unknown:
            ids.insert(1, new_run())
            empty = folder / "empty.rcj"
            empty.write_bytes(b"RCJ1")
            paths.insert(1, empty)
        for mode in MODES:
            kw = {"mode": mode, "strict": strict, **options}
            singles = [outcome(paged.replay, run, **kw) for run in ids]
            assert [outcome(whole.replay, run, **kw) for run in ids] == singles
            files = replaycore.replay_many(paths, return_exceptions=True, **kw)
            assert [as_outcome(x) for x in files] == singles
            for store in (paged, whole):
                got = store.replay_many(ids, threads=threads, return_exceptions=True, **kw)
                assert [as_outcome(x) for x in got] == singles
                failures = [s for s in singles if s[0] == "err"]
                if failures:
                    with pytest.raises(failures[0][1]) as info:
                        store.replay_many(ids, threads=threads, **kw)
                    assert outcome(lambda e=info.value: _raise(e)) == failures[0]
                else:
                    assert store.replay_many(ids, threads=threads, **kw) == [s[1] for s in singles]


def _raise(exc: BaseException) -> Any:
    raise exc


def as_outcome(value: Any) -> tuple[Any, ...]:
    """What ``outcome`` would say of a value ``replay_many(return_exceptions=True)`` returned."""
    if isinstance(value, BaseException):
        return outcome(lambda: _raise(value))
    return ("ok", value)


def every_repair_kind(run: str) -> list[Any]:
    """A journal whose audit reports every repair kind a run stored in PostgreSQL
    can give (not ``journal_corruption``: the table holds canonical bodies, so
    no frame can be damaged; ``cursor_scope_mismatch`` is not a replay's)."""
    return [
        rec("r1", RunLifecycle(status="running"), 1, run, content_refs=["ref-gone"]),
        rec("r2", EffectIntent(effect_id="e1", effect_kind="http"), 2, run),
        rec("r3", EffectIntent(effect_id="e2", effect_kind="http", idempotency_key="k2"), 3, run),
        rec(
            "r4",
            Recovery(
                unsafe_pending=[
                    PendingSideEffect(effect_id="e3", intent_record_id="r0", reason="lost")
                ]
            ),
            4,
            run,
        ),
        rec("r5", OutputIntent(delivery_id="d1", sink_ref="s", dedupe_key="k"), 5, run),
        rec(
            "r6",
            OutputReconciliation(
                delivery_id="d2",
                intent_record_id="r0",
                dedupe_key="k",
                terminal_status="unknown",
                reason="operator",
                decision="skip",
                resend_allowed=False,
            ),
            6,
            run,
        ),
        rec(
            "r7",
            Checkpoint(
                checkpoint_seq=1,
                covers_journal_seq=7,
                loop_state="s",
                created_at_ms=0,
                content_ref_manifest=[],
            ),
            7,
            run,
        ),
        rec("r8", Custom(name="x", data=1), 8, run, schema=2),
        rec("r9", RunLifecycle(status="completed"), 9, run),
        rec("r10", Custom(name="after", data=None), 10, run),
    ]


def test_every_repair_kind_replays_as_from_a_file(journal, tmp_path):
    stored = journal.append(RUN, every_repair_kind(RUN))
    path = write_rcj(tmp_path / "run.rcj", stored)
    audit = journal.replay(RUN, mode="audit", available_content_refs=[])
    assert {r.kind for r in audit.repair_needed} == {
        "missing_content_ref",
        "unsafe_pending_side_effect",
        "non_idempotent_pending_side_effect",
        "output_delivery_reconciliation",
        "checkpoint_invalid",
        "replay_invariant_violation",
    }
    assert audit.terminal_status == "completed"
    for mode in MODES:
        for strict in (None, True, False):
            for policy in ("fail", "recoverable_replay_gap", "request_host_repair", "placeholder"):
                kw = {
                    "mode": mode,
                    "strict": strict,
                    "available_content_refs": [],
                    "missing_content_policy": policy,
                }
                got = outcome(journal.replay, RUN, **kw)
                assert got == outcome(replaycore.replay, path, **kw)
                assert got == outcome(reference.replay, path, **kw)
    # strictly, the bad checkpoint is the first violation: the same ReplayViolation
    with pytest.raises(ReplayViolation) as info:
        journal.replay(RUN, mode="resume")
    assert (info.value.kind, info.value.record_id, info.value.journal_seq) == (
        "checkpoint_invalid",
        "r7",
        7,
    )


def test_a_long_run_replays_in_pages_as_from_a_file(journal, tmp_path):
    records = []
    for i in range(200):
        records.append(rec(f"i{i}", EffectIntent(effect_id=f"e{i % 7}", effect_kind="db"), 0))
        if i % 3:
            records.append(rec(f"o{i}", EffectResult(effect_id=f"e{i % 7}", status="ok")))
    stored = journal.append(RUN, records)
    path = write_rcj(tmp_path / "long.rcj", stored)
    for mode in MODES:
        assert journal.replay(RUN, mode=mode) == replaycore.replay(path, mode=mode)
    assert journal.replay(RUN).records_applied == len(records)


SEQ_LAYOUTS = {
    "dense": list(range(1, 41)),
    "every-other": list(range(2, 82, 2)),  # last == 2 * count: seq ranges half empty
    "sparse": list(range(7, 7 * 41, 7)),  # last > 2 * count: page after page
    "huge-gaps": [1, 2, 3, 2**40, 2**40 + 1, 2**62, 2**62 + 5, 2**63 - 2, 2**63 - 1],
    "one": [2**63 - 1],
}


@pytest.mark.parametrize("layout", SEQ_LAYOUTS)
@pytest.mark.parametrize("fetch", [1, 3, 20_000])
def test_runs_of_every_seq_layout_replay_as_from_a_file(pg_dsn, pg_schema, tmp_path, layout, fetch):
    """Dense runs are fetched by seq range, sparse ones page after page, small
    ones of replay_many many runs at once: all give what the file gives."""
    seqs = SEQ_LAYOUTS[layout]
    records = []
    for i, seq in enumerate(seqs):
        payload = EffectIntent(effect_id=f"e{i % 3}", effect_kind="db") if i % 2 else None
        records.append(rec(f"r{i}", payload, seq, layout))
    path = tmp_path / "run.rcj"
    with PostgresJournal(pg_dsn, schema=pg_schema, fetch_records=fetch) as journal:
        assert journal.append(layout, records) == records
        journal.append("small", [rec("s", run="small")])
        write_rcj(path, records)
        for mode in MODES:
            expected = replaycore.replay(path, mode=mode, strict=False)
            assert journal.replay(layout, mode=mode, strict=False) == expected
            assert journal.replay_many(["small", layout, "none", layout], mode=mode, strict=False)[
                1::2
            ] == [expected, expected]
        assert list(journal.read(layout)) == records
        assert expected.records_applied == len(records)


@pytest.mark.parametrize("layout", ["dense", "sparse"])
@pytest.mark.parametrize("fetch", [3, 20_000])
@pytest.mark.parametrize(
    "planner",
    ["", "?options=-c%20enable_indexscan%3Doff%20-c%20enable_indexonlyscan%3Doff"],
    ids=["default-plans", "no-index-scans"],
)
def test_pages_are_in_seq_order_whatever_order_the_rows_are_stored_in(
    pg_dsn, pg_schema, tmp_path, layout, fetch, planner
):
    """A run whose rows sit in the table in reverse seq order (rows are
    stored in commit order, which for one run is seq order, so this is made
    by hand) replays as the file does: pages are normally read through the
    primary key, and when the server cannot use it (index scans switched off
    for the session) the page's ORDER BY still orders them."""
    records = [
        rec(f"r{i}", EffectIntent(effect_id=f"e{i}", effect_kind="db") if i % 2 else None, seq)
        for i, seq in enumerate(SEQ_LAYOUTS[layout])
    ]
    path = write_rcj(tmp_path / "run.rcj", records)
    with PostgresJournal(pg_dsn + planner, schema=pg_schema, fetch_records=fetch) as journal:
        journal.append(RUN, records)
        with psycopg.connect(pg_dsn, autocommit=True) as connection, connection.transaction():
            table = sql.Identifier(pg_schema, "journal_records")
            connection.execute(
                sql.SQL("CREATE TEMP TABLE held AS SELECT * FROM {} ORDER BY journal_seq").format(
                    table
                )
            )
            connection.execute(sql.SQL("DELETE FROM {}").format(table))
            connection.execute(
                sql.SQL("INSERT INTO {} SELECT * FROM held ORDER BY journal_seq DESC").format(table)
            )
            ((first,),) = connection.execute(
                sql.SQL("SELECT journal_seq FROM {} LIMIT 1").format(table)
            ).fetchall()
        assert first == records[-1].journal_seq  # the table now starts with the last record
        for mode in MODES:
            assert journal.replay(RUN, mode=mode) == replaycore.replay(path, mode=mode)
        assert journal.replay(RUN).records_applied == len(records)


# -- leases -------------------------------------------------------------------------------


def test_acquire_a_free_run_and_none_while_another_owner_holds_it(pg_server, journal):
    lease = journal.acquire(RUN, "worker-a", 60_000)
    assert isinstance(lease, RunLease)
    assert (lease.run_id, lease.owner_id) == (RUN, "worker-a")
    assert re.fullmatch(r"\S{8,}", lease.token)
    assert journal.acquire(RUN, "worker-b", 60_000) is None
    assert journal.acquire(RUN, "worker-b", 1) is None
    # the holder still writes; the run's other owners nothing
    assert journal.append(RUN, [rec("a")], lease=lease)[0].journal_seq == 1
    # another run is free
    other = journal.acquire("run-2", "worker-b", 60_000)
    assert other is not None
    assert other.token != lease.token


def test_the_same_owner_acquiring_again_gets_a_new_token_and_the_old_one_is_stale(
    pg_server, pg_schema, journal
):
    old = journal.acquire(RUN, "worker-a", 60_000)
    journal.append(RUN, [rec("a")], lease=old)
    new = journal.acquire(RUN, "worker-a", 60_000)
    assert new is not None
    assert new.token != old.token
    before = dump(pg_server, pg_schema)
    for call in (
        lambda: journal.append(RUN, [rec("b")], lease=old),
        lambda: journal.renew(old, 60_000),
        lambda: journal.release(old),
    ):
        with pytest.raises(StaleLease) as info:
            call()
        assert (info.value.run_id, info.value.token) == (RUN, old.token)
    assert dump(pg_server, pg_schema) == before
    assert journal.append(RUN, [rec("b")], lease=new)[0].journal_seq == 2


def test_renew_extends_the_lease_by_the_database_clock(pg_server, journal, skewed_local_clock):
    before = server_ms(pg_server)
    lease = journal.acquire(RUN, "w", 5_000)
    after = server_ms(pg_server)
    assert before + 5_000 <= lease.expires_at_ms <= after + 5_000
    time.sleep(0.05)
    before = server_ms(pg_server)
    renewed = journal.renew(lease, 5_000)
    after = server_ms(pg_server)
    assert before + 5_000 <= renewed.expires_at_ms <= after + 5_000
    assert renewed.expires_at_ms > lease.expires_at_ms
    assert (renewed.run_id, renewed.owner_id, renewed.token) == (RUN, "w", lease.token)
    # a shorter renewal sets the expiry to now + lease_ms, even if earlier
    shorter = journal.renew(renewed, 1)
    assert shorter.expires_at_ms < renewed.expires_at_ms
    # the old value of the same lease still works: the token is what counts
    assert journal.append(RUN, [rec("a")], lease=lease)[0].journal_seq == 1


def test_release_frees_the_run_at_once(journal):
    lease = journal.acquire(RUN, "worker-a", HOUR_MS)
    journal.append(RUN, [rec("a")], lease=lease)
    journal.release(lease)
    taken = journal.acquire(RUN, "worker-b", HOUR_MS)
    assert taken is not None
    assert taken.owner_id == "worker-b"
    with pytest.raises(StaleLease) as info:
        journal.append(RUN, [rec("b")], lease=lease)
    assert (info.value.run_id, info.value.token) == (RUN, lease.token)
    with pytest.raises(StaleLease):
        journal.release(lease)  # released twice
    with pytest.raises(StaleLease):
        journal.renew(lease, 1000)
    assert journal.append(RUN, [rec("b")], lease=taken)[0].journal_seq == 2
    # a released run is free, not abandoned: nobody claims it
    journal.release(taken)
    assert journal.claim_abandoned("rescuer", 1000, 10) == []
    assert journal.acquire(RUN, "worker-c", 1000) is not None


def test_an_expired_lease_nobody_took_still_appends_and_renews(pg_server, journal):
    lease = journal.acquire(RUN, "w", 20)
    time.sleep(0.05)
    assert server_ms(pg_server) > lease.expires_at_ms
    assert journal.append(RUN, [rec("a")], lease=lease)[0].journal_seq == 1
    renewed = journal.renew(lease, HOUR_MS)
    assert renewed.expires_at_ms > server_ms(pg_server)
    assert journal.append(RUN, [rec("b")], lease=renewed)[0].journal_seq == 2
    journal.release(renewed)


def test_after_claim_abandoned_the_old_lease_is_stale_and_writes_nothing(
    pg_server, pg_schema, journal
):
    old = journal.acquire(RUN, "sleeper", 500)
    journal.append(RUN, [rec("a"), rec("b")], lease=old)
    assert journal.claim_abandoned("rescuer", HOUR_MS, 10) == []  # not expired yet
    while server_ms(pg_server) <= old.expires_at_ms:
        time.sleep(0.05)
    (claimed,) = journal.claim_abandoned("rescuer", HOUR_MS, 10)
    assert (claimed.run_id, claimed.owner_id) == (RUN, "rescuer")
    assert claimed.token != old.token
    before = dump(pg_server, pg_schema)
    for call in (
        lambda: journal.append(RUN, [rec("c")], lease=old),
        lambda: journal.append(RUN, [rec("c", RunLifecycle(status="completed"))], lease=old),
        lambda: journal.renew(old, HOUR_MS),
        lambda: journal.release(old),
    ):
        with pytest.raises(StaleLease) as info:
            call()
        assert (info.value.run_id, info.value.token) == (RUN, old.token)
    assert dump(pg_server, pg_schema) == before
    # the old owner cannot take it back while the claim holds
    assert journal.acquire(RUN, "sleeper", HOUR_MS) is None
    assert journal.append(RUN, [rec("c")], lease=claimed)[0].journal_seq == 3


def test_an_unfenced_append_is_not_checked_against_leases(journal):
    """No ``lease``: the append is not fenced (a harness without leases); it
    does not disturb the run's lease either."""
    lease = journal.acquire(RUN, "w", HOUR_MS)
    assert journal.append(RUN, [rec("a")])[0].journal_seq == 1
    assert journal.append(RUN, [rec("b")], lease=lease)[0].journal_seq == 2


def test_a_lease_of_another_run_is_refused(journal, pg_server, pg_schema):
    lease = journal.acquire("run-2", "w", HOUR_MS)
    journal.append(RUN, [rec("a")])
    before = dump(pg_server, pg_schema)
    with pytest.raises(InvalidArgument) as info:
        journal.append(RUN, [rec("b")], lease=lease)
    assert type(info.value) is InvalidArgument
    assert info.value.argument == "lease"
    assert dump(pg_server, pg_schema) == before


@pytest.mark.parametrize("bad", ["token", ("run-1", "w", "t", 0), None], ids=repr)
def test_a_lease_that_is_not_a_run_lease_is_refused(journal, pg_server, pg_schema, bad):
    journal.append(RUN, [rec("a")])
    before = dump(pg_server, pg_schema)
    calls = [lambda: journal.renew(bad, 1000), lambda: journal.release(bad)]
    if bad is not None:  # lease=None is an unfenced append
        calls.append(lambda: journal.append(RUN, [rec("b")], lease=bad))
    for call in calls:
        with pytest.raises(InvalidArgumentType) as info:
            call()
        assert info.value.argument == "lease"
    assert dump(pg_server, pg_schema) == before


def test_a_lease_from_another_journal_is_stale(pg_server, pg_dsn, pg_schemas):
    """Found: a RunLease taken in one schema is StaleLease in another (its token
    is not that run's current one), never a write."""
    with (
        PostgresJournal(pg_dsn, schema=pg_schemas()) as mine,
        PostgresJournal(pg_dsn, schema=pg_schemas()) as theirs,
    ):
        foreign = theirs.acquire(RUN, "w", HOUR_MS)
        # the run in `mine`: first never leased, then leased by the same owner
        mine.append(RUN, [rec("a")])
        for _ in range(2):
            before = [r.journal_seq for r in mine.read(RUN)]
            for call in (
                lambda: mine.append(RUN, [rec("b")], lease=foreign),
                lambda: mine.renew(foreign, HOUR_MS),
                lambda: mine.release(foreign),
            ):
                with pytest.raises(StaleLease) as info:
                    call()
                assert (info.value.run_id, info.value.token) == (RUN, foreign.token)
            assert [r.journal_seq for r in mine.read(RUN)] == before
            own = mine.acquire(RUN, "w", HOUR_MS)
        assert mine.append(RUN, [rec("b")], lease=own)[0].journal_seq == 2
        assert theirs.append(RUN, [rec("x")], lease=foreign)[0].journal_seq == 1
        assert theirs.runs() == [RUN]
        assert [r.record_id for r in theirs.read(RUN)] == ["x"]


LEASE_TIMES = [
    (0, InvalidArgument),
    (-1, InvalidArgument),
    (True, InvalidArgumentType),
    (False, InvalidArgumentType),
    (1.5, InvalidArgumentType),
    (1000.0, InvalidArgumentType),
    ("1000", InvalidArgumentType),
    (None, InvalidArgumentType),
]


@pytest.mark.parametrize(("lease_ms", "error"), LEASE_TIMES, ids=repr)
def test_non_positive_or_non_int_lease_times_are_refused(
    journal, pg_server, pg_schema, lease_ms, error
):
    held = journal.acquire("held", "w", 1, now=0)
    before = dump(pg_server, pg_schema)
    for call in (
        lambda: journal.acquire(RUN, "w", lease_ms),
        lambda: journal.renew(held, lease_ms),
        lambda: journal.claim_abandoned("w", lease_ms, 10),
    ):
        with pytest.raises(error) as info:
            call()
        assert type(info.value) is error
        assert info.value.argument == "lease_ms"
    assert dump(pg_server, pg_schema) == before


@pytest.mark.parametrize("owner", ["", " ", "\n", None, 5, b"w", "w\ud800"], ids=repr)
def test_blank_or_non_string_owner_ids_are_refused(journal, pg_server, pg_schema, owner):
    journal.acquire("held", "w", 1, now=0)
    before = dump(pg_server, pg_schema)
    expected = InvalidArgument if isinstance(owner, str) else InvalidArgumentType
    for call in (
        lambda: journal.acquire(RUN, owner, 1000),
        lambda: journal.claim_abandoned(owner, 1000, 10),
    ):
        with pytest.raises(expected) as info:
            call()
        assert type(info.value) is expected
        assert info.value.argument == "owner_id"
    assert dump(pg_server, pg_schema) == before


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("limit", -1, InvalidArgument),
        ("limit", True, InvalidArgumentType),
        ("limit", 1.0, InvalidArgumentType),
        ("limit", None, InvalidArgumentType),
        ("now", -1, InvalidArgument),
        ("now", True, InvalidArgumentType),
        ("now", 1.5, InvalidArgumentType),
        ("now", "0", InvalidArgumentType),
    ],
)
def test_bad_limits_and_nows_are_refused(journal, pg_server, pg_schema, name, value, error):
    held = journal.acquire("held", "w", 1, now=0)
    before = dump(pg_server, pg_schema)
    calls = [lambda: journal.claim_abandoned("w", 1000, **{"limit": 10, name: value})]
    if name == "now":
        calls += [
            lambda: journal.acquire(RUN, "w", 1000, now=value),
            lambda: journal.renew(held, 1000, now=value),
        ]
    for call in calls:
        with pytest.raises(error) as info:
            call()
        assert info.value.argument == name
    assert dump(pg_server, pg_schema) == before


def test_explicit_nows_are_used_throughout(journal):
    lease = journal.acquire(RUN, "a", 100, now=1_000)
    assert lease.expires_at_ms == 1_100
    assert journal.acquire(RUN, "b", 100, now=1_099) is None
    assert journal.claim_abandoned("c", 100, 10, now=1_099) == []
    renewed = journal.renew(lease, 50, now=1_090)
    assert renewed.expires_at_ms == 1_140
    assert journal.acquire(RUN, "b", 100, now=1_139) is None
    taken = journal.acquire(RUN, "b", 100, now=1_140)  # expired at its expiry
    assert taken is not None
    assert taken.expires_at_ms == 1_240
    (claimed,) = journal.claim_abandoned("c", 10, 10, now=1_240)
    assert (claimed.owner_id, claimed.expires_at_ms) == ("c", 1_250)
    # the database's clock (years later) finds every such lease expired
    assert journal.acquire(RUN, "d", 100) is not None


def test_times_come_from_the_database_clock(pg_server, journal, skewed_local_clock):
    for run in ("a", "b", "c"):
        journal.acquire(run, "dead", 1, now=0)
    before = server_ms(pg_server)
    acquired = journal.acquire(RUN, "w", 10_000)
    claimed = journal.claim_abandoned("rescuer", 20_000, 3)
    renewed = journal.renew(acquired, 30_000)
    after = server_ms(pg_server)
    assert before + 10_000 <= acquired.expires_at_ms <= after + 10_000
    assert [c.run_id for c in claimed] == ["a", "b", "c"]
    for lease in claimed:
        assert before + 20_000 <= lease.expires_at_ms <= after + 20_000
    assert before + 30_000 <= renewed.expires_at_ms <= after + 30_000
    # a lease taken with a local clock a year ahead would still hold: it does not
    assert journal.acquire(RUN, "other", 1000) is None
    assert journal.claim_abandoned("rescuer", 1000, 10) == []


# -- claim_abandoned ----------------------------------------------------------------------


def test_claim_abandoned_takes_expired_runs_oldest_expiry_first_within_the_limit(journal):
    expiries = {"r-c": 300, "r-a": 100, "r-e": 500, "r-b": 200, "r-d": 400, "r-tie": 200}
    for run, expires in expiries.items():
        journal.acquire(run, "dead", expires - 50, now=50)
        journal.append(run, [rec("a", run=run)])
    journal.acquire("live", "alive", 10_000, now=50)  # expires at 10_050
    assert journal.claim_abandoned("x", 1000, 0, now=1_000) == []
    first = journal.claim_abandoned("x", 1000, 3, now=1_000)
    assert [c.run_id for c in first] == ["r-a", "r-b", "r-tie"]
    assert {(c.owner_id, c.expires_at_ms) for c in first} == {("x", 2_000)}
    assert len({c.token for c in first}) == 3
    rest = journal.claim_abandoned("y", 1000, 10, now=1_000)
    assert [c.run_id for c in rest] == ["r-c", "r-d", "r-e"]
    assert journal.claim_abandoned("z", 1000, 10, now=1_999) == []
    # x's claims expire at 2_000, y's too; the live lease at 10_050
    again = journal.claim_abandoned("z", 100_000, 100, now=2_000)
    assert sorted(c.run_id for c in again) == sorted(expiries)
    assert [c.run_id for c in journal.claim_abandoned("z", 1, 10, now=10_050)] == ["live"]
    # never-leased runs are not abandoned
    journal.append("unleased", [rec("a", run="unleased")])
    assert "unleased" not in [c.run_id for c in journal.claim_abandoned("z", 1, 100, now=99_999)]


SEALING = {
    **{status: RunLifecycle(status=status) for status in TERMINAL_STATUSES},
    "terminal_result": TerminalResult(effect_id="e1", terminal_status="done"),
    "terminal_result_failed": TerminalResult(effect_id="e9", terminal_status="failed"),
}
NOT_SEALING = {
    "running": RunLifecycle(status="running"),
    "paused": RunLifecycle(status="paused"),
    "Completed": RunLifecycle(status="Completed"),
    "effect_result": EffectResult(effect_id="e1", status="completed"),
    "custom": Custom(name="completed", data="failed"),
}


def test_sealed_runs_are_never_handed_out(journal):
    for name, payload in {**SEALING, **NOT_SEALING}.items():
        lease = journal.acquire(name, "dead", 1, now=0)
        journal.append(name, [rec("a", run=name), rec("b", payload, run=name)], lease=lease)
    # a terminal record mid-batch seals too; checkpoints and recoveries after it do not unseal
    lease = journal.acquire("mid", "dead", 1, now=0)
    journal.append(
        "mid",
        [
            rec("a", run="mid"),
            rec("b", RunLifecycle(status="failed"), run="mid"),
            rec("c", Recovery(unsafe_pending=[]), run="mid"),
        ],
        lease=lease,
    )
    journal.append("mid", [rec("d", Recovery(unsafe_pending=[]), run="mid")])
    # sealed by an unfenced append while its expired lease is still there
    journal.acquire("unfenced", "dead", 1, now=0)
    journal.append("unfenced", [rec("a", RunLifecycle(status="run_cancelled"), run="unfenced")])
    # sealed and then released
    released = journal.acquire("released", "w", HOUR_MS)
    journal.append("released", [rec("a", RunLifecycle(status="completed"), run="released")])
    journal.release(released)
    claimed = journal.claim_abandoned("rescuer", HOUR_MS, 100)
    assert sorted(c.run_id for c in claimed) == sorted(NOT_SEALING)
    # still never, when every lease has long expired (an explicit now)
    later = journal.claim_abandoned("rescuer", 1, 100, now=2**62)
    assert sorted(c.run_id for c in later) == sorted(NOT_SEALING)


def test_two_claiming_threads_never_get_the_same_run(journal):
    runs = [f"r{i:03d}" for i in range(120)]
    for i, run in enumerate(runs):
        journal.acquire(run, "dead", 1, now=i)
    got: dict[int, list[str]] = {}
    barrier = threading.Barrier(8)

    def claim(n: int) -> None:
        barrier.wait(PROCESS_TIMEOUT)
        mine = got.setdefault(n, [])
        while batch := journal.claim_abandoned(f"t{n}", HOUR_MS, 3):
            assert {c.owner_id for c in batch} == {f"t{n}"}
            mine.extend(c.run_id for c in batch)

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(PROCESS_TIMEOUT)
    everything = [run for mine in got.values() for run in mine]
    assert Counter(everything) == Counter(runs)  # each exactly once
    for mine in got.values():
        assert mine == sorted(mine)  # each claimer took the oldest left


def _claim_all(dsn: str, schema: str, owner: str, barrier: Any, results: Any) -> None:
    try:
        with PostgresJournal(dsn, schema=schema) as journal:
            barrier.wait(PROCESS_TIMEOUT)
            mine: list[tuple[str, str]] = []
            while batch := journal.claim_abandoned(owner, HOUR_MS, 2):
                mine.extend((c.run_id, c.token) for c in batch)
                for lease in batch:
                    journal.append(lease.run_id, [rec(owner, run=lease.run_id)], lease=lease)
        results.put((owner, mine))
    except BaseException as exc:
        results.put((owner, f"crashed: {exc!r}"))
        raise


def test_two_claiming_processes_never_get_the_same_run(journal, pg_dsn, pg_schema):
    runs = [f"r{i:03d}" for i in range(80)]
    for i, run in enumerate(runs):
        journal.acquire(run, "dead", 1, now=i)
    barrier = SPAWN.Barrier(4)
    reports = dict(
        run_processes(_claim_all, [(pg_dsn, pg_schema, f"p{n}", barrier) for n in range(4)])
    )
    claimed = [run for mine in reports.values() for run, _ in mine]
    assert Counter(claimed) == Counter(runs)
    for owner, mine in reports.items():
        for run, _ in mine:
            # each claimer's append, under its own lease, is the run's only record
            assert [r.record_id for r in journal.read(run)] == [owner]


# -- concurrency --------------------------------------------------------------------------

APPENDERS = 4
PER_APPENDER = 250


def _append_to_one_run(dsn: str, schema: str, worker: int, barrier: Any, results: Any) -> None:
    try:
        rng = random.Random(worker)
        with PostgresJournal(dsn, schema=schema) as journal:
            barrier.wait(PROCESS_TIMEOUT)
            batches: list[list[int]] = []
            n = 0
            while n < PER_APPENDER:
                size = min(rng.randint(1, 4), PER_APPENDER - n)
                records = [
                    rec(f"w{worker}-{n + k}", Custom(name=f"w{worker}", data=n + k))
                    for k in range(size)
                ]
                batches.append([r.journal_seq for r in journal.append(RUN, records)])
                n += size
        results.put((worker, batches))
    except BaseException as exc:
        results.put((worker, f"crashed: {exc!r}"))
        raise


def test_four_processes_appending_to_one_run_share_and_skip_no_seq(journal, pg_dsn, pg_schema):
    """Meanwhile this process replays the run again and again (three records a
    round trip, so a replay spans many transactions): each replay sees a whole
    prefix of the run, never a hole."""
    total = APPENDERS * PER_APPENDER
    barrier = SPAWN.Barrier(APPENDERS)
    seen: list[Any] = []

    def replay_meanwhile() -> None:
        deadline = time.monotonic() + PROCESS_TIMEOUT
        while time.monotonic() < deadline:
            for got in (journal.replay(RUN), *journal.replay_many([RUN, RUN])):
                seen.append(got)
                assert got.status == "complete"
                assert got.records_applied == got.latest_journal_seq
                assert got.sequence_gaps == []
            if seen[-1].latest_journal_seq == total:
                return

    reports = dict(
        run_processes(
            _append_to_one_run,
            [(pg_dsn, pg_schema, w, barrier) for w in range(APPENDERS)],
            while_running=replay_meanwhile,
        )
    )
    assert len({got.latest_journal_seq for got in seen}) > 2  # some replays were mid-way
    acknowledged = sorted(seq for batches in reports.values() for b in batches for seq in b)
    assert acknowledged == list(range(1, total + 1))
    for batches in reports.values():
        for batch in batches:  # a batch is one transaction: contiguous seqs
            assert batch == list(range(batch[0], batch[0] + len(batch)))
    records = list(journal.read(RUN))
    assert [r.journal_seq for r in records] == list(range(1, total + 1))
    assert journal.last_seq(RUN) == total
    by_worker: dict[str, list[tuple[int, int]]] = {}
    for r in records:
        by_worker.setdefault(r.payload.name, []).append((r.journal_seq, r.payload.data))
    for worker, batches in reports.items():
        mine = by_worker[f"w{worker}"]
        assert [seq for seq, _ in mine] == [seq for b in batches for seq in b]
        assert [n for _, n in mine] == list(range(PER_APPENDER))  # in its own order
    # the appends really overlapped: some worker's records are not one block
    assert any(seqs[-1][0] - seqs[0][0] + 1 > len(seqs) for seqs in by_worker.values())
    result = journal.replay(RUN)
    assert (result.status, result.records_applied, result.sequence_gaps) == ("complete", total, [])


# -- crashes ------------------------------------------------------------------------------


def test_a_crash_loses_no_acknowledged_record_and_the_same_journal_works_again(
    pg_server, pg_dsn, pg_schema
):
    with PostgresJournal(pg_dsn, schema=pg_schema, timeout_s=TIMEOUT_S, fetch_records=3) as journal:
        lease = journal.acquire(RUN, "w", HOUR_MS)
        acked = []
        for i in range(20):
            acked += journal.append(RUN, [rec(f"a{i}"), rec(f"b{i}")], lease=lease)
        journal.append("sealed", [rec("x", RunLifecycle(status="completed"), run="sealed")])
        abandoned = journal.acquire("abandoned", "dead", 1, now=0)
        journal.append("abandoned", [rec("x", run="abandoned")], lease=abandoned)

        pg_server.crash()
        with pytest.raises(StoreUnavailable) as info:
            journal.last_seq(RUN)
        assert isinstance(info.value.__cause__, psycopg.Error)
        pg_server.start()

        # the first call after the restart works, and everything acknowledged is there
        assert list(journal.read(RUN)) == acked
        assert journal.last_seq(RUN) == 40
        assert journal.runs() == ["abandoned", RUN, "sealed"]
        # the lease survived the crash, and so did the sealing
        assert journal.append(RUN, [rec("c")], lease=lease)[0].journal_seq == 41
        assert journal.acquire(RUN, "other", 1000) is None
        assert [c.run_id for c in journal.claim_abandoned("rescuer", 1000, 10)] == ["abandoned"]
        assert journal.replay(RUN).records_applied == 41


def test_a_crash_during_appends_keeps_every_acknowledged_record_and_a_retry_is_harmless(
    pg_server, pg_dsn, pg_schema
):
    """Three threads append pairs of records with explicit seqs until the
    server crashes under them. Every pair that returned survives; the pair
    that raised may or may not have committed, and retrying it with the same
    seqs (the class docstring's advice) leaves it there exactly once."""
    acked: dict[str, list[Any]] = {f"run-{n}": [] for n in range(3)}
    failed: dict[str, tuple[list[Any], BaseException]] = {}
    with PostgresJournal(pg_dsn, schema=pg_schema, timeout_s=TIMEOUT_S) as journal:
        leases = {run: journal.acquire(run, "w", HOUR_MS) for run in acked}

        def write(run: str) -> None:
            i = 0
            while i < 100_000:
                pair = [rec(f"{run}-{s}", seq=s, run=run) for s in (2 * i + 1, 2 * i + 2)]
                try:
                    acked[run] += journal.append(run, pair, lease=leases[run])
                except BaseException as exc:
                    failed[run] = (pair, exc)
                    return
                i += 1

        crash_while_writing(pg_server, write, acked, failed, 40)
        assert sorted(failed) == sorted(acked)
        for run, (pair, exc) in failed.items():
            assert isinstance(exc, StoreUnavailable), repr(exc)
            stored = list(journal.read(run))
            assert stored[: len(acked[run])] == acked[run]
            tail = stored[len(acked[run]) :]
            assert tail in ([], pair)
            if tail:  # the first attempt had committed: the retry is refused, harmlessly
                with pytest.raises(InvalidArgument) as info:
                    journal.append(run, pair, lease=leases[run])
                assert info.value.argument == "records[0].journal_seq"
            else:
                assert journal.append(run, pair, lease=leases[run]) == pair
            assert list(journal.read(run)) == acked[run] + pair
            assert journal.replay(run).sequence_gaps == []


# -- the harness scenario -----------------------------------------------------------------

HARNESS = r"""
import json, logging, os, sys, time
import psycopg
from psycopg import sql
from replaycore.errors import StaleLease, StoreUnavailable
from replaycore.postgres import PostgresJournal
from replaycore.records import (
    EffectIntent, EffectResult, JournalRecord, PendingSideEffect, Recovery, RunLifecycle,
)

cfg = json.loads(sys.argv[1])
# The pool's reconnection warnings during an outage are expected; stderr is
# kept for what is not.
logging.getLogger("psycopg").setLevel(logging.ERROR)
me, dsn, schema, lease_ms = cfg["worker"], cfg["dsn"], cfg["schema"], cfg["lease_ms"]
runs = cfg["runs"]
effects = [f"e{i}" for i in range(cfg["effects"])]
t = lambda name: sql.Identifier(schema, name)


def say(event, **fields):
    print(json.dumps({"event": event, "worker": me, **fields}), flush=True)


def connect():
    return psycopg.connect(dsn, autocommit=True, connect_timeout=5)


journal = PostgresJournal(dsn, schema=schema, timeout_s=cfg["timeout_s"], fetch_records=3)
say("started", pid=os.getpid())
with connect() as connection:
    # every worker has opened its journal before any starts
    connection.execute(sql.SQL("INSERT INTO {} VALUES (%s)").format(t("ready")), (me,))
    deadline = time.monotonic() + 60
    count = sql.SQL("SELECT count(*) FROM {}").format(t("ready"))
    while connection.execute(count).fetchone()[0] < cfg["expected"]:
        if time.monotonic() > deadline:
            raise TimeoutError("the other workers never came")
        time.sleep(0.01)

appended = 0
paused = False
current = None


def append(lease, payloads):
    # The record ids name the lease: the table says which lease wrote what.
    global appended
    records = []
    for payload in payloads:
        appended += 1
        records.append(JournalRecord(
            record_id=f"{lease.token}/{appended}", journal_seq=0, run_id=lease.run_id,
            payload=payload,
        ))
    stored = journal.append(lease.run_id, records, lease=lease)
    say("appended", run=lease.run_id, token=lease.token,
        records=[[r.record_id, r.journal_seq] for r in stored])


def perform(lease, effect):
    # The effect itself, committed before its result is appended.
    insert = "INSERT INTO {} (run_id, effect_id, worker, token, address) "
    insert += "VALUES (%s, %s, %s, %s, inet_client_addr())"
    if cfg["idempotent"]:
        insert += " ON CONFLICT (run_id, effect_id) DO NOTHING"
    with connect() as connection:
        connection.execute(
            sql.SQL(insert).format(t("effects")), (lease.run_id, effect, me, lease.token)
        )
    say("performed", run=lease.run_id, effect=effect, token=lease.token)
    time.sleep(cfg["effect_s"])


def work_on(lease, how):
    global current, paused
    current = lease.run_id
    say("granted", run=lease.run_id, token=lease.token, expires_at_ms=lease.expires_at_ms, how=how)
    result = journal.replay(lease.run_id, mode="resume")
    if result.terminal_status is not None:
        journal.release(lease)
        current = None
        return
    records = list(journal.read(lease.run_id))
    done = {r.payload.effect_id for r in records if isinstance(r.payload, EffectResult)}
    pending = result.unsafe_pending_side_effects
    say("replayed", run=lease.run_id, token=lease.token, last_seq=result.latest_journal_seq,
        pending=[[p.effect_id, p.intent_record_id, p.retry_allowed] for p in pending])
    unsafe = [p for p in pending if not p.retry_allowed]
    if unsafe:
        # Never performed again: named in a recovery record, and the run
        # sealed as failed for an operator to repair.
        append(lease, [
            Recovery(unsafe_pending=[
                PendingSideEffect(
                    effect_id=p.effect_id, intent_record_id=p.intent_record_id,
                    idempotency_key=p.idempotency_key, dedupe_key=p.dedupe_key,
                    reason="the worker was lost mid-effect; not retried",
                )
                for p in unsafe
            ]),
            RunLifecycle(status="failed"),
        ])
        journal.release(lease)
        say("sealed", run=lease.run_id, status="failed")
        current = None
        return
    retried = {p.effect_id for p in pending}  # idempotent ones, safe to perform again
    for effect in effects:
        if effect in done:
            continue
        if effect not in retried:
            key = f"{lease.run_id}:{effect}" if cfg["idempotent"] else None
            intent = EffectIntent(effect_id=effect, effect_kind="charge", idempotency_key=key)
            append(lease, [intent])
        perform(lease, effect)
        if cfg["pause_at"] == effects.index(effect) and not paused:
            paused = True
            say("paused", run=lease.run_id, effect=effect, token=lease.token,
                expires_at_ms=lease.expires_at_ms)
            sys.stdin.readline()  # killed here, or stopped and then told to go on
            say("resumed", run=lease.run_id, effect=effect, token=lease.token)
        append(lease, [EffectResult(effect_id=effect, status="ok")])
        lease = journal.renew(lease, lease_ms)
    append(lease, [RunLifecycle(status="completed")])
    journal.release(lease)
    say("sealed", run=lease.run_id, status="completed")
    current = None


deadline = time.monotonic() + cfg["deadline_s"]
start = cfg["index"] % len(runs)
order = runs[start:] + runs[:start]
retake = None
while True:
    if time.monotonic() > deadline:
        raise TimeoutError("the runs were never all sealed")
    try:
        if retake is not None:
            # Cut off by an outage: take my run again (a new token) and replay it.
            run, retake = retake, None
            lease = journal.acquire(run, me, lease_ms)
            if lease is not None:
                work_on(lease, "retake")
            continue
        claimed = journal.claim_abandoned(me, lease_ms, 1)
        if claimed:
            work_on(claimed[0], "claim")
            continue
        for run in order:
            # Runs somebody started are taken over by claim_abandoned only.
            if journal.last_seq(run) == 0:
                lease = journal.acquire(run, me, lease_ms)
                if lease is not None:
                    work_on(lease, "acquire")
                    break
        else:
            if all(r.terminal_status is not None for r in journal.replay_many(runs)):
                break
            time.sleep(0.05)
    except StaleLease as exc:
        say("stale", run=exc.run_id, token=exc.token)
        current = None
        if cfg["exit_on_stale"]:
            journal.close()
            sys.exit(0)
    except (StoreUnavailable, psycopg.Error) as exc:
        say("unavailable", run=current, error=f"{type(exc).__name__}: {exc}")
        retake, current = current, None
        time.sleep(0.1)
journal.close()
say("done")
"""

EFFECTS_TABLE = (
    "CREATE TABLE {} (n bigint GENERATED ALWAYS AS IDENTITY, run_id text NOT NULL, "
    "effect_id text NOT NULL, worker text NOT NULL, token text NOT NULL, address inet)"
)


class Worker:
    """One harness process: its events (parsed stdout lines) as they come."""

    def __init__(self, name: str, argv: list[str], cwd: Path) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
        )
        self.events: list[dict[str, Any]] = []
        self.arrived: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stderr = ""
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            event = json.loads(line)
            self.events.append(event)
            self.arrived.put(event)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    def wait_for(self, kind: str, timeout: float = PROCESS_TIMEOUT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.name} never said {kind!r}: {self.stderr}")
            try:
                event = self.arrived.get(timeout=min(left, 0.5))
            except queue.Empty:
                if self.proc.poll() is not None and self.arrived.empty():
                    raise AssertionError(
                        f"{self.name} exited {self.proc.returncode} before {kind!r}: {self.stderr}"
                    ) from None
                continue
            if event["event"] == kind:
                return event

    def pid(self) -> int:
        (started,) = [e for e in self.events if e["event"] == "started"]
        return int(started["pid"])

    def go_on(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float = PROCESS_TIMEOUT) -> int:
        code = self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(timeout)
        return code

    def stop(self) -> None:
        """Kill it if still running (cleanup)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(PROCESS_TIMEOUT)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == kind]


def harness_config(
    dsn: str, schema: str, worker: str, index: int, expected: int, runs: list[str], **kw: Any
) -> str:
    cfg = {
        "dsn": dsn,
        "schema": schema,
        "worker": worker,
        "index": index,
        "expected": expected,
        "runs": runs,
        "effects": 3,
        "lease_ms": 1_500,
        "effect_s": 0.03,
        "timeout_s": TIMEOUT_S,
        "deadline_s": 90,
        "idempotent": False,
        "pause_at": None,
        "exit_on_stale": False,
        **kw,
    }
    return json.dumps(cfg)


def prepare_harness(dsn: str, server: PostgresServer, schema: str, unique_effects: bool) -> None:
    with PostgresJournal(dsn, schema=schema):  # creates the journal's tables
        pass
    server.psql(sql.SQL(EFFECTS_TABLE).format(table(schema, "effects")))
    if unique_effects:
        server.psql(
            sql.SQL("CREATE UNIQUE INDEX ON {} (run_id, effect_id)").format(
                table(schema, "effects")
            )
        )
    server.psql(sql.SQL("CREATE TABLE {} (worker text)").format(table(schema, "ready")))


def effect_rows(server: PostgresServer, schema: str) -> list[tuple[Any, ...]]:
    return server.psql(
        sql.SQL("SELECT run_id, effect_id, worker, token, host(address) FROM {} ORDER BY n").format(
            table(schema, "effects")
        )
    )


def token_of(record: Any) -> str:
    return str(record.record_id).split("/", 1)[0]


def check_harness_journals(
    journal: PostgresJournal,
    runs: list[str],
    workers: list[Worker],
    lease_ms: int,
    exact: bool,
    retry_allowed: bool,
) -> dict[str, list[Any]]:
    """What every harness run must show; returns each run's records.

    * every run is sealed exactly once: one terminal record, the last one;
    * every record was written under a lease some worker was granted, the
      leases' records form one block each, in the order they were granted
      (a lease lost to a takeover wrote nothing after it);
    * the records of each lease are those its worker was told were appended
      (all of them with ``exact``; with an outage in between, an append that
      raised may have committed too, so then only: none acknowledged is lost);
    * every lease's replay (a takeover's included) saw the journal as it was
      before the lease's first record, and reported as pending exactly the
      effects whose intent had no result there (``retry_allowed`` as given).
    """
    events = [e for w in workers for e in w.events]
    grants = {e["token"]: e for e in events if e["event"] == "granted"}
    acknowledged: dict[str, list[list[Any]]] = {}
    for e in events:
        if e["event"] == "appended":
            acknowledged.setdefault(e["token"], []).extend(e["records"])
    replays = {e["token"]: e for e in events if e["event"] == "replayed"}
    journals_of: dict[str, list[Any]] = {}
    for run in runs:
        records = list(journal.read(run))
        journals_of[run] = records
        terminal = [r for r in records if is_terminal(r)]
        assert len(terminal) == 1, (run, terminal)
        assert records[-1] is terminal[0], run
        blocks = [token_of(r) for r in records]
        order = [tok for i, tok in enumerate(blocks) if i == 0 or blocks[i - 1] != tok]
        assert len(order) == len(set(order)), (run, order)  # one block per lease
        assert set(order) <= set(grants), run
        assert all(grants[tok]["run"] == run for tok in order)
        granted_at = [grants[tok]["expires_at_ms"] - lease_ms for tok in order]
        assert granted_at == sorted(granted_at), run
        for tok in order:
            mine = [[r.record_id, r.journal_seq] for r in records if token_of(r) == tok]
            if exact:
                assert mine == acknowledged.get(tok, []), (run, tok)
            else:
                assert all(a in mine for a in acknowledged.get(tok, [])), (run, tok)
        for i, record in enumerate(records):
            tok = token_of(record)
            if i and token_of(records[i - 1]) == tok:
                continue
            # lease `tok` wrote from here on: what did its replay see?
            before = records[:i]
            intents = {
                r.payload.effect_id: r.record_id
                for r in before
                if isinstance(r.payload, EffectIntent)
            }
            for r in before:
                if isinstance(r.payload, EffectResult):
                    intents.pop(r.payload.effect_id, None)
            seen = replays[tok]
            assert seen["last_seq"] == (before[-1].journal_seq if before else 0), (run, tok)
            assert sorted(seen["pending"]) == sorted(
                [effect, intent, retry_allowed] for effect, intent in intents.items()
            ), (run, tok)
    return journals_of


@pytest.fixture
def hosts_schema(pg_hosts: PostgresHosts) -> Iterator[str]:
    """A fresh schema name on pg_hosts' server, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:8]}"
    yield name
    with contextlib.suppress(psycopg.Error):
        pg_hosts.server.psql(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
        )


def test_harness_workers_on_two_hosts_survive_a_killed_and_a_stopped_worker(
    pg_hosts, hosts_schema, tmp_path
):
    """12 runs, 4 workers (2 per host). ``a-w0`` is SIGKILLed and ``b-w0``
    SIGSTOPped mid-effect of their first run (after the effect's row committed,
    before its result); the others take both runs over once the leases ran
    out, find the effect pending, do not perform it again and seal the run as
    failed. ``b-w0``, resumed with SIGCONT after its run was sealed, gets
    StaleLease on its next append and exits reporting it, having written
    nothing more."""
    server, hosts = pg_hosts
    schema = hosts_schema
    lease_ms = 1_500
    runs = [f"run-{i:02d}" for i in range(12)]
    prepare_harness(server.dsn(), server, schema, unique_effects=False)
    roles = {
        "a-w0": {"pause_at": 1},  # to be killed
        "a-w1": {},
        "b-w0": {"pause_at": 1, "exit_on_stale": True},  # to be stopped
        "b-w1": {},
    }
    workers: dict[str, Worker] = {}
    try:
        for index, (name, extra) in enumerate(roles.items()):
            host = hosts.hosts[0 if name.startswith("a") else 1]
            dsn = server.dsn(host=host.gateway)
            cfg = harness_config(dsn, schema, name, index * 3, len(roles), runs, **extra)
            argv = host.command([sys.executable, "-c", HARNESS, cfg])
            workers[name] = Worker(name, argv, tmp_path)
        killed, stopped = workers["a-w0"], workers["b-w0"]
        kill_at = killed.wait_for("paused")
        stop_at = stopped.wait_for("paused")
        assert killed.pid() == killed.proc.pid  # ip netns exec runs python itself
        os.kill(killed.pid(), signal.SIGKILL)
        os.kill(stopped.pid(), signal.SIGSTOP)
        with PostgresJournal(server.dsn(), schema=schema) as journal:
            deadline = time.monotonic() + PROCESS_TIMEOUT
            while journal.replay(stop_at["run"]).terminal_status is None:
                assert time.monotonic() < deadline, "nobody took the stopped worker's run over"
                time.sleep(0.05)
            resumed_at_ms = server_ms(server)
            os.kill(stopped.pid(), signal.SIGCONT)
            stopped.go_on()
            stale = stopped.wait_for("stale")
            codes = {name: w.finish() for name, w in workers.items()}

            assert codes == {"a-w0": -signal.SIGKILL, "a-w1": 0, "b-w0": 0, "b-w1": 0}
            assert {name: w.stderr for name, w in workers.items()} == dict.fromkeys(workers, "")
            # it was stopped for longer than its lease
            assert resumed_at_ms > stop_at["expires_at_ms"]
            # the stopped worker was refused on its very next append, and left
            assert (stale["run"], stale["token"]) == (stop_at["run"], stop_at["token"])
            assert [e["event"] for e in stopped.events[-3:]] == ["paused", "resumed", "stale"]
            assert stopped.of("done") == []

            records = check_harness_journals(
                journal, runs, list(workers.values()), lease_ms, exact=True, retry_allowed=False
            )
            rows = effect_rows(server, schema)
            lost = {kill_at["run"]: kill_at, stop_at["run"]: stop_at}
            assert len(lost) == 2
            for run in runs:
                result = journal.replay(run, mode="audit")
                intents = [
                    r.payload.effect_id for r in records[run] if isinstance(r.payload, EffectIntent)
                ]
                performed = Counter(effect for r, effect, *_ in rows if r == run)
                assert max(performed.values()) == 1, (run, performed)  # nothing ran twice
                assert len(intents) == len(set(intents)), run  # nor was tried again
                if run in lost:
                    at = lost[run]
                    assert result.terminal_status == "failed"
                    assert [p.effect_id for p in result.unsafe_pending_side_effects] == [
                        at["effect"],
                        at["effect"],
                    ]  # the survivor's recovery record, and the intent still open
                    assert intents == ["e0", "e1"]
                    assert performed == {"e0": 1, "e1": 1}
                    # taken over by claim_abandoned, by a survivor
                    takeover = [
                        e
                        for w in workers.values()
                        for e in w.of("granted")
                        if e["run"] == run and e["token"] != at["token"]
                    ]
                    assert [(e["how"], e["worker"] in ("a-w1", "b-w1")) for e in takeover] == [
                        ("claim", True)
                    ]
                    (recovery,) = [r for r in records[run] if isinstance(r.payload, Recovery)]
                    assert [p.effect_id for p in recovery.payload.unsafe_pending] == [at["effect"]]
                else:
                    assert (result.status, result.terminal_status) == ("complete", "completed")
                    assert intents == ["e0", "e1", "e2"]
                    assert performed == {"e0": 1, "e1": 1, "e2": 1}
            # under the lost leases: exactly what was acknowledged before they were lost
            for at in lost.values():
                written = [
                    [r.record_id, r.journal_seq]
                    for r in records[at["run"]]
                    if token_of(r) == at["token"]
                ]
                assert written == acked_by(workers, at["token"])
                assert len(written) == 3  # intent e0, result e0, intent e1
            # effects were performed from both hosts, each by its host's address
            addresses = {"a": hosts.hosts[0].address, "b": hosts.hosts[1].address}
            assert {address for *_, address in rows} == set(addresses.values())
            for _, _, worker, _, address in rows:
                assert address == addresses[worker[0]]
    finally:
        for worker in workers.values():
            if worker.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.proc.pid, signal.SIGCONT)
            worker.stop()


def acked_by(workers: dict[str, Worker], token: str) -> list[list[Any]]:
    return [
        rid
        for w in workers.values()
        for e in w.of("appended")
        if e["token"] == token
        for rid in e["records"]
    ]


def test_harness_workers_through_a_server_crash_lose_nothing_and_complete_every_run(
    pg_server, pg_dsn, pg_schema, tmp_path
):
    """Three localhost workers, idempotent effects (the intent carries an
    idempotency key; performing it twice leaves one row): the server crashes
    mid-run. Workers cut off take their run again and replay it; whatever an
    append acknowledged before the crash is there after it, and every run
    completes, each effect performed and resulted once."""
    runs = [f"run-{i:02d}" for i in range(9)]
    prepare_harness(pg_dsn, pg_server, pg_schema, unique_effects=True)
    names = ["w0", "w1", "w2"]
    workers: dict[str, Worker] = {}
    lease_ms = 20_000
    try:
        for index, name in enumerate(names):
            cfg = harness_config(
                pg_dsn,
                pg_schema,
                name,
                index * 3,
                len(names),
                runs,
                effects=4,
                effect_s=0.1,
                lease_ms=lease_ms,
                idempotent=True,
            )
            workers[name] = Worker(name, [sys.executable, "-c", HARNESS, cfg], tmp_path)
        count = sql.SQL("SELECT count(*) FROM {}").format(table(pg_schema, "effects"))
        deadline = time.monotonic() + PROCESS_TIMEOUT
        while pg_server.psql(count)[0][0] < 8:
            assert time.monotonic() < deadline
            assert all(w.proc.poll() is None for w in workers.values())
            time.sleep(0.02)
        acked_before = [e for w in workers.values() for e in w.of("appended")]
        pg_server.crash()
        time.sleep(1)
        pg_server.start()
        codes = {name: w.finish(90) for name, w in workers.items()}
    finally:
        if not pg_server.running:
            pg_server.start()
        for worker in workers.values():
            worker.stop()
    assert codes == dict.fromkeys(names, 0), {n: w.stderr for n, w in workers.items()}
    assert {n: w.stderr for n, w in workers.items()} == dict.fromkeys(names, "")
    assert any(w.of("unavailable") for w in workers.values())  # the crash was felt
    with PostgresJournal(pg_dsn, schema=pg_schema) as journal:
        records = check_harness_journals(
            journal, runs, list(workers.values()), lease_ms, exact=False, retry_allowed=True
        )
        for event in acked_before:  # acknowledged before the crash, there after it
            stored = {r.record_id: r.journal_seq for r in records[event["run"]]}
            for record_id, seq in event["records"]:
                assert stored.get(record_id) == seq
        rows = effect_rows(pg_server, pg_schema)
        for run in runs:
            result = journal.replay(run)
            assert (result.status, result.terminal_status) == ("complete", "completed"), run
            kinds = Counter(
                (type(r.payload).__name__, getattr(r.payload, "effect_id", None))
                for r in records[run]
            )
            for effect in ("e0", "e1", "e2", "e3"):
                assert kinds[("EffectIntent", effect)] == 1, (run, kinds)
                assert kinds[("EffectResult", effect)] == 1, (run, kinds)
            assert sorted(e for r, e, *_ in rows if r == run) == ["e0", "e1", "e2", "e3"]
