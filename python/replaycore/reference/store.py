"""The in-memory content-equality store (SPEC section 4), pure Python."""

from __future__ import annotations

import hashlib
import threading
from typing import Any

import msgspec

from replaycore._checks import type_error
from replaycore.errors import IdempotencyConflict
from replaycore.records import decode_canonical, differing_fields, encode_canonical
from replaycore.types import PutOutcome, Scope, StoreStats

__all__ = ["IdempotencyStore"]


def _encode(value: Any) -> tuple[type, bytes]:
    """The type a value is stored as and its canonical bytes."""
    if isinstance(value, bytes):
        return bytes, bytes(value)
    if isinstance(value, msgspec.Struct):
        return type(value), encode_canonical(value)
    type_error("value", "a msgspec Struct or bytes", value)


def _decode(kind: type, data: bytes) -> Any:
    return data if kind is bytes else decode_canonical(data, kind)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class IdempotencyStore:
    """Remembers one value per :class:`~replaycore.Scope` and detects conflicts.

    ``put`` stores a value the first time a scope is seen; a later ``put``
    with equal content (equal canonical encoding) is a replay and returns the
    stored value; different content raises
    :class:`~replaycore.errors.IdempotencyConflict` and changes nothing.
    Values are msgspec Structs or ``bytes``; the store keeps only their
    canonical bytes and type, and ``get`` decodes a fresh value of the type
    that was stored. Thread-safe.

    >>> store = IdempotencyStore()
    >>> scope = Scope("client", "adapter", "idem_0123456789abcdef")
    >>> store.put(scope, b"ok").inserted, store.put(scope, b"ok").inserted
    (True, False)
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Keyed by the three strings, so a Scope subclass names the same entry.
        self._entries: dict[tuple[str, str, str], tuple[type, bytes]] = {}
        self._inserts = 0
        self._replays = 0
        self._conflicts = 0

    def __repr__(self) -> str:
        return f"IdempotencyStore(entries={len(self._entries)})"

    def put(self, scope: Scope, value: Any) -> PutOutcome[Any]:
        """Store ``value`` under ``scope``, or replay, or raise a conflict.

        Returns ``PutOutcome(inserted=True, value=value)`` for a new scope and
        ``PutOutcome(inserted=False, value=prior)`` when the stored content is
        equal. Different content raises ``IdempotencyConflict`` carrying both
        digests and, for Structs, the dotted paths of the fields that differ.
        """
        if not isinstance(scope, Scope):
            type_error("scope", "a Scope", scope)
        kind, data = _encode(value)
        key = (scope.client_id, scope.adapter_id, scope.idempotency_key)
        with self._lock:
            prior = self._entries.get(key)
            if prior is None:
                self._entries[key] = (kind, data)
                self._inserts += 1
                return PutOutcome(True, value)
            if prior[1] == data:
                self._replays += 1
            else:
                self._conflicts += 1
        prior_value = _decode(*prior)
        if prior[1] == data:
            return PutOutcome(False, prior_value)
        raise IdempotencyConflict(
            scope, _digest(prior[1]), _digest(data), differing_fields(prior_value, value)
        )

    def get(self, scope: Scope) -> Any | None:
        """The value stored under ``scope`` (a fresh object of the stored type), or None."""
        if not isinstance(scope, Scope):
            type_error("scope", "a Scope", scope)
        entry = self._entries.get((scope.client_id, scope.adapter_id, scope.idempotency_key))
        return None if entry is None else _decode(*entry)

    def stats(self) -> StoreStats:
        """Counters of entries and of put outcomes since the store was created."""
        with self._lock:
            return StoreStats(
                entries=len(self._entries),
                inserts=self._inserts,
                replays=self._replays,
                conflicts=self._conflicts,
            )

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, scope: object) -> bool:
        return (
            isinstance(scope, Scope)
            and (scope.client_id, scope.adapter_id, scope.idempotency_key) in self._entries
        )
