"""Attempt ledger (SPEC section 8): the cost of an append must not grow with
the ledger.

Each group holds the same operation on an empty ledger and on a
200,000-line ledger, side by side. Appends include the ``fsync`` that makes
them durable, so their absolute figures depend on the disk; the ratio
between the two rows is what matters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
from replaycore.ledger import LedgerEvent, LedgerRecord, append, last_seq, path_for

BIG_LINES = 200_000
ROUNDS = 1000
EVENT = [LedgerEvent("tool.called", {"tool": "search", "query": "durable ledgers"})]


@pytest.fixture(scope="session")
def big_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root whose ledger ("run", "big") holds 200,000 records, written directly."""
    root = tmp_path_factory.mktemp("ledger-big")
    path = path_for(root, "run", "big")
    path.parent.mkdir(parents=True)
    encoder = msgspec.json.Encoder()
    with path.open("wb") as file:
        for seq in range(1, BIG_LINES + 1):
            record = LedgerRecord(
                run_id="run",
                node_id="big",
                attempt=1,
                session_id="bench",
                seq=seq,
                ts_ms=1_700_000_000_000 + seq,
                event_type="tool.called",
                payload={"tool": "search", "query": "durable ledgers", "n": seq},
            )
            file.write(encoder.encode(record) + b"\n")
    return root


@pytest.fixture
def empty_root(tmp_path: Path) -> Path:
    """A root whose ledger ("run", "empty") exists and holds no line yet."""
    path = path_for(tmp_path, "run", "empty")
    path.parent.mkdir(parents=True)
    path.touch()
    return tmp_path


def _append_rounds(benchmark: Any, root: Path, node: str) -> None:
    before = last_seq(path_for(root, "run", node))
    # pedantic: the same number of appends on both ledgers, so the "empty" one
    # ends with only ROUNDS lines while the big one stays at ~200,000.
    benchmark.pedantic(
        append, args=(root, "run", node, 1, "bench", EVENT), rounds=ROUNDS, warmup_rounds=5
    )
    appended = last_seq(path_for(root, "run", node)) - before
    # --benchmark-disable (CI) runs the function once instead of the rounds.
    assert appended == (1 if benchmark.disabled else ROUNDS + 5)


@pytest.mark.benchmark(group="ledger.append (one event)")
def test_append_empty_ledger(benchmark: Any, empty_root: Path) -> None:
    _append_rounds(benchmark, empty_root, "empty")


@pytest.mark.benchmark(group="ledger.append (one event)")
def test_append_200k_ledger(benchmark: Any, big_root: Path) -> None:
    _append_rounds(benchmark, big_root, "big")


@pytest.mark.benchmark(group="ledger.last_seq")
def test_last_seq_empty_ledger(benchmark: Any, empty_root: Path) -> None:
    assert benchmark(last_seq, path_for(empty_root, "run", "empty")) == 0


@pytest.mark.benchmark(group="ledger.last_seq")
def test_last_seq_200k_ledger(benchmark: Any, big_root: Path) -> None:
    assert benchmark(last_seq, path_for(big_root, "run", "big")) >= BIG_LINES
