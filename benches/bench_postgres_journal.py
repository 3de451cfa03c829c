"""PostgresJournal (SPEC section 12) side by side with an ``.rcj`` journal file.

Every group holds one operation on a run of a :class:`PostgresJournal` and on
the same records in an ``.rcj`` file (``JournalWriter`` / ``replaycore.replay``),
on identical data; ``python benches/report.py`` prints records/s (or runs/s)
for both and their ratio.

* append one record per call and 100 per call; both sides durable when the
  call returns (the file with ``fsync="always"``, PostgreSQL with a
  synchronous commit);
* replay of one run of 100,000 records (``REPLAYCORE_BENCH_RECORDS`` sets the
  size; the report's 1,000,000 figure uses ``REPLAYCORE_BENCH_RECORDS=1000000``);
* ``replay_many`` over 100 runs of 1,000 records;
* ``claim_abandoned`` of 100 runs at a time whose leases ran out (PostgreSQL
  only: a file has no leases).

With ``--benchmark-disable`` (CI) every function runs once on small data.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgspec
import pytest
import replaycore
from replaycore import JournalWriter
from replaycore.records import JournalRecord
from replaycore.synthetic import synthetic_records

PREFIX = "pg: journal "
RECORDS = int(os.environ.get("REPLAYCORE_BENCH_RECORDS", "100000"))
RUNS, RUN_RECORDS = 100, 1_000
APPEND_CALLS = 300
CLAIMS = 100


def _label(benchmark: Any, group: str, store: str, per_call: int, unit: str) -> None:
    benchmark.group = PREFIX + group
    benchmark.extra_info.update(
        suite="postgres", store=store, per_call=per_call, unit=unit, twin="rcj file"
    )


def _journal(pg_dsn: str, pg_schemas: Any) -> Any:
    from replaycore.postgres import PostgresJournal

    return PostgresJournal(pg_dsn, schema=pg_schemas())


def _records(count: int, run_id: str) -> list[JournalRecord]:
    return list(synthetic_records(max(count, 2), run_id=run_id))


def _fresh(records: list[JournalRecord]) -> list[JournalRecord]:
    """The records with journal_seq 0: numbered by the journal they go to."""
    return [msgspec.structs.replace(r, journal_seq=0) for r in records]


@pytest.fixture(params=["postgres", "file"])
def side(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.parametrize("batch", [1, 100])
def test_append(
    benchmark: Any, side: str, batch: int, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    _label(benchmark, f"append (batch {batch})", side, batch, "records")
    calls = 1 if benchmark.disabled else APPEND_CALLS // (1 if batch == 1 else 10)
    batches = iter(
        [
            _fresh(_records(batch * calls + 1, "run-a")[i * batch : (i + 1) * batch])
            for i in range(calls)
        ]
    )
    if side == "postgres":
        journal = _journal(request.getfixturevalue("pg_dsn"), request.getfixturevalue("pg_schemas"))
        try:
            benchmark.pedantic(lambda: journal.append("run-a", next(batches)), rounds=calls)
        finally:
            journal.close()
    else:
        with JournalWriter(tmp_path / "a.rcj", fsync="always") as writer:
            benchmark.pedantic(lambda: writer.append_many(next(batches)), rounds=calls)


def test_replay(benchmark: Any, side: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    count = 2_000 if benchmark.disabled else RECORDS
    _label(benchmark, f"replay ({count:,} records)", side, count, "records")
    records = _records(count, "run-big")
    path = tmp_path / "big.rcj"
    with JournalWriter(path, fsync="never") as writer:
        writer.append_many(records)
    expected = replaycore.replay(path)
    if side == "postgres":
        journal = _journal(request.getfixturevalue("pg_dsn"), request.getfixturevalue("pg_schemas"))
        try:
            for start in range(0, count, 10_000):
                journal.append("run-big", records[start : start + 10_000])
            _analyze(journal)
            result = benchmark.pedantic(
                lambda: journal.replay("run-big"), rounds=5, warmup_rounds=1
            )
        finally:
            journal.close()
    else:
        result = benchmark.pedantic(lambda: replaycore.replay(path), rounds=5, warmup_rounds=1)
    assert result == expected


def test_replay_many(
    benchmark: Any, side: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    runs = 4 if benchmark.disabled else RUNS
    _label(benchmark, f"replay_many ({runs} runs x {RUN_RECORDS:,} records)", side, runs, "runs")
    run_ids = [f"run-{i:03d}" for i in range(runs)]
    if side == "postgres":
        journal = _journal(request.getfixturevalue("pg_dsn"), request.getfixturevalue("pg_schemas"))
        try:
            for run_id in run_ids:
                journal.append(run_id, _records(RUN_RECORDS, run_id))
            _analyze(journal)
            results = benchmark.pedantic(lambda: journal.replay_many(run_ids), rounds=5)
        finally:
            journal.close()
    else:
        paths = []
        for run_id in run_ids:
            paths.append(tmp_path / f"{run_id}.rcj")
            with JournalWriter(paths[-1], fsync="never") as writer:
                writer.append_many(_records(RUN_RECORDS, run_id))
        results = benchmark.pedantic(lambda: replaycore.replay_many(paths), rounds=5)
    assert [r.records_applied for r in results] == [RUN_RECORDS] * runs


def test_claim_abandoned(benchmark: Any, pg_dsn: str, pg_schemas: Any) -> None:
    rounds = 1 if benchmark.disabled else 20
    _label(benchmark, f"claim_abandoned ({CLAIMS} runs a call)", "postgres", CLAIMS, "runs")
    journal = _journal(pg_dsn, pg_schemas)
    now = [10_000]
    try:
        for i in range(CLAIMS * rounds):
            assert journal.acquire(f"run-{i:05d}", "worker-dead", 1_000, now=0) is not None

        def claim() -> list[Any]:
            # explicit times: every lease taken at 0 has run out at 10,000, and
            # each round's claims (lease 1,000) have not run out by the next
            now[0] += 1
            return journal.claim_abandoned("worker-b", 1_000_000, CLAIMS, now=now[0])

        leases = benchmark.pedantic(claim, rounds=rounds)
        assert len(leases) == CLAIMS
    finally:
        journal.close()


def _analyze(journal: Any) -> None:
    """ANALYZE the journal's tables, as autovacuum soon would after a bulk load."""
    journal._engine.rows(f"ANALYZE {journal._engine.table('journal_records')}")
    journal._engine.rows(f"ANALYZE {journal._engine.table('journal_runs')}")


def test_limits_script_reports_every_step(pg_dsn: str, pg_schemas: Any) -> None:
    """``postgres_limits.py`` (where a replay's time goes) on a small run: every
    step ran, and each one checked what it returned. Not a benchmark: skipped
    by ``--benchmark-only``, run by ``--benchmark-disable`` (CI)."""
    from postgres_limits import limits

    report = limits(pg_dsn, pg_schemas(), 2_000, 1)
    lines = report.splitlines()
    assert lines[0].startswith("2,000 records")
    steps = [line.split("  ")[0] for line in lines[2:]]
    assert steps[:4] == [
        "replay: .rcj file (Rust core)",
        "replay: PostgresJournal",
        "fetch the run's pages only (2 connections)",
        "reduce the fetched pages only (1 thread)",
    ]
    assert [step.split(",")[0] for step in steps[4:]] == [
        steps[4],
        "floor: loopback TCP",
        "floor: loopback TCP",
    ]
