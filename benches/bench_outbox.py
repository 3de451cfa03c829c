"""Outbox throughput (SPEC section 10): enqueue, claim and ack, batches of 1 and 100.

Each group times one call that moves ``batch`` messages, on SqliteOutbox and,
as the in-process baseline, MemoryOutbox; messages/s = batch / time per call.

* enqueue, batch 1: ``enqueue`` (one transaction); batch 100: ``enqueue_many``
  of 100 drafts (one transaction).
* claim, batch 1 / 100: ``claim(limit=1 / 100)`` from an outbox holding enough
  pending messages for every round (one transaction).
* ack, batch 1 / 100: acking the 1 / 100 messages one claim returned (one
  transaction per ack: there is no batch ack).

SQLite commits with ``synchronous=FULL`` in WAL mode, so every transaction
waits for an fsync and the figures depend on the disk. Run
``python benches/bench_outbox.py`` for a messages/s table.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from replaycore.outbox import MemoryOutbox, OutboxDraft, OutboxMessage, OutboxStore, SqliteOutbox

BATCHES = [1, 100]
ROUNDS = {1: 300, 100: 30}
LEASE = 60_000
PAYLOAD = {"to": "user@example.com", "template": "welcome", "vars": {"name": "Ada", "n": 0}}


@pytest.fixture(params=["sqlite", "memory"])
def box(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OutboxStore]:
    if request.param == "memory":
        yield MemoryOutbox()
        return
    store = SqliteOutbox(tmp_path / "outbox.db")
    yield store
    store.close()


def drafts(count: int, start: int = 0) -> list[OutboxDraft]:
    return [
        OutboxDraft("email", "smtp", PAYLOAD | {"n": i}, dedupe_key=f"m-{i}")
        for i in range(start, start + count)
    ]


@pytest.mark.parametrize("batch", BATCHES)
def test_enqueue(benchmark: Any, box: OutboxStore, batch: int) -> None:
    benchmark.group = f"outbox enqueue (batch {batch})"
    benchmark.extra_info["messages_per_call"] = batch
    rounds = ROUNDS[batch]
    batches = [drafts(batch, r * batch) for r in range(rounds)]
    calls: list[int] = []

    def run() -> None:
        todo = batches[len(calls)]
        calls.append(1)
        if batch == 1:
            box.enqueue(todo[0], 1)
        else:
            box.enqueue_many(todo, 1)

    benchmark.pedantic(run, rounds=rounds, iterations=1)
    # With --benchmark-disable pedantic runs once, so count the calls made.
    assert len(box.list(limit=10**6)) == len(calls) * batch


@pytest.mark.parametrize("batch", BATCHES)
def test_claim(benchmark: Any, box: OutboxStore, batch: int) -> None:
    benchmark.group = f"outbox claim (batch {batch})"
    benchmark.extra_info["messages_per_call"] = batch
    rounds = ROUNDS[batch]
    box.enqueue_many(drafts(rounds * batch), 0)
    claimed: list[int] = []

    def run() -> None:
        claimed.append(len(box.claim("email", "smtp", batch, LEASE, "bench", 1)))

    benchmark.pedantic(run, rounds=rounds, iterations=1)
    assert claimed == [batch] * len(claimed)
    assert len(box.list("claimed", limit=10**6)) == len(claimed) * batch


@pytest.mark.parametrize("batch", BATCHES)
def test_ack(benchmark: Any, box: OutboxStore, batch: int) -> None:
    benchmark.group = f"outbox ack (batch {batch})"
    benchmark.extra_info["messages_per_call"] = batch
    rounds = ROUNDS[batch]
    box.enqueue_many(drafts(rounds * batch), 0)

    def setup() -> tuple[tuple[list[OutboxMessage]], dict[str, Any]]:
        return (box.claim("email", "smtp", batch, LEASE, "bench", 1),), {}

    acked: list[int] = []

    def run(messages: list[OutboxMessage]) -> None:
        for message in messages:
            assert message.claim_token is not None
            acked.append(box.ack(message.outbox_id, message.claim_token, 2))

    benchmark.pedantic(run, setup=setup, rounds=rounds, iterations=1)
    assert acked == [True] * len(acked)
    assert len(box.list("delivered", limit=10**6)) == len(acked) > 0
    assert len(acked) % batch == 0


def _table(results: dict[str, Any]) -> str:
    lines = ["| operation | store | time per call | messages/s |", "|---|---|---:|---:|"]
    for bench in results["benchmarks"]:
        store = bench["params"]["box"]
        batch = bench["extra_info"]["messages_per_call"]
        median = bench["stats"]["median"]
        lines.append(
            f"| {bench['group']} | {store} | {median * 1e6:,.0f} us | {batch / median:,.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                __file__,
                "--benchmark-only",
                f"--benchmark-json={out}",
                "-q",
                "-p",
                "no:cacheprovider",
            ],
            check=True,
            stdout=sys.stderr,
        )
        print(_table(json.loads(out.read_text())))
