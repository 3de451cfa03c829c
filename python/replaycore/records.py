"""Journal records (SPEC section 6.1) and the canonical encoding (section 6.3).

This module is the one definition of the record schema. A journal is the
ordered list of :class:`JournalRecord` values one run wrote; each record's
``payload`` is one of the payload Structs below, tagged on the wire by the
field ``kind`` (the record's kind is the payload's tag and is never stored
twice: read it as ``record.kind``).

All Structs are keyword-only and frozen. Unknown fields are ignored when
decoding, so older readers accept newer writers' records.

The canonical encoding of a value is msgspec msgpack with Struct fields in
declaration order and dict keys sorted; two values are content-equal when
their canonical encodings are equal byte for byte.

>>> rec = JournalRecord(
...     record_id="r1", journal_seq=1, run_id="run-7",
...     payload=EffectIntent(effect_id="pay-1", effect_kind="payment"),
... )
>>> rec.kind
'effect_intent'
>>> decode_canonical(encode_canonical(rec), JournalRecord) == rec
True
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, TypeVar

import msgspec

from replaycore.errors import InvalidArgument, InvalidArgumentType

__all__ = [
    "Checkpoint",
    "Custom",
    "EffectIntent",
    "EffectResult",
    "JournalRecord",
    "OutputDedupe",
    "OutputEvent",
    "OutputIntent",
    "OutputReconciliation",
    "OutputResult",
    "Payload",
    "PendingSideEffect",
    "Recovery",
    "RunLifecycle",
    "TerminalResult",
    "decode_canonical",
    "differing_fields",
    "encode_canonical",
]

T = TypeVar("T")

SCHEMA_VERSION = 1

#: Integer fields are 64-bit signed on the wire; decoding refuses larger values.
Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


class _Payload(msgspec.Struct, kw_only=True, frozen=True, gc=False, tag_field="kind"):
    """Base of the payload kinds; the tag (``kind``) names the record kind."""

    KINDS: ClassVar[tuple[str, ...]] = ()

    @property
    def kind(self) -> str:
        """The record kind, e.g. ``"checkpoint"``."""
        tag = self.__struct_config__.tag
        assert isinstance(tag, str)
        return tag


class Checkpoint(_Payload, tag="checkpoint", kw_only=True, frozen=True):
    """A snapshot of loop state covering the journal up to ``covers_journal_seq``."""

    checkpoint_seq: Int64
    covers_journal_seq: Int64
    loop_state: str
    created_at_ms: Int64
    content_ref_manifest: list[str] = []


class PendingSideEffect(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """A side effect a recovery pass found started but not finished."""

    effect_id: str
    intent_record_id: str
    idempotency_key: str | None = None
    dedupe_key: str | None = None
    reason: str


class Recovery(_Payload, tag="recovery", kw_only=True, frozen=True):
    """What a recovery pass found unsafe to retry blindly."""

    unsafe_pending: list[PendingSideEffect] = []


class EffectIntent(_Payload, tag="effect_intent", kw_only=True, frozen=True):
    """A side effect is about to happen (written before it happens)."""

    effect_id: str
    effect_kind: str
    idempotency_key: str | None = None
    dedupe_key: str | None = None


class EffectResult(_Payload, tag="effect_result", kw_only=True, frozen=True):
    """A side effect finished."""

    effect_id: str
    status: str
    output_ref: str | None = None


class OutputIntent(_Payload, tag="output_intent", kw_only=True, frozen=True):
    """An output delivery to an external sink is about to be sent."""

    delivery_id: str
    sink_ref: str
    dedupe_key: str
    idempotency_key: str | None = None


class OutputResult(_Payload, tag="output_result", kw_only=True, frozen=True):
    """An output delivery finished."""

    delivery_id: str
    status: str
    external_operation_id: str | None = None


class OutputDedupe(_Payload, tag="output_dedupe", kw_only=True, frozen=True):
    """Proof from the sink that a delivery with this dedupe key already happened."""

    dedupe_key: str
    prior_external_operation_id: str | None = None
    prior_terminal_status: str


class OutputReconciliation(_Payload, tag="output_reconciliation", kw_only=True, frozen=True):
    """A decision about an output delivery whose outcome was unknown."""

    delivery_id: str
    intent_record_id: str
    dedupe_key: str
    idempotency_key: str | None = None
    external_operation_id: str | None = None
    terminal_status: str
    reason: str
    decision: str
    resend_allowed: bool


class OutputEvent(_Payload, tag="output_event", kw_only=True, frozen=True):
    """An informational event about an output delivery."""

    delivery_id: str
    event: str


class RunLifecycle(_Payload, tag="run_lifecycle", kw_only=True, frozen=True):
    """The run changed status (``running``, ``completed``, ``failed`` ...)."""

    status: str


class TerminalResult(_Payload, tag="terminal_result", kw_only=True, frozen=True):
    """An effect reached a terminal status that also ends the run."""

    effect_id: str
    terminal_status: str


class Custom(_Payload, tag="custom", kw_only=True, frozen=True):
    """Harness-defined data; the reducer applies only the common checks to it."""

    name: str
    data: Any = None


Payload = (
    Checkpoint
    | Recovery
    | EffectIntent
    | EffectResult
    | OutputIntent
    | OutputResult
    | OutputDedupe
    | OutputReconciliation
    | OutputEvent
    | RunLifecycle
    | TerminalResult
    | Custom
)

_Payload.KINDS = tuple(
    cls.__struct_config__.tag  # type: ignore[misc]
    for cls in (
        Checkpoint,
        Recovery,
        EffectIntent,
        EffectResult,
        OutputIntent,
        OutputResult,
        OutputDedupe,
        OutputReconciliation,
        OutputEvent,
        RunLifecycle,
        TerminalResult,
        Custom,
    )
)


class JournalRecord(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """One entry of a run's journal.

    ``journal_seq`` is the record's position (>= 1, strictly increasing);
    ``content_refs`` lists content-addressed blobs the record needs to replay.

    Records and payloads are not tracked by Python's cycle collector
    (msgspec ``gc=False``): a journal read or written in bulk holds
    hundreds of thousands of them, and the collector walking them again and
    again took more time than encoding them. They are values and cannot
    form a cycle on their own; a ``Custom.data`` container that holds a
    record which holds it would never be freed, so do not build one.
    """

    schema: Int64 = SCHEMA_VERSION
    record_id: str
    journal_seq: Int64
    run_id: str
    at_ms: Int64 = 0
    idempotency_key: str | None = None
    dedupe_key: str | None = None
    content_refs: list[str] = []
    payload: Payload

    @property
    def kind(self) -> str:
        """The record kind: the payload's tag, e.g. ``"effect_intent"``."""
        return self.payload.kind


_CANONICAL_ENCODER = msgspec.msgpack.Encoder(order="deterministic")
_DECODERS: dict[Any, msgspec.msgpack.Decoder[Any]] = {}


def encode_canonical(value: Any) -> bytes:
    """Return the canonical encoding of ``value`` (SPEC 6.3).

    msgspec msgpack with Struct fields in declaration order and dict keys
    sorted, so equal content always gives equal bytes.

    Raises:
        InvalidArgumentType: ``value`` holds an object msgspec cannot encode.
        InvalidArgument: ``value`` holds text with a lone surrogate or an
            integer outside the 64-bit range msgpack can carry.
    """
    return _encode(_CANONICAL_ENCODER, value, "canonically")


#: The JSON of a journal line (SPEC 6.2): dict keys sorted, as in the canonical form.
_JSON_ENCODER = msgspec.json.Encoder(order="deterministic")


def encode_json(value: Any) -> bytes:
    """Return the JSON a ``.jsonl`` journal holds for ``value`` (one line,
    without its newline): msgspec JSON with dict keys sorted.

    Raises:
        InvalidArgumentType: ``value`` holds an object JSON cannot carry (a
            msgpack extension other than a timestamp read from a ``.rcj``
            file, for one).
        InvalidArgument: ``value`` holds text with a lone surrogate, or a
            dict key JSON cannot carry.
    """
    return _encode(_JSON_ENCODER, value, "as JSON")


def _encode(encoder: msgspec.msgpack.Encoder | msgspec.json.Encoder, value: Any, how: str) -> bytes:
    """``encoder.encode(value)``, msgspec's errors raised as replaycore's."""
    try:
        return encoder.encode(value)
    except TypeError as exc:
        raise InvalidArgumentType(f"value cannot be encoded {how}: {exc}", "value", value) from None
    except (UnicodeEncodeError, OverflowError, ValueError) as exc:
        raise InvalidArgument(f"value cannot be encoded {how}: {exc}", "value", value) from None


def decode_canonical(data: bytes, type: type[T]) -> T:
    """Decode bytes made by :func:`encode_canonical` back into ``type``.

    A decoder per type is built once and kept, so repeated decoding is cheap.
    """
    decoder = _DECODERS.get(type)
    if decoder is None:
        decoder = _DECODERS[type] = msgspec.msgpack.Decoder(type)
    result: T = decoder.decode(data)
    return result


def differing_fields(a: Any, b: Any) -> list[str]:
    """Dotted paths of the fields where two Structs differ, sorted.

    Nested Structs and dicts are compared field by field (``"payload.status"``);
    lists of equal length element by element (``"content_refs.1"``); a list
    whose length changed is reported as a whole. A differing payload kind is
    reported as ``"payload.kind"``. Returns ``[]`` unless both values are
    Structs.

    >>> differing_fields(EffectResult(effect_id="e", status="ok"),
    ...                  EffectResult(effect_id="e", status="failed"))
    ['status']
    """
    if not (isinstance(a, msgspec.Struct) and isinstance(b, msgspec.Struct)):
        return []
    left = msgspec.to_builtins(a, order="deterministic")
    right = msgspec.to_builtins(b, order="deterministic")
    found: list[str] = []
    _diff(left, right, "", found)
    return sorted(found)


def _diff(left: Any, right: Any, path: str, found: list[str]) -> None:
    if isinstance(left, dict) and isinstance(right, dict):
        for key in left.keys() | right.keys():
            sub = f"{path}.{key}" if path else str(key)
            if key not in left or key not in right:
                found.append(sub)
            else:
                _diff(left[key], right[key], sub, found)
    elif isinstance(left, list) and isinstance(right, list) and len(left) == len(right):
        for index, (x, y) in enumerate(zip(left, right, strict=True)):
            _diff(x, y, f"{path}.{index}" if path else str(index), found)
    elif type(left) is not type(right) or left != right:
        found.append(path)
