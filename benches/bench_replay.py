"""Replay of a generated journal (SPEC sections 6 and 7), and converting it.

The journal is :func:`replaycore.synthetic.synthetic_records`: one long run
with a realistic mix of kinds, about 236 bytes a record, written once per
session as ``.rcj`` (and as ``.jsonl`` for converting back).
``REPLAYCORE_BENCH_RECORDS`` sets its length (default 1,000,000; CI uses
fewer so the suite stays quick).

Converting is what ``replaycore convert`` does on each backend: the Rust
core's own converter (``_core.convert_journal``), and on the reference
``read_journal`` into a ``JournalWriter`` of the other format, a batch at a
time (``cli._batches``).
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from replaycore import _core, cli, reference
from replaycore.synthetic import write_synthetic_journal

RECORDS = int(os.environ.get("REPLAYCORE_BENCH_RECORDS", "1000000"))
MANY = 4


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_journal(tmp_path_factory.mktemp("replay") / "run.rcj", RECORDS)


@pytest.fixture(scope="module")
def journals(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("many")
    return [
        write_synthetic_journal(folder / f"run-{i}.rcj", RECORDS // 2, seed=i, run_id=f"run-{i}")
        for i in range(MANY)
    ]


@pytest.mark.benchmark(group=f"replay .rcj ({RECORDS:,} records, end to end)")
def test_replay_file(benchmark: Any, impl: ModuleType, journal: Path) -> None:
    result = benchmark.pedantic(impl.replay, args=(journal,), rounds=3, iterations=1)
    assert result.status == "complete"
    assert result.records_applied == RECORDS


@pytest.mark.benchmark(group=f"decode only .rcj ({RECORDS:,} records)")
def test_decode_only(benchmark: Any, impl: ModuleType, journal: Path) -> None:
    stats = benchmark.pedantic(impl.inspect_journal, args=(journal,), rounds=3, iterations=1)
    assert stats["records"] == RECORDS


@pytest.mark.benchmark(group=f"replay_many ({MANY} journals x {RECORDS // 2:,} records)")
@pytest.mark.parametrize("threads", [1, 2], ids=["threads=1", "threads=2"])
def test_replay_many(benchmark: Any, journals: list[Path], threads: int) -> None:
    results = benchmark.pedantic(
        _core.replay_many, args=(journals,), kwargs={"threads": threads}, rounds=5, iterations=1
    )
    assert [r.status for r in results] == ["complete"] * MANY


@pytest.mark.benchmark(group=f"replay_many ({MANY} journals x {RECORDS // 2:,} records)")
def test_replay_many_reference(benchmark: Any, journals: list[Path]) -> None:
    results = benchmark.pedantic(reference.replay_many, args=(journals,), rounds=1, iterations=1)
    assert [r.status for r in results] == ["complete"] * MANY


@pytest.fixture(scope="module")
def lines(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_journal(tmp_path_factory.mktemp("lines") / "run.jsonl", RECORDS)


def _convert(impl: ModuleType, source: Path, target: Path) -> int:
    if impl is _core:
        count = _core.convert_journal(source, target)
        assert count is not None  # the converter takes every generated journal
        return count
    count = 0
    with reference.JournalWriter(target, fsync="batch") as writer:
        for batch in cli._batches(reference.read_journal(source)):
            writer.append_many(batch)
            count += len(batch)
    return count


def _bench_convert(benchmark: Any, impl: ModuleType, source: Path, target: Path) -> None:
    def fresh() -> tuple[tuple[Any, ...], dict[str, Any]]:
        target.unlink(missing_ok=True)
        return (impl, source, target), {}

    count = benchmark.pedantic(_convert, setup=fresh, rounds=3, iterations=1)
    assert count == RECORDS


@pytest.mark.benchmark(group=f"convert .rcj -> .jsonl ({RECORDS:,} records)")
def test_convert_to_lines(benchmark: Any, impl: ModuleType, journal: Path, tmp_path: Path) -> None:
    _bench_convert(benchmark, impl, journal, tmp_path / "out.jsonl")


@pytest.mark.benchmark(group=f"convert .jsonl -> .rcj ({RECORDS:,} records)")
def test_convert_to_frames(benchmark: Any, impl: ModuleType, lines: Path, tmp_path: Path) -> None:
    _bench_convert(benchmark, impl, lines, tmp_path / "out.rcj")
