"""The Rust mirror of the record schema cannot drift from records.py.

Every payload kind, with its optional fields unset and set, is encoded by
msgspec, decoded by the Rust core's own schema and encoded again from it: the
bytes must come back unchanged (same field names, types, defaults and order),
and both backends must agree on the record's content digest.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
import pytest
from replaycore import _core, reference
from replaycore.errors import RecordDecodeError
from replaycore.records import (
    Checkpoint,
    Custom,
    EffectIntent,
    EffectResult,
    JournalRecord,
    OutputDedupe,
    OutputEvent,
    OutputIntent,
    OutputReconciliation,
    OutputResult,
    PendingSideEffect,
    Recovery,
    RunLifecycle,
    TerminalResult,
    _Payload,
    encode_canonical,
)

PAYLOADS: list[Any] = [
    Checkpoint(checkpoint_seq=3, covers_journal_seq=9, loop_state="s", created_at_ms=-5),
    Checkpoint(
        checkpoint_seq=2**40,
        covers_journal_seq=0,
        loop_state="x" * 300,
        created_at_ms=1,
        content_ref_manifest=["blob:1", "blob:2"],
    ),
    Recovery(),
    Recovery(
        unsafe_pending=[
            PendingSideEffect(effect_id="e", intent_record_id="r", reason="crash"),
            PendingSideEffect(
                effect_id="f", intent_record_id="s", idempotency_key="i", dedupe_key="d", reason="?"
            ),
        ]
    ),
    EffectIntent(effect_id="e", effect_kind="payment"),
    EffectIntent(effect_id="e", effect_kind="payment", idempotency_key="i", dedupe_key="d"),
    EffectResult(effect_id="e", status="ok"),
    EffectResult(effect_id="e", status="ok", output_ref="blob:9"),
    OutputIntent(delivery_id="d", sink_ref="s", dedupe_key="k"),
    OutputIntent(delivery_id="d", sink_ref="s", dedupe_key="k", idempotency_key="i"),
    OutputResult(delivery_id="d", status="delivered"),
    OutputResult(delivery_id="d", status="delivered", external_operation_id="op"),
    OutputDedupe(dedupe_key="k", prior_terminal_status="delivered"),
    OutputDedupe(dedupe_key="k", prior_external_operation_id="op", prior_terminal_status="x"),
    OutputReconciliation(
        delivery_id="d",
        intent_record_id="r",
        dedupe_key="k",
        terminal_status="t",
        reason="why",
        decision="unsafe_pending",
        resend_allowed=False,
    ),
    OutputReconciliation(
        delivery_id="d",
        intent_record_id="r",
        dedupe_key="k",
        idempotency_key="i",
        external_operation_id="op",
        terminal_status="t",
        reason="why",
        decision="resend",
        resend_allowed=True,
    ),
    OutputEvent(delivery_id="d", event="progress"),
    RunLifecycle(status="completed"),
    TerminalResult(effect_id="e", terminal_status="failed"),
    Custom(name="c"),
    Custom(name="c", data={"z": [1, -1, 2.5, None, True], "a": {"nested": "ü"}, "m": b"\x00"}),
]


def _records() -> list[JournalRecord]:
    out = []
    for i, payload in enumerate(PAYLOADS):
        out.append(
            JournalRecord(record_id=f"r{i}", journal_seq=i + 1, run_id="run", payload=payload)
        )
        out.append(
            JournalRecord(
                schema=7,
                record_id="é" * 40,
                journal_seq=-(2**63),
                run_id="",
                at_ms=2**63 - 1,
                idempotency_key="i",
                dedupe_key="d",
                content_refs=["a", "b" * 70_000],
                payload=payload,
            )
        )
    return out


def test_every_kind_is_covered() -> None:
    assert {p.kind for p in PAYLOADS} == set(_Payload.KINDS)


@pytest.mark.parametrize("record", _records(), ids=lambda r: f"{r.kind}-{r.record_id[:3]}")
def test_rust_schema_round_trips_msgspec_bytes(record: JournalRecord) -> None:
    data = encode_canonical(record)
    assert _core._canonical_roundtrip(data) == data
    expected = "sha256:" + hashlib.sha256(data).hexdigest()
    assert _core.content_digest(record) == reference.content_digest(record) == expected


def test_unknown_fields_are_ignored_by_both_sides() -> None:
    record = JournalRecord(
        record_id="r", journal_seq=1, run_id="run", payload=RunLifecycle(status="x")
    )
    raw = msgspec.to_builtins(record)
    raw["future_field"] = {"anything": [1, 2]}
    raw["payload"]["also_new"] = 3
    data = msgspec.msgpack.encode(raw)
    assert _core._canonical_roundtrip(data) == encode_canonical(record)
    assert msgspec.msgpack.decode(data, type=JournalRecord) == record


@pytest.mark.parametrize(
    ("payload", "kind"),
    [({"kind": "telepathy"}, "telepathy"), ({"kind": "it's"}, "it's"), ({"status": "x"}, None)],
)
def test_unknown_or_missing_kind_is_a_typed_error(
    payload: dict[str, Any], kind: str | None
) -> None:
    data = msgspec.msgpack.encode(
        {"record_id": "r", "journal_seq": 1, "run_id": "x", "payload": payload}
    )
    for impl in (_core, reference):
        with pytest.raises(RecordDecodeError) as info:
            impl.ReplayReducer().apply(data)
        assert info.value.kind == kind
