"""A first tour of replaycore: keys, sequence counters, replay and conflict.

Run it after installing the package::

    pip install . && python examples/quickstart.py

It prints which backend is in use (set REPLAYCORE_BACKEND=python to try the
pure-Python reference) and walks through what a harness does on every step.
"""

from __future__ import annotations

import replaycore
from replaycore import (
    EffectIntent,
    IdempotencyConflict,
    IdempotencyStore,
    JournalRecord,
    Scope,
    SequenceGenerator,
)


def main() -> None:
    print(f"replaycore {replaycore.__version__}, backend: {replaycore.BACKEND}")

    # 1. Idempotency keys. The legacy scheme matches existing systems but is
    #    ambiguous; derive_key hashes each part with its type and length.
    legacy = replaycore.legacy_key("run-42", "checkout", 3)
    print(f"legacy_key('run-42', 'checkout', 3)      = {legacy}")
    print(
        "legacy keys collide for ('a::b','c',1) and ('a','b::c',1):",
        replaycore.legacy_key("a::b", "c", 1) == replaycore.legacy_key("a", "b::c", 1),
    )
    print(
        "derive_key keeps them apart:",
        replaycore.derive_key("a::b", "c", 1) != replaycore.derive_key("a", "b::c", 1),
    )
    batch = replaycore.derive_keys([("run-42", "charge", step) for step in range(5)])
    print(f"derive_keys over 5 rows -> {batch[0]} ... {batch[-1]}")

    # 2. Sequence counters, independent per run, restorable from a snapshot.
    seq = SequenceGenerator()
    order = [(run, seq.next(run)) for run in ("run-A", "run-B", "run-A")]
    print(f"sequence A, B, A -> {order}")
    block = seq.next_block("run-A", 3)
    restored = SequenceGenerator.from_snapshot(seq.snapshot())
    print(f"next_block(run-A, 3) -> {list(block)}; restored peek: {restored.peek('run-A')}")

    # 3. Content-equality store: same key + same content = replay,
    #    same key + different content = conflict (and what differs).
    store = IdempotencyStore()
    key = replaycore.key_from_intent("charge-card", "billing-agent", "checkout", 3)
    scope = Scope("billing", "stripe", key)
    intent = JournalRecord(
        record_id="rec-7",
        journal_seq=7,
        run_id="run-42",
        idempotency_key=key,
        payload=EffectIntent(effect_id="pay-1", effect_kind="payment", idempotency_key=key),
    )
    first = store.put(scope, intent)
    again = store.put(scope, intent)
    print(f"first put inserted={first.inserted}; retry inserted={again.inserted} (a replay)")
    changed = JournalRecord(
        record_id="rec-7",
        journal_seq=7,
        run_id="run-42",
        idempotency_key=key,
        payload=EffectIntent(effect_id="pay-1", effect_kind="refund", idempotency_key=key),
    )
    try:
        store.put(scope, changed)
    except IdempotencyConflict as conflict:
        print(f"conflict ({conflict.kind}): differing fields {conflict.differing_fields}")
    print(f"store stats: {store.stats()}")


if __name__ == "__main__":
    main()
