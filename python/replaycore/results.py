"""What a replay reports (SPEC sections 7.3 and 7.4).

Both backends build these same Structs, so results of the Rust core and of
:mod:`replaycore.reference` compare equal with ``==``.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from replaycore.errors import InvalidArgument
from replaycore.records import Checkpoint, OutputReconciliation

__all__ = [
    "CursorCompatibility",
    "DurableReplaySupport",
    "EventCursor",
    "MissingContentPolicy",
    "PendingEffect",
    "RepairKind",
    "RepairNeeded",
    "ReplayMode",
    "ReplayResult",
    "ReplayStatus",
    "RetryClass",
    "StreamScope",
    "StreamScopeKind",
    "ViolationKind",
]

ReplayMode = Literal["audit", "resume", "repair"]
ReplayStatus = Literal["complete", "repair_needed"]
MissingContentPolicy = Literal[
    "fail", "recoverable_replay_gap", "request_host_repair", "placeholder"
]
RepairKind = Literal[
    "missing_content_ref",
    "unsafe_pending_side_effect",
    "non_idempotent_pending_side_effect",
    "output_delivery_reconciliation",
    "cursor_scope_mismatch",
    "checkpoint_invalid",
    "replay_invariant_violation",
    "journal_corruption",
]
RetryClass = Literal["repair_needed", "user_action_needed"]
ViolationKind = Literal["invalid_state_transition", "recovery_repair_needed", "checkpoint_invalid"]
StreamScopeKind = Literal["run", "agent", "all", "filter"]
_STREAM_SCOPE_KINDS = ("run", "agent", "all", "filter")
DurableReplaySupport = Literal["run_journal", "host_archive_required"]
CursorCompatibility = Literal["compatible", "scope_mismatch"]


class RepairNeeded(msgspec.Struct, kw_only=True, frozen=True):
    """One thing a host must repair before the run can be trusted again."""

    kind: RepairKind
    record_id: str
    journal_seq: int
    reason: str
    retry: RetryClass = "repair_needed"


class PendingEffect(msgspec.Struct, kw_only=True, frozen=True):
    """A side effect that started and has no terminal result in the journal.

    ``retry_allowed`` is True when it carries an idempotency or dedupe key,
    so retrying it cannot apply it twice.
    """

    effect_id: str
    intent_record_id: str
    idempotency_key: str | None = None
    dedupe_key: str | None = None
    reason: str
    retry_allowed: bool


class ReplayResult(msgspec.Struct, kw_only=True, frozen=True):
    """The verdict of replaying one run's journal.

    ``status`` is ``complete`` when nothing needs repair; ``resume_allowed``
    is False only in resume mode with status ``repair_needed``.
    ``torn_tail_bytes`` and ``skipped_lines`` count what a crash cut short
    (framed journals) and lines that did not decode (JSON lines);
    ``sequence_gaps`` lists ``(last_seq, next_seq)`` jumps between
    consecutively applied records (informational).
    """

    mode: ReplayMode
    status: ReplayStatus
    resume_allowed: bool
    latest_journal_seq: int = 0
    terminal_status: str | None = None
    next_loop_state: str | None = None
    unsafe_pending_side_effects: list[PendingEffect] = []
    missing_content_refs: list[str] = []
    repair_needed: list[RepairNeeded] = []
    output_delivery_repairs: list[OutputReconciliation] = []
    latest_checkpoint: Checkpoint | None = None
    torn_tail_bytes: int = 0
    skipped_lines: int = 0
    records_applied: int = 0
    sequence_gaps: list[tuple[int, int]] = []


class StreamScope(msgspec.Struct, frozen=True):
    """The stream an event cursor was issued for: ``StreamScope("run", "run-7")``.

    ``kind`` is ``run``, ``agent``, ``all`` or ``filter``; anything else
    raises :class:`~replaycore.errors.InvalidArgument`.
    """

    kind: StreamScopeKind
    id: str | None = None
    filter: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in _STREAM_SCOPE_KINDS:
            raise InvalidArgument(
                f"StreamScope.kind must be one of run, agent, all, filter, got {self.kind!r}",
                "kind",
                self.kind,
            )


class EventCursor(msgspec.Struct, frozen=True):
    """A position in an event stream, remembering the scope it was issued for."""

    scope: StreamScope
    position: str
