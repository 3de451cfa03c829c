"""Shared value types of the content-equality store (SPEC section 4).

Both backends take and return these same classes, so results of the Rust core
and of :mod:`replaycore.reference` compare equal.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import msgspec

from replaycore.errors import InvalidArgumentType, InvalidScope

__all__ = ["PutOutcome", "Scope", "StoreStats"]

T = TypeVar("T")

_SCOPE_FIELDS = ("client_id", "adapter_id", "idempotency_key")


class Scope(msgspec.Struct, frozen=True, gc=False):
    """Where an idempotency key lives: ``Scope(client_id, adapter_id, idempotency_key)``.

    Two clients or two adapters may reuse the same idempotency key without
    colliding, because the store keys entries by the whole triple.

    Every part must be a non-blank ``str`` (not empty, not only whitespace)
    that can be encoded as UTF-8 (no lone surrogates), since scopes are also
    written to durable stores. A bad part raises :class:`InvalidScope` (a
    ``ValueError``) naming it; a non-string part raises
    :class:`InvalidArgumentType`.

    >>> Scope("billing", "stripe", "idem_0123456789abcdef").adapter_id
    'stripe'
    """

    client_id: str
    adapter_id: str
    idempotency_key: str

    def __post_init__(self) -> None:
        for name in _SCOPE_FIELDS:
            part = getattr(self, name)
            if not isinstance(part, str):
                raise InvalidArgumentType(
                    f"Scope.{name} must be a str, not {type(part).__name__}", name, part
                )
            if not part.strip():
                raise InvalidScope(f"Scope.{name} must not be blank, got {part!r}", name, part)
            try:
                part.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise InvalidScope(
                    f"Scope.{name} holds a lone surrogate at index {exc.start}: {part!r}",
                    name,
                    part,
                ) from None


class PutOutcome(msgspec.Struct, Generic[T], frozen=True):
    """What ``IdempotencyStore.put`` did.

    ``inserted`` is True when the value was stored now; False means a replay,
    and ``value`` is then the value stored earlier (equal in content, of the
    type that was stored first).
    """

    inserted: bool
    value: T


class StoreStats(msgspec.Struct, frozen=True, kw_only=True):
    """Counters of an idempotency store since it was created.

    ``entries`` is the number of scopes held; ``inserts``, ``replays`` and
    ``conflicts`` count the outcomes of ``put``.
    """

    entries: int
    inserts: int
    replays: int
    conflicts: int
