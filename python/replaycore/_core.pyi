"""Type stubs of the Rust core, ``replaycore._core``.

The facade (:mod:`replaycore`) re-exports these when the Rust backend is in
use; :mod:`replaycore.reference` holds pure-Python twins with the same
signatures and the same behaviour.
"""

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, final

from replaycore.types import PutOutcome, Scope, StoreStats

__all__ = [
    "IdempotencyStore",
    "SequenceGenerator",
    "__version__",
    "content_digest",
    "derive_key",
    "derive_keys",
    "key_from_intent",
    "legacy_key",
    "legacy_keys",
    "parse_key",
]

__version__: str

def legacy_key(run_id: str, episode: str, step_idx: int) -> str:
    """``"idem_"`` + the first 16 hex chars of SHA-256(run_id::episode::step_idx)."""

def key_from_intent(intent_id: str, actor: str, episode: str, step_idx: int | None = None) -> str:
    """``legacy_key(intent_id + ":" + actor, episode, step_idx or 0)``."""

def parse_key(text: str) -> str:
    """Return ``text`` when it is ``"idem_"`` + 16 hex chars, else raise InvalidKeyFormat."""

def derive_key(*parts: str | bytes | int, prefix: str = "idem_", hex_len: int = 32) -> str:
    """The unambiguous key of a list of parts (layout in ``replaycore.keys``)."""

def legacy_keys(rows: Iterable[Sequence[Any]]) -> list[str]:
    """``legacy_key`` of each ``(run_id, episode, step_idx)`` row, in order; GIL released."""

def derive_keys(
    rows: Iterable[Sequence[str | bytes | int]], prefix: str = "idem_", hex_len: int = 32
) -> list[str]:
    """``derive_key(*row)`` of each row, in order; GIL released while hashing."""

def content_digest(value: object) -> str:
    """``"sha256:"`` + 64 hex over the canonical encoding (bytes-like values as given)."""

@final
class SequenceGenerator:
    """Per-run counters handing out 1, 2, 3 ...; thread-safe."""

    def __init__(self) -> None: ...
    def next(self, run_id: str) -> int:
        """The next value for ``run_id`` (1 for a new run)."""
    def peek(self, run_id: str) -> int:
        """The last value handed out for ``run_id`` (0 when unseen); advances nothing."""
    def next_block(self, run_id: str, n: int) -> range:
        """Reserve ``n`` consecutive values at once and return them as a range."""
    def observe(self, run_id: str, seq: int) -> None:
        """Raise the counter of ``run_id`` to at least ``seq``."""
    def snapshot(self) -> dict[str, int]:
        """A copy of every counter, for persisting."""
    @classmethod
    def from_snapshot(cls, snapshot: Mapping[str, int], /) -> SequenceGenerator:
        """A generator restored from ``snapshot()``."""

@final
class IdempotencyStore:
    """In-memory content-equality store keyed by :class:`Scope`; thread-safe."""

    def __init__(self) -> None: ...
    def put(self, scope: Scope, value: Any) -> PutOutcome[Any]:
        """Insert, replay (equal content) or raise IdempotencyConflict."""
    def get(self, scope: Scope) -> Any | None:
        """The stored value, decoded to the type that was stored, or None."""
    def stats(self) -> StoreStats:
        """Counters: entries, inserts, replays, conflicts."""
    def __len__(self) -> int: ...
    def __contains__(self, scope: object, /) -> bool: ...
