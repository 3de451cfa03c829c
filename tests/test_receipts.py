"""The receipt emitter (SPEC section 9), on the stores and sequencers of both backends."""

from __future__ import annotations

import threading
import time

import msgspec
import pytest
import replaycore
from replaycore import errors, receipts
from replaycore.errors import (
    IdempotencyConflict,
    InvalidArgument,
    InvalidArgumentType,
    ReceiptEmittedNotEmittable,
    ReceiptInvalid,
)
from replaycore.receipts import (
    FAILURE_CLASSES,
    RETRY_CLASS_FOR,
    RETRY_CLASSES,
    ClientResponse,
    PayloadReceipt,
    Placement,
    Plan,
    Receipt,
    ReceiptContext,
    ReceiptEmitter,
    build_receipt,
)
from replaycore.types import Scope, StoreStats

KEY = "idem_0123456789abcdef"
RUN = "run-7"


def plan(**changes: object) -> Plan:
    fields: dict[str, object] = {
        "event": "message.sent",
        "invocation_id": "inv-1",
        "adapter_id": "slack",
        "idempotency_key": KEY,
    }
    fields.update(changes)
    return Plan(**fields)  # type: ignore[arg-type]


def ctx(**changes: object) -> ReceiptContext:
    fields: dict[str, object] = {
        "client_id": "acme",
        "receipt_id": "rcpt-1",
        "at_epoch_s": 1_700_000_000.5,
        "harness_run_id": RUN,
    }
    fields.update(changes)
    return ReceiptContext(**fields)  # type: ignore[arg-type]


def receipt(**changes: object) -> Receipt:
    fields: dict[str, object] = {
        "receipt_id": "rcpt-1",
        "idempotency_key": KEY,
        "client_id": "acme",
        "adapter_id": "slack",
        "invocation_id": "inv-1",
        "event": "message.sent",
        "status": "delivered",
        "at_epoch_s": 1_700_000_000.5,
    }
    fields.update(changes)
    return Receipt(**fields)  # type: ignore[arg-type]


DELIVERED = ClientResponse("delivered")


@pytest.fixture
def store(impl):
    return impl.IdempotencyStore()


@pytest.fixture
def sequencer(impl):
    return impl.SequenceGenerator()


@pytest.fixture
def emitter(store, sequencer):
    return ReceiptEmitter(store, sequencer)


# --------------------------------------------------------------------------- status mapping

FAILED_PLACEMENT = Placement("att-1", "image/png", 10, "inline", ok=False, failure_class="timeout")


@pytest.mark.parametrize(
    ("plan_changes", "response", "status", "failure_class"),
    [
        # unsupported -> failed with the plan's class, default capability_unsupported
        ({"outcome": "unsupported"}, DELIVERED, "failed", "capability_unsupported"),
        ({"outcome": "unsupported"}, ClientResponse("failed", "timeout"), "failed",
         "capability_unsupported"),
        ({"outcome": "unsupported", "failure_class": "payload_too_large"}, DELIVERED, "failed",
         "payload_too_large"),
        # requires_operator -> failed with operator_required, whatever else was said
        ({"outcome": "requires_operator"}, DELIVERED, "failed", "operator_required"),
        ({"outcome": "requires_operator", "failure_class": "timeout"},
         ClientResponse("failed", "transport_error"), "failed", "operator_required"),
        # degraded -> degraded unless the client failed
        ({"outcome": "degraded"}, DELIVERED, "degraded", None),
        ({"outcome": "degraded"}, ClientResponse("observed"), "degraded", None),
        ({"outcome": "degraded"}, ClientResponse("skipped"), "degraded", None),
        ({"outcome": "degraded"}, ClientResponse("degraded"), "degraded", None),
        ({"outcome": "degraded", "placements": [FAILED_PLACEMENT]}, DELIVERED, "degraded", None),
        ({"outcome": "degraded"}, ClientResponse("failed", "transport_error"), "failed",
         "transport_error"),
        ({"outcome": "degraded"}, ClientResponse("failed"), "failed", "internal_error"),
        # satisfied with a failed placement -> failed with the first such placement's class
        ({"placements": [Placement("ok-1", "text", 1, "inline"), FAILED_PLACEMENT,
                         Placement("p3", "text", 1, "inline", ok=False,
                                   failure_class="payload_too_large")]},
         DELIVERED, "failed", "timeout"),
        ({"placements": [FAILED_PLACEMENT]}, ClientResponse("failed", "transport_error"),
         "failed", "timeout"),
        ({"placements": [Placement("p", "text", 1, "inline", ok=False)]}, DELIVERED, "failed",
         "internal_error"),
        # satisfied otherwise -> the client's status
        ({}, DELIVERED, "delivered", None),
        ({}, ClientResponse("observed"), "observed", None),
        ({}, ClientResponse("skipped"), "skipped", None),
        ({}, ClientResponse("degraded"), "degraded", None),
        ({"placements": [Placement("p", "text", 1, "inline")]}, DELIVERED, "delivered", None),
        ({}, ClientResponse("failed", "payload_too_large"), "failed", "payload_too_large"),
        ({}, ClientResponse("failed"), "failed", "internal_error"),
    ],
)  # fmt: skip
def test_status_mapping(emitter, plan_changes, response, status, failure_class):
    out = emitter.emit_for(plan(**plan_changes), response, ctx())
    assert (out.status, out.failure_class) == (status, failure_class)
    built = build_receipt(plan(**plan_changes), response, ctx())
    assert (built.status, built.failure_class) == (status, failure_class)


def test_failure_and_retry_classes_are_exactly_the_spec_sets():
    assert set(FAILURE_CLASSES) == {
        "capability_unsupported",
        "operator_required",
        "internal_error",
        "payload_too_large",
        "duplicate_id_conflict",
        "timeout",
        "transport_error",
    }
    assert set(RETRY_CLASSES) == {"do_not_retry", "retry_after_operator", "retry_with_backoff"}
    assert set(RETRY_CLASS_FOR) == set(FAILURE_CLASSES)


@pytest.mark.parametrize(
    ("failure_class", "retry_class"),
    [
        ("capability_unsupported", "do_not_retry"),
        ("payload_too_large", "do_not_retry"),
        ("duplicate_id_conflict", "do_not_retry"),
        ("operator_required", "retry_after_operator"),
        ("internal_error", "retry_with_backoff"),
        ("timeout", "retry_with_backoff"),
        ("transport_error", "retry_with_backoff"),
    ],
)
def test_retry_class_derived_from_failure_class(emitter, failure_class, retry_class):
    out = emitter.emit_for(plan(), ClientResponse("failed", failure_class), ctx())
    assert (out.failure_class, out.retry_class) == (failure_class, retry_class)
    assert receipts.retry_class_for(failure_class) == retry_class


@pytest.mark.parametrize(
    ("plan_changes", "retry_class"),
    [
        ({"outcome": "unsupported"}, "do_not_retry"),
        ({"outcome": "requires_operator"}, "retry_after_operator"),
        ({"placements": [FAILED_PLACEMENT]}, "retry_with_backoff"),
    ],
)
def test_retry_class_derived_for_plan_failures(emitter, plan_changes, retry_class):
    assert emitter.emit_for(plan(**plan_changes), DELIVERED, ctx()).retry_class == retry_class


@pytest.mark.parametrize("retry_class", RETRY_CLASSES)
def test_response_retry_class_wins(emitter, retry_class):
    response = ClientResponse("failed", "payload_too_large", retry_class)
    out = emitter.emit_for(plan(outcome="requires_operator"), response, ctx())
    assert (out.failure_class, out.retry_class) == ("operator_required", retry_class)


def test_no_failure_no_derived_retry_class_but_response_class_kept(emitter):
    assert emitter.emit_for(plan(), DELIVERED, ctx()).retry_class is None
    skipped = ClientResponse("skipped", retry_class="retry_with_backoff")
    out = emitter.emit_for(plan(idempotency_key=None), skipped, ctx())
    assert (out.status, out.failure_class, out.retry_class) == (
        "skipped",
        None,
        "retry_with_backoff",
    )


def test_fields_are_copied_from_plan_context_and_response(emitter):
    placement = Placement("att-1", "image/png", 2048, "blob", content_digest="sha256:ab")
    p = plan(
        event_id="evt-9",
        placements=[placement],
        capability_degradations=["no_threads"],
        warnings=["w-plan-1", "w-plan-2"],
    )
    c = ctx(
        parent_receipt_id="rcpt-0",
        harness_session_id="sess",
        harness_task_id="task",
    )
    response = ClientResponse("delivered", warnings=["w-client"])
    out = emitter.emit_for(p, response, c)
    assert out == Receipt(
        schema_version=1,
        receipt_id="rcpt-1",
        idempotency_key=KEY,
        client_id="acme",
        adapter_id="slack",
        invocation_id="inv-1",
        event="message.sent",
        event_id="evt-9",
        sequence=1,
        parent_receipt_id="rcpt-0",
        status="delivered",
        at_epoch_s=1_700_000_000.5,
        harness_session_id="sess",
        harness_run_id=RUN,
        harness_task_id="task",
        payload_receipts=[
            PayloadReceipt(
                payload_id="att-1",
                payload_kind="image/png",
                byte_size=2048,
                placement="blob",
                ok=True,
                failure_class=None,
                content_digest="sha256:ab",
            )
        ],
        capability_degradations=["no_threads"],
        failure_class=None,
        retry_class=None,
        warnings=["w-plan-1", "w-plan-2", "w-client"],
    )
    assert type(out.payload_receipts[0]) is PayloadReceipt


def test_tuples_in_plan_become_lists():
    p = plan(
        placements=(Placement("a", "text", 1, "inline"),),
        capability_degradations=("x",),
        warnings=("w",),
    )
    out = build_receipt(p, ClientResponse("delivered", warnings=("v",)), ctx())
    assert out.capability_degradations == ["x"]
    assert out.warnings == ["w", "v"]
    assert isinstance(out.payload_receipts, list)
    out.validate()


# --------------------------------------------------------------------------- inputs


def test_inputs_construct_as_spec_writes_them():
    p = Plan("message.sent", "inv-1", "slack", KEY, "evt", "degraded", "timeout")
    assert (p.idempotency_key, p.event_id, p.outcome, p.failure_class) == (
        KEY,
        "evt",
        "degraded",
        "timeout",
    )
    assert (p.placements, p.capability_degradations, p.warnings) == ([], [], [])
    pl = Placement("att", "image/png", 5, "inline", False, "payload_too_large", "sha256:00")
    assert (pl.ok, pl.failure_class, pl.content_digest) == (False, "payload_too_large", "sha256:00")
    r = ClientResponse("failed", "timeout", "do_not_retry", ["w"])
    assert (r.status, r.failure_class, r.retry_class, r.warnings) == (
        "failed",
        "timeout",
        "do_not_retry",
        ["w"],
    )
    c = ReceiptContext("acme", "rcpt", 1.5, "parent", "sess", "run", "task")
    assert (c.parent_receipt_id, c.harness_session_id, c.harness_run_id, c.harness_task_id) == (
        "parent",
        "sess",
        "run",
        "task",
    )
    with pytest.raises(TypeError):
        Receipt("rcpt", KEY, "acme", "slack", "inv", "e", None, None, None, "delivered", 0.0)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("build", "argument"),
    [
        (lambda: plan(outcome="fine"), "outcome"),
        (lambda: plan(outcome=None), "outcome"),
        (lambda: plan(failure_class="boom"), "failure_class"),
        (lambda: plan(placements=["p"]), "placements[0]"),
        (lambda: plan(placements="p"), "placements"),
        (lambda: plan(warnings="w"), "warnings"),
        (lambda: plan(capability_degradations=None), "capability_degradations"),
        (lambda: ClientResponse("succeeded"), "status"),
        (lambda: ClientResponse("failed", "oops"), "failure_class"),
        (lambda: ClientResponse("failed", "timeout", "later"), "retry_class"),
        (lambda: ClientResponse("delivered", warnings=None), "warnings"),
        (lambda: Placement("a", "b", 1, "c", ok=1), "ok"),
        (lambda: Placement("a", "b", 1, "c", failure_class="nope"), "failure_class"),
    ],
)
def test_bad_inputs_raise_invalid_argument(build, argument):
    with pytest.raises(InvalidArgument) as info:
        build()
    assert info.value.argument == argument


@pytest.mark.parametrize(
    ("args", "argument"),
    [
        (("not a plan", DELIVERED, ctx()), "plan"),
        ((plan(), "delivered", ctx()), "response"),
        ((plan(), DELIVERED, {"client_id": "acme"}), "ctx"),
    ],
)
def test_emit_for_argument_types(emitter, store, sequencer, args, argument):
    with pytest.raises(InvalidArgumentType) as info:
        emitter.emit_for(*args)
    assert info.value.argument == argument
    assert len(store) == 0
    assert sequencer.peek(RUN) == 0


# --------------------------------------------------------------------------- validation


def test_base_receipt_is_valid():
    receipt().validate()
    receipt(
        sequence=3,
        harness_run_id=RUN,
        parent_receipt_id="rcpt-0",
        status="failed",
        failure_class="timeout",
        retry_class="retry_with_backoff",
        payload_receipts=[PayloadReceipt(payload_id="p", payload_kind="k", byte_size=0,
                                         placement="inline")],
        warnings=["", "w"],
        at_epoch_s=0,
    ).validate()  # fmt: skip


BAD_PAYLOAD = {"payload_id": "p", "payload_kind": "k", "byte_size": 1, "placement": "inline"}


def bad_payload(**changes: object) -> PayloadReceipt:
    return PayloadReceipt(**{**BAD_PAYLOAD, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"schema_version": 2}, "schema_version"),
        ({"schema_version": True}, "schema_version"),
        ({"receipt_id": ""}, "receipt_id"),
        ({"receipt_id": " \t\n"}, "receipt_id"),
        ({"receipt_id": None}, "receipt_id"),
        ({"receipt_id": "r\udc80"}, "receipt_id"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"idempotency_key": 7}, "idempotency_key"),
        ({"client_id": ""}, "client_id"),
        ({"client_id": "  "}, "client_id"),
        ({"client_id": b"acme"}, "client_id"),
        ({"adapter_id": ""}, "adapter_id"),
        ({"adapter_id": " "}, "adapter_id"),
        ({"invocation_id": ""}, "invocation_id"),
        ({"invocation_id": "\u3000"}, "invocation_id"),
        ({"event": ""}, "event"),
        ({"event_id": " "}, "event_id"),
        ({"sequence": 1}, "sequence"),  # a sequence needs a harness_run_id
        ({"sequence": 0, "harness_run_id": RUN}, "sequence"),
        ({"sequence": -1, "harness_run_id": RUN}, "sequence"),
        ({"sequence": 2**63, "harness_run_id": RUN}, "sequence"),
        ({"sequence": True, "harness_run_id": RUN}, "sequence"),
        ({"sequence": "1", "harness_run_id": RUN}, "sequence"),
        ({"parent_receipt_id": ""}, "parent_receipt_id"),
        ({"parent_receipt_id": "rcpt-1"}, "parent_receipt_id"),
        ({"status": "ok"}, "status"),
        ({"status": None}, "status"),
        ({"at_epoch_s": -0.5}, "at_epoch_s"),
        ({"at_epoch_s": float("nan")}, "at_epoch_s"),
        ({"at_epoch_s": float("inf")}, "at_epoch_s"),
        ({"at_epoch_s": 10**400}, "at_epoch_s"),
        ({"at_epoch_s": "now"}, "at_epoch_s"),
        ({"at_epoch_s": True}, "at_epoch_s"),
        ({"harness_session_id": ""}, "harness_session_id"),
        ({"harness_run_id": " "}, "harness_run_id"),
        ({"harness_task_id": 3}, "harness_task_id"),
        ({"payload_receipts": None}, "payload_receipts"),
        ({"payload_receipts": [BAD_PAYLOAD]}, "payload_receipts[0]"),
        ({"payload_receipts": [bad_payload(), bad_payload(payload_id="")]},
         "payload_receipts[1].payload_id"),
        ({"payload_receipts": [bad_payload(payload_kind=" ")]}, "payload_receipts[0].payload_kind"),
        ({"payload_receipts": [bad_payload(byte_size=-1)]}, "payload_receipts[0].byte_size"),
        ({"payload_receipts": [bad_payload(byte_size=1.0)]}, "payload_receipts[0].byte_size"),
        ({"payload_receipts": [bad_payload(placement="")]}, "payload_receipts[0].placement"),
        ({"payload_receipts": [bad_payload(ok=None)]}, "payload_receipts[0].ok"),
        ({"payload_receipts": [bad_payload(failure_class="x")]},
         "payload_receipts[0].failure_class"),
        ({"payload_receipts": [bad_payload(content_digest=1)]},
         "payload_receipts[0].content_digest"),
        ({"capability_degradations": ("a",)}, "capability_degradations"),
        ({"capability_degradations": ["a", ""]}, "capability_degradations[1]"),
        ({"status": "failed"}, "failure_class"),
        ({"failure_class": "boom"}, "failure_class"),
        ({"status": "failed", "failure_class": "do_not_retry"}, "failure_class"),
        ({"retry_class": "timeout"}, "retry_class"),
        ({"warnings": "w"}, "warnings"),
        ({"warnings": ["ok", None]}, "warnings[1]"),
        ({"warnings": ["\ud800"]}, "warnings[0]"),
    ],
)  # fmt: skip
def test_validate_names_the_field(changes, field):
    with pytest.raises(ReceiptInvalid) as info:
        receipt(**changes).validate()
    assert info.value.field == field
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, replaycore.ReplayCoreError)


def test_validate_reports_the_first_bad_field_in_declaration_order():
    with pytest.raises(ReceiptInvalid) as info:
        receipt(receipt_id="", client_id="", status="nope").validate()
    assert info.value.field == "receipt_id"


def test_int_epoch_is_stored_as_float_so_content_matches():
    a = receipt(at_epoch_s=1_700_000_000)
    b = receipt(at_epoch_s=1_700_000_000.0)
    assert type(a.at_epoch_s) is float
    assert replaycore.encode_canonical(a) == replaycore.encode_canonical(b)


def test_module_errors_are_the_shared_classes():
    assert receipts.ReceiptInvalid is errors.ReceiptInvalid
    assert receipts.ReceiptEmittedNotEmittable is errors.ReceiptEmittedNotEmittable
    assert receipts.IdempotencyConflict is errors.IdempotencyConflict
    for name in ("ReceiptInvalid", "ReceiptEmittedNotEmittable", "IdempotencyConflict"):
        assert name in receipts.__all__


def test_emit_for_invalid_receipt_stores_nothing_and_uses_no_sequence(emitter, store, sequencer):
    with pytest.raises(ReceiptInvalid) as info:
        emitter.emit_for(plan(adapter_id=" "), DELIVERED, ctx())
    assert info.value.field == "adapter_id"
    with pytest.raises(ReceiptInvalid) as info:
        emitter.emit_for(plan(idempotency_key=None), DELIVERED, ctx(client_id=""))
    assert info.value.field == "client_id"
    assert len(store) == 0
    assert sequencer.peek(RUN) == 0


# --------------------------------------------------------------------------- receipt.emitted


@pytest.mark.parametrize("event", ["receipt.emitted", " receipt.emitted\n"])
@pytest.mark.parametrize("key", [KEY, None])
def test_receipt_emitted_is_not_emittable(emitter, store, sequencer, event, key):
    sequencer.next(RUN)
    with pytest.raises(ReceiptEmittedNotEmittable):
        emitter.emit_for(plan(event=event, idempotency_key=key), DELIVERED, ctx())
    assert len(store) == 0
    assert store.stats() == StoreStats(entries=0, inserts=0, replays=0, conflicts=0)
    assert sequencer.peek(RUN) == 1
    with pytest.raises(ReceiptEmittedNotEmittable):
        emitter.emit(receipt(event=event, idempotency_key=key, sequence=5, harness_run_id=RUN))
    assert len(store) == 0
    assert sequencer.peek(RUN) == 1


def test_receipt_emitted_wins_over_invalid_fields(emitter):
    with pytest.raises(ReceiptEmittedNotEmittable):
        emitter.emit_for(plan(event="receipt.emitted", adapter_id=""), DELIVERED, ctx())


def test_other_receipt_events_are_emittable(emitter):
    out = emitter.emit_for(plan(event="receipt.emitted.v2"), DELIVERED, ctx())
    assert out.event == "receipt.emitted.v2"


# --------------------------------------------------------------------------- sequences


def test_sequence_per_run(emitter, sequencer):
    def emit(n: int, run: str | None) -> Receipt:
        return emitter.emit_for(
            plan(idempotency_key=f"k-{n}", invocation_id=f"inv-{n}"),
            DELIVERED,
            ctx(receipt_id=f"rcpt-{n}", harness_run_id=run),
        )

    assert [emit(n, "A").sequence for n in range(3)] == [1, 2, 3]
    assert emit(3, "B").sequence == 1
    assert emit(4, "A").sequence == 4
    assert emit(5, "B").sequence == 2
    assert emit(6, None).sequence is None
    assert (sequencer.peek("A"), sequencer.peek("B")) == (4, 2)


def test_unkeyed_receipts_are_sequenced_but_not_stored(emitter, store, sequencer):
    first = emitter.emit_for(plan(idempotency_key=None), DELIVERED, ctx())
    second = emitter.emit_for(plan(idempotency_key=None), DELIVERED, ctx())
    assert (first.sequence, second.sequence) == (1, 2)
    assert first.idempotency_key is None
    assert len(store) == 0
    assert store.stats().inserts == 0
    assert sequencer.peek(RUN) == 2
    assert emitter.emit_for(plan(idempotency_key=None), DELIVERED, ctx(harness_run_id=None)) == (
        build_receipt(plan(idempotency_key=None), DELIVERED, ctx(harness_run_id=None))
    )


# --------------------------------------------------------------------------- idempotency


def test_keyed_receipt_is_stored_under_its_scope(emitter, store):
    out = emitter.emit_for(plan(), DELIVERED, ctx())
    assert out.sequence == 1
    stored = store.get(Scope("acme", "slack", KEY))
    assert type(stored) is Receipt
    assert stored == out
    assert type(stored.payload_receipts) is list


def test_replay_returns_prior_with_its_sequence_and_uses_none(emitter, store, sequencer):
    first = emitter.emit_for(plan(), DELIVERED, ctx())
    other = emitter.emit_for(plan(idempotency_key="k-2"), DELIVERED, ctx(receipt_id="rcpt-2"))
    assert (first.sequence, other.sequence) == (1, 2)
    again = emitter.emit_for(plan(), DELIVERED, ctx())
    assert again == first
    assert again.sequence == 1
    assert sequencer.peek(RUN) == 2
    assert store.stats() == StoreStats(entries=2, inserts=2, replays=1, conflicts=0)


def test_replay_without_run_id(emitter, store):
    c = ctx(harness_run_id=None)
    first = emitter.emit_for(plan(), DELIVERED, c)
    assert emitter.emit_for(plan(), DELIVERED, c) == first
    assert first.sequence is None
    assert store.stats().replays == 1


@pytest.mark.parametrize(
    ("plan_changes", "response", "ctx_changes", "differing"),
    [
        ({}, ClientResponse("skipped"), {}, ["status"]),
        ({}, ClientResponse("failed", "timeout"), {},
         ["failure_class", "retry_class", "status"]),
        ({"event_id": "evt-2"}, DELIVERED, {}, ["event_id"]),
        ({}, DELIVERED, {"receipt_id": "rcpt-other"}, ["receipt_id"]),
        ({}, DELIVERED, {"at_epoch_s": 1_700_000_001.0}, ["at_epoch_s"]),
        ({"warnings": ["late"]}, DELIVERED, {}, ["warnings"]),
        ({}, DELIVERED, {"harness_task_id": "task-2"}, ["harness_task_id"]),
        ({}, DELIVERED, {"harness_run_id": "run-other"}, ["harness_run_id"]),
    ],
)  # fmt: skip
def test_changed_content_conflicts_and_uses_no_sequence(
    emitter, store, sequencer, plan_changes, response, ctx_changes, differing
):
    first = emitter.emit_for(plan(), DELIVERED, ctx())
    with pytest.raises(IdempotencyConflict) as info:
        emitter.emit_for(plan(**plan_changes), response, ctx(**ctx_changes))
    assert info.value.differing_fields == differing
    assert info.value.scope == Scope("acme", "slack", KEY)
    assert info.value.prior_digest == replaycore.content_digest(first)
    assert sequencer.peek(RUN) == 1
    assert sequencer.peek("run-other") == 0
    assert store.get(Scope("acme", "slack", KEY)) == first
    assert store.stats() == StoreStats(entries=1, inserts=1, replays=0, conflicts=1)


def test_same_key_other_client_or_adapter_is_another_scope(emitter, store):
    a = emitter.emit_for(plan(), DELIVERED, ctx())
    b = emitter.emit_for(plan(), ClientResponse("skipped"), ctx(client_id="globex"))
    c = emitter.emit_for(plan(adapter_id="teams"), ClientResponse("skipped"), ctx())
    assert [a.sequence, b.sequence, c.sequence] == [1, 2, 3]
    assert len(store) == 3


def test_new_emitter_on_the_same_store_replays_and_observes_the_sequence(store, impl):
    first_emitter = ReceiptEmitter(store, impl.SequenceGenerator())
    for n in range(3):
        first_emitter.emit_for(
            plan(idempotency_key=f"k-{n}"), DELIVERED, ctx(receipt_id=f"rcpt-{n}")
        )
    # A restarted process: same (durable) store, fresh counters.
    sequencer = impl.SequenceGenerator()
    restarted = ReceiptEmitter(store, sequencer)
    replayed = restarted.emit_for(plan(idempotency_key="k-2"), DELIVERED, ctx(receipt_id="rcpt-2"))
    assert replayed.sequence == 3
    assert sequencer.peek(RUN) == 3
    fresh = restarted.emit_for(plan(idempotency_key="k-3"), DELIVERED, ctx(receipt_id="rcpt-3"))
    assert fresh.sequence == 4


# --------------------------------------------------------------------------- emit()


def test_emit_stores_validated_receipt_and_replays(emitter, store, sequencer):
    r = receipt(sequence=7, harness_run_id=RUN)
    assert emitter.emit(r) is r
    assert store.get(Scope("acme", "slack", KEY)) == r
    assert sequencer.peek(RUN) == 7  # observed, never allocated
    assert emitter.emit(receipt(sequence=7, harness_run_id=RUN)) == r
    assert store.stats() == StoreStats(entries=1, inserts=1, replays=1, conflicts=0)
    with pytest.raises(IdempotencyConflict) as info:
        emitter.emit(receipt(sequence=8, harness_run_id=RUN))
    assert info.value.differing_fields == ["sequence"]
    assert sequencer.peek(RUN) == 7
    assert emitter.emit_for(plan(idempotency_key="k-2"), DELIVERED, ctx()).sequence == 8


def test_emit_without_key_returns_unstored(emitter, store):
    r = receipt(idempotency_key=None)
    assert emitter.emit(r) is r
    assert len(store) == 0


def test_emit_validates_and_checks_type(emitter, store):
    with pytest.raises(ReceiptInvalid) as info:
        emitter.emit(receipt(status="failed"))
    assert info.value.field == "failure_class"
    with pytest.raises(InvalidArgumentType) as type_info:
        emitter.emit(msgspec.structs.asdict(receipt()))
    assert type_info.value.argument == "receipt"
    assert len(store) == 0


def test_emit_and_emit_for_share_the_scope(emitter):
    built = emitter.emit_for(plan(), DELIVERED, ctx())
    assert emitter.emit(built) == built
    with pytest.raises(IdempotencyConflict):
        emitter.emit(msgspec.structs.replace(built, status="observed"))


# --------------------------------------------------------------------------- construction


def test_defaults_are_the_facade_classes():
    emitter = ReceiptEmitter()
    assert type(emitter.store) is replaycore.IdempotencyStore
    assert type(emitter.sequencer) is replaycore.SequenceGenerator
    assert emitter.emit_for(plan(), DELIVERED, ctx()).sequence == 1


def test_bad_store_or_sequencer():
    with pytest.raises(InvalidArgumentType) as info:
        ReceiptEmitter(store={})
    assert info.value.argument == "store"
    with pytest.raises(InvalidArgumentType) as info:
        ReceiptEmitter(sequencer=iter([1, 2]))
    assert info.value.argument == "sequencer"


# --------------------------------------------------------------------------- races


class RacedStore:
    """A store whose first lookup misses, as if another process wrote the scope
    between the emitter's lookup and its put."""

    def __init__(self, inner, prior: Receipt) -> None:
        self.inner = inner
        self.scope = Scope(prior.client_id, prior.adapter_id, prior.idempotency_key)
        self.prior = prior
        self.hidden = True

    def put(self, scope, value):
        if self.hidden:
            self.hidden = False
            self.inner.put(self.scope, self.prior)  # the other writer wins the race
        return self.inner.put(scope, value)

    def get(self, scope):
        return None if self.hidden else self.inner.get(scope)

    def stats(self):
        return self.inner.stats()

    def __len__(self) -> int:
        return len(self.inner)

    def __contains__(self, scope: object) -> bool:
        return scope in self.inner


def test_lost_race_to_another_writer_returns_its_receipt(store, sequencer):
    theirs = build_receipt(plan(), DELIVERED, ctx(), sequence=1)
    sequencer.next(RUN)  # their process took 1 (in its own counters; here, the shared one)
    emitter = ReceiptEmitter(RacedStore(store, theirs), sequencer)
    out = emitter.emit_for(plan(), DELIVERED, ctx())
    assert out == theirs
    assert out.sequence == 1
    assert sequencer.peek(RUN) == 2  # our number 2 became a gap
    assert store.stats() == StoreStats(entries=1, inserts=1, replays=1, conflicts=1)


def test_lost_race_with_other_content_reports_exact_fields(store, sequencer):
    theirs = build_receipt(plan(), ClientResponse("skipped"), ctx(), sequence=1)
    emitter = ReceiptEmitter(RacedStore(store, theirs), sequencer)
    with pytest.raises(IdempotencyConflict) as info:
        emitter.emit_for(plan(), DELIVERED, ctx())
    assert info.value.differing_fields == ["status"]
    assert store.get(Scope("acme", "slack", KEY)) == theirs


THREADS = 8


def run_threads(target) -> list[object]:
    barrier = threading.Barrier(THREADS)
    results: list[object] = [None] * THREADS

    def worker(index: int) -> None:
        barrier.wait(timeout=30)
        try:
            results[index] = target(index)
        except Exception as exc:  # collected and asserted on below
            results[index] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return results


def test_threads_emitting_the_same_receipt_use_one_sequence(emitter, store, sequencer):
    results = run_threads(lambda _: emitter.emit_for(plan(), DELIVERED, ctx()))
    assert all(type(r) is Receipt for r in results)
    assert all(r == results[0] for r in results)
    assert results[0].sequence == 1
    assert sequencer.peek(RUN) == 1
    assert store.stats() == StoreStats(entries=1, inserts=1, replays=THREADS - 1, conflicts=0)


class YieldingStore:
    """Delegates to a real store but pauses in ``get``, widening the window between
    the lookup and the put that the emitter's lock has to close."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def put(self, scope, value):
        return self.inner.put(scope, value)

    def get(self, scope):
        found = self.inner.get(scope)
        time.sleep(0.005)  # the answer may be stale by the time the caller acts on it
        return found

    def stats(self):
        return self.inner.stats()

    def __len__(self) -> int:
        return len(self.inner)

    def __contains__(self, scope: object) -> bool:
        return scope in self.inner


def test_threads_with_a_slow_lookup_still_use_one_sequence(store, sequencer):
    emitter = ReceiptEmitter(YieldingStore(store), sequencer)
    results = run_threads(lambda _: emitter.emit_for(plan(), DELIVERED, ctx()))
    assert all(type(r) is Receipt and r == results[0] for r in results)
    assert results[0].sequence == 1
    assert sequencer.peek(RUN) == 1
    assert store.stats() == StoreStats(entries=1, inserts=1, replays=THREADS - 1, conflicts=0)


def test_threads_racing_different_contents_one_wins(emitter, store, sequencer):
    statuses = ["delivered", "skipped", "observed", "degraded"] * 2
    results = run_threads(lambda i: emitter.emit_for(plan(), ClientResponse(statuses[i]), ctx()))
    winners = [r for r in results if isinstance(r, Receipt)]
    losers = [r for r in results if isinstance(r, IdempotencyConflict)]
    assert len(winners) + len(losers) == THREADS
    assert len({r.status for r in winners}) == 1  # replays of the winner only
    assert len(winners) == statuses.count(winners[0].status)
    assert all(loser.differing_fields == ["status"] for loser in losers)
    assert sequencer.peek(RUN) == 1
    assert store.get(Scope("acme", "slack", KEY)) == winners[0]


def test_threads_emitting_distinct_receipts_get_distinct_sequences(emitter, sequencer):
    results = run_threads(
        lambda i: emitter.emit_for(
            plan(idempotency_key=f"k-{i}"), DELIVERED, ctx(receipt_id=f"rcpt-{i}")
        )
    )
    assert sorted(r.sequence for r in results) == list(range(1, THREADS + 1))
    assert sequencer.peek(RUN) == THREADS
