"""Damaged framed journals (SPEC 6.2): torn tails, flipped bits, impossible
lengths, missing magic and random garbage."""

from __future__ import annotations

import contextlib
import struct
import zlib
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from journals import (
    MAGIC,
    MODES,
    canonical,
    effective_strict,
    frame,
    frame_body,
    frame_offsets,
    framed,
    json_lines,
    rec,
    repair,
    result,
)
from replaycore.errors import (
    JournalCorruption,
    RecordDecodeError,
    ReplayViolation,
)
from replaycore.records import Custom, EffectIntent, EffectResult, RunLifecycle

MODE_STRICT = [(mode, strict) for mode in MODES for strict in (None, True, False)]
mode_strict = pytest.mark.parametrize(
    ("mode", "strict"), MODE_STRICT, ids=[f"{m}-strict_{s}" for m, s in MODE_STRICT]
)
DEFAULT_LIMIT = 64 * 1024 * 1024


def five() -> list[Any]:
    """Five plain records, seq 1..5: nothing to repair when all are read."""
    return [rec(f"r{i}", i, Custom(name="step", data={"i": i})) for i in range(1, 6)]


def lively() -> list[Any]:
    return [
        rec("r1", 1, RunLifecycle(status="running")),
        rec("r2", 2, EffectIntent(effect_id="e1", effect_kind="http")),
        rec("r3", 3, EffectResult(effect_id="e1", status="ok")),
        rec("r4", 4, EffectIntent(effect_id="e2", effect_kind="http", idempotency_key="i")),
        rec("r5", 5, RunLifecycle(status="completed")),
    ]


def corruption(reason: str, start: int, end: int, last_seq: int) -> Any:
    return repair("journal_corruption", "", last_seq, f"{reason}; skipped bytes {start}..{end}")


def expect_corruption(
    impl: Any,
    data: bytes,
    mode: str,
    strict: bool | None,
    offset: int,
    reason: str,
    expected_lenient: Any,
    **options: Any,
) -> None:
    if effective_strict(mode, strict):
        with pytest.raises(JournalCorruption) as info:
            impl.replay(data, mode=mode, strict=strict, **options)
        assert (info.value.offset, info.value.reason) == (offset, reason)
    else:
        assert impl.replay(data, mode=mode, strict=strict, **options) == expected_lenient


# -- torn tails ------------------------------------------------------------------------


@pytest.mark.parametrize("journal", [five, lively])
@pytest.mark.parametrize("mode", MODES)
def test_torn_tail_at_every_cut(impl, mode, journal):
    records = journal()
    data = framed(records)
    offsets = frame_offsets(records)
    assert offsets[-1] == len(data)
    for cut in range(len(MAGIC), len(data) + 1):
        full = max(k for k in range(len(offsets)) if offsets[k] <= cut)
        before = impl.replay(records[:full], mode=mode)
        expected = msgspec.structs.replace(before, torn_tail_bytes=cut - offsets[full])
        assert impl.replay(data[:cut], mode=mode) == expected, cut
        assert impl.replay(data[:cut], mode=mode, strict=not effective_strict(mode, None)) == (
            expected
        ), cut
    assert impl.replay(data, mode=mode).torn_tail_bytes == 0


@pytest.mark.parametrize("mode", MODES)
def test_torn_tail_by_hand(impl, mode):
    records = five()
    offsets = frame_offsets(records)
    cut = offsets[3] + 7  # inside the fourth header
    assert impl.replay(framed(records)[:cut], mode=mode) == result(
        mode, "complete", latest_journal_seq=3, records_applied=3, torn_tail_bytes=7
    )
    cut = offsets[4] + 12 + 3  # inside the fifth body
    assert impl.replay(framed(records)[:cut], mode=mode) == result(
        mode, "complete", latest_journal_seq=4, records_applied=4, torn_tail_bytes=15
    )


def test_read_journal_ignores_a_torn_tail(impl, tmp_path):
    records = five()
    path = tmp_path / "run.rcj"
    path.write_bytes(framed(records)[:-3])
    assert list(impl.read_journal(path)) == records[:4]


# -- flipped bits ----------------------------------------------------------------------

FIELDS = {"length": range(0, 4), "body_crc": range(4, 8), "header_crc": range(8, 12)}


def flipped(data: bytes, at: int, bit: int) -> bytes:
    buf = bytearray(data)
    buf[at] ^= 1 << bit
    return bytes(buf)


@mode_strict
@pytest.mark.parametrize("field", [*FIELDS, "body"])
@pytest.mark.parametrize("index", range(5))
def test_flipped_bit_is_corruption(impl, mode, strict, field, index):
    records = five()
    data = framed(records)
    offsets = frame_offsets(records)
    start, end = offsets[index], offsets[index + 1]
    positions = FIELDS[field] if field != "body" else range(12, end - start)
    reason = "body CRC mismatch" if field == "body" else "header check failed"
    kept = records[:index] + records[index + 1 :]
    gaps = [(index, index + 2)] if 0 < index < 4 else []
    expected = result(
        mode,
        "repair_needed",
        latest_journal_seq=5 if index < 4 else 4,
        records_applied=4,
        sequence_gaps=gaps,
        repair_needed=[corruption(reason, start, end, index)],
    )
    assert len(kept) == 4
    for position in positions:
        for bit in (0, 7) if field == "body" else range(8):
            bad = flipped(data, start + position, bit)
            expect_corruption(impl, bad, mode, strict, start, reason, expected)


@mode_strict
def test_body_that_does_not_decode_is_corruption(impl, mode, strict):
    records = five()
    offsets = frame_offsets(records)
    for junk in (
        canonical({"record_id": "x"}),
        canonical(records[2]).replace(b"custom", b"zzzzzz"),  # unknown kind
        b"\xc1",
        b"",
        canonical(records[2]) + b"\x00",  # trailing bytes
    ):
        data = framed(records[:2]) + frame_body(junk) + framed(records[2:])[len(MAGIC) :]
        start = offsets[2]
        end = start + 12 + len(junk)
        expected = result(
            mode,
            "repair_needed",
            latest_journal_seq=5,
            records_applied=5,
            repair_needed=[corruption("body does not decode to a record", start, end, 2)],
        )
        expect_corruption(
            impl, data, mode, strict, start, "body does not decode to a record", expected
        )


@pytest.mark.parametrize("mode", MODES)
def test_corruption_then_torn_tail(impl, mode):
    records = five()
    offsets = frame_offsets(records)
    data = flipped(framed(records), offsets[1] + 20, 3)[: offsets[4] + 9]
    assert impl.replay(data, mode=mode, strict=False) == result(
        mode,
        "repair_needed",
        latest_journal_seq=4,
        records_applied=3,
        sequence_gaps=[(1, 3)],
        torn_tail_bytes=9,
        repair_needed=[corruption("body CRC mismatch", offsets[1], offsets[2], 1)],
    )
    # damage with nothing valid after it swallows the torn tail
    data = flipped(framed(records), offsets[3] + 20, 3)[: offsets[4] + 9]
    assert impl.replay(data, mode=mode, strict=False) == result(
        mode,
        "repair_needed",
        latest_journal_seq=3,
        records_applied=3,
        repair_needed=[corruption("body CRC mismatch", offsets[3], len(data), 3)],
    )


@pytest.mark.parametrize("mode", MODES)
def test_resync_finds_an_empty_frame_at_the_very_end(impl, mode):
    records = five()
    offsets = frame_offsets(records)
    data = flipped(framed(records), offsets[4] + 1, 0) + frame_body(b"")
    empty_at = len(data) - 12
    assert impl.replay(data, mode=mode, strict=False) == result(
        mode,
        "repair_needed",
        latest_journal_seq=4,
        records_applied=4,
        repair_needed=[
            corruption("header check failed", offsets[4], empty_at, 4),
            corruption("body does not decode to a record", empty_at, len(data), 4),
        ],
    )


@pytest.mark.parametrize("mode", MODES)
def test_lenient_replay_applies_rules_around_the_damage(impl, mode):
    records = lively()
    offsets = frame_offsets(records)
    data = flipped(framed(records), offsets[2] + 2, 0)  # loses the result of e1
    pending = [
        ("e1", "r2", False, None),
        ("e2", "r4", True, "i"),
    ]
    got = impl.replay(data, mode=mode, strict=False)
    assert got == result(
        mode,
        "repair_needed",
        latest_journal_seq=5,
        terminal_status="completed",
        records_applied=4,
        sequence_gaps=[(2, 4)],
        unsafe_pending_side_effects=[
            _pending(effect_id, record_id, allowed, key)
            for effect_id, record_id, allowed, key in pending
        ],
        repair_needed=[
            corruption("header check failed", offsets[2], offsets[3], 2),
            repair(
                "non_idempotent_pending_side_effect",
                "r2",
                5,
                "effect intent has no terminal result in replay",
            ),
            repair(
                "unsafe_pending_side_effect",
                "r4",
                5,
                "effect intent has no terminal result in replay",
            ),
        ],
    )


def _pending(effect_id: str, record_id: str, allowed: bool, key: str | None) -> Any:
    from replaycore.results import PendingEffect

    return PendingEffect(
        effect_id=effect_id,
        intent_record_id=record_id,
        idempotency_key=key,
        reason="effect intent has no terminal result in replay",
        retry_allowed=allowed,
    )


def test_read_journal_strict_and_lenient(impl, tmp_path):
    records = five()
    offsets = frame_offsets(records)
    path = tmp_path / "run.rcj"
    path.write_bytes(flipped(framed(records), offsets[1] + 13, 1))
    with pytest.raises(JournalCorruption) as info:
        list(impl.read_journal(path))
    assert info.value.offset == offsets[1]
    assert list(impl.read_journal(path, strict=False)) == records[:1] + records[2:]


# -- impossible lengths ----------------------------------------------------------------


def lying_header(length: int) -> bytes:
    head = struct.pack("<II", length, 0)
    return head + struct.pack("<I", zlib.crc32(head))


@mode_strict
@pytest.mark.parametrize("where", ["middle", "end"])
def test_four_gib_declared_length_is_corruption(impl, mode, strict, where):
    records = five()
    offsets = frame_offsets(records)
    header = lying_header(0xFFFFFFFF)
    if where == "middle":
        data = framed(records[:2]) + header + framed(records[2:])[len(MAGIC) :]
        end, applied, last = offsets[2] + 12, 5, 5
    else:
        data = framed(records) + header + b"\x00" * 20
        end, applied, last = len(data), 5, 5
    start = offsets[2] if where == "middle" else offsets[5]
    reason = f"declared body length 4294967295 exceeds the limit of {DEFAULT_LIMIT} bytes"
    expected = result(
        mode,
        "repair_needed",
        latest_journal_seq=last,
        records_applied=applied,
        repair_needed=[corruption(reason, start, end, 2 if where == "middle" else 5)],
    )
    expect_corruption(impl, data, mode, strict, start, reason, expected)
    small = 1000
    reason = f"declared body length 4294967295 exceeds the limit of {small} bytes"
    expected = msgspec.structs.replace(
        expected,
        repair_needed=[corruption(reason, start, end, 2 if where == "middle" else 5)],
    )
    expect_corruption(impl, data, mode, strict, start, reason, expected, max_frame_bytes=small)


@mode_strict
def test_length_limit_is_checked_before_the_torn_tail_rule(impl, mode, strict):
    records = five()
    offsets = frame_offsets(records)
    data = framed(records) + lying_header(5000) + b"\x00" * 10
    # with the default limit this is a torn tail ...
    assert impl.replay(data, mode=mode, strict=strict) == result(
        mode, "complete", latest_journal_seq=5, records_applied=5, torn_tail_bytes=22
    )
    # ... with a smaller limit it is corruption
    reason = "declared body length 5000 exceeds the limit of 4999 bytes"
    expected = result(
        mode,
        "repair_needed",
        latest_journal_seq=5,
        records_applied=5,
        repair_needed=[corruption(reason, offsets[5], len(data), 5)],
    )
    expect_corruption(impl, data, mode, strict, offsets[5], reason, expected, max_frame_bytes=4999)


@pytest.mark.parametrize("mode", MODES)
def test_limit_is_inclusive(impl, mode):
    records = five()
    biggest = max(len(canonical(r)) for r in records)
    smallest = min(len(canonical(r)) for r in records)
    data = framed(records)
    assert impl.replay(data, mode=mode, max_frame_bytes=biggest) == result(
        mode, "complete", latest_journal_seq=5, records_applied=5
    )
    with pytest.raises(JournalCorruption) as info:
        impl.replay(data, mode=mode, strict=True, max_frame_bytes=smallest - 1)
    assert info.value.offset == len(MAGIC)
    assert info.value.reason == (
        f"declared body length {len(canonical(records[0]))} exceeds the limit of "
        f"{smallest - 1} bytes"
    )


# -- magic -----------------------------------------------------------------------------

NO_MAGIC = [
    b"",
    b"R",
    b"RCJ",
    b"RCJ0",
    b"rcj1",
    b"RCJ2" + frame(five()[0]),
    frame(five()[0]),
    b"\x00" * 64,
    b" RCJ1",
    json_lines(five()),
]


@mode_strict
@pytest.mark.parametrize("data", NO_MAGIC, ids=range(len(NO_MAGIC)))
def test_missing_magic_is_corruption_at_offset_zero(impl, tmp_path, mode, strict, data):
    with pytest.raises(JournalCorruption) as info:
        impl.replay(data, mode=mode, strict=strict)
    assert (info.value.offset, info.value.reason) == (0, "missing RCJ1 magic")
    reducer = impl.ReplayReducer(mode, strict=strict)
    with pytest.raises(JournalCorruption) as info:
        reducer.apply_many(data)
    assert info.value.offset == 0
    path = tmp_path / "run.rcj"
    path.write_bytes(data)
    with pytest.raises(JournalCorruption) as info:
        impl.replay(path, mode=mode, strict=strict)
    assert info.value.offset == 0
    with pytest.raises(JournalCorruption) as info:
        list(impl.read_journal(path, strict=False))
    assert info.value.offset == 0


# -- random garbage --------------------------------------------------------------------

ALLOWED = (JournalCorruption, RecordDecodeError, ReplayViolation)

garbage = st.one_of(
    st.binary(max_size=200),
    st.binary(max_size=200).map(lambda b: MAGIC + b),
    st.tuples(st.integers(0, 1000), st.binary(min_size=1, max_size=40)).map(
        lambda t: (lambda d, at: d[:at] + t[1] + d[at:])(framed(five()), t[0] % 420)
    ),
    st.lists(st.binary(max_size=30).map(frame_body), max_size=4).map(
        lambda frames: MAGIC + b"".join(frames)
    ),
)


@settings(max_examples=300)
@given(
    data=garbage,
    mode=st.sampled_from(MODES),
    strict=st.sampled_from([None, True, False]),
    limit=st.sampled_from([DEFAULT_LIMIT, 1, 12, 100]),
)
def test_garbage_raises_only_typed_errors(impl, data, mode, strict, limit):
    try:
        got = impl.replay(data, mode=mode, strict=strict, max_frame_bytes=limit)
    except ALLOWED:
        pass
    else:
        assert got.mode == mode
        assert got.torn_tail_bytes <= max(0, len(data) - len(MAGIC))
    reducer = impl.ReplayReducer(mode, strict=strict)
    with contextlib.suppress(RecordDecodeError, ReplayViolation):
        reducer.apply(data)
    assert reducer.finish().records_applied <= 1


@settings(max_examples=100)
@given(data=garbage, fmt=st.sampled_from(["rcj", "jsonl"]), mode=st.sampled_from(MODES))
def test_garbage_files_raise_only_typed_errors(impl, tmp_path_factory, data, fmt, mode):
    path = tmp_path_factory.mktemp("garbage") / f"run.{fmt}"
    path.write_bytes(data)
    with contextlib.suppress(*ALLOWED):
        impl.replay(path, mode=mode)
    try:
        list(impl.read_journal(path, strict=False))
    except JournalCorruption:
        assert fmt == "rcj"
    try:
        with impl.JournalWriter(path) as writer:
            appended = writer.append(rec("new", 0, Custom(name="x")))
    except JournalCorruption:
        assert fmt == "rcj"
    else:
        assert list(impl.read_journal(path, strict=False))[-1] == appended
