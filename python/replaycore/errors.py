"""The exception hierarchy of replaycore.

Every error replaycore raises for a bad value, bad bytes or a bad state derives
from :class:`ReplayCoreError`, so a harness can catch the library's failures in
one ``except`` clause. Errors that are also value errors (a malformed key, a
blank scope part, an out-of-range number) subclass :class:`ValueError` too;
an argument of the wrong type raises :class:`InvalidArgumentType`, which is a
:class:`TypeError` as well as a :class:`ValueError`.

Both backends (the Rust core and :mod:`replaycore.reference`) raise these same
classes with the same attributes. Every class is picklable, so errors survive a
trip through :mod:`multiprocessing` or :mod:`concurrent.futures`.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "FieldError",
    "IdempotencyConflict",
    "InProgress",
    "InvalidArgument",
    "InvalidArgumentType",
    "InvalidKeyFormat",
    "InvalidScope",
    "JournalCorruption",
    "JournalLocked",
    "OutboxValidationError",
    "ReceiptEmittedNotEmittable",
    "ReceiptInvalid",
    "RecordDecodeError",
    "ReducerFinished",
    "ReplayCoreError",
    "ReplayViolation",
    "ReplayedError",
    "StaleLease",
    "StoreUnavailable",
]


class ReplayCoreError(Exception):
    """Base class of every error replaycore raises on purpose."""


class InvalidArgument(ReplayCoreError, ValueError):
    """An argument has a value replaycore cannot accept.

    ``argument`` names the parameter (``"step_idx"``, ``"parts[2]"``, ...) and
    ``value`` holds the rejected value itself, so a log line can show both.
    """

    def __init__(self, message: str, argument: str | None = None, value: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.argument = argument
        self.value = value

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.argument, self.value))


class InvalidArgumentType(InvalidArgument, TypeError):
    """An argument has the wrong type (for example a ``bool`` key part).

    It is a :class:`TypeError` and, like every argument error of replaycore,
    a :class:`ValueError` and a :class:`ReplayCoreError`.
    """


class InvalidKeyFormat(InvalidArgument):
    """A string is not a well-formed idempotency key (see ``parse_key``).

    ``value`` is the rejected text.
    """


class InvalidScope(InvalidArgument):
    """A :class:`~replaycore.Scope` part is not a usable non-blank string."""


class IdempotencyConflict(ReplayCoreError):
    """The same scope was stored before with different content.

    The spec name of this failure is ``duplicate_id_conflict`` (``kind``).
    Nothing was overwritten: the prior value is still the one stored.

    Attributes:
        scope: the :class:`~replaycore.Scope` that collided.
        prior_digest: ``content_digest`` of the stored value.
        new_digest: ``content_digest`` of the rejected value.
        differing_fields: dotted paths of the fields that differ
            (``["payload.status"]``) when both values are Structs, sorted;
            empty otherwise.
    """

    kind = "duplicate_id_conflict"

    def __init__(
        self,
        scope: Any,
        prior_digest: str,
        new_digest: str,
        differing_fields: list[str] | None = None,
    ) -> None:
        self.scope = scope
        self.prior_digest = prior_digest
        self.new_digest = new_digest
        self.differing_fields: list[str] = list(differing_fields or [])
        detail = (
            f"; differing fields: {', '.join(self.differing_fields)}"
            if self.differing_fields
            else ""
        )
        super().__init__(
            f"duplicate_id_conflict: {scope!r} already holds different content "
            f"(stored {prior_digest}, offered {new_digest}){detail}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            type(self),
            (self.scope, self.prior_digest, self.new_digest, self.differing_fields),
        )


class RecordDecodeError(ReplayCoreError, ValueError):
    """Bytes or a line that should hold one journal record do not decode to one.

    ``kind`` names the payload kind when it is unknown to this version of the
    schema (else None); ``offset`` is the byte offset of the record in its
    buffer or file when known.
    """

    def __init__(self, message: str, kind: str | None = None, offset: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.offset = offset

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.kind, self.offset))


class JournalCorruption(ReplayCoreError):
    """A journal's bytes are damaged (not merely cut short by a crash).

    ``offset`` is the byte offset of the damaged frame (0 for a missing
    ``RCJ1`` magic) and ``reason`` says what check failed.
    """

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(f"journal corruption at byte {offset}: {reason}")
        self.offset = offset
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.offset, self.reason))


class ReplayViolation(ReplayCoreError):
    """A record breaks a replay invariant (SPEC 7.2) while replaying strictly.

    ``kind`` is ``invalid_state_transition``, ``recovery_repair_needed`` or
    ``checkpoint_invalid``; ``retry`` is ``repair_needed``. The record was
    not applied and the reducer stays usable.
    """

    def __init__(
        self,
        kind: str,
        record_id: str,
        journal_seq: int,
        message: str,
        retry: str = "repair_needed",
    ) -> None:
        super().__init__(f"{kind}: {message} (record {record_id!r}, journal_seq {journal_seq})")
        self.kind = kind
        self.record_id = record_id
        self.journal_seq = journal_seq
        self.message = message
        self.retry = retry

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            type(self),
            (self.kind, self.record_id, self.journal_seq, self.message, self.retry),
        )


class ReducerFinished(ReplayCoreError):
    """A :class:`~replaycore.ReplayReducer` was used after ``finish()``."""


class JournalLocked(ReplayCoreError):
    """Another :class:`~replaycore.JournalWriter` holds the journal file open."""


class FieldError(ReplayCoreError, ValueError):
    """A value built from fields (a receipt, an outbox draft) has a bad field.

    ``field`` names it exactly as the Struct spells it.
    """

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.field))


class ReceiptInvalid(FieldError):
    """A receipt fails validation (SPEC 9); ``field`` names the bad field."""


class ReceiptEmittedNotEmittable(ReplayCoreError):
    """``receipt.emitted`` is a notification and never produces a receipt itself."""


class OutboxValidationError(FieldError):
    """An outbox draft or scope is invalid (SPEC 10); ``field`` names it."""


class InProgress(ReplayCoreError):
    """Another caller is executing this key right now (SPEC 5).

    ``key`` is the cache key and ``lease_expires_at`` (clock seconds) when
    the other caller's claim lapses if it never finishes.
    """

    def __init__(self, key: str, lease_expires_at: float) -> None:
        super().__init__(
            f"{key!r} is being executed by another caller (lease until {lease_expires_at})"
        )
        self.key = key
        self.lease_expires_at = lease_expires_at

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.key, self.lease_expires_at))


class ReplayedError(ReplayCoreError):
    """A cached ``Error`` outcome replayed without calling the function again.

    ``code`` is the original exception's type name and ``message`` its text.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.code, self.message))


class StoreUnavailable(ReplayCoreError):
    """A durable store could not be read or written (the database error is the cause)."""


class StaleLease(ReplayCoreError):
    """A run lease no longer holds its run (SPEC 12): another owner acquired
    or claimed the run, or the lease was released. Nothing was written.

    ``run_id`` and ``token`` name the lease that was refused.
    """

    def __init__(self, message: str, run_id: str = "", token: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.run_id = run_id
        self.token = token

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.run_id, self.token))
