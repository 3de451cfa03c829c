"""Real threads racing on one SequenceGenerator / IdempotencyStore, both backends.

Every test releases its threads together with a Barrier and asserts exact
outcomes (each value handed out exactly once, exactly one insert), never
timings.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from replaycore import records
from replaycore.errors import IdempotencyConflict
from replaycore.types import Scope, StoreStats

THREADS = 8


def race(work: Callable[[int], Any], threads: int = THREADS) -> list[Any]:
    """Run ``work(i)`` in ``threads`` threads started together; return results by i.

    An exception in a thread is returned as its result, so a test can assert
    on it (and a crash is never silently lost).
    """
    barrier = threading.Barrier(threads)
    results: list[Any] = [None] * threads

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except BaseException as exc:
            results[i] = exc

    pool = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return results


def test_next_hands_out_each_value_once(impl):
    seq = impl.SequenceGenerator()
    per_thread = 1000
    results = race(lambda _: [seq.next("run") for _ in range(per_thread)])
    for values in results:
        assert isinstance(values, list)
        assert values == sorted(values)  # each thread sees its own values increase
    every = [v for values in results for v in values]
    assert sorted(every) == list(range(1, THREADS * per_thread + 1))
    assert seq.peek("run") == THREADS * per_thread


def test_next_on_many_runs(impl):
    seq = impl.SequenceGenerator()
    results = race(lambda i: [(f"r{j % 4}", seq.next(f"r{j % 4}")) for j in range(i, i + 400)])
    by_run: dict[str, list[int]] = {}
    for pairs in results:
        for run, value in pairs:
            by_run.setdefault(run, []).append(value)
    assert seq.snapshot() == {run: len(values) for run, values in by_run.items()}
    for values in by_run.values():
        assert sorted(values) == list(range(1, len(values) + 1))


def test_next_block_races(impl):
    seq = impl.SequenceGenerator()

    def work(i: int) -> list[range]:
        blocks = []
        for j in range(200):
            blocks.append(seq.next_block("run", (i + j) % 5))
            value = seq.next("run")
            blocks.append(range(value, value + 1))
        return blocks

    results = race(work)
    every = [v for blocks in results for block in blocks for v in block]
    assert len(every) == len(set(every))
    assert sorted(every) == list(range(1, seq.peek("run") + 1))


def test_observe_and_next_race(impl):
    seq = impl.SequenceGenerator()

    def work(i: int) -> list[int]:
        if i % 2:
            for value in range(0, 2000, 7):
                seq.observe("run", value)
            return []
        return [seq.next("run") for _ in range(500)]

    results = race(work)
    handed = [v for values in results for v in values]
    assert len(handed) == len(set(handed))
    assert seq.peek("run") >= max(handed)
    assert seq.peek("run") >= 1995


def test_put_same_content_inserts_once(impl):
    store = impl.IdempotencyStore()
    scope = Scope("client", "adapter", "idem_0123456789abcdef")

    def work(i: int) -> Any:
        value = records.EffectResult(effect_id="e", status="ok")
        return store.put(scope, value), value

    results = race(work)
    inserted = [out for out, _ in results if out.inserted]
    assert len(inserted) == 1
    for out, value in results:
        assert out.value == records.EffectResult(effect_id="e", status="ok")
        assert (out.value is value) == out.inserted
    assert store.stats() == StoreStats(entries=1, inserts=1, replays=THREADS - 1, conflicts=0)


def test_put_different_contents_one_wins(impl):
    store = impl.IdempotencyStore()
    scope = Scope("client", "adapter", "idem_0123456789abcdef")
    values = [records.EffectResult(effect_id="e", status=f"s{i}") for i in range(THREADS)]

    results = race(lambda i: store.put(scope, values[i]))
    winners = [i for i, out in enumerate(results) if not isinstance(out, BaseException)]
    assert len(winners) == 1
    winner = winners[0]
    assert results[winner].inserted is True
    assert results[winner].value is values[winner]
    losers = [out for out in results if isinstance(out, BaseException)]
    assert len(losers) == THREADS - 1
    for exc in losers:
        assert type(exc) is IdempotencyConflict
        assert exc.scope == scope
        assert exc.prior_digest == impl.content_digest(values[winner])
        assert exc.differing_fields == ["status"]
    assert sorted(exc.new_digest for exc in losers) == sorted(
        impl.content_digest(v) for i, v in enumerate(values) if i != winner
    )
    assert store.get(scope) == values[winner]
    assert store.stats() == StoreStats(entries=1, inserts=1, replays=0, conflicts=THREADS - 1)


def test_put_many_scopes_race(impl):
    store = impl.IdempotencyStore()
    scopes = [Scope("c", "a", f"k{i}") for i in range(50)]

    def work(i: int) -> list[bool]:
        return [store.put(scope, b"same").inserted for scope in scopes]

    results = race(work)
    for j in range(len(scopes)):
        assert sum(results[i][j] for i in range(THREADS)) == 1
    assert store.stats() == StoreStats(
        entries=50, inserts=50, replays=50 * (THREADS - 1), conflicts=0
    )
