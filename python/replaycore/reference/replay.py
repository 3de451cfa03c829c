"""The replay reducer (SPEC section 7), pure Python.

A :class:`ReplayReducer` applies a run's journal records one at a time, in
journal order, and :meth:`~ReplayReducer.finish` says whether the run may
resume, which side effects are unsafe to retry, which output deliveries need
reconciliation and what content is missing. :func:`replay` does all of that
for a journal file, a framed buffer or an iterable of records;
:func:`replay_many` for many journals at once.

This is the executable specification the Rust core is tested against: the
order of the checks in :meth:`ReplayReducer._apply` is the order of SPEC 7.2.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO

from replaycore._checks import in_range, type_error
from replaycore.errors import (
    InvalidArgument,
    InvalidArgumentType,
    JournalCorruption,
    ReducerFinished,
    ReplayViolation,
)
from replaycore.records import (
    Checkpoint,
    EffectIntent,
    EffectResult,
    JournalRecord,
    OutputDedupe,
    OutputIntent,
    OutputReconciliation,
    OutputResult,
    Recovery,
    RunLifecycle,
    TerminalResult,
    encode_canonical,
)
from replaycore.reference.journal import (
    DEFAULT_MAX_FRAME_BYTES,
    DEFAULT_MAX_LINE_BYTES,
    decode_record,
    framed_buffer,
    iter_frames,
    iter_json_lines,
    journal_format,
    open_journal,
)
from replaycore.results import (
    CursorCompatibility,
    DurableReplaySupport,
    EventCursor,
    MissingContentPolicy,
    PendingEffect,
    RepairNeeded,
    ReplayMode,
    ReplayResult,
    ReplayStatus,
    StreamScope,
)

__all__ = [
    "ReplayReducer",
    "check_cursor_compatibility",
    "durable_replay_support",
    "journal_cursor_for_seq",
    "replay",
    "replay_many",
]

MODES = ("audit", "resume", "repair")
POLICIES = ("fail", "recoverable_replay_gap", "request_host_repair", "placeholder")
TERMINAL_LIFECYCLE = frozenset(
    {"completed", "failed", "cancelled", "run_completed", "run_failed", "run_cancelled"}
)
PENDING_REASON = "effect intent has no terminal result in replay"
DEDUPE_PROOF_REASON = "completed dedupe proof found for output delivery"
UNSAFE_OUTPUT_REASON = "cannot resend output delivery without completed dedupe proof"


def _digest(data: bytes) -> bytes:
    # 128 bits are plenty to tell two records with the same record_id apart.
    return hashlib.blake2b(data, digest_size=16).digest()


def _pending_kind(retry_allowed: bool) -> Any:
    return "unsafe_pending_side_effect" if retry_allowed else "non_idempotent_pending_side_effect"


class ReplayReducer:
    """Folds a run's journal into a :class:`~replaycore.ReplayResult`.

    ``mode`` is ``"audit"``, ``"resume"`` (default) or ``"repair"``.
    ``strict`` defaults to True for resume and repair and False for audit:
    strictly, a record that breaks an invariant raises
    :class:`~replaycore.errors.ReplayViolation` and is not applied (the
    reducer stays usable); otherwise it is recorded as a
    ``replay_invariant_violation`` repair and skipped, so one audit pass
    reports every problem. ``available_content_refs`` (an iterable of str)
    turns on the content-ref check; ``missing_content_policy`` names the
    host's remedy (``placeholder`` lists missing refs without a repair).

    The reducer keeps a 128-bit digest per applied record, never the record.
    Records given as bytes are taken as their canonical encoding (a journal
    written by replaycore is canonical by construction).
    """

    def __init__(
        self,
        mode: ReplayMode = "resume",
        available_content_refs: Iterable[str] | None = None,
        missing_content_policy: MissingContentPolicy = "fail",
        strict: bool | None = None,
        *,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> None:
        if mode not in MODES:
            raise InvalidArgument(
                f"mode must be one of {', '.join(MODES)}, got {mode!r}", "mode", mode
            )
        if missing_content_policy not in POLICIES:
            raise InvalidArgument(
                f"missing_content_policy must be one of {', '.join(POLICIES)}, "
                f"got {missing_content_policy!r}",
                "missing_content_policy",
                missing_content_policy,
            )
        if strict is not None and not isinstance(strict, bool):
            type_error("strict", "a bool or None", strict)
        self.mode: ReplayMode = mode
        self.strict = mode != "audit" if strict is None else strict
        self.missing_content_policy: MissingContentPolicy = missing_content_policy
        self.max_frame_bytes = in_range(max_frame_bytes, "max_frame_bytes", 1, 2**32 - 1)
        self._available: frozenset[str] | None = None
        if available_content_refs is not None:
            self._available = _content_refs(available_content_refs)
        self._digests: dict[str, bytes] = {}
        self._last_seq = 0
        self._applied = 0
        self._terminal: str | None = None
        self._checkpoint: Checkpoint | None = None
        self._pending: dict[str, PendingEffect] = {}
        self._unsafe: list[PendingEffect] = []
        self._missing: set[str] = set()
        self._repairs: list[RepairNeeded] = []
        self._intents: dict[str, tuple[str, int, OutputIntent]] = {}
        self._delivered: set[str] = set()
        self._dedupes: dict[str, OutputDedupe] = {}
        self._reconciliations: dict[str, OutputReconciliation] = {}
        self._gaps: list[tuple[int, int]] = []
        self._torn_tail_bytes = 0
        self._skipped_lines = 0
        self._finished = False

    # -- public API ---------------------------------------------------------

    @property
    def records_applied(self) -> int:
        """Records applied so far (not counting ignored duplicates or skipped violations)."""
        return self._applied

    @property
    def latest_journal_seq(self) -> int:
        """The ``journal_seq`` of the last applied record (0 before any)."""
        return self._last_seq

    def apply(self, record: JournalRecord | bytes | bytearray | memoryview) -> None:
        """Apply one record: a :class:`JournalRecord` or the msgpack bytes of one.

        Raises ``ReplayViolation`` (strict), ``RecordDecodeError`` for bytes
        that are not a record, ``ReducerFinished`` after :meth:`finish`.
        """
        self._check_open()
        if isinstance(record, JournalRecord):
            self._apply(record, _digest(encode_canonical(record)))
        elif isinstance(record, bytes | bytearray | memoryview):
            data = bytes(record)
            self._apply(decode_record(data), _digest(data))
        else:
            type_error("record", "a JournalRecord or bytes", record)

    def apply_many(
        self,
        records: Iterable[JournalRecord | bytes | bytearray | memoryview]
        | bytes
        | bytearray
        | memoryview,
    ) -> None:
        """Apply records in order: an iterable of records (or their bytes), or a
        framed journal buffer (``bytes`` starting with ``RCJ1``).

        For a framed buffer a torn tail is counted in ``torn_tail_bytes``;
        damage raises ``JournalCorruption`` when strict, or becomes a
        ``journal_corruption`` repair and the reader resynchronizes.
        """
        self._check_open()
        if isinstance(records, bytes | bytearray | memoryview):
            self._apply_framed(framed_buffer(records))
            return
        try:
            items = iter(records)
        except TypeError:
            type_error("records", "an iterable of records or a framed buffer", records)
        for record in items:
            self.apply(record)

    def finish(self) -> ReplayResult:
        """Close the replay and return its result; the reducer is spent afterwards."""
        self._check_open()
        self._finished = True
        unsafe = list(self._unsafe)
        for effect_id in sorted(self._pending):
            effect = self._pending[effect_id]
            unsafe.append(effect)
            self._repair(
                _pending_kind(effect.retry_allowed),
                effect.intent_record_id,
                self._last_seq,
                effect.reason,
            )
        output_repairs: list[OutputReconciliation] = []
        for delivery_id in sorted(self._intents):
            if delivery_id in self._delivered:
                continue
            record_id, journal_seq, intent = self._intents[delivery_id]
            known = self._reconciliations.get(delivery_id)
            if known is not None:
                output_repairs.append(known)
                continue
            proof = self._dedupes.get(intent.dedupe_key)
            if proof is not None:
                output_repairs.append(
                    OutputReconciliation(
                        delivery_id=delivery_id,
                        intent_record_id=record_id,
                        dedupe_key=intent.dedupe_key,
                        idempotency_key=intent.idempotency_key,
                        external_operation_id=proof.prior_external_operation_id,
                        terminal_status=proof.prior_terminal_status,
                        reason=DEDUPE_PROOF_REASON,
                        decision="completed_by_dedupe_proof",
                        resend_allowed=False,
                    )
                )
                continue
            output_repairs.append(
                OutputReconciliation(
                    delivery_id=delivery_id,
                    intent_record_id=record_id,
                    dedupe_key=intent.dedupe_key,
                    idempotency_key=intent.idempotency_key,
                    external_operation_id=None,
                    terminal_status="reconciliation_needed",
                    reason=UNSAFE_OUTPUT_REASON,
                    decision="unsafe_pending",
                    resend_allowed=False,
                )
            )
            self._repair(
                "output_delivery_reconciliation", record_id, journal_seq, UNSAFE_OUTPUT_REASON
            )
        complete = (
            not self._repairs
            and not self._missing
            and all(effect.retry_allowed for effect in unsafe)
        )
        status: ReplayStatus = "complete" if complete else "repair_needed"
        checkpoint = self._checkpoint
        return ReplayResult(
            mode=self.mode,
            status=status,
            resume_allowed=not (self.mode == "resume" and status == "repair_needed"),
            latest_journal_seq=self._last_seq,
            terminal_status=self._terminal,
            next_loop_state=None if checkpoint is None else checkpoint.loop_state,
            unsafe_pending_side_effects=unsafe,
            missing_content_refs=sorted(self._missing),
            repair_needed=list(self._repairs),
            output_delivery_repairs=output_repairs,
            latest_checkpoint=checkpoint,
            torn_tail_bytes=self._torn_tail_bytes,
            skipped_lines=self._skipped_lines,
            records_applied=self._applied,
            sequence_gaps=list(self._gaps),
        )

    # -- the rules of SPEC 7.2 ------------------------------------------------

    def _check_open(self) -> None:
        if self._finished:
            raise ReducerFinished("the reducer is spent: finish() was already called")

    def _repair(
        self, kind: Any, record_id: str, journal_seq: int, reason: str, retry: Any = "repair_needed"
    ) -> None:
        self._repairs.append(
            RepairNeeded(
                kind=kind, record_id=record_id, journal_seq=journal_seq, reason=reason, retry=retry
            )
        )

    def _violation(self, kind: str, record: JournalRecord, message: str) -> None:
        if self.strict:
            raise ReplayViolation(kind, record.record_id, record.journal_seq, message)
        self._repair("replay_invariant_violation", record.record_id, record.journal_seq, message)

    def _check_refs(self, record: JournalRecord, refs: Sequence[str]) -> None:
        available = self._available
        if available is None:
            return
        for ref in refs:
            if ref in available or ref in self._missing:
                continue
            self._missing.add(ref)
            if self.missing_content_policy != "placeholder":
                self._repair(
                    "missing_content_ref",
                    record.record_id,
                    record.journal_seq,
                    f"content ref {ref} is not available (policy {self.missing_content_policy})",
                    "user_action_needed",
                )

    def _apply(self, record: JournalRecord, digest: bytes) -> None:
        record_id = record.record_id
        seq = record.journal_seq
        payload = record.payload
        prior = self._digests.get(record_id)
        # 1. an idempotent duplicate is ignored, whatever its journal_seq
        if (
            prior == digest
            and prior is not None
            and (
                record.idempotency_key is not None
                or record.dedupe_key is not None
                or isinstance(payload, Checkpoint | Recovery)
            )
        ):
            return
        # 2. schema
        if record.schema != 1:
            self._violation(
                "recovery_repair_needed", record, f"unsupported journal schema {record.schema}"
            )
            return
        # 3. any other reuse of a record_id
        if prior is not None:
            self._violation(
                "invalid_state_transition", record, "duplicate non-idempotent journal record"
            )
            return
        # 4. order
        if seq <= self._last_seq:
            self._violation(
                "invalid_state_transition", record, "journal records must be strictly increasing"
            )
            return
        # 5. sealed
        if self._terminal is not None and not isinstance(payload, Checkpoint | Recovery):
            self._violation(
                "invalid_state_transition", record, "record after sealed terminal state"
            )
            return
        # 6. content refs
        if self._available is not None and record.content_refs:
            self._check_refs(record, record.content_refs)
        # 7. kind effects
        if isinstance(payload, Checkpoint):
            if not 0 <= payload.covers_journal_seq < seq:
                message = (
                    f"checkpoint covers journal_seq {payload.covers_journal_seq}, "
                    f"outside 0..{seq - 1}"
                )
                self._repair("checkpoint_invalid", record_id, seq, message)
                if self.strict:
                    raise ReplayViolation("checkpoint_invalid", record_id, seq, message)
                return
            self._check_refs(record, payload.content_ref_manifest)
            latest = self._checkpoint
            if latest is None or (
                payload.covers_journal_seq,
                payload.checkpoint_seq,
                payload.created_at_ms,
            ) > (latest.covers_journal_seq, latest.checkpoint_seq, latest.created_at_ms):
                self._checkpoint = payload
        elif isinstance(payload, EffectIntent):
            self._pending[payload.effect_id] = PendingEffect(
                effect_id=payload.effect_id,
                intent_record_id=record_id,
                idempotency_key=payload.idempotency_key,
                dedupe_key=payload.dedupe_key,
                reason=PENDING_REASON,
                retry_allowed=payload.idempotency_key is not None or payload.dedupe_key is not None,
            )
        elif isinstance(payload, EffectResult):
            self._pending.pop(payload.effect_id, None)
        elif isinstance(payload, OutputIntent):
            self._intents[payload.delivery_id] = (record_id, seq, payload)
        elif isinstance(payload, OutputResult):
            self._delivered.add(payload.delivery_id)
        elif isinstance(payload, OutputDedupe):
            self._dedupes[payload.dedupe_key] = payload
        elif isinstance(payload, OutputReconciliation):
            self._reconciliations[payload.delivery_id] = payload
            self._repair("output_delivery_reconciliation", record_id, seq, payload.reason)
        elif isinstance(payload, RunLifecycle):
            if payload.status in TERMINAL_LIFECYCLE:
                self._terminal = payload.status
        elif isinstance(payload, TerminalResult):
            self._pending.pop(payload.effect_id, None)
            self._terminal = payload.terminal_status
        elif isinstance(payload, Recovery):
            for effect in payload.unsafe_pending:
                retry_allowed = effect.idempotency_key is not None or effect.dedupe_key is not None
                self._unsafe.append(
                    PendingEffect(
                        effect_id=effect.effect_id,
                        intent_record_id=effect.intent_record_id,
                        idempotency_key=effect.idempotency_key,
                        dedupe_key=effect.dedupe_key,
                        reason=effect.reason,
                        retry_allowed=retry_allowed,
                    )
                )
                self._repair(_pending_kind(retry_allowed), record_id, seq, effect.reason)
        # output_event and custom change nothing
        # 8. remember the record
        if self._applied and seq > self._last_seq + 1:
            self._gaps.append((self._last_seq, seq))
        self._last_seq = seq
        self._digests[record_id] = digest
        self._applied += 1

    # -- sources -------------------------------------------------------------

    def _apply_framed(self, file: BinaryIO) -> None:
        """Apply the framed journal in ``file``, a frame at a time."""
        for event in iter_frames(file, strict=self.strict, max_frame_bytes=self.max_frame_bytes):
            if event.kind == "record":
                assert event.record is not None
                assert event.body is not None
                self._apply(event.record, _digest(event.body))
            elif event.kind == "torn":
                self._torn_tail_bytes += event.end - event.offset
            else:
                self._repair(
                    "journal_corruption",
                    "",
                    self._last_seq,
                    f"{event.reason}; skipped bytes {event.offset}..{event.end}",
                )
            # Dropped before the next frame is read, so that one record is
            # alive at a time (SPEC 6.2 "Memory"), not this one and the next.
            del event

    def _apply_json_lines(self, file: BinaryIO, max_line_bytes: int) -> None:
        """SPEC 6.2: blank lines are counted, a torn last line is counted in
        ``torn_tail_bytes``, a corrupt line (one longer than
        ``max_line_bytes`` included) raises ``JournalCorruption`` when
        strict, else becomes a ``journal_corruption`` repair (and counts in
        ``skipped_lines``)."""
        for line in iter_json_lines(file, max_line_bytes=max_line_bytes):
            if line.record is not None:
                self._apply(line.record, _digest(encode_canonical(line.record)))
            elif line.kind == "blank":
                self._skipped_lines += 1
            elif line.kind == "torn":
                self._torn_tail_bytes += line.end - line.offset
            elif self.strict:
                raise JournalCorruption(line.offset, line.reason)
            else:
                self._skipped_lines += 1
                self._repair(
                    "journal_corruption",
                    "",
                    self._last_seq,
                    f"{line.reason}; skipped bytes {line.offset}..{line.end}",
                )
            del line  # as in _apply_framed: one record at a time


class _CheckedRefs(frozenset[str]):
    """``available_content_refs`` already checked to hold only str."""


def _listed(refs: Any) -> Any:
    """``refs`` made re-iterable: a set or list as it is, any other iterable
    (but str and bytes) as a list; anything else unchanged, to be refused."""
    if isinstance(refs, frozenset | set | list | str | bytes):
        return refs
    try:
        return list(refs)
    except TypeError:
        return refs


def _content_refs(refs: Any) -> frozenset[str]:
    """``available_content_refs`` as a frozenset, each item checked to be a str.

    Items are checked in the order ``refs`` gives them, before any is
    hashed, so a list or a number among them is reported by its type, as
    the Rust core does, not as Python's ``unhashable`` ``TypeError``.
    """
    if isinstance(refs, _CheckedRefs):
        return refs
    items = _listed(refs)
    if not isinstance(items, frozenset | set | list):
        type_error("available_content_refs", "an iterable of str", refs)
    for ref in items:
        if not isinstance(ref, str):
            type_error("available_content_refs", "an iterable of str", ref)
    return frozenset(items)


def replay(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview | Iterable[Any],
    mode: ReplayMode = "resume",
    available_content_refs: Iterable[str] | None = None,
    missing_content_policy: MissingContentPolicy = "fail",
    strict: bool | None = None,
    *,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> ReplayResult:
    """Replay one journal and return its :class:`~replaycore.ReplayResult`.

    ``source`` is a path (``.jsonl`` for JSON lines, anything else framed
    ``.rcj``), the bytes of a framed journal, or an iterable of records (or
    their msgpack bytes). ``max_line_bytes`` is the longest line of a
    ``.jsonl`` journal (a longer one is corruption); the other options are
    those of :class:`ReplayReducer`, which reads no JSON lines.
    """
    reducer = ReplayReducer(
        mode,
        available_content_refs,
        missing_content_policy,
        strict,
        max_frame_bytes=max_frame_bytes,
    )
    in_range(max_line_bytes, "max_line_bytes", 1, 2**63 - 1)
    if isinstance(source, str | os.PathLike):
        with open_journal(source) as file:
            if journal_format(source) == "jsonl":
                reducer._apply_json_lines(file, max_line_bytes)
            else:
                reducer._apply_framed(file)
    elif isinstance(source, bytes | bytearray | memoryview):
        reducer._apply_framed(framed_buffer(source))
    else:
        try:
            items = iter(source)
        except TypeError:
            type_error("source", "a path, a framed buffer or an iterable of records", source)
        for record in items:
            reducer.apply(record)
    return reducer.finish()


def replay_many(
    sources: Iterable[Any],
    threads: int | None = None,
    return_exceptions: bool = False,
    **options: Any,
) -> list[Any]:
    """Replay many journals; results in source order.

    ``options`` are passed to :func:`replay` for every source. The first
    failure (in source order) is raised, or with ``return_exceptions=True``
    each failure is returned in its place. ``threads`` defaults to the
    number of CPUs (the reference runs on threads, so the GIL limits it).
    ``available_content_refs`` is read and checked once, for every source:
    an iterator serves them all, and a large set is not walked per run.
    """
    items = list(sources)
    if threads is not None:
        in_range(threads, "threads", 1, 1024)
    refs = options.get("available_content_refs")
    if refs is not None and items:
        # Read once (an iterator serves every source) and checked once (a
        # large set is not walked per source). Refs that fail the check are
        # passed on re-iterable, so each source reports them in its place,
        # after the options checked before them.
        refs = _listed(refs)
        with contextlib.suppress(InvalidArgumentType):
            refs = _CheckedRefs(_content_refs(refs))
        options = {**options, "available_content_refs": refs}
    workers = threads or min(len(items), os.cpu_count() or 1) or 1

    def run(source: Any) -> Any:
        try:
            return replay(source, **options)
        except Exception as exc:
            if not return_exceptions:
                raise
            return exc

    if workers == 1 or len(items) <= 1:
        return [run(source) for source in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run, source) for source in items]
        return [future.result() for future in futures]


def journal_cursor_for_seq(seq: int) -> str:
    """The cursor position of a journal sequence number: ``"journal.<seq>"``."""
    return f"journal.{in_range(seq, 'seq', 0, 2**63 - 1)}"


def durable_replay_support(scope: StreamScope) -> DurableReplaySupport:
    """``"run_journal"`` for a run scope (its journal can replay it), else
    ``"host_archive_required"``."""
    if not isinstance(scope, StreamScope):
        type_error("scope", "a StreamScope", scope)
    return "run_journal" if scope.kind == "run" else "host_archive_required"


def check_cursor_compatibility(
    scope: StreamScope, cursor: EventCursor | None
) -> CursorCompatibility:
    """``"compatible"`` when ``cursor`` is None or was issued for ``scope``,
    else ``"scope_mismatch"``."""
    if not isinstance(scope, StreamScope):
        type_error("scope", "a StreamScope", scope)
    if cursor is not None and not isinstance(cursor, EventCursor):
        type_error("cursor", "an EventCursor or None", cursor)
    return "compatible" if cursor is None or cursor.scope == scope else "scope_mismatch"
