"""Builders, hypothesis strategies and an independent model of the replay
contract (SPEC 6.2 and 7), shared by the journal and replay test modules.

* ``rec``, ``frame``, ``framed``, ``json_lines``: records and journal bytes,
  built without the library (the frame layout is written out here again, so a
  library bug cannot hide in a shared helper).
* ``journals``, ``replay_options``, ``damaged``: hypothesis strategies for
  generated journals: clean runs, crashes, duplicates, reorderings, sealed
  runs, bad checkpoints, missing content refs, recovery and schema 2 records,
  and damaged framed bytes.
* ``model_replay``: SPEC 7 written a second time, straight from the text, as
  an oracle for the differential tests (the reference itself is compared
  against it; the Rust core against both).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
from hypothesis import strategies as st
from replaycore.errors import (
    JournalCorruption,
    RecordDecodeError,
    ReducerFinished,
    ReplayViolation,
)
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
)
from replaycore.results import PendingEffect, RepairNeeded, ReplayResult

MAGIC = b"RCJ1"
DEFAULT_LIMIT = 64 * 1024 * 1024
MODES = ("audit", "resume", "repair")
POLICIES = ("fail", "recoverable_replay_gap", "request_host_repair", "placeholder")
TERMINAL_STATUSES = (
    "completed",
    "failed",
    "cancelled",
    "run_completed",
    "run_failed",
    "run_cancelled",
)
RUN_ID = "run-7"

_CANONICAL = msgspec.msgpack.Encoder(order="deterministic")
_JSON = msgspec.json.Encoder(order="deterministic")
_MSGPACK_DECODER = msgspec.msgpack.Decoder(JournalRecord)
_JSON_DECODER = msgspec.json.Decoder(JournalRecord)


# -- builders ----------------------------------------------------------------


def rec(record_id: str, seq: int, payload: Any, **kw: Any) -> JournalRecord:
    """A record of run ``run-7`` (``kw``: any other JournalRecord field)."""
    kw.setdefault("run_id", RUN_ID)
    return JournalRecord(record_id=record_id, journal_seq=seq, payload=payload, **kw)


def canonical(value: Any) -> bytes:
    """msgpack with fields in declaration order and sorted dict keys (SPEC 6.3)."""
    return _CANONICAL.encode(value)


def frame_body(body: bytes) -> bytes:
    """Header (length, body CRC, header CRC; little-endian) and ``body``."""
    head = struct.pack("<II", len(body), zlib.crc32(body))
    return head + struct.pack("<I", zlib.crc32(head)) + body


def frame(record: Any) -> bytes:
    """The frame of one record (or of any msgpack-encodable value)."""
    return frame_body(canonical(record))


def framed(records: Iterable[Any]) -> bytes:
    """A whole ``.rcj`` journal: the magic and one frame per record."""
    return MAGIC + b"".join(frame(r) for r in records)


def frame_offsets(records: Sequence[Any]) -> list[int]:
    """The byte offset of each record's frame in ``framed(records)``, then the end."""
    offsets = [len(MAGIC)]
    for record in records:
        offsets.append(offsets[-1] + len(frame(record)))
    return offsets


def json_lines(records: Iterable[Any]) -> bytes:
    """A ``.jsonl`` journal: one JSON record per line, each line ending in a newline."""
    return b"".join(_JSON.encode(r) + b"\n" for r in records)


def result(mode: str, status: str, **fields: Any) -> ReplayResult:
    """A whole expected ReplayResult; ``resume_allowed`` follows SPEC 7.3.4."""
    return ReplayResult(
        mode=mode,  # type: ignore[arg-type]
        status=status,  # type: ignore[arg-type]
        resume_allowed=not (mode == "resume" and status == "repair_needed"),
        **fields,
    )


def repair(kind: str, record_id: str, seq: int, reason: str, retry: str = "repair_needed") -> Any:
    return RepairNeeded(
        kind=kind,  # type: ignore[arg-type]
        record_id=record_id,
        journal_seq=seq,
        reason=reason,
        retry=retry,  # type: ignore[arg-type]
    )


def effective_strict(mode: str, strict: bool | None) -> bool:
    return mode != "audit" if strict is None else strict


def outcome(fn: Any, *args: Any, **kw: Any) -> tuple[Any, ...]:
    """``("ok", value)`` or ``("err", type, details)`` of a call, for comparing backends.

    Any exception is caught, so a stray ``KeyError`` in one backend shows up as
    a difference. The details are those the contract fixes: kind, record id,
    seq and message of a ReplayViolation, offset and reason of a
    JournalCorruption, kind of a RecordDecodeError.
    """
    try:
        value = fn(*args, **kw)
    except Exception as exc:
        return ("err", type(exc), error_details(exc))
    return ("ok", value)


def error_details(exc: BaseException) -> Any:
    if isinstance(exc, ReplayViolation):
        return (exc.kind, exc.record_id, exc.journal_seq, exc.message, exc.retry)
    if isinstance(exc, JournalCorruption):
        return (exc.offset, exc.reason)
    if isinstance(exc, RecordDecodeError):
        return exc.kind
    return None


# -- strategies --------------------------------------------------------------

EFFECTS = ("e1", "e2", "e3")
DELIVERIES = ("d1", "d2", "d3")
DEDUPE_KEYS = ("k1", "k2", "k3")
REFS = ("ref-a", "ref-b", "ref-c", "ref-d")

opt_keys = st.sampled_from([None, None, None, "i1", "i2", ""])
opt_text = st.sampled_from([None, "op-1", "op-2"])
effect_ids = st.sampled_from(EFFECTS)
delivery_ids = st.sampled_from(DELIVERIES)
dedupe_keys = st.sampled_from(DEDUPE_KEYS)
ref_lists = st.lists(st.sampled_from(REFS), max_size=2)
available_refs = st.one_of(
    st.none(), st.frozensets(st.sampled_from(REFS)).map(lambda refs: sorted(refs))
)
custom_data = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from(["", "x", "é"])),
    lambda inner: st.one_of(
        st.lists(inner, max_size=2), st.dictionaries(st.sampled_from(["b", "a", "c"]), inner)
    ),
    max_leaves=4,
)

pending_side_effects = st.builds(
    PendingSideEffect,
    effect_id=effect_ids,
    intent_record_id=st.sampled_from(["r1", "r2", "r3"]),
    idempotency_key=opt_keys,
    dedupe_key=opt_keys,
    reason=st.sampled_from(["crashed mid-call", "timeout"]),
)

#: Payloads that neither seal a run nor need the record's journal_seq.
middle_payloads = st.one_of(
    st.builds(
        EffectIntent,
        effect_id=effect_ids,
        effect_kind=st.sampled_from(["http", "db"]),
        idempotency_key=opt_keys,
        dedupe_key=opt_keys,
    ),
    st.builds(
        EffectResult,
        effect_id=effect_ids,
        status=st.sampled_from(["ok", "failed"]),
        output_ref=opt_text,
    ),
    st.builds(
        OutputIntent,
        delivery_id=delivery_ids,
        sink_ref=st.just("sink-1"),
        dedupe_key=dedupe_keys,
        idempotency_key=opt_keys,
    ),
    st.builds(
        OutputResult,
        delivery_id=delivery_ids,
        status=st.sampled_from(["delivered", "rejected"]),
        external_operation_id=opt_text,
    ),
    st.builds(
        OutputDedupe,
        dedupe_key=dedupe_keys,
        prior_external_operation_id=opt_text,
        prior_terminal_status=st.sampled_from(["delivered", "failed"]),
    ),
    st.builds(
        OutputReconciliation,
        delivery_id=delivery_ids,
        intent_record_id=st.sampled_from(["r1", "r2"]),
        dedupe_key=dedupe_keys,
        idempotency_key=opt_keys,
        external_operation_id=opt_text,
        terminal_status=st.sampled_from(["delivered", "unknown"]),
        reason=st.sampled_from(["host confirmed", "operator decision"]),
        decision=st.sampled_from(["resend", "skip"]),
        resend_allowed=st.booleans(),
    ),
    st.builds(OutputEvent, delivery_id=delivery_ids, event=st.sampled_from(["queued", "sent"])),
    st.builds(RunLifecycle, status=st.sampled_from(["running", "paused", "retrying"])),
    st.builds(Custom, name=st.sampled_from(["note", "metric"]), data=custom_data),
    st.builds(Recovery, unsafe_pending=st.lists(pending_side_effects, max_size=2)),
)

terminal_payloads = st.one_of(
    st.sampled_from(TERMINAL_STATUSES).map(lambda s: RunLifecycle(status=s)),
    st.builds(
        TerminalResult, effect_id=effect_ids, terminal_status=st.sampled_from(["done", "failed"])
    ),
)


@st.composite
def checkpoints(draw: Any, seq: int, valid: bool = True) -> Checkpoint:
    """A checkpoint for a record at ``seq``; ``valid=False`` covers ``>= seq`` or ``< 0``."""
    if valid:
        covers = draw(st.integers(max(0, seq - 4), seq - 1))
    else:
        covers = draw(st.one_of(st.integers(seq, seq + 2), st.integers(-3, -1)))
    return Checkpoint(
        checkpoint_seq=draw(st.integers(0, 3)),
        covers_journal_seq=covers,
        loop_state=draw(st.sampled_from(["s0", "s1", "s2"])),
        created_at_ms=draw(st.integers(0, 2)),
        content_ref_manifest=draw(ref_lists),
    )


class _Builder:
    """Hands out record ids and increasing journal_seqs (sometimes with gaps)."""

    def __init__(self, draw: Any) -> None:
        self.draw = draw
        self.next_id = 1
        self.seq = 0

    def record(self, payload: Any = None, *, kind: str = "middle") -> JournalRecord:
        draw = self.draw
        self.seq += draw(st.sampled_from([1, 1, 1, 1, 1, 1, 2, 3]))
        if payload is None:
            if kind == "checkpoint":
                payload = draw(checkpoints(self.seq))
            elif kind == "bad_checkpoint":
                payload = draw(checkpoints(self.seq, valid=False))
            elif kind == "terminal":
                payload = draw(terminal_payloads)
            else:
                payload = draw(middle_payloads)
        record_id = f"r{self.next_id}"
        self.next_id += 1
        return rec(
            record_id,
            self.seq,
            payload,
            at_ms=draw(st.integers(0, 2)),
            idempotency_key=draw(opt_keys),
            dedupe_key=draw(opt_keys),
            content_refs=draw(ref_lists),
        )


@st.composite
def clean_runs(draw: Any) -> list[JournalRecord]:
    """A run that went well: started, every intent has its result, maybe completed."""
    b = _Builder(draw)
    out = [b.record(RunLifecycle(status="running"))]
    open_effects: list[str] = []
    open_outputs: list[str] = []
    for _ in range(draw(st.integers(0, 8))):
        step = draw(
            st.sampled_from(
                ["effect", "effect_done", "output", "output_done", "checkpoint", "other"]
            )
        )
        if step == "effect":
            payload = draw(
                st.builds(
                    EffectIntent,
                    effect_id=effect_ids,
                    effect_kind=st.just("http"),
                    idempotency_key=opt_keys,
                    dedupe_key=opt_keys,
                )
            )
            open_effects.append(payload.effect_id)
            out.append(b.record(payload))
        elif step == "effect_done" and open_effects:
            effect_id = open_effects.pop(draw(st.integers(0, len(open_effects) - 1)))
            out.append(b.record(EffectResult(effect_id=effect_id, status="ok")))
        elif step == "output":
            delivery = draw(delivery_ids)
            open_outputs.append(delivery)
            out.append(
                b.record(
                    OutputIntent(
                        delivery_id=delivery, sink_ref="sink-1", dedupe_key=draw(dedupe_keys)
                    )
                )
            )
        elif step == "output_done" and open_outputs:
            delivery = open_outputs.pop(draw(st.integers(0, len(open_outputs) - 1)))
            out.append(b.record(OutputResult(delivery_id=delivery, status="delivered")))
        elif step == "checkpoint":
            out.append(b.record(kind="checkpoint"))
        else:
            out.append(
                b.record(
                    draw(
                        st.one_of(
                            st.builds(Custom, name=st.just("note"), data=custom_data),
                            st.builds(OutputEvent, delivery_id=delivery_ids, event=st.just("sent")),
                        )
                    )
                )
            )
    for effect_id in open_effects:
        out.append(b.record(EffectResult(effect_id=effect_id, status="ok")))
    for delivery in open_outputs:
        out.append(b.record(OutputResult(delivery_id=delivery, status="delivered")))
    if draw(st.booleans()):
        out.append(b.record(RunLifecycle(status="completed")))
    return out


@st.composite
def messy_runs(draw: Any) -> list[JournalRecord]:
    """Any mix of record kinds over small id pools (so ids collide often)."""
    b = _Builder(draw)
    out = []
    for _ in range(draw(st.integers(0, 10))):
        kind = draw(st.sampled_from(["middle"] * 6 + ["checkpoint", "bad_checkpoint", "terminal"]))
        out.append(b.record(kind=kind))
    return out


MUTATIONS = (
    "crash",
    "idempotent_duplicate",
    "duplicate",
    "changed_duplicate",
    "swap",
    "after_terminal",
    "schema",
    "stale_seq",
    "bad_checkpoint",
)


@st.composite
def journals(draw: Any) -> list[JournalRecord]:
    """A generated journal: a clean or messy run with up to three mutations."""
    records = list(draw(st.one_of(clean_runs(), messy_runs())))
    for mutation in draw(st.lists(st.sampled_from(MUTATIONS), max_size=3)):
        records = _mutate(draw, records, mutation)
    return records


def _mutate(draw: Any, records: list[JournalRecord], mutation: str) -> list[JournalRecord]:
    n = len(records)
    last = max((r.journal_seq for r in records), default=0)
    replace = msgspec.structs.replace
    if mutation == "crash":
        return records[: draw(st.integers(0, n))]
    if mutation == "after_terminal":
        b = _Builder(draw)
        b.seq = last
        b.next_id = 100
        tail = [b.record(RunLifecycle(status=draw(st.sampled_from(TERMINAL_STATUSES))))]
        for _ in range(draw(st.integers(1, 3))):
            kind = draw(st.sampled_from(["middle", "checkpoint", "terminal"]))
            tail.append(b.record(kind=kind))
        return records + tail
    if mutation == "bad_checkpoint":
        b = _Builder(draw)
        b.seq = last
        b.next_id = 200
        return [*records, b.record(kind="bad_checkpoint")]
    if n == 0:
        return records
    i = draw(st.integers(0, n - 1))
    if mutation in ("idempotent_duplicate", "duplicate", "changed_duplicate"):
        original = records[i]
        if mutation == "idempotent_duplicate" and not (
            original.idempotency_key is not None
            or original.dedupe_key is not None
            or isinstance(original.payload, Checkpoint | Recovery)
        ):
            original = replace(original, idempotency_key="i-retry")
            records[i] = original
        copy = original
        if mutation == "changed_duplicate":
            copy = replace(original, journal_seq=last + 1, at_ms=original.at_ms + 1)
        j = draw(st.integers(i + 1, n))
        return [*records[:j], copy, *records[j:]]
    if mutation == "swap":
        j = draw(st.integers(0, n - 1))
        records[i], records[j] = records[j], records[i]
        return records
    if mutation == "schema":
        records[i] = replace(records[i], schema=draw(st.sampled_from([0, 2, 3])))
        return records
    if mutation == "stale_seq":
        records[i] = replace(records[i], journal_seq=draw(st.integers(-1, records[i].journal_seq)))
        return records
    raise AssertionError(mutation)


@st.composite
def replay_options(draw: Any) -> dict[str, Any]:
    """Keyword options of ``replay`` other than ``mode`` and ``strict``."""
    return {
        "available_content_refs": draw(available_refs),
        "missing_content_policy": draw(st.sampled_from(POLICIES)),
    }


@st.composite
def damaged(draw: Any, data: bytes) -> bytes:
    """``data`` with one to three byte-level faults: flips, cuts, garbage, lost ranges."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        fault = draw(st.sampled_from(["flip", "flip", "truncate", "insert", "delete", "header"]))
        size = len(buf)
        if fault == "flip" and size:
            at = draw(st.integers(min(4, size - 1), size - 1))
            buf[at] ^= 1 << draw(st.integers(0, 7))
        elif fault == "truncate":
            del buf[draw(st.integers(min(4, size), size)) :]
        elif fault == "insert":
            at = draw(st.integers(min(4, size), size))
            buf[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif fault == "delete" and size > 4:
            start = draw(st.integers(4, size - 1))
            del buf[start : start + draw(st.integers(1, 16))]
        elif fault == "header":
            # a header that passes its own check but lies about the body length
            length = draw(st.sampled_from([0, 1, 40, 2**16, 2**31, 2**32 - 1]))
            head = struct.pack("<II", length, draw(st.integers(0, 2**32 - 1)))
            at = draw(st.integers(min(4, size), size))
            buf[at:at] = head + struct.pack("<I", zlib.crc32(head))
    return bytes(buf)


# -- the model ---------------------------------------------------------------


class ModelReducer:
    """SPEC 7.2/7.3, written from the text alone (no code shared with the library)."""

    def __init__(
        self,
        mode: str = "resume",
        available_content_refs: Iterable[str] | None = None,
        missing_content_policy: str = "fail",
        strict: bool | None = None,
        *,
        max_frame_bytes: int = DEFAULT_LIMIT,
    ) -> None:
        self.mode = mode
        self.strict = effective_strict(mode, strict)
        self.available = None if available_content_refs is None else set(available_content_refs)
        self.policy = missing_content_policy
        self.limit = max_frame_bytes
        self.seen: dict[str, bytes] = {}
        self.last = 0
        self.applied = 0
        self.terminal: str | None = None
        self.checkpoint: Checkpoint | None = None
        self.pending: dict[str, PendingEffect] = {}
        self.unsafe: list[PendingEffect] = []
        self.missing: list[str] = []
        self.repairs: list[RepairNeeded] = []
        self.intents: dict[str, tuple[str, int, OutputIntent]] = {}
        self.results: set[str] = set()
        self.dedupes: dict[str, OutputDedupe] = {}
        self.reconciliations: dict[str, OutputReconciliation] = {}
        self.gaps: list[tuple[int, int]] = []
        self.torn = 0
        self.skipped = 0
        self.done = False

    # the common checks, one record
    def apply(self, record: Any) -> None:
        if self.done:
            raise ReducerFinished("finished")
        if isinstance(record, bytes | bytearray | memoryview):
            content = bytes(record)
            try:
                record = _MSGPACK_DECODER.decode(content)
            except msgspec.DecodeError:
                raise RecordDecodeError("not a record", _unknown_kind(content)) from None
        else:
            content = canonical(record)
        self._apply(record, content)

    def _violation(self, kind: str, r: JournalRecord, message: str) -> None:
        if self.strict:
            raise ReplayViolation(kind, r.record_id, r.journal_seq, message)
        self.repairs.append(
            repair("replay_invariant_violation", r.record_id, r.journal_seq, message)
        )

    def _refs(self, r: JournalRecord, refs: Iterable[str]) -> None:
        if self.available is None:
            return
        for ref in refs:
            if ref in self.available or ref in self.missing:
                continue
            self.missing.append(ref)
            if self.policy != "placeholder":
                self.repairs.append(
                    repair(
                        "missing_content_ref",
                        r.record_id,
                        r.journal_seq,
                        f"content ref {ref} is not available (policy {self.policy})",
                        "user_action_needed",
                    )
                )

    def _apply(self, r: JournalRecord, content: bytes) -> None:
        p = r.payload
        seq = r.journal_seq
        known = r.record_id in self.seen
        if (
            known
            and self.seen[r.record_id] == content
            and (
                r.idempotency_key is not None
                or r.dedupe_key is not None
                or isinstance(p, Checkpoint | Recovery)
            )
        ):
            return
        if r.schema != 1:
            return self._violation(
                "recovery_repair_needed", r, f"unsupported journal schema {r.schema}"
            )
        if known:
            return self._violation(
                "invalid_state_transition", r, "duplicate non-idempotent journal record"
            )
        if seq <= self.last:
            return self._violation(
                "invalid_state_transition", r, "journal records must be strictly increasing"
            )
        if self.terminal is not None and not isinstance(p, Checkpoint | Recovery):
            return self._violation(
                "invalid_state_transition", r, "record after sealed terminal state"
            )
        self._refs(r, r.content_refs)
        if isinstance(p, Checkpoint):
            if p.covers_journal_seq < 0 or p.covers_journal_seq >= seq:
                message = (
                    f"checkpoint covers journal_seq {p.covers_journal_seq}, outside 0..{seq - 1}"
                )
                self.repairs.append(repair("checkpoint_invalid", r.record_id, seq, message))
                if self.strict:
                    raise ReplayViolation("checkpoint_invalid", r.record_id, seq, message)
                return None
            self._refs(r, p.content_ref_manifest)
            old = self.checkpoint
            if old is None or (
                (p.covers_journal_seq, p.checkpoint_seq, p.created_at_ms)
                > (old.covers_journal_seq, old.checkpoint_seq, old.created_at_ms)
            ):
                self.checkpoint = p
        elif isinstance(p, Recovery):
            for e in p.unsafe_pending:
                allowed = e.idempotency_key is not None or e.dedupe_key is not None
                self.unsafe.append(
                    PendingEffect(
                        effect_id=e.effect_id,
                        intent_record_id=e.intent_record_id,
                        idempotency_key=e.idempotency_key,
                        dedupe_key=e.dedupe_key,
                        reason=e.reason,
                        retry_allowed=allowed,
                    )
                )
                self.repairs.append(repair(_pending_kind(allowed), r.record_id, seq, e.reason))
        elif isinstance(p, EffectIntent):
            self.pending[p.effect_id] = PendingEffect(
                effect_id=p.effect_id,
                intent_record_id=r.record_id,
                idempotency_key=p.idempotency_key,
                dedupe_key=p.dedupe_key,
                reason="effect intent has no terminal result in replay",
                retry_allowed=p.idempotency_key is not None or p.dedupe_key is not None,
            )
        elif isinstance(p, EffectResult):
            self.pending.pop(p.effect_id, None)
        elif isinstance(p, OutputIntent):
            self.intents[p.delivery_id] = (r.record_id, seq, p)
        elif isinstance(p, OutputResult):
            self.results.add(p.delivery_id)
        elif isinstance(p, OutputDedupe):
            self.dedupes[p.dedupe_key] = p
        elif isinstance(p, OutputReconciliation):
            self.reconciliations[p.delivery_id] = p
            self.repairs.append(
                repair("output_delivery_reconciliation", r.record_id, seq, p.reason)
            )
        elif isinstance(p, RunLifecycle):
            if p.status in TERMINAL_STATUSES:
                self.terminal = p.status
        elif isinstance(p, TerminalResult):
            self.pending.pop(p.effect_id, None)
            self.terminal = p.terminal_status
        if self.applied > 0 and seq - self.last > 1:
            self.gaps.append((self.last, seq))
        self.last = seq
        self.seen[r.record_id] = content
        self.applied += 1
        return None

    # sources
    def apply_framed(self, data: bytes) -> None:
        if self.done:
            raise ReducerFinished("finished")
        if data[:4] != MAGIC:
            raise JournalCorruption(0, "missing RCJ1 magic")
        pos = 4
        while pos < len(data):
            verdict, end = self._frame_at(data, pos)
            if verdict == "torn":
                self.torn += len(data) - pos
                return
            if verdict == "ok":
                body = data[pos + 12 : end]
                try:
                    record = _MSGPACK_DECODER.decode(body)
                except msgspec.DecodeError:
                    verdict = "body does not decode to a record"
                else:
                    self._apply(record, body)
                    pos = end
                    continue
            if self.strict:
                raise JournalCorruption(pos, verdict)
            resume = next(
                (q for q in range(pos + 1, len(data) - 11) if self._frame_at(data, q)[0] == "ok"),
                len(data),
            )
            self.repairs.append(
                repair(
                    "journal_corruption", "", self.last, f"{verdict}; skipped bytes {pos}..{resume}"
                )
            )
            pos = resume

    def _frame_at(self, data: bytes, pos: int) -> tuple[str, int]:
        if len(data) - pos < 12:
            return "torn", 0
        length, body_crc, head_crc = struct.unpack_from("<III", data, pos)
        if zlib.crc32(data[pos : pos + 8]) != head_crc:
            return "header check failed", 0
        if length > self.limit:
            return f"declared body length {length} exceeds the limit of {self.limit} bytes", 0
        end = pos + 12 + length
        if end > len(data):
            return "torn", 0
        if zlib.crc32(data[pos + 12 : end]) != body_crc:
            return "body CRC mismatch", 0
        return "ok", end

    def apply_json_lines(self, data: bytes) -> None:
        # SPEC 6.2: blank lines are counted; an unterminated last line that
        # does not decode is a torn tail; any other bad line is corruption
        lines = data.split(b"\n") if data else []
        if data.endswith(b"\n"):
            lines.pop()
        pos = 0
        for number, line in enumerate(lines, 1):
            start, pos = pos, pos + len(line) + 1
            if not line.strip():
                self.skipped += 1
                continue
            try:
                record = _JSON_DECODER.decode(line)
            except msgspec.DecodeError:
                record = None
            if record is not None:
                self._apply(record, canonical(record))
            elif pos > len(data):  # the last line, without its newline
                self.torn += len(line)
            elif self.strict:
                raise JournalCorruption(start, f"line {number} does not decode to a record")
            else:
                self.skipped += 1
                reason = f"line {number} does not decode to a record"
                self.repairs.append(
                    repair(
                        "journal_corruption",
                        "",
                        self.last,
                        f"{reason}; skipped bytes {start}..{start + len(line)}",
                    )
                )

    def finish(self) -> ReplayResult:
        if self.done:
            raise ReducerFinished("finished")
        self.done = True
        unsafe = list(self.unsafe)
        for effect_id in sorted(self.pending):
            effect = self.pending[effect_id]
            unsafe.append(effect)
            self.repairs.append(
                repair(
                    _pending_kind(effect.retry_allowed),
                    effect.intent_record_id,
                    self.last,
                    effect.reason,
                )
            )
        outputs = []
        for delivery_id in sorted(self.intents):
            if delivery_id in self.results:
                continue
            record_id, seq, intent = self.intents[delivery_id]
            if delivery_id in self.reconciliations:
                outputs.append(self.reconciliations[delivery_id])
                continue
            common = {
                "delivery_id": delivery_id,
                "intent_record_id": record_id,
                "dedupe_key": intent.dedupe_key,
                "idempotency_key": intent.idempotency_key,
                "resend_allowed": False,
            }
            proof = self.dedupes.get(intent.dedupe_key)
            if proof is not None:
                outputs.append(
                    OutputReconciliation(
                        **common,
                        external_operation_id=proof.prior_external_operation_id,
                        terminal_status=proof.prior_terminal_status,
                        reason="completed dedupe proof found for output delivery",
                        decision="completed_by_dedupe_proof",
                    )
                )
                continue
            reason = "cannot resend output delivery without completed dedupe proof"
            outputs.append(
                OutputReconciliation(
                    **common,
                    external_operation_id=None,
                    terminal_status="reconciliation_needed",
                    reason=reason,
                    decision="unsafe_pending",
                )
            )
            self.repairs.append(repair("output_delivery_reconciliation", record_id, seq, reason))
        ok = not self.repairs and not self.missing and all(e.retry_allowed for e in unsafe)
        status = "complete" if ok else "repair_needed"
        cp = self.checkpoint
        return ReplayResult(
            mode=self.mode,  # type: ignore[arg-type]
            status=status,
            resume_allowed=not (self.mode == "resume" and status == "repair_needed"),
            latest_journal_seq=self.last,
            terminal_status=self.terminal,
            next_loop_state=None if cp is None else cp.loop_state,
            unsafe_pending_side_effects=unsafe,
            missing_content_refs=sorted(self.missing),
            repair_needed=self.repairs,
            output_delivery_repairs=outputs,
            latest_checkpoint=cp,
            torn_tail_bytes=self.torn,
            skipped_lines=self.skipped,
            records_applied=self.applied,
            sequence_gaps=self.gaps,
        )


def _pending_kind(retry_allowed: bool) -> str:
    return "unsafe_pending_side_effect" if retry_allowed else "non_idempotent_pending_side_effect"


def _unknown_kind(data: bytes) -> str | None:
    """The payload kind of msgpack bytes when it is a string naming no known kind."""
    try:
        raw = msgspec.msgpack.decode(data)
    except msgspec.DecodeError:
        return None
    kind = raw.get("payload", {}).get("kind") if isinstance(raw, dict) else None
    known = {
        "checkpoint",
        "recovery",
        "effect_intent",
        "effect_result",
        "output_intent",
        "output_result",
        "output_dedupe",
        "output_reconciliation",
        "output_event",
        "run_lifecycle",
        "terminal_result",
        "custom",
    }
    return kind if isinstance(kind, str) and kind not in known else None


def model_replay(source: Any, mode: str = "resume", **options: Any) -> ReplayResult:
    """``replay`` of the model: ``source`` is framed bytes or an iterable of records."""
    reducer = ModelReducer(mode, **options)
    if isinstance(source, bytes | bytearray | memoryview):
        reducer.apply_framed(bytes(source))
    else:
        for record in source:
            reducer.apply(record)
    return reducer.finish()


def model_replay_json_lines(data: bytes, mode: str = "resume", **options: Any) -> ReplayResult:
    reducer = ModelReducer(mode, **options)
    reducer.apply_json_lines(data)
    return reducer.finish()
