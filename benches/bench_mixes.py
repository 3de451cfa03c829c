"""The speed issue's benchmarks: replay and the write path on the record mixes.

One pytest-benchmark group per (operation, mix, size), each holding the Rust
core, the reference and, where the issue names one, a plain-Python baseline
(:mod:`baselines`), all on the same files:

* ``replay .rcj`` — mixes a to e (:mod:`mixes`), ``replay(path,
  **mix.replay_options(n))`` (mixes c and e with ``available_content_refs``)
  against ``msgspec``: :func:`baselines.msgspec_decode` of the same file
  (frames walked, bodies decoded, no CRC check and nothing kept — the
  cheapest honest decoding, so the ratio is a conservative one). Goals:
  20x the reference, 4x msgspec.
* ``replay_many .rcj`` — mix f, ``n // 100`` runs of 100 records in separate
  files, ``replay_many(paths)`` (default threads: every core) against
  msgspec decoding of each file in turn (one thread). Same goals.
* ``append one by one .rcj fsync=never|batch`` — a ``JournalWriter`` opened,
  ``append`` per record (``journal_seq`` 0: the writer numbers it), closed;
  against ``plain loop``: :func:`baselines.plain_append` (number, encode, two
  CRCs, buffered write; one fsync at the end for ``batch``). Goal: 1.5x the
  plain loop.
* ``append_many .rcj|.jsonl fsync=never|batch`` — ``append_many`` per 10,000
  records. Goal: 3x the reference.
* ``read_journal .rcj|.jsonl`` — every record iterated. Goals: 2x the
  reference for .rcj, 1x for .jsonl.

Timed: only the operation (files are written before, outside the timing;
a write benchmark starts each round from a missing file). Each benchmark
then checks its outcome (status, counts, the written file replays), so a
benchmark that measures a failure fails.

Sizes: ``REPLAYCORE_BENCH_RECORDS`` (default 1,000,000) and
``min(200_000, REPLAYCORE_BENCH_RECORDS)``; ``REPLAYCORE_BENCH_MIXES``
(default ``abcdef``) narrows the mixes, e.g. ``REPLAYCORE_BENCH_MIXES=c``.
``extra_info`` carries ``suite="mixes"``, the operation, mix, size, side and
goals, which ``report.py --only mixes`` turns into its table.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import msgspec
import pytest
from baselines import msgspec_decode, plain_append
from mixes import (
    MIXES,
    RUN_RECORDS,
    WRITE_BATCH,
    Format,
    Mix,
    many_runs_refs,
    write_many_runs,
    write_mix,
)
from replaycore import _core
from replaycore.records import JournalRecord

RECORDS = int(os.environ.get("REPLAYCORE_BENCH_RECORDS", "1000000"))
SIZES = sorted({min(200_000, RECORDS), RECORDS})
CHOSEN = os.environ.get("REPLAYCORE_BENCH_MIXES", "abcdef")
CASES = [(MIXES[key], n) for n in SIZES for key in MIXES if key in CHOSEN]
RUN_SIZES = SIZES if "f" in CHOSEN else []
#: Mix f in the tables (its records come from mixes.many_runs, not from Mix.records).
RUNS = Mix("f", f"{RUN_RECORDS}-record runs")

Fsync = Literal["never", "batch"]
#: Goals of the issue per operation: side -> the Rust core's speed-up over it.
GOALS: dict[str, dict[str, float]] = {
    "replay .rcj": {"python": 20, "msgspec": 4},
    "replay_many .rcj": {"python": 20, "msgspec": 4},
    "append one by one .rcj": {"plain loop": 1.5},
    "append_many": {"python": 3},
    "read_journal .rcj": {"python": 2},
    "read_journal .jsonl": {"python": 1},
}


def _side(impl: ModuleType) -> str:
    """The backend's name in the tables: ``"rust"`` or ``"python"`` (the reference)."""
    return "rust" if impl is _core else "python"


def _rounds(side: str, n: int) -> int:
    """Few rounds for the reference (seconds a round at 1M records), more for the rest."""
    if side == "python":
        return 2 if n <= 200_000 else 1
    return 5 if n <= 200_000 else 3


def _place(
    benchmark: Any, operation: str, mix: Mix, n: int, side: str, goals: str | None = None
) -> None:
    """Put the benchmark in its (operation, mix, size) group, with what report.py reads.

    ``goals`` names the entry of :data:`GOALS` when it is not ``operation``.
    """
    benchmark.group = f"{operation}, mix {mix.key} ({mix.title}), {n:,} records"
    benchmark.extra_info.update(
        suite="mixes",
        operation=operation,
        mix=mix.key,
        title=mix.title,
        records=n,
        side=side,
        goals=GOALS[goals or operation],
    )


@pytest.fixture(scope="session")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the mixes' journals are written, once per session."""
    return tmp_path_factory.mktemp("mixes")


@pytest.fixture(scope="module", params=CASES, ids=[f"{m.key}-{n}" for m, n in CASES])
def case(request: pytest.FixtureRequest) -> tuple[Mix, int]:
    """A (mix, size); module-scoped so pytest runs every benchmark of one case together."""
    mix, n = request.param
    return mix, n


@pytest.fixture(scope="module")
def unnumbered(case: tuple[Mix, int]) -> list[JournalRecord]:
    """The case's records with ``journal_seq`` 0, for the writers to number (held per case)."""
    mix, n = case
    return [msgspec.structs.replace(r, journal_seq=0) for r in mix.records(n)]


def _fresh(path: Path) -> Callable[[], None]:
    """A pedantic ``setup`` that removes ``path``, so each round writes a new file."""
    return lambda: path.unlink(missing_ok=True)


def _check_written(path: Path, n: int) -> None:
    result = _core.replay(path)
    assert (result.status, result.records_applied) == ("complete", n)
    path.unlink()


def _time_writes(benchmark: Any, write: Callable[[], int], path: Path, side: str, n: int) -> None:
    """Time ``write`` (which writes ``n`` records to ``path`` and returns the
    last journal_seq) from a missing file each round, then check the file."""
    last = benchmark.pedantic(write, setup=_fresh(path), rounds=_rounds(side, n))
    assert last == n
    _check_written(path, n)


# -- replay -------------------------------------------------------------------


def test_replay(benchmark: Any, impl: ModuleType, case: tuple[Mix, int], folder: Path) -> None:
    mix, n = case
    path = write_mix(folder, mix.key, n)
    options = mix.replay_options(n)
    side = _side(impl)
    _place(benchmark, "replay .rcj", mix, n, side)
    result = benchmark.pedantic(
        impl.replay, args=(path,), kwargs=options, rounds=_rounds(side, n), iterations=1
    )
    assert (result.status, result.records_applied) == ("complete", n)


def test_replay_msgspec(benchmark: Any, case: tuple[Mix, int], folder: Path) -> None:
    mix, n = case
    path = write_mix(folder, mix.key, n)
    _place(benchmark, "replay .rcj", mix, n, "msgspec")
    assert benchmark.pedantic(msgspec_decode, args=(path,), rounds=_rounds("msgspec", n)) == n


@pytest.mark.parametrize("n", RUN_SIZES, ids=[f"f-{n}" for n in RUN_SIZES])
def test_replay_many(benchmark: Any, impl: ModuleType, n: int, folder: Path) -> None:
    paths = write_many_runs(folder, n)
    side = _side(impl)
    _place(benchmark, "replay_many .rcj", RUNS, n, side)
    results = benchmark.pedantic(impl.replay_many, args=(paths,), rounds=_rounds(side, n))
    assert [(r.status, r.records_applied) for r in results] == [("complete", RUN_RECORDS)] * len(
        paths
    )


@pytest.mark.parametrize("n", RUN_SIZES, ids=[f"f-{n}" for n in RUN_SIZES])
def test_replay_many_refs_checked(benchmark: Any, impl: ModuleType, n: int, folder: Path) -> None:
    """``replay_many`` given one large set of available refs for every run."""
    paths = write_many_runs(folder, n)
    refs = many_runs_refs(n)
    side = _side(impl)
    _place(benchmark, "replay_many .rcj, refs checked", RUNS, n, side, goals="replay_many .rcj")
    results = benchmark.pedantic(
        impl.replay_many,
        args=(paths,),
        kwargs={"available_content_refs": refs},
        rounds=_rounds(side, n),
    )
    assert [(r.status, r.records_applied) for r in results] == [("complete", RUN_RECORDS)] * len(
        paths
    )


@pytest.mark.parametrize("n", RUN_SIZES, ids=[f"f-{n}" for n in RUN_SIZES])
def test_replay_many_msgspec(benchmark: Any, n: int, folder: Path) -> None:
    paths = write_many_runs(folder, n)
    _place(benchmark, "replay_many .rcj", RUNS, n, "msgspec")

    def decode_all() -> int:
        return sum(msgspec_decode(path) for path in paths)

    assert benchmark.pedantic(decode_all, rounds=_rounds("msgspec", n)) == len(paths) * RUN_RECORDS


# -- write path ---------------------------------------------------------------


def _append_each(impl: ModuleType, path: Path, records: list[JournalRecord], fsync: Fsync) -> int:
    with impl.JournalWriter(path, fsync=fsync) as writer:
        append = writer.append
        for record in records:
            append(record)
        last: int = writer.last_journal_seq
    return last


def _append_batches(
    impl: ModuleType, path: Path, records: list[JournalRecord], fsync: Fsync
) -> int:
    with impl.JournalWriter(path, fsync=fsync) as writer:
        for start in range(0, len(records), WRITE_BATCH):
            writer.append_many(records[start : start + WRITE_BATCH])
        last: int = writer.last_journal_seq
    return last


@pytest.mark.parametrize("fsync", ["never", "batch"])
def test_append_one_by_one(
    benchmark: Any,
    impl: ModuleType,
    case: tuple[Mix, int],
    unnumbered: list[JournalRecord],
    fsync: Fsync,
    folder: Path,
) -> None:
    mix, n = case
    side = _side(impl)
    path = folder / f"append-one-{side}.rcj"
    _place(
        benchmark, f"append one by one .rcj fsync={fsync}", mix, n, side, "append one by one .rcj"
    )
    _time_writes(benchmark, lambda: _append_each(impl, path, unnumbered, fsync), path, side, n)


@pytest.mark.parametrize("fsync", ["never", "batch"])
def test_append_one_by_one_plain_loop(
    benchmark: Any,
    case: tuple[Mix, int],
    unnumbered: list[JournalRecord],
    fsync: Fsync,
    folder: Path,
) -> None:
    mix, n = case
    path = folder / "append-one-plain.rcj"
    side = "plain loop"
    _place(
        benchmark, f"append one by one .rcj fsync={fsync}", mix, n, side, "append one by one .rcj"
    )
    _time_writes(benchmark, lambda: plain_append(unnumbered, path, fsync=fsync), path, side, n)


@pytest.mark.parametrize("fsync", ["never", "batch"])
@pytest.mark.parametrize("fmt", ["rcj", "jsonl"])
def test_append_many(
    benchmark: Any,
    impl: ModuleType,
    case: tuple[Mix, int],
    unnumbered: list[JournalRecord],
    fmt: Format,
    fsync: Fsync,
    folder: Path,
) -> None:
    mix, n = case
    side = _side(impl)
    path = folder / f"append-many-{side}.{fmt}"
    _place(benchmark, f"append_many .{fmt} fsync={fsync}", mix, n, side, "append_many")
    _time_writes(benchmark, lambda: _append_batches(impl, path, unnumbered, fsync), path, side, n)


def _count(impl: ModuleType, path: Path) -> int:
    count = 0
    for _ in impl.read_journal(path):
        count += 1
    return count


@pytest.mark.parametrize("fmt", ["rcj", "jsonl"])
def test_read_journal(
    benchmark: Any, impl: ModuleType, case: tuple[Mix, int], fmt: Format, folder: Path
) -> None:
    mix, n = case
    path = write_mix(folder, mix.key, n, fmt)
    side = _side(impl)
    _place(benchmark, f"read_journal .{fmt}", mix, n, side)
    assert benchmark.pedantic(_count, args=(impl, path), rounds=_rounds(side, n)) == n
