"""The replay reducer's rules (SPEC 7.2, 7.3, 7.4), one hand-written journal each.

Every test builds the whole expected ``ReplayResult`` and compares it with
``==``. Rules that can raise are run in every mode with ``strict`` left to its
default and set explicitly both ways: strictly, the violation must raise with
the right attributes and leave the reducer usable (the record is not applied);
otherwise it must become a repair and the record skipped.
"""

from __future__ import annotations

from typing import Any

import pytest
from journals import (
    MODES,
    POLICIES,
    TERMINAL_STATUSES,
    canonical,
    effective_strict,
    frame,
    framed,
    rec,
    repair,
    result,
)
from replaycore.errors import (
    InvalidArgument,
    RecordDecodeError,
    ReducerFinished,
    ReplayCoreError,
    ReplayViolation,
)
from replaycore.records import (
    Checkpoint,
    Custom,
    EffectIntent,
    EffectResult,
    OutputDedupe,
    OutputEvent,
    OutputIntent,
    OutputReconciliation,
    OutputResult,
    PendingSideEffect,
    Recovery,
    RunLifecycle,
    TerminalResult,
)
from replaycore.results import EventCursor, PendingEffect, StreamScope

MODE_STRICT = [(mode, strict) for mode in MODES for strict in (None, True, False)]
MODE_STRICT_IDS = [f"{mode}-strict_{strict}" for mode, strict in MODE_STRICT]
mode_strict = pytest.mark.parametrize(("mode", "strict"), MODE_STRICT, ids=MODE_STRICT_IDS)

DUPLICATE = "duplicate non-idempotent journal record"
ORDER = "journal records must be strictly increasing"
SEALED = "record after sealed terminal state"
PENDING = "effect intent has no terminal result in replay"
PROOF = "completed dedupe proof found for output delivery"
UNSAFE_OUTPUT = "cannot resend output delivery without completed dedupe proof"


def running(record_id: str = "r1", seq: int = 1, **kw: Any) -> Any:
    return rec(record_id, seq, RunLifecycle(status="running"), **kw)


def note(record_id: str, seq: int, **kw: Any) -> Any:
    return rec(record_id, seq, Custom(name="note", data={"n": seq}), **kw)


def violation(record_id: str, seq: int, message: str) -> Any:
    return repair("replay_invariant_violation", record_id, seq, message)


def check_violation(
    impl: Any,
    mode: str,
    strict: bool | None,
    records: list[Any],
    bad: int,
    kind: str,
    message: str,
    *,
    at: int = 0,
    clean_status: str = "complete",
    clean_repairs: tuple[Any, ...] = (),
    options: dict[str, Any] | None = None,
    **fields: Any,
) -> None:
    """``records[bad]`` breaks a rule; ``fields`` and ``clean_repairs`` describe
    the result when it is skipped without a trace (``clean_status``).

    Strict: replay raises; a reducer fed record by record raises on exactly
    that record, stays usable, and finishes with the clean result. Not strict:
    replay gives the clean result plus the violation repair at index ``at``.
    """
    options = options or {}
    offender = records[bad]
    if effective_strict(mode, strict):
        with pytest.raises(ReplayViolation) as info:
            impl.replay(records, mode=mode, strict=strict, **options)
        err = info.value
        assert (err.kind, err.record_id, err.journal_seq, err.message, err.retry) == (
            kind,
            offender.record_id,
            offender.journal_seq,
            message,
            "repair_needed",
        )
        reducer = impl.ReplayReducer(mode, strict=strict, **options)
        for index, record in enumerate(records):
            if index == bad:
                applied = reducer.records_applied
                with pytest.raises(ReplayViolation) as again:
                    reducer.apply(record)
                assert again.value.kind == kind
                assert reducer.records_applied == applied
            else:
                reducer.apply(record)
        expected = result(mode, clean_status, repair_needed=list(clean_repairs), **fields)
        assert reducer.finish() == expected
    else:
        repairs = list(clean_repairs)
        repairs.insert(at, violation(offender.record_id, offender.journal_seq, message))
        expected = result(mode, "repair_needed", repair_needed=repairs, **fields)
        assert impl.replay(records, mode=mode, strict=strict, **options) == expected


# -- whole journals --------------------------------------------------------------------


@mode_strict
def test_empty_journal(impl, mode, strict):
    assert impl.replay([], mode=mode, strict=strict) == result(mode, "complete")
    assert impl.replay(framed([]), mode=mode, strict=strict) == result(mode, "complete")


def test_defaults_are_resume_and_strict(impl):
    records = [running(), note("r2", 2), rec("r2", 3, Custom(name="x"))]
    with pytest.raises(ReplayViolation):
        impl.replay(records)
    reducer = impl.ReplayReducer()
    reducer.apply(records[0])
    reducer.apply(records[1])
    with pytest.raises(ReplayViolation):
        reducer.apply(records[2])
    assert reducer.finish() == result("resume", "complete", latest_journal_seq=2, records_applied=2)


@pytest.mark.parametrize("mode", MODES)
def test_clean_run_reports_every_field(impl, mode):
    cp = Checkpoint(
        checkpoint_seq=1,
        covers_journal_seq=2,
        loop_state="s1",
        created_at_ms=10,
        content_ref_manifest=["ref-a"],
    )
    records = [
        running(),
        rec("r2", 2, EffectIntent(effect_id="e1", effect_kind="http", idempotency_key="i1")),
        rec("r3", 3, cp, content_refs=["ref-b"]),
        rec("r4", 4, EffectResult(effect_id="e1", status="ok")),
        rec("r5", 5, OutputIntent(delivery_id="d1", sink_ref="sink", dedupe_key="k1")),
        rec("r6", 6, OutputEvent(delivery_id="d1", event="sent")),
        rec("r7", 7, OutputResult(delivery_id="d1", status="delivered")),
        note("r8", 8),
        rec("r9", 9, RunLifecycle(status="completed")),
    ]
    expected = result(
        mode,
        "complete",
        latest_journal_seq=9,
        terminal_status="completed",
        next_loop_state="s1",
        latest_checkpoint=cp,
        records_applied=9,
    )
    got = impl.replay(records, mode=mode, available_content_refs=["ref-a", "ref-b"])
    assert got == expected
    assert impl.replay(framed(records), mode=mode, available_content_refs={"ref-a", "ref-b"}) == (
        expected
    )


def test_each_newer_checkpoint_replaces_the_whole_latest_one(impl):
    # Manifests that grow, shrink and empty out: the latest checkpoint is the
    # last one's, never a mix with what an earlier one held.
    manifests = [["a", "bb", "ccc"], ["dddd"], ["e", "f"], [], ["g" * 70, "h"]]
    checkpoints = [
        Checkpoint(
            checkpoint_seq=i,
            covers_journal_seq=i + 1,
            loop_state="s" * (len(manifests) - i),
            created_at_ms=i,
            content_ref_manifest=refs,
        )
        for i, refs in enumerate(manifests)
    ]
    records = [running()] + [rec(f"c{i}", i + 2, cp) for i, cp in enumerate(checkpoints)]
    for upto in range(1, len(records) + 1):
        got = impl.replay(records[:upto])
        assert got.latest_checkpoint == (checkpoints[upto - 2] if upto > 1 else None)


# -- 7.2.1 idempotent duplicates -------------------------------------------------------

CP2 = Checkpoint(checkpoint_seq=1, covers_journal_seq=1, loop_state="s", created_at_ms=0)
RECOVERY_EFFECT = PendingSideEffect(
    effect_id="e1", intent_record_id="r0", idempotency_key="i1", reason="crashed"
)

IDEMPOTENT = {
    "record_idempotency_key": (rec("r2", 2, Custom(name="x"), idempotency_key="i1"), {}),
    "record_dedupe_key": (rec("r2", 2, Custom(name="x"), dedupe_key="k1"), {}),
    "empty_string_key": (rec("r2", 2, Custom(name="x"), idempotency_key=""), {}),
    "checkpoint": (
        rec("r2", 2, CP2),
        {"latest_checkpoint": CP2, "next_loop_state": "s"},
    ),
    "recovery": (
        rec("r2", 2, Recovery(unsafe_pending=[RECOVERY_EFFECT])),
        {
            "status": "repair_needed",
            "unsafe_pending_side_effects": [
                PendingEffect(
                    effect_id="e1",
                    intent_record_id="r0",
                    idempotency_key="i1",
                    reason="crashed",
                    retry_allowed=True,
                )
            ],
            "repair_needed": [repair("unsafe_pending_side_effect", "r2", 2, "crashed")],
        },
    ),
}


@mode_strict
@pytest.mark.parametrize("variant", list(IDEMPOTENT))
def test_idempotent_duplicate_with_older_seq_is_ignored(impl, mode, strict, variant):
    original, extra = IDEMPOTENT[variant]
    extra = dict(extra)
    status = extra.pop("status", "complete")
    records = [running(), original, note("r3", 3), original, note("r4", 4), original]
    expected = result(mode, status, latest_journal_seq=4, records_applied=4, **extra)
    assert impl.replay(records, mode=mode, strict=strict) == expected
    assert impl.replay(framed(records), mode=mode, strict=strict) == expected


@mode_strict
def test_idempotent_duplicate_given_as_bytes_and_as_struct(impl, mode, strict):
    original = rec("r2", 2, Custom(name="x", data={"b": 1, "a": 2}), idempotency_key="i1")
    reducer = impl.ReplayReducer(mode, strict=strict)
    reducer.apply(running())
    reducer.apply(canonical(original))
    reducer.apply(original)
    reducer.apply(note("r3", 3))
    reducer.apply(canonical(original))
    assert reducer.records_applied == 3
    assert reducer.finish() == result(mode, "complete", latest_journal_seq=3, records_applied=3)


@mode_strict
def test_idempotent_duplicate_of_terminal_record_is_not_sealed_out(impl, mode, strict):
    done = rec("r2", 2, RunLifecycle(status="completed"), idempotency_key="i1")
    records = [running(), done, done]
    assert impl.replay(records, mode=mode, strict=strict) == result(
        mode, "complete", latest_journal_seq=2, terminal_status="completed", records_applied=2
    )


@mode_strict
def test_key_on_payload_only_is_not_idempotent_and_duplicate_beats_order(impl, mode, strict):
    # the copy is both a reused record_id and out of order: the duplicate is reported
    intent = rec("r2", 2, EffectIntent(effect_id="e1", effect_kind="http", idempotency_key="i1"))
    records = [running(), intent, note("r3", 3), intent]
    pending = PendingEffect(
        effect_id="e1",
        intent_record_id="r2",
        idempotency_key="i1",
        reason=PENDING,
        retry_allowed=True,
    )
    check_violation(
        impl,
        mode,
        strict,
        records,
        3,
        "invalid_state_transition",
        DUPLICATE,
        clean_status="repair_needed",
        clean_repairs=(repair("unsafe_pending_side_effect", "r2", 3, PENDING),),
        latest_journal_seq=3,
        records_applied=3,
        unsafe_pending_side_effects=[pending],
    )


@mode_strict
def test_same_id_and_key_but_different_content_is_a_duplicate(impl, mode, strict):
    first = rec("r2", 2, Custom(name="x"), idempotency_key="i1")
    changed = rec("r2", 3, Custom(name="x"), idempotency_key="i1")
    check_violation(
        impl,
        mode,
        strict,
        [running(), first, changed, note("r4", 4)],
        2,
        "invalid_state_transition",
        DUPLICATE,
        latest_journal_seq=4,
        records_applied=3,
        sequence_gaps=[(2, 4)],
    )


@mode_strict
def test_exact_copy_without_keys_is_a_duplicate(impl, mode, strict):
    check_violation(
        impl,
        mode,
        strict,
        [running(), note("r2", 2), note("r2", 2)],
        2,
        "invalid_state_transition",
        DUPLICATE,
        latest_journal_seq=2,
        records_applied=2,
    )


@pytest.mark.parametrize("mode", MODES)
def test_duplicate_of_a_rejected_record_is_not_ignored(impl, mode):
    # only applied records are remembered: the copy of a skipped record is judged afresh
    late = rec("r2", 1, Custom(name="x"), idempotency_key="i1")
    records = [note("r1", 5), late, late, note("r3", 6)]
    assert impl.replay(records, mode=mode, strict=False) == result(
        mode,
        "repair_needed",
        latest_journal_seq=6,
        records_applied=2,
        repair_needed=[violation("r2", 1, ORDER), violation("r2", 1, ORDER)],
    )


# -- 7.2.2 schema ----------------------------------------------------------------------


@mode_strict
@pytest.mark.parametrize("schema", [0, 2, 99])
def test_unsupported_schema(impl, mode, strict, schema):
    check_violation(
        impl,
        mode,
        strict,
        [running(), note("r2", 2, schema=schema), note("r3", 3)],
        1,
        "recovery_repair_needed",
        f"unsupported journal schema {schema}",
        latest_journal_seq=3,
        records_applied=2,
        sequence_gaps=[(1, 3)],
    )


@mode_strict
def test_schema_is_checked_before_duplicate_and_order(impl, mode, strict):
    check_violation(
        impl,
        mode,
        strict,
        [running(), note("r2", 2), note("r2", 1, schema=2)],
        2,
        "recovery_repair_needed",
        "unsupported journal schema 2",
        latest_journal_seq=2,
        records_applied=2,
    )


@mode_strict
def test_schema_violation_checks_no_content_refs(impl, mode, strict):
    check_violation(
        impl,
        mode,
        strict,
        [running(), note("r2", 2, schema=2, content_refs=["ref-a"])],
        1,
        "recovery_repair_needed",
        "unsupported journal schema 2",
        options={"available_content_refs": []},
        latest_journal_seq=1,
        records_applied=1,
    )


# -- 7.2.4 order -----------------------------------------------------------------------


@mode_strict
@pytest.mark.parametrize("seq", [3, 2, 0, -1])
def test_journal_seq_must_increase(impl, mode, strict, seq):
    check_violation(
        impl,
        mode,
        strict,
        [running(), note("r2", 3), note("r3", seq), note("r4", 4)],
        2,
        "invalid_state_transition",
        ORDER,
        latest_journal_seq=4,
        records_applied=3,
        sequence_gaps=[(1, 3)],
    )


@mode_strict
@pytest.mark.parametrize("seq", [0, -5])
def test_first_record_needs_a_positive_seq(impl, mode, strict, seq):
    check_violation(
        impl,
        mode,
        strict,
        [note("r1", seq), note("r2", 1)],
        0,
        "invalid_state_transition",
        ORDER,
        latest_journal_seq=1,
        records_applied=1,
    )


@mode_strict
def test_order_is_checked_before_sealed(impl, mode, strict):
    check_violation(
        impl,
        mode,
        strict,
        [running(), rec("r2", 2, RunLifecycle(status="failed")), note("r3", 2)],
        2,
        "invalid_state_transition",
        ORDER,
        latest_journal_seq=2,
        terminal_status="failed",
        records_applied=2,
    )


# -- 7.2.5 sealed ----------------------------------------------------------------------


@mode_strict
@pytest.mark.parametrize("status", TERMINAL_STATUSES)
def test_terminal_lifecycle_seals_the_run(impl, mode, strict, status):
    check_violation(
        impl,
        mode,
        strict,
        [running(), rec("r2", 2, RunLifecycle(status=status)), note("r3", 3, content_refs=["x"])],
        2,
        "invalid_state_transition",
        SEALED,
        options={"available_content_refs": []},
        latest_journal_seq=2,
        terminal_status=status,
        records_applied=2,
    )


@mode_strict
def test_terminal_result_seals_the_run_and_ends_its_effect(impl, mode, strict):
    check_violation(
        impl,
        mode,
        strict,
        [
            running(),
            rec("r2", 2, EffectIntent(effect_id="e1", effect_kind="http")),
            rec("r3", 3, TerminalResult(effect_id="e1", terminal_status="done")),
            rec("r4", 4, TerminalResult(effect_id="e2", terminal_status="failed")),
        ],
        3,
        "invalid_state_transition",
        SEALED,
        latest_journal_seq=3,
        terminal_status="done",
        records_applied=3,
    )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("status", ["running", "paused", "succeeded", "complete", "COMPLETED"])
def test_other_lifecycle_statuses_do_not_seal(impl, mode, status):
    records = [running(), rec("r2", 2, RunLifecycle(status=status)), note("r3", 3)]
    assert impl.replay(records, mode=mode) == result(
        mode, "complete", latest_journal_seq=3, records_applied=3
    )


@mode_strict
def test_sealed_run_still_takes_checkpoint_and_recovery(impl, mode, strict):
    cp = Checkpoint(checkpoint_seq=1, covers_journal_seq=2, loop_state="end", created_at_ms=5)
    effect = PendingSideEffect(effect_id="e9", intent_record_id="r0", reason="lost")
    records = [
        running(),
        rec("r2", 2, RunLifecycle(status="completed")),
        rec("r3", 3, cp),
        rec("r4", 4, Recovery(unsafe_pending=[effect])),
    ]
    assert impl.replay(records, mode=mode, strict=strict) == result(
        mode,
        "repair_needed",
        latest_journal_seq=4,
        terminal_status="completed",
        next_loop_state="end",
        latest_checkpoint=cp,
        records_applied=4,
        unsafe_pending_side_effects=[
            PendingEffect(effect_id="e9", intent_record_id="r0", reason="lost", retry_allowed=False)
        ],
        repair_needed=[repair("non_idempotent_pending_side_effect", "r4", 4, "lost")],
    )


# -- 7.2.6 content refs ----------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("policy", POLICIES)
def test_missing_content_refs_under_each_policy(impl, mode, policy):
    cp = Checkpoint(
        checkpoint_seq=0,
        covers_journal_seq=1,
        loop_state="s",
        created_at_ms=0,
        content_ref_manifest=["ref-a", "ref-ok"],
    )
    records = [
        note("r1", 1, content_refs=["ref-d", "ref-ok", "ref-d"]),
        note("r2", 2, content_refs=["ref-b", "ref-d", "ref-c"]),
        rec("r3", 3, cp, content_refs=["ref-c"]),
    ]
    found = [("r1", 1, "ref-d"), ("r2", 2, "ref-b"), ("r2", 2, "ref-c"), ("r3", 3, "ref-a")]
    repairs = [
        repair(
            "missing_content_ref",
            record_id,
            seq,
            f"content ref {ref} is not available (policy {policy})",
            "user_action_needed",
        )
        for record_id, seq, ref in found
    ]
    expected = result(
        mode,
        "repair_needed",
        latest_journal_seq=3,
        next_loop_state="s",
        latest_checkpoint=cp,
        records_applied=3,
        missing_content_refs=["ref-a", "ref-b", "ref-c", "ref-d"],
        repair_needed=[] if policy == "placeholder" else repairs,
    )
    for available in (["ref-ok"], {"ref-ok"}, ("ref-ok",), (r for r in ["ref-ok"])):
        got = impl.replay(
            records, mode=mode, available_content_refs=available, missing_content_policy=policy
        )
        assert got == expected
    # without available_content_refs nothing is checked, whatever the policy
    assert impl.replay(records, mode=mode, missing_content_policy=policy) == result(
        mode,
        "complete",
        latest_journal_seq=3,
        next_loop_state="s",
        latest_checkpoint=cp,
        records_applied=3,
    )


@mode_strict
def test_refs_of_a_duplicate_are_not_checked(impl, mode, strict):
    check_violation(
        impl,
        mode,
        strict,
        [running(), note("r2", 2), note("r2", 3, content_refs=["ref-a"])],
        2,
        "invalid_state_transition",
        DUPLICATE,
        options={"available_content_refs": []},
        latest_journal_seq=2,
        records_applied=2,
    )


# -- 7.2.7 checkpoints -----------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("covers", [0, 4])
def test_checkpoint_bounds_that_are_valid(impl, mode, covers):
    cp = Checkpoint(checkpoint_seq=0, covers_journal_seq=covers, loop_state="s", created_at_ms=0)
    records = [running(), note("r2", 4), rec("r3", 5, cp)]
    assert impl.replay(records, mode=mode) == result(
        mode,
        "complete",
        latest_journal_seq=5,
        next_loop_state="s",
        latest_checkpoint=cp,
        records_applied=3,
        sequence_gaps=[(1, 4)],
    )


@mode_strict
@pytest.mark.parametrize("covers", [5, 6, 1000, -1])
def test_invalid_checkpoint_leaves_one_repair_in_every_mode(impl, mode, strict, covers):
    bad_cp = Checkpoint(
        checkpoint_seq=0,
        covers_journal_seq=covers,
        loop_state="bad",
        created_at_ms=0,
        content_ref_manifest=["ref-m"],
    )
    records = [running(), rec("r2", 5, bad_cp, content_refs=["ref-own", "ref-ok"]), note("r3", 6)]
    message = f"checkpoint covers journal_seq {covers}, outside 0..4"
    expected = result(
        mode,
        "repair_needed",
        latest_journal_seq=6,
        records_applied=2,
        sequence_gaps=[(1, 6)],
        missing_content_refs=["ref-own"],
        repair_needed=[
            repair(
                "missing_content_ref",
                "r2",
                5,
                "content ref ref-own is not available (policy fail)",
                "user_action_needed",
            ),
            repair("checkpoint_invalid", "r2", 5, message),
        ],
    )
    options = {"available_content_refs": ["ref-ok"]}
    if not effective_strict(mode, strict):
        assert impl.replay(records, mode=mode, strict=strict, **options) == expected
        return
    with pytest.raises(ReplayViolation) as info:
        impl.replay(records, mode=mode, strict=strict, **options)
    err = info.value
    assert (err.kind, err.record_id, err.journal_seq, err.message, err.retry) == (
        "checkpoint_invalid",
        "r2",
        5,
        message,
        "repair_needed",
    )
    reducer = impl.ReplayReducer(mode, strict=strict, **options)
    reducer.apply(records[0])
    with pytest.raises(ReplayViolation):
        reducer.apply(records[1])
    assert reducer.records_applied == 1
    reducer.apply(records[2])
    assert reducer.finish() == expected


@pytest.mark.parametrize("mode", MODES)
def test_latest_checkpoint_is_the_greatest_tuple(impl, mode):
    def cp(covers: int, cseq: int, created: int, state: str) -> Checkpoint:
        return Checkpoint(
            checkpoint_seq=cseq, covers_journal_seq=covers, loop_state=state, created_at_ms=created
        )

    steps = [
        cp(2, 5, 5, "a"),  # first: latest
        cp(1, 9, 9, "lower covers"),
        cp(2, 5, 5, "equal tuple"),  # equal: the earlier one stays
        cp(2, 5, 6, "b"),  # created_at_ms breaks the tie
        cp(2, 4, 99, "lower checkpoint_seq"),
        cp(2, 6, 0, "c"),  # checkpoint_seq beats created_at_ms
        cp(3, 0, 0, "d"),  # covers beats both
    ]
    records = [running(), note("r2", 2), note("r3", 3)]
    records += [rec(f"c{i}", 4 + i, payload) for i, payload in enumerate(steps)]
    got = impl.replay(records, mode=mode)
    assert got == result(
        mode,
        "complete",
        latest_journal_seq=10,
        next_loop_state="d",
        latest_checkpoint=steps[-1],
        records_applied=10,
    )
    cut = impl.replay(records[:-1], mode=mode)
    assert (cut.next_loop_state, cut.latest_checkpoint) == ("c", steps[5])
    cut = impl.replay(records[:-2], mode=mode)
    assert (cut.next_loop_state, cut.latest_checkpoint) == ("b", steps[3])
    cut = impl.replay(records[:6], mode=mode)
    assert (cut.next_loop_state, cut.latest_checkpoint) == ("a", steps[0])


# -- 7.2.7 recovery, effects, outputs --------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_recovery_lists_unsafe_effects_before_pending_ones(impl, mode):
    effects = [
        PendingSideEffect(effect_id="e5", intent_record_id="x1", idempotency_key="i", reason="a"),
        PendingSideEffect(effect_id="e4", intent_record_id="x2", dedupe_key="", reason="b"),
        PendingSideEffect(effect_id="e3", intent_record_id="x3", reason="c"),
    ]
    records = [
        running(),
        rec("r2", 2, EffectIntent(effect_id="e0", effect_kind="db", dedupe_key="k")),
        rec("r3", 3, Recovery(unsafe_pending=effects)),
        rec("r4", 4, Recovery()),
    ]
    unsafe = [
        PendingEffect(
            effect_id=e.effect_id,
            intent_record_id=e.intent_record_id,
            idempotency_key=e.idempotency_key,
            dedupe_key=e.dedupe_key,
            reason=e.reason,
            retry_allowed=allowed,
        )
        for e, allowed in zip(effects, [True, True, False], strict=True)
    ]
    unsafe.append(
        PendingEffect(
            effect_id="e0",
            intent_record_id="r2",
            dedupe_key="k",
            reason=PENDING,
            retry_allowed=True,
        )
    )
    assert impl.replay(records, mode=mode) == result(
        mode,
        "repair_needed",
        latest_journal_seq=4,
        records_applied=4,
        unsafe_pending_side_effects=unsafe,
        repair_needed=[
            repair("unsafe_pending_side_effect", "r3", 3, "a"),
            repair("unsafe_pending_side_effect", "r3", 3, "b"),
            repair("non_idempotent_pending_side_effect", "r3", 3, "c"),
            repair("unsafe_pending_side_effect", "r2", 4, PENDING),
        ],
    )


@pytest.mark.parametrize("mode", MODES)
def test_pending_effects_at_finish(impl, mode):
    records = [
        running(),
        rec("r2", 2, EffectIntent(effect_id="e3", effect_kind="http")),
        rec("r3", 3, EffectIntent(effect_id="e1", effect_kind="http", idempotency_key="")),
        rec("r4", 4, EffectIntent(effect_id="e2", effect_kind="http", dedupe_key="k2")),
        rec("r5", 5, EffectIntent(effect_id="e9", effect_kind="http")),
        rec("r6", 6, EffectResult(effect_id="e9", status="ok")),
        rec("r7", 7, EffectResult(effect_id="never-started", status="ok")),
        # a later intent for e2 replaces the earlier one (and loses its key)
        rec("r8", 8, EffectIntent(effect_id="e2", effect_kind="db")),
        note("r9", 12),
    ]

    def pending(effect_id: str, record_id: str, allowed: bool, **keys: Any) -> PendingEffect:
        return PendingEffect(
            effect_id=effect_id,
            intent_record_id=record_id,
            reason=PENDING,
            retry_allowed=allowed,
            **keys,
        )

    assert impl.replay(records, mode=mode) == result(
        mode,
        "repair_needed",
        latest_journal_seq=12,
        records_applied=9,
        sequence_gaps=[(8, 12)],
        unsafe_pending_side_effects=[
            pending("e1", "r3", True, idempotency_key=""),
            pending("e2", "r8", False),
            pending("e3", "r2", False),
        ],
        repair_needed=[
            repair("unsafe_pending_side_effect", "r3", 12, PENDING),
            repair("non_idempotent_pending_side_effect", "r8", 12, PENDING),
            repair("non_idempotent_pending_side_effect", "r2", 12, PENDING),
        ],
    )


@pytest.mark.parametrize("mode", MODES)
def test_output_intents_at_finish(impl, mode):
    recon = OutputReconciliation(
        delivery_id="d1",
        intent_record_id="r3",
        dedupe_key="k1",
        idempotency_key="i1",
        external_operation_id="op-9",
        terminal_status="delivered",
        reason="host confirmed",
        decision="skip",
        resend_allowed=False,
    )
    records = [
        running(),
        rec("r2", 2, OutputIntent(delivery_id="d3", sink_ref="s", dedupe_key="k3")),
        rec("r3", 3, OutputIntent(delivery_id="d1", sink_ref="s", dedupe_key="k1")),
        rec("r4", 4, recon),
        rec("r5", 5, OutputDedupe(dedupe_key="k2", prior_terminal_status="old")),
        rec("r6", 6, OutputIntent(delivery_id="d2", sink_ref="s", dedupe_key="k2")),
        rec(
            "r7",
            7,
            OutputDedupe(
                dedupe_key="k2", prior_external_operation_id="op-2", prior_terminal_status="sent"
            ),
        ),
        rec("r8", 8, OutputResult(delivery_id="d0", status="delivered")),
        rec("r9", 9, OutputIntent(delivery_id="d0", sink_ref="s", dedupe_key="k3")),
        rec("r10", 10, OutputIntent(delivery_id="d4", sink_ref="s", dedupe_key="k2")),
        rec("r11", 11, OutputResult(delivery_id="d4", status="rejected")),
        rec("r12", 12, OutputDedupe(dedupe_key="k3", prior_terminal_status="x")),
        # the latest intent for d3 counts, and its dedupe key has no proof
        rec(
            "r13",
            13,
            OutputIntent(delivery_id="d3", sink_ref="s", dedupe_key="k4", idempotency_key="i3"),
        ),
        rec("r14", 14, OutputEvent(delivery_id="d3", event="queued")),
    ]
    assert impl.replay(records, mode=mode) == result(
        mode,
        "repair_needed",
        latest_journal_seq=14,
        records_applied=14,
        output_delivery_repairs=[
            recon,
            OutputReconciliation(
                delivery_id="d2",
                intent_record_id="r6",
                dedupe_key="k2",
                idempotency_key=None,
                external_operation_id="op-2",
                terminal_status="sent",
                reason=PROOF,
                decision="completed_by_dedupe_proof",
                resend_allowed=False,
            ),
            OutputReconciliation(
                delivery_id="d3",
                intent_record_id="r13",
                dedupe_key="k4",
                idempotency_key="i3",
                external_operation_id=None,
                terminal_status="reconciliation_needed",
                reason=UNSAFE_OUTPUT,
                decision="unsafe_pending",
                resend_allowed=False,
            ),
        ],
        repair_needed=[
            repair("output_delivery_reconciliation", "r4", 4, "host confirmed"),
            repair("output_delivery_reconciliation", "r13", 13, UNSAFE_OUTPUT),
        ],
    )


@pytest.mark.parametrize("mode", MODES)
def test_dedupe_proof_alone_keeps_the_run_complete(impl, mode):
    records = [
        rec(
            "r1",
            1,
            OutputIntent(delivery_id="d1", sink_ref="s", dedupe_key="k", idempotency_key="i"),
        ),
        rec("r2", 2, OutputDedupe(dedupe_key="k", prior_terminal_status="delivered")),
    ]
    assert impl.replay(records, mode=mode) == result(
        mode,
        "complete",
        latest_journal_seq=2,
        records_applied=2,
        output_delivery_repairs=[
            OutputReconciliation(
                delivery_id="d1",
                intent_record_id="r1",
                dedupe_key="k",
                idempotency_key="i",
                terminal_status="delivered",
                reason=PROOF,
                decision="completed_by_dedupe_proof",
                resend_allowed=False,
            )
        ],
    )


@pytest.mark.parametrize("mode", MODES)
def test_reconciliation_of_a_delivered_output_still_adds_its_repair(impl, mode):
    recon = OutputReconciliation(
        delivery_id="d1",
        intent_record_id="r1",
        dedupe_key="k",
        terminal_status="delivered",
        reason="checked",
        decision="skip",
        resend_allowed=True,
    )
    records = [
        rec("r1", 1, OutputIntent(delivery_id="d1", sink_ref="s", dedupe_key="k")),
        rec("r2", 2, recon),
        rec("r3", 3, OutputResult(delivery_id="d1", status="delivered")),
    ]
    assert impl.replay(records, mode=mode) == result(
        mode,
        "repair_needed",
        latest_journal_seq=3,
        records_applied=3,
        repair_needed=[repair("output_delivery_reconciliation", "r2", 2, "checked")],
    )


# -- 7.3.3/7.3.4 status and resume_allowed ---------------------------------------------


@pytest.mark.parametrize(
    ("mode", "status", "resume_allowed"),
    [
        ("audit", "complete", True),
        ("audit", "repair_needed", True),
        ("resume", "complete", True),
        ("resume", "repair_needed", False),
        ("repair", "complete", True),
        ("repair", "repair_needed", True),
    ],
)
def test_status_and_resume_allowed(impl, mode, status, resume_allowed):
    records = [running()]
    if status == "repair_needed":
        # placeholder: a missing ref with no repair at all still needs repair
        records = [running(content_refs=["ref-gone"])]
    got = impl.replay(
        records, mode=mode, available_content_refs=[], missing_content_policy="placeholder"
    )
    missing = ["ref-gone"] if status == "repair_needed" else []
    assert got.status == status
    assert got.resume_allowed is resume_allowed
    assert got == result(
        mode, status, latest_journal_seq=1, records_applied=1, missing_content_refs=missing
    )


# -- records_applied and sequence_gaps -------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_records_applied_and_sequence_gaps(impl, mode):
    key = rec("k", 4, Custom(name="x"), idempotency_key="i")
    records = [
        note("r1", 3),  # the first record makes no gap
        key,
        key,  # ignored
        note("r2", 5, schema=2),  # skipped: the gap runs from the last applied record
        note("r3", 6),
        note("r3", 7),  # skipped duplicate
        note("r4", 7),
        note("r5", 12),
    ]
    reducer = impl.ReplayReducer(mode, strict=False)
    counts = []
    for record in records:
        reducer.apply(record)
        counts.append(reducer.records_applied)
    assert counts == [1, 2, 2, 2, 3, 3, 4, 5]
    assert reducer.finish() == result(
        mode,
        "repair_needed",
        latest_journal_seq=12,
        records_applied=5,
        sequence_gaps=[(4, 6), (7, 12)],
        repair_needed=[
            violation("r2", 5, "unsupported journal schema 2"),
            violation("r3", 7, DUPLICATE),
        ],
    )


# -- the reducer object ----------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_reducer_is_spent_after_finish(impl, mode):
    reducer = impl.ReplayReducer(mode)
    reducer.apply(running())
    assert reducer.finish() == result(mode, "complete", latest_journal_seq=1, records_applied=1)
    calls = [
        lambda: reducer.apply(note("r2", 2)),
        lambda: reducer.apply(canonical(note("r2", 2))),
        lambda: reducer.apply_many([note("r2", 2)]),
        lambda: reducer.apply_many([]),
        lambda: reducer.apply_many(framed([note("r2", 2)])),
        reducer.finish,
    ]
    for call in calls:
        with pytest.raises(ReducerFinished) as info:
            call()
        assert isinstance(info.value, ReplayCoreError)


@pytest.mark.parametrize("mode", MODES)
def test_apply_bytes_apply_many_and_replay_agree(impl, mode):
    records = [
        running(),
        rec("r2", 2, EffectIntent(effect_id="e1", effect_kind="http")),
        rec("r3", 3, OutputIntent(delivery_id="d1", sink_ref="s", dedupe_key="k")),
    ]
    expected = impl.replay(records, mode=mode)
    assert expected.records_applied == 3
    one = impl.ReplayReducer(mode)
    for record in records:
        one.apply(canonical(record))
    assert one.finish() == expected
    for source in (records, [canonical(r) for r in records], iter(records), framed(records)):
        many = impl.ReplayReducer(mode)
        many.apply_many(source)
        assert many.finish() == expected
    mixed = impl.ReplayReducer(mode)
    mixed.apply_many(
        [records[0], bytearray(canonical(records[1])), memoryview(frame(records[2]))[12:]]
    )
    assert mixed.finish() == expected


@pytest.mark.parametrize("mode", MODES)
def test_apply_many_framed_counts_the_torn_tail(impl, mode):
    records = [running(), note("r2", 2)]
    data = framed(records) + frame(note("r3", 3))[:-1]
    reducer = impl.ReplayReducer(mode)
    reducer.apply_many(data)
    torn = len(frame(note("r3", 3))) - 1
    assert reducer.finish() == result(
        mode, "complete", latest_journal_seq=2, records_applied=2, torn_tail_bytes=torn
    )


def test_apply_of_bytes_that_are_no_record(impl):
    reducer = impl.ReplayReducer()
    body = canonical(note("r1", 1)).replace(b"custom", b"zzzzzz")
    with pytest.raises(RecordDecodeError) as info:
        reducer.apply(body)
    assert info.value.kind == "zzzzzz"
    for junk in (b"", b"\xc1", canonical({"record_id": "r1"}), canonical([1, 2])):
        with pytest.raises(RecordDecodeError) as info:
            reducer.apply(junk)
        assert info.value.kind is None
    reducer.apply(canonical(note("r1", 1)))
    assert reducer.finish() == result("resume", "complete", latest_journal_seq=1, records_applied=1)


@pytest.mark.parametrize("kind", ["telemetry", "", "x y", "é", "it's", "'", "a'b'c"])
def test_unknown_kind_is_named(impl, kind):
    raw = {"record_id": "r1", "journal_seq": 1, "run_id": "run-7", "payload": {"kind": kind}}
    with pytest.raises(RecordDecodeError) as info:
        impl.ReplayReducer().apply(canonical(raw))
    assert info.value.kind == kind


def test_bad_mode_and_policy_are_refused(impl):
    with pytest.raises(InvalidArgument):
        impl.ReplayReducer("replay")
    with pytest.raises(InvalidArgument):
        impl.ReplayReducer("audit", missing_content_policy="ignore")
    with pytest.raises(InvalidArgument):
        impl.replay([], mode="Resume")


# -- 7.4 cursors and scopes ------------------------------------------------------------


@pytest.mark.parametrize("seq", [0, 1, 42, 2**53 + 1])
def test_journal_cursor_for_seq(impl, seq):
    assert impl.journal_cursor_for_seq(seq) == f"journal.{seq}"


@pytest.mark.parametrize(
    ("scope", "support"),
    [
        (StreamScope("run", "run-7"), "run_journal"),
        (StreamScope("run"), "run_journal"),
        (StreamScope("agent", "a1"), "host_archive_required"),
        (StreamScope("all"), "host_archive_required"),
        (StreamScope("filter", None, "kind=x"), "host_archive_required"),
    ],
)
def test_durable_replay_support(impl, scope, support):
    assert impl.durable_replay_support(scope) == support


def test_check_cursor_compatibility(impl):
    scope = StreamScope("run", "run-7")
    assert impl.check_cursor_compatibility(scope, None) == "compatible"
    assert (
        impl.check_cursor_compatibility(
            scope, EventCursor(StreamScope("run", "run-7"), "journal.3")
        )
        == "compatible"
    )
    for other in (
        StreamScope("run", "run-8"),
        StreamScope("agent", "run-7"),
        StreamScope("run", "run-7", "kind=x"),
        StreamScope("run"),
    ):
        cursor = EventCursor(other, "journal.3")
        assert impl.check_cursor_compatibility(scope, cursor) == "scope_mismatch"
    filtered = StreamScope("filter", None, "kind=x")
    assert impl.check_cursor_compatibility(filtered, EventCursor(filtered, "p")) == "compatible"
