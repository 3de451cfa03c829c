"""The result cache with expiry (SPEC section 5): execute a step at most once.

A :class:`ResultCache` (in memory), :class:`SqliteResultCache` (one SQLite
file shared by threads and processes) or :class:`PostgresResultCache` (one
database shared by many machines) remembers the :data:`Outcome` of a
keyed step -- ``Success(value)``, ``Error(code, message)``, ``Timeout()`` or
``Killed()`` -- for ``ttl_s`` seconds. :meth:`~ResultCache.execute` runs a
function only when no live outcome is cached and no other caller is running
the same key right now; :func:`idempotent` does the same as a decorator.

Decisions where the SPEC is silent:

* **Values.** Both backends keep the msgspec msgpack encoding of an outcome,
  never the Python object, so they behave the same: a value must be
  something msgspec can encode (None, bool, int in the signed/unsigned 64-bit
  range, float, str, bytes, list, tuple, dict, set, datetime, date, time,
  timedelta, UUID, Decimal, Enum, msgspec Structs, dataclasses, attrs
  classes, ...). A cached value is decoded as builtins (a Struct comes back as
  a ``dict``) unless a type is given: ``execute(..., value_type=Receipt)``
  decodes it as ``Receipt``, and :func:`idempotent` uses the decorated
  function's return annotation. A miss returns the very object ``fn``
  returned. A value that cannot be encoded raises
  :class:`~replaycore.errors.InvalidArgumentType` (argument ``"value"``) after
  ``fn`` ran; nothing is cached and the lease is released.
* **Expiry.** An entry is live while ``clock() < expires_at``; ``ttl_s`` is a
  positive number (``math.inf`` never expires).
* **Leases.** A caller claims a key for ``lease_s`` clock seconds before
  running ``fn``. A second caller gets :class:`~replaycore.errors.InProgress`
  or, with ``wait=True``, polls until the outcome appears (and returns it) or
  the lease lapses (then it claims the key and runs ``fn`` itself). Choose
  ``lease_s`` longer than ``fn`` ever takes: a lease that lapses while ``fn``
  still runs lets a second caller run it too. When a late caller finishes
  after someone else already stored an outcome, the stored outcome is kept
  (first completion wins) and the late caller gets its own outcome.
* **What is cached.** An ``Exception`` raised by ``fn`` is cached as
  ``Error(type name, str(exc))``, except :class:`~replaycore.errors.InProgress`
  (a nested step that is busy is transient). A ``BaseException`` that is not an
  ``Exception`` (``KeyboardInterrupt``, ``SystemExit``,
  ``asyncio.CancelledError``) caches nothing, releases the lease and
  propagates, so the step can be retried at once.
* **Accesses.** ``get`` and every hit of ``execute`` count as one access.

>>> cache = ResultCache()
>>> cache.execute("idem_0123456789abcdef", lambda: {"status": "sent"})
Success(value={'status': 'sent'})
>>> cache.execute("idem_0123456789abcdef", lambda: 1 / 0)  # a hit: fn is not called
Success(value={'status': 'sent'})
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import os
import threading
import time
import typing
import uuid
from collections.abc import Awaitable, Callable
from typing import (
    TYPE_CHECKING,
    Any,
    Generic,
    ParamSpec,
    Protocol,
    TypeVar,
    cast,
    runtime_checkable,
)

import msgspec

from replaycore._checks import text
from replaycore._lazy import lazy_names
from replaycore.errors import (
    InProgress,
    InvalidArgument,
    InvalidArgumentType,
    ReplayedError,
    StoreUnavailable,
)
from replaycore.records import encode_canonical

__all__ = [
    "CacheStats",
    "CachedResult",
    "Error",
    "InProgress",
    "InvalidArgument",
    "InvalidArgumentType",
    "Killed",
    "Outcome",
    "PostgresResultCache",
    "ReplayedError",
    "ResultCache",
    "ResultCacheProtocol",
    "SqliteResultCache",
    "StoreUnavailable",
    "Success",
    "Timeout",
    "idempotent",
]

if TYPE_CHECKING:
    from replaycore.postgres.cache import PostgresResultCache
    from replaycore.sqlite.cache import SqliteResultCache

_DURABLE = {
    "SqliteResultCache": "replaycore.sqlite.cache",
    "PostgresResultCache": "replaycore.postgres.cache",
}


__getattr__ = lazy_names(__name__, _DURABLE)


T = TypeVar("T")
P = ParamSpec("P")
R = TypeVar("R")

#: Default time to live of a cached outcome: one day.
DEFAULT_TTL_S = 86400.0
#: Default lease of an in-progress claim.
DEFAULT_LEASE_S = 60.0

# wait=True polls with a backoff between these bounds (real seconds).
_POLL_FIRST_S = 0.001
_POLL_MAX_S = 0.05


# -- outcomes -------------------------------------------------------------


class Success(msgspec.Struct, Generic[T], frozen=True, tag_field="kind", tag="success"):
    """The step returned ``value``."""

    value: T


class Error(msgspec.Struct, frozen=True, tag_field="kind", tag="error"):
    """The step raised: ``code`` is the exception's type name, ``message`` its text."""

    code: str
    message: str


class Timeout(msgspec.Struct, frozen=True, tag_field="kind", tag="timeout"):
    """The step timed out (recorded by a harness with ``put``)."""


class Killed(msgspec.Struct, frozen=True, tag_field="kind", tag="killed"):
    """The step was killed (recorded by a harness with ``put``)."""


#: What a step came to: one of the four outcome Structs (tagged by ``kind``).
Outcome = Success[Any] | Error | Timeout | Killed

_OUTCOME_TYPES = (Success, Error, Timeout, Killed)


def _check_key(key: Any) -> str:
    checked = text(key, "key")
    if not checked:
        raise InvalidArgument("key must not be empty", "key", key)
    return checked


def _check_seconds(value: Any, argument: str, *, allow_inf: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgumentType(
            f"{argument} must be a number of seconds, not {type(value).__name__}", argument, value
        )
    seconds = float(value)
    if math.isnan(seconds) or seconds <= 0 or (math.isinf(seconds) and not allow_inf):
        limit = "a positive number" if allow_inf else "a positive finite number"
        raise InvalidArgument(f"{argument} must be {limit}, got {value!r}", argument, value)
    return seconds


def _check_callable(value: Any, argument: str) -> None:
    if not callable(value):
        raise InvalidArgumentType(
            f"{argument} must be callable, not {type(value).__name__}", argument, value
        )


# -- entries and stats ----------------------------------------------------


class CachedResult(msgspec.Struct, frozen=True):
    """One cached outcome and its bookkeeping; times are cache-clock seconds.

    Build one with :meth:`success` or :meth:`error` (or directly, for
    ``Timeout()`` / ``Killed()``); ``stored_at`` and ``expires_at`` stay 0.0
    until :meth:`ResultCache.put` stamps them on the copy it stores. The entry
    is frozen: the cache returns fresh copies, and the object passed to
    ``put`` is never changed.

    Raises InvalidArgument / InvalidArgumentType for a blank key, a non-str
    ``intent_id``, an ``outcome`` that is not one of the four Structs, or a
    ``ttl_s`` that is not a positive number.

    >>> CachedResult.success("idem_0123456789abcdef", "intent-1", 42, 60).outcome
    Success(value=42)
    """

    key: str
    intent_id: str
    outcome: Outcome
    ttl_s: float
    stored_at: float = 0.0
    expires_at: float = 0.0
    access_count: int = 0

    def __post_init__(self) -> None:
        _check_key(self.key)
        text(self.intent_id, "intent_id")
        if not isinstance(self.outcome, _OUTCOME_TYPES):
            raise InvalidArgumentType(
                "outcome must be Success, Error, Timeout or Killed, not "
                f"{type(self.outcome).__name__}",
                "outcome",
                self.outcome,
            )
        _check_seconds(self.ttl_s, "ttl_s", allow_inf=True)

    @classmethod
    def success(cls, key: str, intent_id: str, value: Any, ttl_s: float) -> CachedResult:
        """An entry holding ``Success(value)``, not yet stored."""
        return cls(key, intent_id, Success(value), _check_seconds(ttl_s, "ttl_s", allow_inf=True))

    @classmethod
    def error(cls, key: str, intent_id: str, code: str, message: str, ttl_s: float) -> CachedResult:
        """An entry holding ``Error(code, message)``, not yet stored."""
        outcome = Error(text(code, "code"), text(message, "message"))
        return cls(key, intent_id, outcome, _check_seconds(ttl_s, "ttl_s", allow_inf=True))


class CacheStats(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of a cache.

    ``total_keys`` counts every stored entry, expired ones not yet removed
    included; ``expired_keys`` those of them already expired; ``hit_rate`` is
    the sum of ``access_count`` over ``total_keys`` (0.0 when empty);
    ``average_ttl_hours`` the mean ``ttl_s`` in hours (0.0 when empty).
    """

    total_keys: int
    expired_keys: int
    hit_rate: float
    average_ttl_hours: float


def _stats(total: int, expired: int, accesses: int, ttl_sum: float) -> CacheStats:
    if total == 0:
        return CacheStats(total_keys=0, expired_keys=0, hit_rate=0.0, average_ttl_hours=0.0)
    return CacheStats(
        total_keys=total,
        expired_keys=expired,
        hit_rate=accesses / total,
        average_ttl_hours=ttl_sum / total / 3600.0,
    )


# -- encoding -------------------------------------------------------------


def _encode_outcome(outcome: Outcome) -> bytes:
    return encode_canonical(outcome)


_DECODERS: dict[Any, msgspec.msgpack.Decoder[Any]] = {}


def _decoder(value_type: Any) -> msgspec.msgpack.Decoder[Any]:
    """A decoder of the outcome union whose Success holds ``value_type`` (kept per type)."""
    with contextlib.suppress(TypeError):  # an unhashable type expression is not kept
        decoder = _DECODERS.get(value_type)
        if decoder is not None:
            return decoder
    union: Any = Success[value_type] | Error | Timeout | Killed
    decoder = msgspec.msgpack.Decoder(union)
    with contextlib.suppress(TypeError):
        _DECODERS[value_type] = decoder
    return decoder


def _check_value_type(value_type: Any) -> msgspec.msgpack.Decoder[Any]:
    try:
        return _decoder(value_type)
    except TypeError as exc:
        raise InvalidArgumentType(
            f"value_type {value_type!r} is not a type msgspec can decode: {exc}",
            "value_type",
            value_type,
        ) from None


def _decode_outcome(data: bytes, value_type: Any = Any, *, strict: bool = True) -> Outcome:
    """Decode a stored outcome; ``value_type`` types a Success value.

    With ``strict`` a value that does not validate as ``value_type`` raises
    InvalidArgument; without, it is decoded as builtins instead.
    """
    if value_type is Any:
        return cast(Outcome, _decoder(Any).decode(data))
    try:
        return cast(Outcome, _check_value_type(value_type).decode(data))
    except msgspec.ValidationError as exc:
        if strict:
            raise InvalidArgument(
                f"the cached value does not decode as value_type {value_type!r}: {exc}",
                "value_type",
                value_type,
            ) from None
        return cast(Outcome, _decoder(Any).decode(data))


def _error_of(exc: BaseException) -> Error:
    try:
        message = str(exc)
    except Exception:
        message = f"<unprintable {type(exc).__name__}>"
    # lone surrogates would make the outcome unencodable
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    return Error(type(exc).__name__, message)


# -- the protocol ---------------------------------------------------------


@runtime_checkable
class ResultCacheProtocol(Protocol):
    """What every result cache offers (in memory, SQLite, ...)."""

    @property
    def lease_s(self) -> float:
        """How long an in-progress claim lasts, in clock seconds."""
        ...

    def get(self, key: str) -> CachedResult | None:
        """The live entry with ``access_count`` incremented, or None."""
        ...

    def put(self, entry: CachedResult) -> bool:
        """Store a stamped copy of ``entry``; True when the key was new."""
        ...

    def cleanup_expired(self) -> int:
        """Remove expired entries; return how many."""
        ...

    def stats(self) -> CacheStats:
        """Counts, hit rate and average TTL."""
        ...

    def execute(
        self,
        key: str,
        fn: Callable[[], Any],
        *,
        intent_id: str = "",
        ttl_s: float = DEFAULT_TTL_S,
        wait: bool = False,
        value_type: Any = Any,
    ) -> Outcome:
        """Run ``fn`` at most once per live key; return the outcome."""
        ...

    async def aexecute(
        self,
        key: str,
        fn: Callable[[], Awaitable[Any]],
        *,
        intent_id: str = "",
        ttl_s: float = DEFAULT_TTL_S,
        wait: bool = False,
        value_type: Any = Any,
    ) -> Outcome:
        """``execute`` for a coroutine function."""
        ...


# -- the shared engine ----------------------------------------------------


class _Stored(msgspec.Struct):
    """An entry as a backend keeps it: the outcome as bytes."""

    intent_id: str
    outcome: bytes
    ttl_s: float
    stored_at: float
    expires_at: float
    access_count: int


class _Fresh(msgspec.Struct, frozen=True):
    """An outcome to store, before the backend stamps it with its clock's time."""

    intent_id: str
    outcome: bytes
    ttl_s: float
    access_count: int

    def stamped(self, now: float) -> _Stored:
        """The entry as stored at ``now``: ``expires_at = now + ttl_s``."""
        return _Stored(
            self.intent_id, self.outcome, self.ttl_s, now, now + self.ttl_s, self.access_count
        )


class _Claim(msgspec.Struct, frozen=True):
    """What trying to claim a key found."""

    hit: _Stored | None = None
    claimed: bool = False
    lease_expires_at: float = 0.0


def _entry(key: str, stored: _Stored, value_type: Any = Any) -> CachedResult:
    return CachedResult(
        key,
        stored.intent_id,
        _decode_outcome(stored.outcome, value_type),
        stored.ttl_s,
        stored.stored_at,
        stored.expires_at,
        stored.access_count,
    )


class _BaseCache:
    """The execute / lease logic over a backend's five primitives."""

    def __init__(self, clock: Callable[[], float] | None, lease_s: float) -> None:
        # None is the database's clock, which only a database backend offers.
        if clock is not None:
            _check_callable(clock, "clock")
        self._clock = clock
        self._lease_s = _check_seconds(lease_s, "lease_s", allow_inf=False)

    @property
    def lease_s(self) -> float:
        """How long an in-progress claim lasts, in clock seconds."""
        return self._lease_s

    @property
    def clock(self) -> Callable[[], float] | None:
        """The clock this cache stamps entries and leases with (None: the database's)."""
        return self._clock

    def _now(self) -> float | None:
        """The clock's time, or None when the database's clock is to be used."""
        if self._clock is None:
            return None
        now = self._clock()
        if isinstance(now, bool) or not isinstance(now, int | float) or math.isnan(now):
            raise InvalidArgumentType(
                f"clock() must return a number of seconds, got {now!r}", "clock", now
            )
        return float(now)

    # backend primitives ---------------------------------------------------

    # ``now`` is the time of the cache's clock, or None for the database's
    # clock (backends that have no database never receive None).

    def _read(self, key: str, now: float | None) -> _Stored | None:
        """The live entry with its access counted, removing an expired one."""
        raise NotImplementedError

    def _write(self, key: str, fresh: _Fresh, now: float | None) -> bool:
        """Store or replace, stamped at ``now``; True when no entry (live or expired) was there."""
        raise NotImplementedError

    def _claim(self, key: str, token: str, now: float | None) -> _Claim:
        """Atomically: a live entry (a hit), or a live lease, or a new lease."""
        raise NotImplementedError

    def _complete(self, key: str, token: str, fresh: _Fresh | None, now: float | None) -> None:
        """Store ``fresh`` (stamped at ``now``) unless a live entry appeared; release our lease."""
        raise NotImplementedError

    def _pause(self, delay: float) -> None:
        time.sleep(delay)

    # public API -----------------------------------------------------------

    def get(self, key: str) -> CachedResult | None:
        """The live entry for ``key`` with ``access_count`` incremented, or None.

        The stored count goes up too. An expired entry is removed and None is
        returned. A Success value is decoded as builtins.
        """
        key = _check_key(key)
        stored = self._read(key, self._now())
        return None if stored is None else _entry(key, stored)

    def put(self, entry: CachedResult) -> bool:
        """Store a copy of ``entry`` stamped with ``stored_at = clock()`` and
        ``expires_at = stored_at + ttl_s``; True when the key was not stored
        before (an expired entry not yet removed counts as stored), False when
        it replaced an entry. ``access_count`` is kept as given.

        Raises InvalidArgumentType when ``entry`` is not a CachedResult or its
        value cannot be encoded.
        """
        if not isinstance(entry, CachedResult):
            raise InvalidArgumentType(
                f"entry must be a CachedResult, not {type(entry).__name__}", "entry", entry
            )
        data = _encode_outcome(entry.outcome)
        fresh = _Fresh(entry.intent_id, data, float(entry.ttl_s), int(entry.access_count))
        return self._write(entry.key, fresh, self._now())

    def cleanup_expired(self) -> int:
        """Remove every expired entry (and lapsed lease); return how many entries."""
        raise NotImplementedError

    def stats(self) -> CacheStats:
        """A :class:`CacheStats` snapshot."""
        raise NotImplementedError

    def _begin(
        self, key: Any, fn: Any, intent_id: Any, ttl_s: Any, value_type: Any
    ) -> tuple[str, str, float, str]:
        key = _check_key(key)
        _check_callable(fn, "fn")
        intent_id = text(intent_id, "intent_id")
        ttl = _check_seconds(ttl_s, "ttl_s", allow_inf=True)
        if value_type is not Any:
            _check_value_type(value_type)
        return key, intent_id, ttl, f"{os.getpid()}-{uuid.uuid4().hex}"

    def _finish(
        self, key: str, token: str, intent_id: str, ttl_s: float, outcome: Outcome
    ) -> Outcome:
        try:
            data = _encode_outcome(outcome)
        except BaseException:
            self._release(key, token)
            raise
        self._complete(key, token, _Fresh(intent_id, data, ttl_s, 0), self._now())
        return outcome

    def _release(self, key: str, token: str) -> None:
        """Give up our lease without storing an outcome."""
        self._complete(key, token, None, self._now())

    def execute(
        self,
        key: str,
        fn: Callable[[], Any],
        *,
        intent_id: str = "",
        ttl_s: float = DEFAULT_TTL_S,
        wait: bool = False,
        value_type: Any = Any,
    ) -> Outcome:
        """Run ``fn()`` at most once while its outcome for ``key`` is live.

        * A hit returns the cached outcome (an access) without calling ``fn``.
        * A miss claims a lease on ``key``, calls ``fn`` and caches and returns
          ``Success(value)`` -- the very object ``fn`` returned -- or, when it
          raises an ``Exception``, ``Error(type name, str(exc))``.
        * While another caller holds a live lease on ``key`` this raises
          :class:`~replaycore.errors.InProgress`; with ``wait=True`` it polls
          until the outcome appears and returns it, or until the lease lapses
          and then runs ``fn`` itself.

        ``value_type`` decodes a cached Success value (builtins by default);
        a cached value that does not validate as it raises InvalidArgument.
        Thread-safe; for :class:`SqliteResultCache` also process-safe.

        >>> cache = ResultCache()
        >>> cache.execute("k", lambda: int("x"))
        Error(code='ValueError', message="invalid literal for int() with base 10: 'x'")
        """
        key, intent_id, ttl, token = self._begin(key, fn, intent_id, ttl_s, value_type)
        delay = _POLL_FIRST_S
        while True:
            claim = self._claim(key, token, self._now())
            if claim.hit is not None:
                return _decode_outcome(claim.hit.outcome, value_type)
            if claim.claimed:
                break
            if not wait:
                raise InProgress(key, claim.lease_expires_at)
            self._pause(delay)
            delay = min(delay * 2, _POLL_MAX_S)
        try:
            value = fn()
        except InProgress:
            self._release(key, token)
            raise
        except Exception as exc:
            return self._finish(key, token, intent_id, ttl, _error_of(exc))
        except BaseException:
            self._release(key, token)
            raise
        if inspect.isawaitable(value):
            self._release(key, token)
            if inspect.iscoroutine(value):
                value.close()  # never awaited: no "never awaited" warning
            raise InvalidArgumentType(
                "fn returned an awaitable; use aexecute for coroutine functions", "fn", fn
            )
        return self._finish(key, token, intent_id, ttl, Success(value))

    async def aexecute(
        self,
        key: str,
        fn: Callable[[], Awaitable[Any]],
        *,
        intent_id: str = "",
        ttl_s: float = DEFAULT_TTL_S,
        wait: bool = False,
        value_type: Any = Any,
    ) -> Outcome:
        """:meth:`execute` for a function returning an awaitable.

        Same rules; waiting polls with ``asyncio.sleep`` so the event loop
        keeps running (two tasks of one loop can wait for each other). The
        store operations themselves are short synchronous calls. A
        cancellation while ``fn`` runs caches nothing and releases the lease.
        ``fn()`` returning something that is not awaitable raises
        InvalidArgumentType (argument ``"fn"``), caching nothing.
        """
        key, intent_id, ttl, token = self._begin(key, fn, intent_id, ttl_s, value_type)
        delay = _POLL_FIRST_S
        while True:
            claim = self._claim(key, token, self._now())
            if claim.hit is not None:
                return _decode_outcome(claim.hit.outcome, value_type)
            if claim.claimed:
                break
            if not wait:
                raise InProgress(key, claim.lease_expires_at)
            import asyncio  # here, not at the top: importing it costs ~25 ms at start-up

            await asyncio.sleep(delay)
            delay = min(delay * 2, _POLL_MAX_S)
        misuse: InvalidArgumentType | None = None
        try:
            awaitable = fn()
            if inspect.isawaitable(awaitable):
                value = await awaitable
            else:
                misuse = InvalidArgumentType(
                    f"fn must return an awaitable, got {type(awaitable).__name__}", "fn", fn
                )
        except InProgress:
            self._release(key, token)
            raise
        except Exception as exc:
            return self._finish(key, token, intent_id, ttl, _error_of(exc))
        except BaseException:
            self._release(key, token)
            raise
        if misuse is not None:
            self._release(key, token)
            raise misuse
        return self._finish(key, token, intent_id, ttl, Success(value))


# -- in memory ------------------------------------------------------------


class ResultCache(_BaseCache):
    """The in-memory result cache (SPEC section 5); thread-safe.

    ``clock`` returns seconds (tests inject their own); ``lease_s`` is how
    long an in-progress claim lasts in clock seconds (default 60). Outcomes
    are kept encoded (see the module docstring for the values allowed), so
    the cache behaves exactly like :class:`SqliteResultCache` minus the file.

    >>> now = [1000.0]
    >>> cache = ResultCache(clock=lambda: now[0])
    >>> cache.put(CachedResult.success("k", "i", "v", ttl_s=10))
    True
    >>> cache.get("k").access_count, cache.get("k").expires_at
    (1, 1010.0)
    >>> now[0] = 1010.0
    >>> cache.get("k") is None
    True
    """

    def __init__(
        self, clock: Callable[[], float] = time.time, lease_s: float = DEFAULT_LEASE_S
    ) -> None:
        _check_callable(clock, "clock")
        super().__init__(clock, lease_s)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._entries: dict[str, _Stored] = {}
        self._leases: dict[str, tuple[str, float]] = {}

    def __repr__(self) -> str:
        return f"ResultCache(entries={len(self._entries)}, lease_s={self._lease_s})"

    def __len__(self) -> int:
        return len(self._entries)

    def _read(self, key: str, now: float | None) -> _Stored | None:
        assert now is not None  # ResultCache always has a clock
        with self._lock:
            stored = self._entries.get(key)
            if stored is None:
                return None
            if now >= stored.expires_at:
                del self._entries[key]
                return None
            stored.access_count += 1
            return msgspec.structs.replace(stored)

    def _write(self, key: str, fresh: _Fresh, now: float | None) -> bool:
        assert now is not None
        with self._lock:
            new = key not in self._entries
            self._entries[key] = fresh.stamped(now)
            self._changed.notify_all()
        return new

    def _claim(self, key: str, token: str, now: float | None) -> _Claim:
        assert now is not None
        with self._lock:
            stored = self._entries.get(key)
            if stored is not None:
                if now < stored.expires_at:
                    stored.access_count += 1
                    return _Claim(hit=msgspec.structs.replace(stored))
                del self._entries[key]
            lease = self._leases.get(key)
            if lease is not None and now < lease[1]:
                return _Claim(lease_expires_at=lease[1])
            self._leases[key] = (token, now + self._lease_s)
            return _Claim(claimed=True)

    def _complete(self, key: str, token: str, fresh: _Fresh | None, now: float | None) -> None:
        assert now is not None
        with self._lock:
            if fresh is not None:
                prior = self._entries.get(key)
                if prior is None or now >= prior.expires_at:
                    self._entries[key] = fresh.stamped(now)
            lease = self._leases.get(key)
            if lease is not None and lease[0] == token:
                del self._leases[key]
            self._changed.notify_all()

    def _pause(self, delay: float) -> None:
        with self._lock:
            self._changed.wait(delay)

    def cleanup_expired(self) -> int:
        """Remove every expired entry and lapsed lease; return how many entries."""
        now = self._now()
        assert now is not None
        with self._lock:
            expired = [k for k, s in self._entries.items() if now >= s.expires_at]
            for key in expired:
                del self._entries[key]
            for key in [k for k, (_, until) in self._leases.items() if now >= until]:
                del self._leases[key]
        return len(expired)

    def stats(self) -> CacheStats:
        """A :class:`CacheStats` snapshot (expired entries not yet removed count)."""
        now = self._now()
        assert now is not None
        with self._lock:
            entries = list(self._entries.values())
        return _stats(
            len(entries),
            sum(1 for s in entries if now >= s.expires_at),
            sum(s.access_count for s in entries),
            sum(s.ttl_s for s in entries),
        )


# -- the decorator --------------------------------------------------------


def _replayed(outcome: Outcome) -> ReplayedError:
    if isinstance(outcome, Error):
        return ReplayedError(outcome.code, outcome.message)
    if isinstance(outcome, Timeout):
        return ReplayedError("Timeout", "the step timed out earlier")
    return ReplayedError("Killed", "the step was killed earlier")


def _return_type(fn: Callable[..., Any]) -> Any:
    """The return annotation of ``fn`` when msgspec can decode it, else Any."""
    try:
        hint = typing.get_type_hints(fn).get("return", Any)
    except Exception:  # unresolvable forward references and the like
        return Any
    try:
        _decoder(hint)
    except TypeError:
        return Any
    return hint


def idempotent(
    cache: ResultCacheProtocol,
    key: str | Callable[..., str],
    *,
    ttl_s: float = DEFAULT_TTL_S,
    intent_id: str = "",
    wait: bool = False,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Make a ``def`` or ``async def`` run at most once per key through ``cache``.

    ``key`` is a fixed string or a callable taking the function's own
    arguments and returning the key. The wrapper keeps the function's name,
    docstring and signature (``functools.wraps``; ``inspect.signature`` sees
    the original) and its type for checkers.

    * A miss calls the function and returns its value; an exception it raises
      propagates unchanged after its ``Error`` was cached.
    * A hit returns the cached value, decoded as the function's return
      annotation when msgspec can decode that type (builtins otherwise, or
      when the cached value does not match it) -- without calling it.
    * A cached ``Error`` raises :class:`~replaycore.errors.ReplayedError`
      ``(code, message)`` without calling it; a cached ``Timeout()`` or
      ``Killed()`` raises ``ReplayedError("Timeout" | "Killed", ...)``.
    * Another caller inside the function raises
      :class:`~replaycore.errors.InProgress` (or waits, with ``wait=True``).

    >>> cache = ResultCache()
    >>> @idempotent(cache, key=lambda order_id: f"charge:{order_id}")
    ... def charge(order_id: str) -> str:
    ...     return f"charged {order_id}"
    >>> charge("o-1"), charge("o-1")
    ('charged o-1', 'charged o-1')
    """
    if not isinstance(key, str):
        _check_callable(key, "key")
    else:
        _check_key(key)
    _check_seconds(ttl_s, "ttl_s", allow_inf=True)
    text(intent_id, "intent_id")

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        _check_callable(fn, "fn")
        value_type: list[Any] = []  # resolved on first hit: allows forward references

        def key_of(*args: P.args, **kwargs: P.kwargs) -> str:
            return key if isinstance(key, str) else key(*args, **kwargs)

        def result(outcome: Outcome, ran: list[BaseException | None]) -> Any:
            if ran and ran[0] is not None:
                raise ran[0]
            if not isinstance(outcome, Success):
                raise _replayed(outcome)
            if ran:  # computed now: the function's own object
                return outcome.value
            if not value_type:
                value_type.append(_return_type(fn))
            return _retyped(outcome.value, value_type[0])

        if inspect.iscoroutinefunction(fn):
            async_fn = cast(Callable[..., Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                ran: list[BaseException | None] = []

                async def call() -> Any:
                    try:
                        value = await async_fn(*args, **kwargs)
                    except Exception as exc:
                        ran.append(exc)
                        raise
                    ran.append(None)
                    return value

                outcome = await cache.aexecute(
                    key_of(*args, **kwargs), call, intent_id=intent_id, ttl_s=ttl_s, wait=wait
                )
                return result(outcome, ran)

            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            ran: list[BaseException | None] = []

            def call() -> Any:
                try:
                    value = fn(*args, **kwargs)
                except Exception as exc:
                    ran.append(exc)
                    raise
                ran.append(None)
                return value

            outcome = cache.execute(
                key_of(*args, **kwargs), call, intent_id=intent_id, ttl_s=ttl_s, wait=wait
            )
            return result(outcome, ran)

        return cast(Callable[P, R], wrapper)

    return decorate


def _retyped(value: Any, value_type: Any) -> Any:
    """A cached builtins value converted to ``value_type`` when it fits, else as is."""
    if value_type is Any:
        return value
    try:
        return msgspec.convert(value, value_type, strict=False)
    except (msgspec.ValidationError, TypeError):
        return value
