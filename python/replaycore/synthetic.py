"""Realistic synthetic journals, for benchmarks, examples and ``replaycore bench``.

:func:`synthetic_records` yields the journal of one long agent run: a
``running`` lifecycle record, then steps of tool calls (an ``effect_intent``
with an idempotency key, its ``effect_result``, an ``output_event``), output
deliveries (``output_intent`` and ``output_result``), harness ``custom``
records and a ``checkpoint`` every 500 records, and a ``completed`` lifecycle
record at the end. Records average about 220 bytes encoded. The same ``n``
and ``seed`` always give the same journal.

>>> records = list(synthetic_records(50))
>>> len(records), records[0].kind, records[-1].payload
(50, 'run_lifecycle', RunLifecycle(status='completed'))
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

from replaycore.records import (
    Checkpoint,
    Custom,
    EffectIntent,
    EffectResult,
    JournalRecord,
    OutputEvent,
    OutputIntent,
    OutputResult,
    Payload,
    RunLifecycle,
)

__all__ = ["synthetic_records", "write_synthetic_journal"]

_TOOLS = ("web.search", "code.exec", "files.read", "http.post", "db.query", "email.send")


def synthetic_records(
    n: int, *, seed: int = 0, run_id: str = "run-8f14e45f"
) -> Iterator[JournalRecord]:
    """Yield ``n`` records (``n >= 2``) of one clean, completed run."""
    if n < 2:
        raise ValueError("a synthetic journal needs at least 2 records")
    rng = random.Random(seed)
    base_ms = 1_767_225_600_000
    step = 0
    pending: list[tuple[str, str]] = []  # effects started, waiting for their result
    deliveries: list[str] = []
    for seq in range(1, n + 1):
        at_ms = base_ms + seq * 37
        refs: list[str] = []
        payload: Payload
        if seq == 1:
            payload = RunLifecycle(status="running")
        elif seq == n:
            payload = RunLifecycle(status="completed")
        elif seq % 500 == 0:
            payload = Checkpoint(
                checkpoint_seq=seq // 500,
                covers_journal_seq=seq - 1,
                loop_state=f"loop:{step}:planner",
                created_at_ms=at_ms,
                content_ref_manifest=[f"blob:{rng.getrandbits(64):016x}"],
            )
        elif len(pending) + len(deliveries) >= n - seq - 1:
            # wind down: finish what is open so the run ends clean
            if not (pending or deliveries):
                payload = OutputEvent(delivery_id="dlv-final", event="flushed")
            elif pending:
                effect_id, _ = pending.pop()
                payload = EffectResult(effect_id=effect_id, status="succeeded")
            else:
                payload = OutputResult(
                    delivery_id=deliveries.pop(),
                    status="delivered",
                    external_operation_id=f"op-{rng.getrandbits(48):012x}",
                )
        else:
            roll = rng.random()
            if pending and (roll < 0.35 or len(pending) > 3):
                effect_id, _ = pending.pop(0)
                payload = EffectResult(
                    effect_id=effect_id,
                    status="succeeded",
                    output_ref=f"blob:{rng.getrandbits(64):016x}",
                )
            elif roll < 0.6:
                step += 1
                effect_id = f"eff-{step:07d}"
                idem = f"idem_{rng.getrandbits(64):016x}"
                pending.append((effect_id, idem))
                payload = EffectIntent(
                    effect_id=effect_id,
                    effect_kind=rng.choice(_TOOLS),
                    idempotency_key=idem,
                )
                refs = [f"blob:{rng.getrandbits(64):016x}"]
            elif roll < 0.7 and len(deliveries) < 3:
                delivery_id = f"dlv-{seq:08d}"
                deliveries.append(delivery_id)
                payload = OutputIntent(
                    delivery_id=delivery_id,
                    sink_ref="slack://ops-alerts",
                    dedupe_key=f"dd-{rng.getrandbits(64):016x}",
                )
            elif roll < 0.78 and deliveries:
                payload = OutputResult(
                    delivery_id=deliveries.pop(0),
                    status="delivered",
                    external_operation_id=f"op-{rng.getrandbits(48):012x}",
                )
            elif roll < 0.9:
                payload = OutputEvent(delivery_id=f"dlv-{seq:08d}", event="progress")
            else:
                payload = Custom(
                    name="token_usage",
                    data={"prompt": rng.randrange(4000), "completion": rng.randrange(900)},
                )
        yield JournalRecord(
            record_id=f"rec-{seq:09d}",
            journal_seq=seq,
            run_id=run_id,
            at_ms=at_ms,
            content_refs=refs,
            payload=payload,
        )


def write_synthetic_journal(
    path: str | os.PathLike[str], n: int, *, seed: int = 0, run_id: str = "run-8f14e45f"
) -> Path:
    """Write :func:`synthetic_records` to ``path`` (``.rcj`` or ``.jsonl``) and return it."""
    from replaycore.reference.journal import JournalWriter

    target = Path(path)
    target.unlink(missing_ok=True)
    with JournalWriter(target, fsync="never") as writer:
        batch: list[JournalRecord] = []
        for record in synthetic_records(n, seed=seed, run_id=run_id):
            batch.append(record)
            if len(batch) == 10_000:
                writer.append_many(batch)
                batch.clear()
        writer.append_many(batch)
    return target
