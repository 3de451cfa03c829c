"""Journal records (SPEC 6.1) and the canonical encoding (SPEC 6.3)."""

from __future__ import annotations

import hashlib

import msgspec
import pytest
import replaycore
from replaycore import records
from replaycore.errors import ReplayCoreError

PAYLOADS = {
    "checkpoint": records.Checkpoint(
        checkpoint_seq=2,
        covers_journal_seq=7,
        loop_state="state",
        created_at_ms=1700000000000,
        content_ref_manifest=["sha256:aa", "sha256:bb"],
    ),
    "recovery": records.Recovery(
        unsafe_pending=[
            records.PendingSideEffect(
                effect_id="e1", intent_record_id="r1", idempotency_key="idem_x", reason="r"
            ),
            records.PendingSideEffect(
                effect_id="e2", intent_record_id="r2", dedupe_key="d", reason="unknown"
            ),
        ]
    ),
    "effect_intent": records.EffectIntent(
        effect_id="e", effect_kind="payment", idempotency_key="k", dedupe_key="d"
    ),
    "effect_result": records.EffectResult(effect_id="e", status="ok", output_ref="ref"),
    "output_intent": records.OutputIntent(
        delivery_id="d1", sink_ref="slack", dedupe_key="dk", idempotency_key="ik"
    ),
    "output_result": records.OutputResult(
        delivery_id="d1", status="sent", external_operation_id="op-1"
    ),
    "output_dedupe": records.OutputDedupe(
        dedupe_key="dk", prior_external_operation_id="op-1", prior_terminal_status="sent"
    ),
    "output_reconciliation": records.OutputReconciliation(
        delivery_id="d1",
        intent_record_id="r3",
        dedupe_key="dk",
        idempotency_key="ik",
        external_operation_id="op",
        terminal_status="sent",
        reason="found",
        decision="confirm",
        resend_allowed=False,
    ),
    "output_event": records.OutputEvent(delivery_id="d1", event="retrying"),
    "run_lifecycle": records.RunLifecycle(status="completed"),
    "terminal_result": records.TerminalResult(effect_id="e", terminal_status="failed"),
    "custom": records.Custom(name="note", data={"k": [1, "two", None, 3.5, True]}),
}


def make_record(payload: records.Payload, **fields: object) -> records.JournalRecord:
    base: dict[str, object] = {"record_id": "r1", "journal_seq": 3, "run_id": "run-1"}
    base.update(fields)
    return records.JournalRecord(payload=payload, **base)  # type: ignore[arg-type]


def test_every_kind_is_covered():
    assert set(PAYLOADS) == set(records._Payload.KINDS)
    assert len(PAYLOADS) == 12


@pytest.mark.parametrize("kind", sorted(PAYLOADS))
def test_kind(kind):
    payload = PAYLOADS[kind]
    assert payload.kind == kind
    assert make_record(payload).kind == kind


@pytest.mark.parametrize("kind", sorted(PAYLOADS))
def test_canonical_round_trip(kind):
    rec = make_record(
        PAYLOADS[kind], at_ms=5, idempotency_key="i", dedupe_key="d", content_refs=["a", "b"]
    )
    data = records.encode_canonical(rec)
    assert type(data) is bytes
    back = records.decode_canonical(data, records.JournalRecord)
    assert back == rec
    assert type(back.payload) is type(rec.payload)
    assert records.encode_canonical(back) == data
    payload_bytes = records.encode_canonical(PAYLOADS[kind])
    assert records.decode_canonical(payload_bytes, records.Payload) == PAYLOADS[kind]


@pytest.mark.parametrize("kind", sorted(PAYLOADS))
def test_json_round_trip(kind):
    rec = make_record(PAYLOADS[kind])
    text = msgspec.json.encode(rec)
    assert msgspec.json.decode(text)["payload"]["kind"] == kind
    assert "kind" not in msgspec.json.decode(text)
    assert msgspec.json.decode(text, type=records.JournalRecord) == rec


def test_defaults():
    rec = records.JournalRecord(
        record_id="r", journal_seq=1, run_id="run", payload=records.RunLifecycle(status="running")
    )
    assert rec.schema == 1
    assert rec.at_ms == 0
    assert rec.idempotency_key is None
    assert rec.dedupe_key is None
    assert rec.content_refs == []
    checkpoint = records.Checkpoint(
        checkpoint_seq=1, covers_journal_seq=1, loop_state="", created_at_ms=0
    )
    assert checkpoint.content_ref_manifest == []
    assert records.Recovery().unsafe_pending == []
    intent = records.EffectIntent(effect_id="e", effect_kind="k")
    assert (intent.idempotency_key, intent.dedupe_key) == (None, None)
    assert records.EffectResult(effect_id="e", status="s").output_ref is None
    output = records.OutputIntent(delivery_id="d", sink_ref="s", dedupe_key="k")
    assert output.idempotency_key is None
    assert records.OutputResult(delivery_id="d", status="s").external_operation_id is None
    dedupe = records.OutputDedupe(dedupe_key="k", prior_terminal_status="sent")
    assert dedupe.prior_external_operation_id is None
    pending = records.PendingSideEffect(effect_id="e", intent_record_id="r", reason="x")
    assert (pending.idempotency_key, pending.dedupe_key) == (None, None)
    assert records.Custom(name="n").data is None
    # defaults do not share one list between instances
    other = records.JournalRecord(
        record_id="r", journal_seq=1, run_id="run", payload=records.RunLifecycle(status="x")
    )
    assert rec.content_refs is not other.content_refs


def test_required_fields():
    with pytest.raises(TypeError, match=None):
        records.JournalRecord(record_id="r", journal_seq=1, run_id="run")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=None):
        records.EffectResult(effect_id="e")  # type: ignore[call-arg]
    with pytest.raises(msgspec.ValidationError, match=None):
        msgspec.json.decode(
            b'{"record_id": "r", "journal_seq": 1, "payload": {"kind": "run_lifecycle",'
            b' "status": "x"}}',
            type=records.JournalRecord,
        )


def test_structs_are_keyword_only_and_frozen():
    with pytest.raises(TypeError, match=None):
        records.RunLifecycle("running")  # type: ignore[misc]
    rec = make_record(PAYLOADS["run_lifecycle"])
    with pytest.raises(AttributeError, match=None):
        rec.run_id = "other"  # type: ignore[misc]


def test_records_are_left_out_of_the_cycle_collector():
    # A journal read or written in bulk holds many records; the collector
    # walking them cost more than encoding them (see JournalRecord).
    import gc

    record = records.JournalRecord(
        run_id="r", record_id="x", journal_seq=1, payload=records.Custom(name="n", data={"a": [1]})
    )
    assert not gc.is_tracked(record)
    assert not gc.is_tracked(record.payload)
    assert gc.is_tracked(record.payload.data)  # the caller's containers still are


def test_unknown_fields_are_ignored():
    raw = {
        "schema": 1,
        "record_id": "r",
        "journal_seq": 4,
        "run_id": "run",
        "from_the_future": {"nested": [1, 2]},
        "payload": {"kind": "effect_result", "effect_id": "e", "status": "ok", "extra": 1},
    }
    expected = make_record(
        records.EffectResult(effect_id="e", status="ok"), record_id="r", journal_seq=4, run_id="run"
    )
    assert records.decode_canonical(msgspec.msgpack.encode(raw), records.JournalRecord) == expected
    assert msgspec.json.decode(msgspec.json.encode(raw), type=records.JournalRecord) == expected


def test_unknown_kind_fails_to_decode():
    raw = {
        "record_id": "r",
        "journal_seq": 1,
        "run_id": "run",
        "payload": {"kind": "teleport", "effect_id": "e"},
    }
    with pytest.raises((msgspec.ValidationError, ReplayCoreError), match=None) as info:
        records.decode_canonical(msgspec.msgpack.encode(raw), records.JournalRecord)
    assert "teleport" in str(info.value)
    with pytest.raises((msgspec.ValidationError, ReplayCoreError), match=None):
        msgspec.json.decode(msgspec.json.encode(raw), type=records.JournalRecord)


def test_canonical_encoding_sorts_dict_keys(impl):
    one = records.Custom(name="c", data={"b": 1, "a": {"y": 2, "x": 1}, "c": [{"q": 1, "p": 2}]})
    two = records.Custom(name="c", data={"c": [{"p": 2, "q": 1}], "a": {"x": 1, "y": 2}, "b": 1})
    assert list(one.data) != list(two.data)
    assert records.encode_canonical(one) == records.encode_canonical(two)
    assert impl.content_digest(one) == impl.content_digest(two)
    assert impl.content_digest(make_record(one)) == impl.content_digest(make_record(two))
    store = impl.IdempotencyStore()
    scope = replaycore.Scope("c", "a", "k")
    store.put(scope, one)
    assert store.put(scope, two).inserted is False


def test_canonical_encoding_follows_declaration_order():
    rec = make_record(records.RunLifecycle(status="x"))
    decoded = msgspec.msgpack.decode(records.encode_canonical(rec))
    assert list(decoded) == [f for f in records.JournalRecord.__struct_fields__]
    assert list(decoded["payload"]) == ["kind", "status"]


def test_canonical_digest_is_sha256_of_the_encoding(impl):
    rec = make_record(PAYLOADS["recovery"])
    expected = "sha256:" + hashlib.sha256(records.encode_canonical(rec)).hexdigest()
    assert impl.content_digest(rec) == expected


def test_differing_fields():
    a = make_record(records.EffectResult(effect_id="e", status="ok"), content_refs=["x", "y"])
    b = make_record(records.EffectResult(effect_id="e", status="no"), content_refs=["x", "z"])
    assert records.differing_fields(a, b) == ["content_refs.1", "payload.status"]
    assert records.differing_fields(a, a) == []
    assert records.differing_fields(b"a", b"b") == []
    c = make_record(records.EffectResult(effect_id="e", status="ok"), content_refs=["x"])
    assert records.differing_fields(a, c) == ["content_refs"]


def test_records_are_exported_from_the_facade():
    for name in [
        "JournalRecord",
        "Checkpoint",
        "Recovery",
        "EffectIntent",
        "EffectResult",
        "OutputIntent",
        "OutputResult",
        "OutputDedupe",
        "OutputReconciliation",
        "OutputEvent",
        "RunLifecycle",
        "TerminalResult",
        "Custom",
    ]:
        assert getattr(replaycore, name) is getattr(records, name)
    assert replaycore.encode_canonical is records.encode_canonical


def test_stream_scope_kind_is_checked() -> None:
    from replaycore.errors import InvalidArgument
    from replaycore.results import EventCursor, StreamScope

    assert StreamScope("agent", "a-1") == StreamScope(kind="agent", id="a-1")
    assert EventCursor(StreamScope("all"), "journal.3").position == "journal.3"
    with pytest.raises(InvalidArgument) as info:
        StreamScope("galaxy")  # type: ignore[arg-type]
    assert info.value.argument == "kind"
