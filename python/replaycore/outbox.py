"""The transactional outbox (SPEC section 10): messages to deliver at least once.

A producer enqueues an :class:`OutboxDraft` after a state change
(:meth:`~OutboxStore.enqueue`); workers :meth:`~OutboxStore.claim` due
messages of one lane and target under a time-limited lease, deliver them, and
:meth:`~OutboxStore.ack` (done) or :meth:`~OutboxStore.nack` (retry later, or
give up) each one. A worker that
dies holding a claim loses nothing: once its lease expires the next claim takes
the message again, until ``max_attempts`` claims have been used, after which the
message is parked as ``dead_letter`` for an operator.

Stores:

* :class:`MemoryOutbox` -- one process, for tests and embedded use.
* :class:`SqliteOutbox` -- a SQLite file shared by any number of threads and
  processes on one machine; every change is one ``BEGIN IMMEDIATE``
  transaction, so two workers never claim the same message
  (:mod:`replaycore.sqlite.outbox`).
* :class:`PostgresOutbox` -- one PostgreSQL database shared by workers on
  many machines; claims use ``FOR UPDATE SKIP LOCKED``
  (:mod:`replaycore.postgres.outbox`, needs ``replaycore[postgres]``).
* :class:`ScopedOutbox` -- a view of another store that confines a tenant (a
  run, a client) to its own lanes and dedupe keys.

The durable stores are importable from here and loaded on first access, so
an in-memory user imports neither ``sqlite3`` nor psycopg.

Every operation takes the current time ``now`` in milliseconds as an argument,
so tests drive the clock and workers on one outbox should share a clock (for
example ``time.time_ns() // 1_000_000``). :class:`PostgresOutbox` also takes
``now=None`` (its default): the database's clock, which every worker shares
whatever its own clock says.

Decisions where the SPEC is silent:

* ``outbox_id`` and ``claim_token`` are 32 lowercase hex digits: opaque,
  unguessable, never reused. An id is the clock in ms and 80 random bits
  (:func:`_new_id`); a token holds at least 64 random bits and differs for
  every message and every claim (``PostgresOutbox`` makes one random value
  per claim and appends each message's enqueue number). Order comes from
  ``created_at`` and the enqueue order, not from the id.
* Payloads are stored as msgspec msgpack and returned as freshly decoded
  builtins (``dict``, ``list``, ``str``, ``int``, ``float``, ``bool``,
  ``None``, ``bytes``, ``datetime``): a Struct comes back as a ``dict``, a tuple
  or set as a ``list``. Both stores do this, so they return equal messages.
* A dedupe key names the message: a draft whose key is present returns the
  stored message unchanged even when the draft's lane, target or payload
  differ (there is no content comparison, unlike SPEC 4).
* Times (``now``, ``available_at``, ``retry_at``) are integers from 0 to
  2**63 - 1; ``lease_ms`` and ``max_attempts`` are at least 1 (a zero or
  negative count is refused); ``limit`` is at least 0 (``claim`` with limit 0
  still dead-letters exhausted messages). ``now + lease_ms`` must fit in 63
  bits.
* A claim first dead-letters *every* message of its lane and target whose
  lease has expired with ``attempt_count >= max_attempts`` (these never count
  against ``limit``), then claims up to ``limit`` of the rest.
* ``ack`` succeeds while the token still holds the claim, even after the lease
  expired, as long as no other worker took the message meanwhile: the
  delivery happened, so recording it beats delivering it again. A ``None``
  token is accepted and never holds a claim, so
  ``ack(m.outbox_id, m.claim_token, now)`` type-checks for any message.
* When a message leaves the ``claimed`` state its ``claim_token`` and
  ``lease_expires_at`` are cleared. A ``delivered`` message keeps
  ``claimed_by`` (who delivered it); a requeued or dead-lettered one clears it.
* Every bad argument raises :class:`OutboxValidationError` (a ``ValueError``)
  whose ``field`` names the field or argument, wrong types included, before
  anything is stored. Database failures raise :class:`StoreUnavailable`.
* ``ack_many(claims, now)`` acks each ``(outbox_id, claim_token)`` as ``ack``
  would, in order, in one transaction: a pair listed twice is True the first
  time only. It checks every pair before changing anything.
* Beyond the SPEC: ``enqueue_many`` (several drafts, one transaction, all or
  nothing), ``get(outbox_id)``, and ``lane_prefix=`` on ``list`` and
  ``ack_many``, which :class:`ScopedOutbox` is built on.

>>> box = MemoryOutbox()
>>> msg = box.enqueue(OutboxDraft("email", "smtp", {"to": "a@example.com"}), now=1_000)
>>> [m.outbox_id == msg.outbox_id for m in box.claim("email", "smtp", 10, 30_000, "w1", 1_000)]
[True]
"""

from __future__ import annotations

import builtins
import heapq
import secrets
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast, get_args, runtime_checkable

import msgspec

from replaycore._lazy import lazy_names
from replaycore.errors import OutboxValidationError, StoreUnavailable

if TYPE_CHECKING:
    from replaycore.postgres.outbox import PostgresOutbox
    from replaycore.sqlite.outbox import SqliteOutbox

__all__ = [
    "MemoryOutbox",
    "NackOutcome",
    "OutboxDraft",
    "OutboxMessage",
    "OutboxStatus",
    "OutboxStore",
    "OutboxValidationError",
    "PostgresOutbox",
    "ScopedOutbox",
    "SqliteOutbox",
    "StoreUnavailable",
]

OutboxStatus = Literal["pending", "claimed", "delivered", "dead_letter"]
NackOutcome = Literal["requeued", "dead_lettered", "lost_claim"]

STATUSES: tuple[str, ...] = get_args(OutboxStatus)

#: The error recorded on a message dead-lettered because its last lease ran out.
LEASE_EXPIRED = "lease expired"

_INT64_MAX = 2**63 - 1

_DURABLE = {
    "SqliteOutbox": "replaycore.sqlite.outbox",
    "PostgresOutbox": "replaycore.postgres.outbox",
}


__getattr__ = lazy_names(__name__, _DURABLE)


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder()


# -- validation ----------------------------------------------------------------


def _text(value: Any, field: str, owner: str) -> str:
    """``value`` as a non-blank, UTF-8 encodable ``str``, else OutboxValidationError."""
    if not isinstance(value, str):
        raise OutboxValidationError(
            f"{owner}{field} must be a str, not {type(value).__name__}", field
        )
    if not value.strip():
        raise OutboxValidationError(f"{owner}{field} must not be blank, got {value!r}", field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise OutboxValidationError(
            f"{owner}{field} holds a lone surrogate at index {exc.start}: {value!r}", field
        ) from None
    return str(value)


def _any_text(value: Any, field: str) -> str:
    """``value`` as a UTF-8 encodable ``str`` (blank allowed)."""
    if not isinstance(value, str):
        raise OutboxValidationError(f"{field} must be a str, not {type(value).__name__}", field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise OutboxValidationError(
            f"{field} holds a lone surrogate at index {exc.start}: {value!r}", field
        ) from None
    return str(value)


def _token(value: Any) -> str | None:
    """A claim token argument: None (which never holds a claim) or a ``str``."""
    return None if value is None else _any_text(value, "claim_token")


def _integer(value: Any, field: str, minimum: int, owner: str = "") -> int:
    """``value`` as an ``int`` (not ``bool``) in ``minimum .. 2**63 - 1``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise OutboxValidationError(
            f"{owner}{field} must be an int, not {type(value).__name__}", field
        )
    number = int(value)
    if not minimum <= number <= _INT64_MAX:
        raise OutboxValidationError(
            f"{owner}{field} must be between {minimum} and 2**63 - 1, got {number}", field
        )
    return number


def _encode_payload(payload: Any) -> bytes:
    try:
        return _ENCODER.encode(payload)
    except (TypeError, ValueError, OverflowError) as exc:
        # UnicodeEncodeError (a lone surrogate) is a ValueError.
        raise OutboxValidationError(
            f"payload cannot be encoded as msgpack: {exc}", "payload"
        ) from None


# -- values --------------------------------------------------------------------


class OutboxDraft(msgspec.Struct, frozen=True):
    """A message to enqueue: ``OutboxDraft(lane, target, payload, dedupe_key=None,
    available_at=0, max_attempts=5)``.

    * ``lane`` groups messages one kind of worker drains (``"email"``);
      ``target`` names the receiving system (``"smtp"``). Both non-blank.
    * ``payload`` is any value msgspec can encode as msgpack.
    * ``dedupe_key``: None, or a non-blank key; enqueueing a key already
      present (in any status) returns the stored message instead.
    * ``available_at``: no claim takes the message before this time (ms).
    * ``max_attempts``: claims allowed before the message is dead-lettered
      (at least 1).

    Raises:
        OutboxValidationError: a field is blank, of the wrong type or out of
            range, or the payload cannot be encoded; ``field`` names it.

    >>> OutboxDraft("email", "smtp", {"to": "a@example.com"}, dedupe_key="welcome:42").lane
    'email'
    """

    lane: str
    target: str
    payload: Any
    dedupe_key: str | None = None
    available_at: int = 0
    max_attempts: int = 5

    def __post_init__(self) -> None:
        _text(self.lane, "lane", "OutboxDraft.")
        _text(self.target, "target", "OutboxDraft.")
        _encode_payload(self.payload)
        if self.dedupe_key is not None:
            _text(self.dedupe_key, "dedupe_key", "OutboxDraft.")
        _integer(self.available_at, "available_at", 0, "OutboxDraft.")
        _integer(self.max_attempts, "max_attempts", 1, "OutboxDraft.")


class OutboxMessage(msgspec.Struct, kw_only=True, frozen=True):
    """A stored outbox message, as a store returns it (a snapshot, not a live view).

    ``status`` is ``pending`` (waiting for ``available_at``), ``claimed``
    (``claimed_by`` holds it with ``claim_token`` until ``lease_expires_at``),
    ``delivered`` or ``dead_letter`` (``last_error`` says why). ``payload`` is
    the decoded msgpack of the draft's payload (builtins). Times are ms.
    """

    outbox_id: str
    lane: str
    target: str
    payload: Any
    dedupe_key: str | None
    status: OutboxStatus
    available_at: int
    attempt_count: int
    max_attempts: int
    claimed_by: str | None
    claim_token: str | None
    lease_expires_at: int | None
    last_error: str | None
    created_at: int
    updated_at: int


def _new_id() -> str:
    """A new message id or claim token: 32 lowercase hex digits, the first 12
    the clock in ms and the other 20 random (80 bits, as UUIDv7 lays them out).

    Ids made close in time sort close together, so a durable store's index
    of ids takes a batch of messages enqueued together in a few pages instead
    of one page per message: every claim and ack adds an index entry per
    message, and scattered ones cost the PostgreSQL outbox about as much as
    the rest of the statement. Ids stay unguessable, since a claim's token
    is its proof.
    """
    return f"{time.time_ns() // 1_000_000 & 0xFFFF_FFFF_FFFF:012x}{secrets.token_hex(10)}"


def _check_draft(draft: Any, field: str = "draft") -> OutboxDraft:
    if not isinstance(draft, OutboxDraft):
        raise OutboxValidationError(
            f"{field} must be an OutboxDraft, not {type(draft).__name__}", field
        )
    return draft


def _check_drafts(drafts: Any) -> builtins.list[OutboxDraft]:
    if isinstance(drafts, (str, bytes)) or not isinstance(drafts, Iterable):
        raise OutboxValidationError(
            f"drafts must be an iterable of OutboxDraft, not {type(drafts).__name__}", "drafts"
        )
    return [_check_draft(d, f"drafts[{i}]") for i, d in enumerate(drafts)]


#: With a database's clock, ``now + lease_ms`` must still fit in 63 bits; epoch
#: milliseconds are about 2**41 today, which leaves ample room.
MAX_LEASE_WITH_DATABASE_CLOCK = 2**62


def _check_now(now: Any, database_clock: bool) -> int | None:
    """``now`` in ms, or None (the database's clock) where the store has one."""
    if now is None and database_clock:
        return None
    return _integer(now, "now", 0)


def _check_claim(
    lane: Any,
    target: Any,
    limit: Any,
    lease_ms: Any,
    consumer_id: Any,
    now: Any,
    *,
    database_clock: bool = False,
) -> tuple[str, str, int, int, str, Any]:
    lane = _text(lane, "lane", "")
    target = _text(target, "target", "")
    limit = _integer(limit, "limit", 0)
    lease_ms = _integer(lease_ms, "lease_ms", 1)
    consumer_id = _text(consumer_id, "consumer_id", "")
    at = _check_now(now, database_clock)
    if at is None and lease_ms > MAX_LEASE_WITH_DATABASE_CLOCK:
        raise OutboxValidationError(
            f"lease_ms must be below 2**62 with the database's clock, got {lease_ms}", "lease_ms"
        )
    if at is not None and at + lease_ms > _INT64_MAX:
        raise OutboxValidationError(
            f"now + lease_ms must not exceed 2**63 - 1, got {at} + {lease_ms}", "lease_ms"
        )
    return lane, target, limit, lease_ms, consumer_id, at


def _check_list(status: Any, limit: Any, lane_prefix: Any) -> tuple[str | None, int, str]:
    if status is not None and (not isinstance(status, str) or status not in STATUSES):
        raise OutboxValidationError(
            f"status must be None or one of {', '.join(STATUSES)}, got {status!r}", "status"
        )
    limit = _integer(limit, "limit", 0)
    prefix = "" if lane_prefix is None else _any_text(lane_prefix, "lane_prefix")
    return status, limit, prefix


def _check_claims(claims: Any) -> builtins.list[tuple[str, str | None]]:
    """``ack_many``'s claims as ``(outbox_id, claim_token)`` pairs, all checked first."""
    if isinstance(claims, (str, bytes)) or not isinstance(claims, Iterable):
        raise OutboxValidationError(
            f"claims must be an iterable of (outbox_id, claim_token), not {type(claims).__name__}",
            "claims",
        )
    checked: builtins.list[tuple[str, str | None]] = []
    for i, pair in enumerate(claims):
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise OutboxValidationError(
                f"claims[{i}] must be a tuple (outbox_id, claim_token), got {pair!r}", "claims"
            )
        checked.append((_any_text(pair[0], "outbox_id"), _token(pair[1])))
    return checked


def first_acks(
    claims: builtins.list[tuple[str, str | None]], acked: set[tuple[str, str]]
) -> builtins.list[bool]:
    """``ack_many``'s answer once ``acked`` holds the ``(outbox_id, claim_token)``
    pairs a store delivered: each of them is True where it first appears in
    ``claims`` (acking it again would find it delivered); every other pair is False."""
    remaining = set(acked)
    results: builtins.list[bool] = []
    for outbox_id, token in claims:
        hit = token is not None and (outbox_id, token) in remaining
        if hit:
            remaining.discard((outbox_id, token))
        results.append(hit)
    return results


# -- the protocol ----------------------------------------------------------------


@runtime_checkable
class OutboxStore(Protocol):
    """The operations every outbox store offers; the rules of SPEC section 10.

    Every store implements them identically (one behaviour suite checks
    :class:`MemoryOutbox`, :class:`SqliteOutbox` and :class:`PostgresOutbox`
    alike); the module docstring lists the decisions taken where the SPEC is
    silent.
    """

    def enqueue(self, draft: OutboxDraft, now: int) -> OutboxMessage:
        """Store ``draft`` as a pending message (attempt_count 0, created_at = now).

        When ``draft.dedupe_key`` is already present, in any status, the stored
        message is returned unchanged and nothing is added (the check and the
        insert are one transaction, so concurrent producers of one key store
        it once). Durable stores have made it durable when this returns.

        Raises:
            OutboxValidationError: not a draft, a payload that cannot be
                encoded, or a bad ``now``; nothing is stored.
            StoreUnavailable: the database failed; nothing is stored.

        >>> box = MemoryOutbox()
        >>> a = box.enqueue(OutboxDraft("l", "t", 1, dedupe_key="k"), now=1)
        >>> box.enqueue(OutboxDraft("l", "t", 2, dedupe_key="k"), now=2) == a
        True
        """
        ...

    def enqueue_many(self, drafts: Iterable[OutboxDraft], now: int) -> list[OutboxMessage]:
        """Enqueue every draft in order, atomically (all or nothing); results in order.

        Dedupe applies within the batch too: a later draft whose key an
        earlier one holds returns the earlier draft's message.
        """
        ...

    def claim(
        self, lane: str, target: str, limit: int, lease_ms: int, consumer_id: str, now: int
    ) -> list[OutboxMessage]:
        """Claim up to ``limit`` due messages of ``lane`` and ``target``, oldest first.

        Due: pending with ``available_at <= now``, or claimed with
        ``lease_expires_at <= now`` (its worker is presumed dead). Each claimed
        message gets ``claimed_by = consumer_id``, a fresh ``claim_token``,
        ``lease_expires_at = now + lease_ms`` and ``attempt_count + 1``. Before
        that, every message of this lane and target whose lease expired with
        ``attempt_count >= max_attempts`` becomes ``dead_letter`` with
        ``last_error = "lease expired"`` and cleared claim fields, whatever
        ``limit`` is. Order: ``created_at``, then enqueue order. Atomic across
        threads and processes: two claimers never get the same message.

        Raises:
            OutboxValidationError: a blank lane, target or consumer id, a
                negative limit, ``lease_ms < 1`` or a bad ``now``.
            StoreUnavailable: the database failed; nothing changed.

        >>> box = MemoryOutbox()
        >>> _ = box.enqueue(OutboxDraft("l", "t", "x"), now=0)
        >>> [m.lease_expires_at for m in box.claim("l", "t", 10, 500, "w1", now=100)]
        [600]
        """
        ...

    def ack(self, outbox_id: str, claim_token: str | None, now: int) -> bool:
        """Mark the message delivered if ``claim_token`` still holds its claim.

        Returns True (status ``delivered``, token and lease cleared,
        ``claimed_by`` kept) when the message is claimed with this token --
        even past its lease, as long as nobody claimed it again -- and False
        otherwise (unknown id, another claim, already delivered or
        dead-lettered, a None token), changing nothing. ``claim_token`` may be
        None so that ``ack(m.outbox_id, m.claim_token, now)`` type-checks for
        any message.

        Raises:
            OutboxValidationError: an argument of the wrong type or a bad ``now``.
            StoreUnavailable: the database failed.
        """
        ...

    def ack_many(
        self,
        claims: Iterable[tuple[str, str | None]],
        now: int,
        *,
        lane_prefix: str | None = None,
    ) -> list[bool]:
        """Ack every ``(outbox_id, claim_token)`` pair as :meth:`ack` would, in
        order, in one transaction; one bool per pair.

        A pair listed twice is True the first time only (the second finds the
        message delivered). ``lane_prefix`` acks only messages whose lane
        starts with it (others are False), which :class:`ScopedOutbox` uses.
        Every pair is checked before anything changes.

        Raises:
            OutboxValidationError: ``claims`` is not an iterable of 2-tuples
                of str and str-or-None (field ``"claims"``, ``"outbox_id"`` or
                ``"claim_token"``), or a bad ``now``.
            StoreUnavailable: the database failed; nothing was acked.
        """
        ...

    def nack(
        self, outbox_id: str, claim_token: str | None, error: str, retry_at: int, now: int
    ) -> NackOutcome:
        """Give a claimed message back after a failed delivery.

        * ``"lost_claim"``: ``claim_token`` no longer holds the claim (or is
          None); nothing changes.
        * ``"dead_lettered"``: ``attempt_count >= max_attempts``; status
          ``dead_letter``, ``last_error = error``, claim fields cleared.
        * ``"requeued"``: otherwise; status ``pending``, ``available_at =
          retry_at``, ``last_error = error``, claim fields cleared.

        Raises:
            OutboxValidationError: an argument of the wrong type, or a bad
                ``retry_at`` or ``now``.
            StoreUnavailable: the database failed.
        """
        ...

    def get(self, outbox_id: str) -> OutboxMessage | None:
        """The message with this id, or None."""
        ...

    def list(
        self, status: str | None = None, limit: int = 100, *, lane_prefix: str | None = None
    ) -> list[OutboxMessage]:
        """Up to ``limit`` messages, oldest first (``created_at``, then enqueue order).

        ``status`` keeps one status; ``lane_prefix`` keeps lanes starting with
        it. Durable stores read one consistent snapshot.

        Raises:
            OutboxValidationError: an unknown status (field ``"status"``) or a
                negative limit.
        """
        ...


# -- in memory -------------------------------------------------------------------


class _Entry:
    """A message as :class:`MemoryOutbox` keeps it (mutable, payload encoded)."""

    __slots__ = (
        "attempt_count",
        "available_at",
        "claim_token",
        "claimed_by",
        "created_at",
        "dedupe_key",
        "lane",
        "last_error",
        "lease_expires_at",
        "max_attempts",
        "outbox_id",
        "payload",
        "seq",
        "status",
        "target",
        "updated_at",
    )

    def __init__(self, seq: int, draft: OutboxDraft, payload: bytes, now: int) -> None:
        self.seq = seq
        self.outbox_id = _new_id()
        self.lane = draft.lane
        self.target = draft.target
        self.payload = payload
        self.dedupe_key = draft.dedupe_key
        self.status: OutboxStatus = "pending"
        self.available_at = draft.available_at
        self.attempt_count = 0
        self.max_attempts = draft.max_attempts
        self.claimed_by: str | None = None
        self.claim_token: str | None = None
        self.lease_expires_at: int | None = None
        self.last_error: str | None = None
        self.created_at = now
        self.updated_at = now

    def order(self) -> tuple[int, int]:
        return (self.created_at, self.seq)

    def message(self) -> OutboxMessage:
        return OutboxMessage(
            outbox_id=self.outbox_id,
            lane=self.lane,
            target=self.target,
            payload=_DECODER.decode(self.payload),
            dedupe_key=self.dedupe_key,
            status=self.status,
            available_at=self.available_at,
            attempt_count=self.attempt_count,
            max_attempts=self.max_attempts,
            claimed_by=self.claimed_by,
            claim_token=self.claim_token,
            lease_expires_at=self.lease_expires_at,
            last_error=self.last_error,
            created_at=self.created_at,
            updated_at=self.updated_at,
        )


class MemoryOutbox:
    """An outbox in this process's memory; thread-safe (one lock), not durable.

    Behaves exactly like :class:`SqliteOutbox` (same ordering, same
    decisions, same errors), so it stands in for it in tests.

    >>> box = MemoryOutbox()
    >>> box.enqueue(OutboxDraft("l", "t", [1, 2]), now=5).status
    'pending'
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seq = 0
        self._by_id: dict[str, _Entry] = {}
        self._by_dedupe: dict[str, _Entry] = {}
        # Pending and claimed messages per (lane, target), so claims scan only those.
        self._open: dict[tuple[str, str], dict[int, _Entry]] = {}

    def _add(self, draft: OutboxDraft, payload: bytes, now: int) -> _Entry:
        if draft.dedupe_key is not None:
            existing = self._by_dedupe.get(draft.dedupe_key)
            if existing is not None:
                return existing
        self._seq += 1
        entry = _Entry(self._seq, draft, payload, now)
        self._by_id[entry.outbox_id] = entry
        if draft.dedupe_key is not None:
            self._by_dedupe[draft.dedupe_key] = entry
        self._open.setdefault((entry.lane, entry.target), {})[entry.seq] = entry
        return entry

    def enqueue(self, draft: OutboxDraft, now: int) -> OutboxMessage:
        """Store ``draft`` as a pending message (attempt_count 0, created_at = now).

        When ``draft.dedupe_key`` is already present, in any status, the stored
        message is returned unchanged and nothing is added.

        Raises:
            OutboxValidationError: not a draft, a payload that cannot be
                encoded, or a bad ``now``.
        """
        draft = _check_draft(draft)
        payload = _encode_payload(draft.payload)
        now = _integer(now, "now", 0)
        with self._lock:
            return self._add(draft, payload, now).message()

    def enqueue_many(self, drafts: Iterable[OutboxDraft], now: int) -> list[OutboxMessage]:
        """Enqueue every draft in order, atomically; a later draft whose dedupe
        key an earlier one (or a stored message) holds returns that message."""
        checked = _check_drafts(drafts)
        payloads = [_encode_payload(d.payload) for d in checked]
        now = _integer(now, "now", 0)
        with self._lock:
            entries = [self._add(d, p, now) for d, p in zip(checked, payloads, strict=True)]
            return [e.message() for e in entries]

    def claim(
        self, lane: str, target: str, limit: int, lease_ms: int, consumer_id: str, now: int
    ) -> list[OutboxMessage]:
        """Claim up to ``limit`` due messages of ``lane`` and ``target``, oldest first.

        See :meth:`OutboxStore.claim` for the rules; thread-safe.
        """
        lane, target, limit, lease_ms, consumer_id, now = _check_claim(
            lane, target, limit, lease_ms, consumer_id, now
        )
        with self._lock:
            open_entries = self._open.get((lane, target))
            if not open_entries:
                return []
            due: builtins.list[_Entry] = []
            for entry in builtins.list(open_entries.values()):
                if entry.status == "claimed":
                    assert entry.lease_expires_at is not None
                    if entry.lease_expires_at > now:
                        continue
                    if entry.attempt_count >= entry.max_attempts:
                        entry.status = "dead_letter"
                        entry.last_error = LEASE_EXPIRED
                        entry.claimed_by = entry.claim_token = entry.lease_expires_at = None
                        entry.updated_at = now
                        del open_entries[entry.seq]
                        continue
                    due.append(entry)
                elif entry.available_at <= now:
                    due.append(entry)
            taken = heapq.nsmallest(limit, due, key=_Entry.order)
            for entry in taken:
                entry.status = "claimed"
                entry.claimed_by = consumer_id
                entry.claim_token = _new_id()
                entry.lease_expires_at = now + lease_ms
                entry.attempt_count += 1
                entry.updated_at = now
            return [e.message() for e in taken]

    def _holder(self, outbox_id: str, claim_token: str | None) -> _Entry | None:
        entry = self._by_id.get(outbox_id)
        if entry is None or entry.status != "claimed" or entry.claim_token != claim_token:
            return None
        return entry

    def _close(self, entry: _Entry) -> None:
        del self._open[(entry.lane, entry.target)][entry.seq]

    def ack(self, outbox_id: str, claim_token: str | None, now: int) -> bool:
        """Mark the message delivered if ``claim_token`` still holds its claim.

        See :meth:`OutboxStore.ack`.
        """
        outbox_id = _any_text(outbox_id, "outbox_id")
        claim_token = _token(claim_token)
        now = _integer(now, "now", 0)
        with self._lock:
            entry = self._holder(outbox_id, claim_token)
            if entry is None:
                return False
            self._deliver(entry, now)
            return True

    def _deliver(self, entry: _Entry, now: int) -> None:
        entry.status = "delivered"
        entry.claim_token = entry.lease_expires_at = None
        entry.updated_at = now
        self._close(entry)

    def ack_many(
        self,
        claims: Iterable[tuple[str, str | None]],
        now: int,
        *,
        lane_prefix: str | None = None,
    ) -> builtins.list[bool]:
        """Ack each ``(outbox_id, claim_token)`` in order, atomically.

        See :meth:`OutboxStore.ack_many`.
        """
        checked = _check_claims(claims)
        now = _integer(now, "now", 0)
        prefix = "" if lane_prefix is None else _any_text(lane_prefix, "lane_prefix")
        results: builtins.list[bool] = []
        with self._lock:
            for outbox_id, claim_token in checked:
                entry = self._holder(outbox_id, claim_token)
                if entry is None or not entry.lane.startswith(prefix):
                    results.append(False)
                    continue
                self._deliver(entry, now)
                results.append(True)
        return results

    def nack(
        self, outbox_id: str, claim_token: str | None, error: str, retry_at: int, now: int
    ) -> NackOutcome:
        """Requeue at ``retry_at`` or dead-letter a claimed message.

        See :meth:`OutboxStore.nack`.
        """
        outbox_id, claim_token, error, retry_at, now = _check_nack(
            outbox_id, claim_token, error, retry_at, now
        )
        with self._lock:
            entry = self._holder(outbox_id, claim_token)
            if entry is None:
                return "lost_claim"
            entry.last_error = error
            entry.claimed_by = entry.claim_token = entry.lease_expires_at = None
            entry.updated_at = now
            if entry.attempt_count >= entry.max_attempts:
                entry.status = "dead_letter"
                self._close(entry)
                return "dead_lettered"
            entry.status = "pending"
            entry.available_at = retry_at
            return "requeued"

    def get(self, outbox_id: str) -> OutboxMessage | None:
        """The message with this id, or None."""
        outbox_id = _any_text(outbox_id, "outbox_id")
        with self._lock:
            entry = self._by_id.get(outbox_id)
            return None if entry is None else entry.message()

    def list(
        self, status: str | None = None, limit: int = 100, *, lane_prefix: str | None = None
    ) -> builtins.list[OutboxMessage]:
        """Up to ``limit`` messages, oldest first (``created_at``, then enqueue order).

        ``status`` keeps one status; ``lane_prefix`` keeps lanes starting with it.

        Raises:
            OutboxValidationError: an unknown status (field ``"status"``) or a
                negative limit.
        """
        status, limit, prefix = _check_list(status, limit, lane_prefix)
        with self._lock:
            chosen = (
                e
                for e in self._by_id.values()
                if (status is None or e.status == status) and e.lane.startswith(prefix)
            )
            return [e.message() for e in heapq.nsmallest(limit, chosen, key=_Entry.order)]


def _check_nack(
    outbox_id: Any,
    claim_token: Any,
    error: Any,
    retry_at: Any,
    now: Any,
    *,
    database_clock: bool = False,
) -> tuple[str, str | None, str, int, Any]:
    return (
        _any_text(outbox_id, "outbox_id"),
        _token(claim_token),
        _any_text(error, "error"),
        _integer(retry_at, "retry_at", 0),
        _check_now(now, database_clock),
    )


def _through(now: int | None) -> int:
    """``now`` handed on unchecked: the inner store checks it, and None is the
    database's clock of a store that has one (PostgresOutbox)."""
    return cast(int, now)


# -- scopes ----------------------------------------------------------------------


class ScopedOutbox:
    """One scope's view of another outbox store.

    Lanes and dedupe keys are stored as ``scope_id + ":" + value`` and shown
    without the prefix, so two scopes may use the same lane names and dedupe
    keys without meeting. A scope never sees, claims, acks or nacks another
    scope's messages: ``get`` returns None, ``ack`` False and ``nack``
    ``"lost_claim"`` for them, and ``list`` leaves them out. Targets are not
    prefixed. Because a scope id holds no ``":"``, no scope's prefix is a
    prefix of another's. Thread- and process-safety are the inner store's.

    Raises:
        OutboxValidationError: ``scope_id`` is not a non-blank ``str`` free of
            ``":"`` (field ``"scope_id"``).

    >>> inner = MemoryOutbox()
    >>> a, b = ScopedOutbox(inner, "tenant-a"), ScopedOutbox(inner, "tenant-b")
    >>> a.enqueue(OutboxDraft("email", "smtp", "hi", dedupe_key="k"), now=1).lane
    'email'
    >>> b.claim("email", "smtp", 10, 1_000, "w", now=1), inner.list()[0].lane
    ([], 'tenant-a:email')
    """

    def __init__(self, inner: OutboxStore, scope_id: str) -> None:
        scope_id = _text(scope_id, "scope_id", "")
        if ":" in scope_id:
            raise OutboxValidationError(f"scope_id must not hold ':', got {scope_id!r}", "scope_id")
        self.inner = inner
        self.scope_id = scope_id
        self._prefix = scope_id + ":"

    def _in(self, draft: OutboxDraft) -> OutboxDraft:
        dedupe_key = None if draft.dedupe_key is None else self._prefix + draft.dedupe_key
        return msgspec.structs.replace(draft, lane=self._prefix + draft.lane, dedupe_key=dedupe_key)

    def _mine(self, message: OutboxMessage | None) -> bool:
        return message is not None and message.lane.startswith(self._prefix)

    def _out(self, message: OutboxMessage) -> OutboxMessage:
        n = len(self._prefix)
        dedupe_key = message.dedupe_key
        return msgspec.structs.replace(
            message,
            lane=message.lane[n:],
            dedupe_key=None if dedupe_key is None else dedupe_key[n:],
        )

    def enqueue(self, draft: OutboxDraft, now: int | None = None) -> OutboxMessage:
        """Enqueue ``draft`` in this scope (dedupe keys are per scope)."""
        return self._out(self.inner.enqueue(self._in(_check_draft(draft)), _through(now)))

    def enqueue_many(
        self, drafts: Iterable[OutboxDraft], now: int | None = None
    ) -> builtins.list[OutboxMessage]:
        """Enqueue several drafts in this scope, all or nothing."""
        scoped = [self._in(d) for d in _check_drafts(drafts)]
        return [self._out(m) for m in self.inner.enqueue_many(scoped, _through(now))]

    def claim(
        self,
        lane: str,
        target: str,
        limit: int,
        lease_ms: int,
        consumer_id: str,
        now: int | None = None,
    ) -> builtins.list[OutboxMessage]:
        """Claim due messages of this scope's ``lane`` (rules of the inner store)."""
        lane = _text(lane, "lane", "")
        return [
            self._out(m)
            for m in self.inner.claim(
                self._prefix + lane,
                target,
                limit,
                lease_ms,
                consumer_id,
                _through(now),
            )
        ]

    def ack(self, outbox_id: str, claim_token: str | None, now: int | None = None) -> bool:
        """Ack a message of this scope; False for any other scope's message."""
        outbox_id = _any_text(outbox_id, "outbox_id")
        claim_token = _token(claim_token)
        (acked,) = self.ack_many([(outbox_id, claim_token)], now)
        return acked

    def ack_many(
        self,
        claims: Iterable[tuple[str, str | None]],
        now: int | None = None,
        *,
        lane_prefix: str | None = None,
    ) -> builtins.list[bool]:
        """Ack this scope's claimed messages in one transaction of the inner
        store; False for any other scope's message."""
        if lane_prefix is not None:
            lane_prefix = _any_text(lane_prefix, "lane_prefix")
        prefix = self._prefix + (lane_prefix or "")
        # The inner store checks the lane in the transaction that acks.
        return self.inner.ack_many(claims, _through(now), lane_prefix=prefix)

    def nack(
        self,
        outbox_id: str,
        claim_token: str | None,
        error: str,
        retry_at: int,
        now: int | None = None,
    ) -> NackOutcome:
        """Nack a message of this scope; ``"lost_claim"`` for any other scope's message."""
        outbox_id, claim_token, error, retry_at, _ = _check_nack(
            outbox_id, claim_token, error, retry_at, now, database_clock=True
        )
        # A message's lane never changes, so checking the scope first is race-free.
        if not self._mine(self.inner.get(outbox_id)):
            return "lost_claim"
        return self.inner.nack(outbox_id, claim_token, error, retry_at, _through(now))

    def get(self, outbox_id: str) -> OutboxMessage | None:
        """The message with this id if it belongs to this scope, else None."""
        message = self.inner.get(outbox_id)
        if message is None or not self._mine(message):
            return None
        return self._out(message)

    def list(
        self, status: str | None = None, limit: int = 100, *, lane_prefix: str | None = None
    ) -> builtins.list[OutboxMessage]:
        """This scope's messages, oldest first (see :meth:`OutboxStore.list`)."""
        if lane_prefix is not None:
            lane_prefix = _any_text(lane_prefix, "lane_prefix")
        prefix = self._prefix + (lane_prefix or "")
        return [self._out(m) for m in self.inner.list(status, limit, lane_prefix=prefix)]
