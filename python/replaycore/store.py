"""The content-equality store (SPEC section 4): same key + same content is a
replay, same key + different content is a conflict.

:class:`IdempotencyStore` is the in-memory store of the selected backend;
:class:`IdempotencyStoreProtocol` is what every store (in-memory, and the
durable ones to come) implements.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from replaycore._backend import BACKEND
from replaycore.types import PutOutcome, Scope, StoreStats

if TYPE_CHECKING or BACKEND == "rust":
    from replaycore._core import IdempotencyStore
else:
    from replaycore.reference.store import IdempotencyStore

__all__ = ["IdempotencyStore", "IdempotencyStoreProtocol", "PutOutcome", "Scope", "StoreStats"]


@runtime_checkable
class IdempotencyStoreProtocol(Protocol):
    """The operations every content-equality store offers."""

    def put(self, scope: Scope, value: Any) -> PutOutcome[Any]:
        """Insert, replay (equal content) or raise ``IdempotencyConflict``."""
        ...

    def get(self, scope: Scope) -> Any | None:
        """The stored value of ``scope``, or None."""
        ...

    def stats(self) -> StoreStats:
        """Counters: entries, inserts, replays, conflicts."""
        ...

    def __len__(self) -> int: ...

    def __contains__(self, scope: object) -> bool: ...
