"""Write the example journals in ``examples/journals/``, in both formats.

* ``clean``                 -- a run that finished: every effect has its result.
* ``crash_pending_payment`` -- the harness died after recording the intent of a
  payment that carries no idempotency key: retrying it could charge twice.
* ``dedupe_proof``          -- an output delivery whose result was never
  recorded, but the sink proved (by dedupe key) that it was delivered.
* ``torn_tail``             -- the clean run, with a crash cutting its last
  write in half.

Run ``python examples/make_journals.py`` to regenerate them, then
``replaycore replay examples/journals/crash_pending_payment.rcj``.
"""

from __future__ import annotations

from pathlib import Path

from replaycore.records import (
    Checkpoint,
    Custom,
    EffectIntent,
    EffectResult,
    JournalRecord,
    OutputDedupe,
    OutputIntent,
    Payload,
    RunLifecycle,
)
from replaycore.reference.journal import JournalWriter

HERE = Path(__file__).resolve().parent / "journals"
RUN = "run-2026-11-23-checkout"


def _records(*payloads: tuple[Payload, dict[str, object]]) -> list[JournalRecord]:
    return [
        JournalRecord(
            record_id=f"{RUN}/{seq:04d}",
            journal_seq=seq,
            run_id=RUN,
            at_ms=1_795_400_000_000 + seq * 1_250,
            payload=payload,
            **extra,
        )
        for seq, (payload, extra) in enumerate(payloads, start=1)
    ]


def clean() -> list[JournalRecord]:
    return _records(
        (RunLifecycle(status="running"), {}),
        (
            EffectIntent(
                effect_id="lookup-order",
                effect_kind="http.get",
                idempotency_key="idem_5d1c0e6f2a9b4c33",
            ),
            {"idempotency_key": "idem_5d1c0e6f2a9b4c33"},
        ),
        (EffectResult(effect_id="lookup-order", status="succeeded", output_ref="blob:91ab"), {}),
        (
            Checkpoint(
                checkpoint_seq=1,
                covers_journal_seq=3,
                loop_state="planner:step-2",
                created_at_ms=1_795_400_004_000,
                content_ref_manifest=["blob:91ab"],
            ),
            {},
        ),
        (Custom(name="token_usage", data={"completion": 212, "prompt": 1804}), {}),
        (RunLifecycle(status="completed"), {}),
    )


def crash_pending_payment() -> list[JournalRecord]:
    return _records(
        (RunLifecycle(status="running"), {}),
        (
            EffectIntent(
                effect_id="lookup-order",
                effect_kind="http.get",
                idempotency_key="idem_5d1c0e6f2a9b4c33",
            ),
            {},
        ),
        (EffectResult(effect_id="lookup-order", status="succeeded"), {}),
        (
            Checkpoint(
                checkpoint_seq=1,
                covers_journal_seq=3,
                loop_state="planner:charge-card",
                created_at_ms=1_795_400_004_000,
            ),
            {},
        ),
        # The payment API takes no idempotency key: the intent was recorded,
        # then the process died before the result was.
        (EffectIntent(effect_id="charge-card", effect_kind="payments.charge"), {}),
    )


def dedupe_proof() -> list[JournalRecord]:
    return _records(
        (RunLifecycle(status="running"), {}),
        (
            OutputIntent(
                delivery_id="notify-customer",
                sink_ref="email://orders",
                dedupe_key="order-7731-shipped",
            ),
            {"dedupe_key": "order-7731-shipped"},
        ),
        # The crash lost the output_result; on restart the harness asked the
        # sink, which proved the message went out under that dedupe key.
        (
            OutputDedupe(
                dedupe_key="order-7731-shipped",
                prior_external_operation_id="msg-0f3e9a",
                prior_terminal_status="delivered",
            ),
            {},
        ),
        (RunLifecycle(status="completed"), {}),
    )


def _write(folder: Path, name: str, records: list[JournalRecord]) -> None:
    for suffix in (".rcj", ".jsonl"):
        path = folder / f"{name}{suffix}"
        path.unlink(missing_ok=True)
        with JournalWriter(path, fsync="never") as writer:
            writer.append_many(records)


def main(folder: Path = HERE) -> None:
    """Write every example journal into ``folder``."""
    folder.mkdir(exist_ok=True)
    _write(folder, "clean", clean())
    _write(folder, "crash_pending_payment", crash_pending_payment())
    _write(folder, "dedupe_proof", dedupe_proof())
    _write(folder, "torn_tail", clean())
    for suffix, cut in ((".rcj", 9), (".jsonl", 17)):
        path = folder / f"torn_tail{suffix}"
        data = path.read_bytes()
        path.write_bytes(data[:-cut])  # the last write stopped part-way
    for path in sorted(folder.iterdir()):
        print(path)


if __name__ == "__main__":
    main()
