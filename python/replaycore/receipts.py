"""The receipt emitter (SPEC section 9): a dispatch outcome becomes a validated,
sequenced, idempotent :class:`Receipt`.

A harness plans a dispatch (:class:`Plan`, with one :class:`Placement` per
payload), hands it to a client, gets a :class:`ClientResponse` back and asks a
:class:`ReceiptEmitter` for the receipt, giving the :class:`ReceiptContext`
(who, which receipt id, when, which harness session/run/task)::

    plan + response + ctx --build--> Receipt --validate--> sequence --> store

* **Status mapping** from (plan outcome, response status):

  ===================  ===============  ==========================================
  plan outcome         response status  receipt status, failure class
  ===================  ===============  ==========================================
  unsupported          any              failed, plan's class or
                                        ``capability_unsupported``
  requires_operator    any              failed, ``operator_required``
  degraded             failed           failed, response's class or
                                        ``internal_error``
  degraded             any other        degraded, no failure class
  satisfied, a         any              failed, the first failed placement's
  placement ok=False                    class or ``internal_error``
  satisfied            failed           failed, response's class or
                                        ``internal_error``
  satisfied            any other        the response's status, no failure class
  ===================  ===============  ==========================================

  The retry class is the response's when it gives one, else derived from the
  failure class (:data:`RETRY_CLASS_FOR`), else None. Warnings are the plan's
  followed by the response's.
* **Sequence**: receipts of one ``harness_run_id`` get 1, 2, 3, ... from the
  emitter's sequencer; a receipt without a run id has ``sequence=None``.
* **Idempotency**: a receipt with an ``idempotency_key`` is stored in a
  content-equality store (SPEC 4) under
  ``Scope(client_id, adapter_id, idempotency_key)``. Emitting the same receipt
  again returns the stored one, with its original sequence, and uses no new
  sequence number; the same key with different content raises
  :class:`~replaycore.errors.IdempotencyConflict` naming the fields that
  differ. A receipt without a key is returned unstored.

The whole receipt is its content, including ``receipt_id`` and
``at_epoch_s``: a retry must pass the same :class:`ReceiptContext` as the first
attempt (derive the receipt id from the idempotency key and take the time from
the journaled intent), or it is a conflict naming those fields.

>>> emitter = ReceiptEmitter()
>>> plan = Plan("message.sent", "inv-1", "slack", idempotency_key="idem_0123456789abcdef")
>>> ctx = ReceiptContext("acme", "rcpt-1", 1700000000.0, harness_run_id="run-7")
>>> first = emitter.emit_for(plan, ClientResponse("delivered"), ctx)
>>> (first.status, first.sequence)
('delivered', 1)
>>> emitter.emit_for(plan, ClientResponse("delivered"), ctx) == first
True
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final, Literal, Protocol, get_args, runtime_checkable

import msgspec
from msgspec.structs import force_setattr, replace

from replaycore.errors import (
    IdempotencyConflict,
    InvalidArgument,
    InvalidArgumentType,
    ReceiptEmittedNotEmittable,
    ReceiptInvalid,
)
from replaycore.sequence import SequenceGenerator
from replaycore.store import IdempotencyStore, IdempotencyStoreProtocol
from replaycore.types import Scope

__all__ = [
    "EMITTED_EVENT",
    "FAILURE_CLASSES",
    "PLAN_OUTCOMES",
    "RECEIPT_SCHEMA_VERSION",
    "RECEIPT_STATUSES",
    "RETRY_CLASSES",
    "RETRY_CLASS_FOR",
    "ClientResponse",
    "FailureClass",
    "IdempotencyConflict",
    "InvalidArgument",
    "InvalidArgumentType",
    "PayloadReceipt",
    "Placement",
    "Plan",
    "PlanOutcome",
    "Receipt",
    "ReceiptContext",
    "ReceiptEmittedNotEmittable",
    "ReceiptEmitter",
    "ReceiptInvalid",
    "ReceiptStatus",
    "RetryClass",
    "SequencerProtocol",
    "build_receipt",
    "retry_class_for",
]

ReceiptStatus = Literal["observed", "delivered", "skipped", "degraded", "failed"]
PlanOutcome = Literal["satisfied", "degraded", "unsupported", "requires_operator"]
FailureClass = Literal[
    "capability_unsupported",
    "operator_required",
    "internal_error",
    "payload_too_large",
    "duplicate_id_conflict",
    "timeout",
    "transport_error",
]
RetryClass = Literal["do_not_retry", "retry_after_operator", "retry_with_backoff"]

RECEIPT_STATUSES: Final[tuple[ReceiptStatus, ...]] = get_args(ReceiptStatus)
PLAN_OUTCOMES: Final[tuple[PlanOutcome, ...]] = get_args(PlanOutcome)
FAILURE_CLASSES: Final[tuple[FailureClass, ...]] = get_args(FailureClass)
RETRY_CLASSES: Final[tuple[RetryClass, ...]] = get_args(RetryClass)

#: The retry class each failure class implies when the client gives none.
RETRY_CLASS_FOR: Final[Mapping[FailureClass, RetryClass]] = MappingProxyType(
    {
        "capability_unsupported": "do_not_retry",
        "payload_too_large": "do_not_retry",
        "duplicate_id_conflict": "do_not_retry",
        "operator_required": "retry_after_operator",
        "internal_error": "retry_with_backoff",
        "timeout": "retry_with_backoff",
        "transport_error": "retry_with_backoff",
    }
)

#: The only receipt schema this version writes and accepts.
RECEIPT_SCHEMA_VERSION: Final = 1

#: The notification sent when a receipt was emitted; it never gets a receipt.
EMITTED_EVENT: Final = "receipt.emitted"

_MAX_INT64: Final = 2**63 - 1


def retry_class_for(failure_class: FailureClass | None) -> RetryClass | None:
    """The retry class a failure class implies (None for None).

    >>> retry_class_for("timeout")
    'retry_with_backoff'
    """
    return None if failure_class is None else RETRY_CLASS_FOR[failure_class]


# --------------------------------------------------------------------------- inputs


def _check_choice(
    owner: str, name: str, value: object, allowed: tuple[str, ...], *, optional: bool = False
) -> None:
    """Refuse an enumeration value outside ``allowed`` (None too unless optional)."""
    if value is None and optional:
        return
    if not isinstance(value, str) or value not in allowed:
        raise InvalidArgument(
            f"{owner}.{name} must be one of {', '.join(allowed)}"
            f"{' or None' if optional else ''}, got {value!r}",
            name,
            value,
        )


def _check_sequence(owner: str, name: str, value: object) -> None:
    if not isinstance(value, list | tuple):
        raise InvalidArgumentType(
            f"{owner}.{name} must be a list, not {type(value).__name__}", name, value
        )


class Placement(msgspec.Struct, frozen=True):
    """Where one payload of a dispatch went (or was to go).

    ``Placement(payload_id, payload_kind, byte_size, placement, ok=True,
    failure_class=None, content_digest=None)``; ``ok=False`` marks a payload
    that could not be placed, with its failure class. Constructing one checks
    ``ok`` (a ``bool``) and ``failure_class`` (a :data:`FailureClass` or None)
    and raises :class:`~replaycore.errors.InvalidArgument` naming the field;
    the other fields are checked when the receipt is validated.

    >>> Placement("att-1", "image/png", 2048, "inline").ok
    True
    """

    payload_id: str
    payload_kind: str
    byte_size: int
    placement: str
    ok: bool = True
    failure_class: FailureClass | None = None
    content_digest: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.ok, bool):
            raise InvalidArgumentType(
                f"Placement.ok must be a bool, not {type(self.ok).__name__}", "ok", self.ok
            )
        _check_choice(
            "Placement", "failure_class", self.failure_class, FAILURE_CLASSES, optional=True
        )


class Plan(msgspec.Struct, frozen=True):
    """What the harness planned to dispatch, and how well the adapter can do it.

    ``Plan(event, invocation_id, adapter_id, idempotency_key=None,
    event_id=None, outcome="satisfied", failure_class=None, placements=[],
    capability_degradations=[], warnings=[])``. ``outcome`` is one of
    :data:`PLAN_OUTCOMES`. Constructing one checks ``outcome``,
    ``failure_class`` and that ``placements`` holds :class:`Placement` values
    (raising :class:`~replaycore.errors.InvalidArgument` naming the field);
    the text fields are checked when the receipt is validated, under the
    receipt's field names.

    >>> Plan("message.sent", "inv-1", "slack").outcome
    'satisfied'
    """

    event: str
    invocation_id: str
    adapter_id: str
    idempotency_key: str | None = None
    event_id: str | None = None
    outcome: PlanOutcome = "satisfied"
    failure_class: FailureClass | None = None
    placements: list[Placement] = []
    capability_degradations: list[str] = []
    warnings: list[str] = []

    def __post_init__(self) -> None:
        _check_choice("Plan", "outcome", self.outcome, PLAN_OUTCOMES)
        _check_choice("Plan", "failure_class", self.failure_class, FAILURE_CLASSES, optional=True)
        _check_sequence("Plan", "placements", self.placements)
        for index, item in enumerate(self.placements):
            if not isinstance(item, Placement):
                name = f"placements[{index}]"
                raise InvalidArgumentType(
                    f"Plan.{name} must be a Placement, not {type(item).__name__}", name, item
                )
        _check_sequence("Plan", "capability_degradations", self.capability_degradations)
        _check_sequence("Plan", "warnings", self.warnings)


class ClientResponse(msgspec.Struct, frozen=True):
    """What the client reported back: ``ClientResponse(status, failure_class=None,
    retry_class=None, warnings=[])``.

    ``status`` is one of :data:`RECEIPT_STATUSES`; constructing one checks
    ``status``, ``failure_class`` and ``retry_class`` against their sets and
    raises :class:`~replaycore.errors.InvalidArgument` naming the field.

    >>> ClientResponse("failed", "timeout").failure_class
    'timeout'
    """

    status: ReceiptStatus
    failure_class: FailureClass | None = None
    retry_class: RetryClass | None = None
    warnings: list[str] = []

    def __post_init__(self) -> None:
        _check_choice("ClientResponse", "status", self.status, RECEIPT_STATUSES)
        _check_choice(
            "ClientResponse", "failure_class", self.failure_class, FAILURE_CLASSES, optional=True
        )
        _check_choice(
            "ClientResponse", "retry_class", self.retry_class, RETRY_CLASSES, optional=True
        )
        _check_sequence("ClientResponse", "warnings", self.warnings)


class ReceiptContext(msgspec.Struct, frozen=True):
    """Who emits the receipt, under which id, when, and for which harness scope.

    ``ReceiptContext(client_id, receipt_id, at_epoch_s, parent_receipt_id=None,
    harness_session_id=None, harness_run_id=None, harness_task_id=None)``.
    The fields are copied into the receipt and checked there.

    >>> ReceiptContext("acme", "rcpt-1", 1700000000.0).harness_run_id is None
    True
    """

    client_id: str
    receipt_id: str
    at_epoch_s: float
    parent_receipt_id: str | None = None
    harness_session_id: str | None = None
    harness_run_id: str | None = None
    harness_task_id: str | None = None


# --------------------------------------------------------------------------- receipt


class _Invalid(Exception):
    """A check failed; carries the message and the field path relative to its owner."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def _text(value: object, field: str, *, optional: bool = False, blank_ok: bool = False) -> None:
    """A ``str`` (or None when optional), non-blank unless blank_ok, UTF-8 encodable."""
    if value is None and optional:
        return
    if not isinstance(value, str):
        expected = "a str or None" if optional else "a str"
        raise _Invalid(f"{field} must be {expected}, not {type(value).__name__}", field)
    if not blank_ok and not value.strip():
        raise _Invalid(f"{field} must not be blank, got {value!r}", field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _Invalid(f"{field} holds a lone surrogate at index {exc.start}", field) from None


def _choice(value: object, field: str, allowed: tuple[str, ...], *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or value not in allowed:
        raise _Invalid(f"{field} must be one of {', '.join(allowed)}, got {value!r}", field)


def _int(value: object, field: str, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(f"{field} must be an int, not {type(value).__name__}", field)
    if not low <= value <= high:
        raise _Invalid(f"{field} must be in {low}..={high}, got {value}", field)


def _text_list(value: object, field: str, *, blank_ok: bool) -> None:
    if not isinstance(value, list):
        raise _Invalid(f"{field} must be a list, not {type(value).__name__}", field)
    for index, item in enumerate(value):
        _text(item, f"{field}[{index}]", blank_ok=blank_ok)


class PayloadReceipt(msgspec.Struct, frozen=True, kw_only=True):
    """What happened to one payload of a dispatch: a copy of its :class:`Placement`.

    Fields: ``payload_id``, ``payload_kind``, ``placement`` (non-blank text),
    ``byte_size`` (int, 0..2**63-1), ``ok`` (bool), ``failure_class`` (a
    :data:`FailureClass` or None, copied as the placement gave it) and
    ``content_digest`` (text or None).

    >>> PayloadReceipt.from_placement(Placement("att-1", "image/png", 2048, "inline")).byte_size
    2048
    """

    payload_id: str
    payload_kind: str
    byte_size: int
    placement: str
    ok: bool = True
    failure_class: FailureClass | None = None
    content_digest: str | None = None

    @classmethod
    def from_placement(cls, placement: Placement) -> PayloadReceipt:
        """The payload receipt recording ``placement``."""
        return cls(
            payload_id=placement.payload_id,
            payload_kind=placement.payload_kind,
            byte_size=placement.byte_size,
            placement=placement.placement,
            ok=placement.ok,
            failure_class=placement.failure_class,
            content_digest=placement.content_digest,
        )

    def _check(self, prefix: str) -> None:
        _text(self.payload_id, f"{prefix}.payload_id")
        _text(self.payload_kind, f"{prefix}.payload_kind")
        _int(self.byte_size, f"{prefix}.byte_size", 0, _MAX_INT64)
        _text(self.placement, f"{prefix}.placement")
        if not isinstance(self.ok, bool):
            raise _Invalid(
                f"{prefix}.ok must be a bool, not {type(self.ok).__name__}", f"{prefix}.ok"
            )
        _choice(self.failure_class, f"{prefix}.failure_class", FAILURE_CLASSES, optional=True)
        _text(self.content_digest, f"{prefix}.content_digest", optional=True)


class Receipt(msgspec.Struct, frozen=True, kw_only=True):
    """A validated record of one dispatch outcome (SPEC 9).

    Required: ``receipt_id``, ``client_id``, ``adapter_id``, ``invocation_id``,
    ``event``, ``status``, ``at_epoch_s``. Optional (default None):
    ``idempotency_key``, ``event_id``, ``sequence``, ``parent_receipt_id``,
    ``harness_session_id``, ``harness_run_id``, ``harness_task_id``,
    ``failure_class``, ``retry_class``. Lists (default empty):
    ``payload_receipts`` (:class:`PayloadReceipt`), ``capability_degradations``,
    ``warnings``. ``schema_version`` is 1.

    Constructing a receipt does not validate it (so a stored or foreign
    receipt can always be inspected); :meth:`validate` does, and the emitter
    validates everything it stores. An integer ``at_epoch_s`` is stored as a
    float, so a receipt built with ``1700000000`` is content-equal to one
    built with ``1700000000.0``.

    >>> Receipt(receipt_id="r", client_id="c", adapter_id="a", invocation_id="i",
    ...         event="message.sent", status="delivered", at_epoch_s=1).at_epoch_s
    1.0
    """

    schema_version: int = RECEIPT_SCHEMA_VERSION
    receipt_id: str
    idempotency_key: str | None = None
    client_id: str
    adapter_id: str
    invocation_id: str
    event: str
    event_id: str | None = None
    sequence: int | None = None
    parent_receipt_id: str | None = None
    status: ReceiptStatus
    at_epoch_s: float
    harness_session_id: str | None = None
    harness_run_id: str | None = None
    harness_task_id: str | None = None
    payload_receipts: list[PayloadReceipt] = []
    capability_degradations: list[str] = []
    failure_class: FailureClass | None = None
    retry_class: RetryClass | None = None
    warnings: list[str] = []

    def __post_init__(self) -> None:
        # int and float encode differently; one spelling keeps content equality honest.
        value = self.at_epoch_s
        if isinstance(value, int) and not isinstance(value, bool):
            # An int too large for a float stays as is: validate() refuses it.
            with contextlib.suppress(OverflowError):
                force_setattr(self, "at_epoch_s", float(value))

    def validate(self) -> None:
        """Check every field; raise :class:`ReceiptInvalid` naming the first bad one.

        Fields are checked in declaration order, list entries in order
        (``field`` is then e.g. ``"warnings[2]"`` or
        ``"payload_receipts[0].byte_size"``). The rules:

        * ``schema_version`` is 1.
        * ``receipt_id``, ``client_id``, ``adapter_id``, ``invocation_id`` and
          ``event`` are non-blank ``str`` (blank = empty or only whitespace);
          every optional id (``idempotency_key``, ``event_id``,
          ``parent_receipt_id``, ``harness_*_id``) is None or non-blank;
          ``parent_receipt_id`` differs from ``receipt_id``.
        * ``sequence`` is None or an int in 1..2**63-1, and only set together
          with ``harness_run_id``.
        * ``status`` is one of :data:`RECEIPT_STATUSES`; ``at_epoch_s`` is a
          finite, non-negative number.
        * ``payload_receipts`` is a list of :class:`PayloadReceipt`;
          ``capability_degradations`` a list of non-blank ``str``;
          ``warnings`` a list of ``str``.
        * ``failure_class`` / ``retry_class`` are None or from
          :data:`FAILURE_CLASSES` / :data:`RETRY_CLASSES`; a ``failed``
          receipt must carry a failure class (``field="failure_class"``).
        * No text holds a lone surrogate (the receipt must encode).

        >>> Receipt(receipt_id=" ", client_id="c", adapter_id="a", invocation_id="i",
        ...         event="e", status="delivered", at_epoch_s=0.0).validate()
        Traceback (most recent call last):
        ...
        replaycore.errors.ReceiptInvalid: receipt_id must not be blank, got ' '
        """
        try:
            self._check()
        except _Invalid as exc:
            raise ReceiptInvalid(exc.message, exc.field) from None

    def _check(self) -> None:
        if self.schema_version != RECEIPT_SCHEMA_VERSION or type(self.schema_version) is not int:
            raise _Invalid(
                f"schema_version must be {RECEIPT_SCHEMA_VERSION}, got {self.schema_version!r}",
                "schema_version",
            )
        _text(self.receipt_id, "receipt_id")
        _text(self.idempotency_key, "idempotency_key", optional=True)
        _text(self.client_id, "client_id")
        _text(self.adapter_id, "adapter_id")
        _text(self.invocation_id, "invocation_id")
        _text(self.event, "event")
        _text(self.event_id, "event_id", optional=True)
        if self.sequence is not None:
            _int(self.sequence, "sequence", 1, _MAX_INT64)
            if self.harness_run_id is None:
                raise _Invalid("sequence is set but harness_run_id is None", "sequence")
        _text(self.parent_receipt_id, "parent_receipt_id", optional=True)
        if self.parent_receipt_id is not None and self.parent_receipt_id == self.receipt_id:
            raise _Invalid("parent_receipt_id must differ from receipt_id", "parent_receipt_id")
        _choice(self.status, "status", RECEIPT_STATUSES)
        when = self.at_epoch_s
        if isinstance(when, bool) or not isinstance(when, int | float):
            raise _Invalid(f"at_epoch_s must be a float, not {type(when).__name__}", "at_epoch_s")
        try:
            finite = math.isfinite(when)
        except OverflowError:  # an int too large for a float
            finite = False
        if not (finite and when >= 0):
            raise _Invalid(f"at_epoch_s must be finite and >= 0, got {when!r}", "at_epoch_s")
        _text(self.harness_session_id, "harness_session_id", optional=True)
        _text(self.harness_run_id, "harness_run_id", optional=True)
        _text(self.harness_task_id, "harness_task_id", optional=True)
        if not isinstance(self.payload_receipts, list):
            raise _Invalid(
                f"payload_receipts must be a list, not {type(self.payload_receipts).__name__}",
                "payload_receipts",
            )
        for index, item in enumerate(self.payload_receipts):
            name = f"payload_receipts[{index}]"
            if not isinstance(item, PayloadReceipt):
                raise _Invalid(f"{name} must be a PayloadReceipt, not {type(item).__name__}", name)
            item._check(name)
        _text_list(self.capability_degradations, "capability_degradations", blank_ok=False)
        _choice(self.failure_class, "failure_class", FAILURE_CLASSES, optional=True)
        if self.status == "failed" and self.failure_class is None:
            raise _Invalid("a failed receipt must carry a failure_class", "failure_class")
        _choice(self.retry_class, "retry_class", RETRY_CLASSES, optional=True)
        _text_list(self.warnings, "warnings", blank_ok=True)


# --------------------------------------------------------------------------- building


def _map_status(plan: Plan, response: ClientResponse) -> tuple[ReceiptStatus, FailureClass | None]:
    """The receipt status and failure class for (plan outcome, response status)."""
    if plan.outcome == "unsupported":
        return "failed", plan.failure_class or "capability_unsupported"
    if plan.outcome == "requires_operator":
        return "failed", "operator_required"
    if plan.outcome == "degraded":
        if response.status == "failed":
            return "failed", response.failure_class or "internal_error"
        return "degraded", None
    for placement in plan.placements:
        if not placement.ok:
            return "failed", placement.failure_class or "internal_error"
    if response.status == "failed":
        return "failed", response.failure_class or "internal_error"
    return response.status, None


def _require(value: object, cls: type, argument: str) -> None:
    if not isinstance(value, cls):
        raise InvalidArgumentType(
            f"{argument} must be a {cls.__name__}, not {type(value).__name__}", argument, value
        )


def _is_emitted_event(event: object) -> bool:
    return isinstance(event, str) and event.strip() == EMITTED_EVENT


def build_receipt(
    plan: Plan, response: ClientResponse, ctx: ReceiptContext, *, sequence: int | None = None
) -> Receipt:
    """The receipt for a dispatch outcome, without validating, sequencing or storing it.

    Applies the status mapping (see the module docstring), derives the retry
    class, copies ids from ``plan`` and ``ctx``, turns each placement into a
    :class:`PayloadReceipt` and concatenates the plan's and the response's
    warnings. :meth:`ReceiptEmitter.emit_for` is this plus validation,
    sequencing and storage.

    Raises:
        InvalidArgumentType: ``plan``, ``response`` or ``ctx`` is not of its class.

    >>> build_receipt(Plan("e", "inv", "a", outcome="requires_operator"),
    ...               ClientResponse("delivered"), ReceiptContext("c", "r", 0.0)).retry_class
    'retry_after_operator'
    """
    _require(plan, Plan, "plan")
    _require(response, ClientResponse, "response")
    _require(ctx, ReceiptContext, "ctx")
    status, failure_class = _map_status(plan, response)
    retry_class = response.retry_class or retry_class_for(failure_class)
    return Receipt(
        receipt_id=ctx.receipt_id,
        idempotency_key=plan.idempotency_key,
        client_id=ctx.client_id,
        adapter_id=plan.adapter_id,
        invocation_id=plan.invocation_id,
        event=plan.event,
        event_id=plan.event_id,
        sequence=sequence,
        parent_receipt_id=ctx.parent_receipt_id,
        status=status,
        at_epoch_s=ctx.at_epoch_s,
        harness_session_id=ctx.harness_session_id,
        harness_run_id=ctx.harness_run_id,
        harness_task_id=ctx.harness_task_id,
        payload_receipts=[PayloadReceipt.from_placement(p) for p in plan.placements],
        capability_degradations=list(plan.capability_degradations),
        failure_class=failure_class,
        retry_class=retry_class,
        warnings=[*plan.warnings, *response.warnings],
    )


# --------------------------------------------------------------------------- emitter


@runtime_checkable
class SequencerProtocol(Protocol):
    """What the emitter needs of a sequencer (``SequenceGenerator`` of either backend)."""

    def next(self, run_id: str) -> int:
        """The run's next value: 1, 2, 3, ..."""
        ...

    def observe(self, run_id: str, seq: int) -> None:
        """Raise the run's counter to at least ``seq``."""
        ...


class ReceiptEmitter:
    """Builds, validates, sequences and stores receipts (SPEC 9).

    ``ReceiptEmitter(store=None, sequencer=None)``: ``store`` is any
    :class:`~replaycore.IdempotencyStoreProtocol` (default a fresh in-memory
    :class:`~replaycore.IdempotencyStore`), ``sequencer`` any object with
    ``next(run_id)`` and ``observe(run_id, seq)`` (default a fresh
    :class:`~replaycore.SequenceGenerator`).

    Guarantees:

    * A replay (same scope, same content) returns the stored receipt, with its
      sequence, and allocates no sequence number: the stored receipt is looked
      up *before* a number is allocated.
    * Changed content under a stored scope raises
      :class:`~replaycore.errors.IdempotencyConflict` whose
      ``differing_fields`` name the changed receipt fields (never
      ``sequence``, since the candidate borrows the prior's), and allocates
      nothing.
    * Thread-safe: one lock per emitter covers lookup, allocation and put, so
      threads emitting the same receipt use one number and all get the same
      receipt.
    * Across processes (or several emitters sharing a durable store) the store
      is the source of truth: when another writer stores the scope between the
      lookup and the put, the emitter re-reads it and returns it as a replay
      (or raises the conflict), leaving its own allocated number unused as a
      gap. Sequence numbers are never handed out twice by one sequencer, but
      may have gaps (that race, or a store failure after allocation).
    * Every receipt it returns or accepts that carries a run id and a sequence
      is reported to ``sequencer.observe``, so after a restart replays of
      stored receipts push the counter past their numbers.

    >>> emitter = ReceiptEmitter()
    >>> ctx = ReceiptContext("acme", "rcpt-1", 1700000000.0, harness_run_id="run-7")
    >>> plan = Plan("message.sent", "inv-1", "slack")
    >>> emitter.emit_for(plan, ClientResponse("skipped"), ctx).sequence
    1
    """

    def __init__(
        self,
        store: IdempotencyStoreProtocol | None = None,
        sequencer: SequencerProtocol | None = None,
    ) -> None:
        if store is None:
            store = IdempotencyStore()
        elif not isinstance(store, IdempotencyStoreProtocol):
            raise InvalidArgumentType(
                f"store must implement IdempotencyStoreProtocol, not {type(store).__name__}",
                "store",
                store,
            )
        if sequencer is None:
            sequencer = SequenceGenerator()
        elif not isinstance(sequencer, SequencerProtocol):
            raise InvalidArgumentType(
                f"sequencer must have next() and observe(), not {type(sequencer).__name__}",
                "sequencer",
                sequencer,
            )
        self._store: IdempotencyStoreProtocol = store
        self._sequencer: SequencerProtocol = sequencer
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ReceiptEmitter(store={self._store!r}, sequencer={self._sequencer!r})"

    @property
    def store(self) -> IdempotencyStoreProtocol:
        """The content-equality store receipts go to."""
        return self._store

    @property
    def sequencer(self) -> SequencerProtocol:
        """The sequencer that numbers receipts per harness run."""
        return self._sequencer

    def emit_for(self, plan: Plan, response: ClientResponse, ctx: ReceiptContext) -> Receipt:
        """Build, validate, sequence and store the receipt of a dispatch outcome.

        Returns the new receipt, or the stored one on a replay. Nothing is
        stored and no sequence is used when it raises (apart from the gap of
        a cross-process race or store failure, see the class docstring).

        Raises:
            InvalidArgumentType: an argument is not of its class.
            ReceiptEmittedNotEmittable: ``plan.event`` is ``"receipt.emitted"``
                (compared after stripping whitespace); checked first.
            ReceiptInvalid: the built receipt fails :meth:`Receipt.validate`.
            IdempotencyConflict: the scope holds a receipt with other content.
            StoreUnavailable: a durable store failed.

        >>> emitter = ReceiptEmitter()
        >>> plan = Plan("e", "inv", "a", outcome="unsupported")
        >>> ctx = ReceiptContext("c", "r", 0.0)
        >>> ReceiptEmitter().emit_for(plan, ClientResponse("delivered"), ctx).failure_class
        'capability_unsupported'
        """
        _require(plan, Plan, "plan")
        _require(response, ClientResponse, "response")
        _require(ctx, ReceiptContext, "ctx")
        if _is_emitted_event(plan.event):
            raise ReceiptEmittedNotEmittable(
                f"{EMITTED_EVENT!r} is a notification and never produces a receipt"
            )
        candidate = build_receipt(plan, response, ctx)
        # Validated unsequenced, so a bad receipt never consumes a number; the
        # number allocated below is valid by construction.
        candidate.validate()
        key = candidate.idempotency_key
        run_id = candidate.harness_run_id
        with self._lock:
            if key is None:
                return self._numbered(candidate)
            scope = Scope(candidate.client_id, candidate.adapter_id, key)
            prior = self._store.get(scope)
            if prior is not None:
                return self._replay(scope, candidate, prior)
            fresh = self._numbered(candidate)
            try:
                return self._put(scope, fresh)
            except IdempotencyConflict:
                if run_id is None:
                    raise  # no number was taken, so the conflict is already exact
                # Another writer stored the scope since the lookup.
                prior = self._store.get(scope)
                if prior is None:
                    raise
                return self._replay(scope, candidate, prior)

    def emit(self, receipt: Receipt) -> Receipt:
        """Validate and store a receipt built elsewhere; its sequence is kept as is.

        Returns ``receipt`` (inserted, or unstored when it has no
        idempotency key) or the equal stored receipt (a replay). The
        receipt's sequence, if any, is reported to ``sequencer.observe``.

        Raises:
            InvalidArgumentType: ``receipt`` is not a :class:`Receipt`.
            ReceiptEmittedNotEmittable: its event is ``"receipt.emitted"``.
            ReceiptInvalid: it fails :meth:`Receipt.validate`.
            IdempotencyConflict: the scope holds a receipt with other content.

        >>> r = Receipt(receipt_id="r", client_id="c", adapter_id="a", invocation_id="i",
        ...             event="e", status="observed", at_epoch_s=0.0, idempotency_key="k")
        >>> ReceiptEmitter().emit(r) == r
        True
        """
        _require(receipt, Receipt, "receipt")
        if _is_emitted_event(receipt.event):
            raise ReceiptEmittedNotEmittable(
                f"{EMITTED_EVENT!r} is a notification and never produces a receipt"
            )
        receipt.validate()
        key = receipt.idempotency_key
        with self._lock:
            if key is None:
                result = receipt
            else:
                scope = Scope(receipt.client_id, receipt.adapter_id, key)
                result = self._put(scope, receipt)
            self._observe(result)
            return result

    # The helpers below run under self._lock.

    def _numbered(self, candidate: Receipt) -> Receipt:
        run_id = candidate.harness_run_id
        if run_id is None:
            return candidate
        return replace(candidate, sequence=self._sequencer.next(run_id))

    def _replay(self, scope: Scope, candidate: Receipt, prior: Any) -> Receipt:
        sequence = prior.sequence if isinstance(prior, Receipt) else None
        result = self._put(scope, replace(candidate, sequence=sequence))
        self._observe(result)
        return result

    def _put(self, scope: Scope, receipt: Receipt) -> Receipt:
        value = self._store.put(scope, receipt).value
        # Equal bytes stored as raw bytes replay as bytes; the content is the receipt's.
        return value if isinstance(value, Receipt) else receipt

    def _observe(self, receipt: Receipt) -> None:
        if receipt.harness_run_id is not None and receipt.sequence is not None:
            self._sequencer.observe(receipt.harness_run_id, receipt.sequence)
