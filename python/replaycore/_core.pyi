"""Type stubs of the Rust core, ``replaycore._core``.

The facade (:mod:`replaycore`) re-exports these when the Rust backend is in
use; :mod:`replaycore.reference` holds pure-Python twins with the same
signatures and the same behaviour.
"""

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, final

from replaycore.records import JournalRecord
from replaycore.results import (
    CursorCompatibility,
    DurableReplaySupport,
    EventCursor,
    MissingContentPolicy,
    ReplayMode,
    ReplayResult,
    StreamScope,
)
from replaycore.types import PutOutcome, Scope, StoreStats

__all__ = [
    "IdempotencyStore",
    "JournalWriter",
    "ReplayReducer",
    "SequenceGenerator",
    "__version__",
    "_canonical_roundtrip",
    "check_cursor_compatibility",
    "content_digest",
    "convert_journal",
    "derive_key",
    "derive_keys",
    "durable_replay_support",
    "inspect_journal",
    "journal_cursor_for_seq",
    "key_from_intent",
    "legacy_key",
    "legacy_keys",
    "parse_key",
    "read_journal",
    "replay",
    "replay_many",
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

@final
class JournalWriter:
    """Appends records to a ``.rcj`` or ``.jsonl`` journal, crash-safely; thread-safe.

    One writer per file (any process): a second raises JournalLocked. Opening
    cuts a torn tail and continues ``journal_seq`` after the last record.
    """

    def __new__(
        cls,
        path: str | os.PathLike[str],
        fsync: Literal["always", "batch", "never"] = "always",
        *,
        max_frame_bytes: int = 67108864,
    ) -> JournalWriter: ...
    @property
    def path(self) -> Path:
        """The journal's path."""
    @property
    def format(self) -> Literal["rcj", "jsonl"]:
        """``"jsonl"`` for a ``.jsonl`` file, else ``"rcj"``."""
    @property
    def fsync(self) -> Literal["always", "batch", "never"]:
        """When appends are synced to disk."""
    @property
    def last_journal_seq(self) -> int:
        """The ``journal_seq`` of the file's last record (0 when empty)."""
    def append(self, record: JournalRecord) -> JournalRecord:
        """Append one record; returns it as written (``journal_seq`` 0 is numbered)."""
    def append_many(self, records: Iterable[JournalRecord]) -> list[JournalRecord]:
        """Append records in order with one write; returns them as written."""
    def flush(self) -> None:
        """``fsync`` every appended record unless ``fsync="never"``."""
    def close(self) -> None:
        """Flush and close the file; further appends raise."""
    def __enter__(self) -> JournalWriter: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> None: ...

def read_journal(
    path: str | os.PathLike[str],
    *,
    strict: bool = True,
    max_frame_bytes: int = 67108864,
    max_line_bytes: int = 67108864,
) -> Iterator[JournalRecord]:
    """Iterate a journal's records in file order (streamed; nothing read before ``next``).

    Arguments:
        path: a ``.rcj`` or ``.jsonl`` journal.
        strict: damage raises JournalCorruption when true, is skipped when false.
        max_frame_bytes: the largest frame body, ``1..=2**32 - 1``.
        max_line_bytes: the longest JSON line (newline excluded),
            ``1..=2**63 - 1``; a longer line is corruption, never held.
    """

def convert_journal(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    max_frame_bytes: int = 67108864,
    max_line_bytes: int = 67108864,
) -> int | None:
    """Convert a journal into a new file (``target`` must not exist; its extension
    picks the format) without building its records: the records written, or None
    when the conversion is left to ``read_journal`` + ``JournalWriter`` (nothing
    is then left at ``target``).

    Arguments:
        source: a ``.rcj`` or ``.jsonl`` journal, read strictly.
        target: the new ``.rcj`` or ``.jsonl`` file.
        max_frame_bytes: the largest frame body read, ``1..=2**32 - 1``.
        max_line_bytes: the longest JSON line read, ``1..=2**63 - 1``.
    """

def inspect_journal(
    path: str | os.PathLike[str],
    *,
    max_frame_bytes: int = 67108864,
    max_line_bytes: int = 67108864,
) -> dict[str, Any]:
    """Decode every record of a journal (nothing reduced) and count what it holds.

    Arguments:
        path: a ``.rcj`` or ``.jsonl`` journal.
        max_frame_bytes: the largest frame body, ``1..=2**32 - 1``.
        max_line_bytes: the longest JSON line (newline excluded),
            ``1..=2**63 - 1``; a longer line is listed as corrupt, never held.
    """

@final
class ReplayReducer:
    """Folds a run's journal into a ReplayResult (SPEC 7); thread-safe."""

    def __new__(
        cls,
        mode: ReplayMode = "resume",
        available_content_refs: Iterable[str] | None = None,
        missing_content_policy: MissingContentPolicy = "fail",
        strict: bool | None = None,
        *,
        max_frame_bytes: int = 67108864,
    ) -> ReplayReducer: ...
    def apply(self, record: JournalRecord | bytes | bytearray | memoryview) -> None:
        """Apply one record (a JournalRecord or its msgpack bytes)."""
    def apply_many(
        self,
        records: Iterable[JournalRecord | bytes | bytearray | memoryview]
        | bytes
        | bytearray
        | memoryview,
    ) -> None:
        """Apply records in order, or a framed journal buffer."""
    def finish(self) -> ReplayResult:
        """Close the replay and return its result; the reducer is spent."""
    @property
    def records_applied(self) -> int:
        """Records applied so far."""
    @property
    def latest_journal_seq(self) -> int:
        """The journal_seq of the last applied record (0 before any)."""

def replay(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview | Iterable[Any],
    mode: ReplayMode = "resume",
    available_content_refs: Iterable[str] | None = None,
    missing_content_policy: MissingContentPolicy = "fail",
    strict: bool | None = None,
    *,
    max_frame_bytes: int = 67108864,
    max_line_bytes: int = 67108864,
) -> ReplayResult:
    """Replay one journal: a path, a framed buffer or an iterable of records.

    ``max_line_bytes`` (``1..=2**63 - 1``) is the longest line of a ``.jsonl``
    journal (newline excluded); a longer line is corruption, never held.
    The other options are those of :class:`ReplayReducer`, which reads no
    JSON lines and so takes no ``max_line_bytes``.
    """

def replay_many(
    sources: Iterable[Any],
    threads: int | None = None,
    return_exceptions: bool = False,
    *,
    mode: ReplayMode = "resume",
    available_content_refs: Iterable[str] | None = None,
    missing_content_policy: MissingContentPolicy = "fail",
    strict: bool | None = None,
    max_frame_bytes: int = 67108864,
    max_line_bytes: int = 67108864,
) -> list[Any]:
    """Replay many journals in parallel with the GIL released; results in order.

    The keyword options are those of :func:`replay`, for every source (the
    runtime takes them as ``**options`` and refuses any other keyword as
    :func:`replay` does).
    """

def journal_cursor_for_seq(seq: int) -> str:
    """``"journal.<seq>"``."""

def durable_replay_support(scope: StreamScope) -> DurableReplaySupport:
    """``"run_journal"`` for a run scope, else ``"host_archive_required"``."""

def check_cursor_compatibility(
    scope: StreamScope, cursor: EventCursor | None
) -> CursorCompatibility:
    """``"compatible"`` when cursor is None or was issued for scope."""

def _canonical_roundtrip(data: bytes, /) -> bytes:
    """Decode with the Rust schema and re-encode canonically (schema drift test)."""
