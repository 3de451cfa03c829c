"""replaycore: durability primitives for agent and automation harnesses.

Hashed idempotency keys, per-run sequence counters, a content-equality
store (same key + same content = replay, different content = conflict),
crash-safe journal files and a replay reducer that says whether a run may
resume -- with a Rust core and a pure-Python reference
(:mod:`replaycore.reference`) that behaves identically.

The backend is chosen once, at import: the Rust core by default, the
reference when the environment variable ``REPLAYCORE_BACKEND=python`` is set.
:data:`BACKEND` says which one is in use.

>>> import replaycore
>>> replaycore.legacy_key("run-1", "ep", 3)
'idem_c39968f2a9942f42'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from replaycore._backend import BACKEND
from replaycore._lazy import lazy_names
from replaycore.errors import (
    FieldError,
    IdempotencyConflict,
    InProgress,
    InvalidArgument,
    InvalidArgumentType,
    InvalidKeyFormat,
    InvalidScope,
    JournalCorruption,
    JournalLocked,
    OutboxValidationError,
    ReceiptEmittedNotEmittable,
    ReceiptInvalid,
    RecordDecodeError,
    ReducerFinished,
    ReplayCoreError,
    ReplayedError,
    ReplayViolation,
    StaleLease,
    StoreUnavailable,
)
from replaycore.journal import JournalWriter, inspect_journal, read_journal
from replaycore.keys import (
    content_digest,
    derive_key,
    derive_keys,
    key_from_intent,
    legacy_key,
    legacy_keys,
    parse_key,
)
from replaycore.records import (
    Checkpoint,
    Custom,
    EffectIntent,
    EffectResult,
    JournalRecord,
    OutputDedupe,
    OutputEvent,
    OutputIntent,
    OutputReconciliation,
    OutputResult,
    PendingSideEffect,
    Recovery,
    RunLifecycle,
    TerminalResult,
    encode_canonical,
)
from replaycore.replay import (
    ReplayReducer,
    check_cursor_compatibility,
    durable_replay_support,
    journal_cursor_for_seq,
    replay,
    replay_many,
)
from replaycore.results import (
    EventCursor,
    PendingEffect,
    RepairNeeded,
    ReplayResult,
    StreamScope,
)
from replaycore.sequence import SequenceGenerator
from replaycore.store import IdempotencyStore, IdempotencyStoreProtocol
from replaycore.types import PutOutcome, Scope, StoreStats

if TYPE_CHECKING:
    from replaycore.cache import (
        CachedResult,
        CacheStats,
        Error,
        Killed,
        ResultCache,
        Success,
        Timeout,
        idempotent,
    )
    from replaycore.sqlite.cache import SqliteResultCache
    from replaycore.sqlite.store import SqliteIdempotencyStore

# The durable stores load their engine (sqlite3) on first access only.
_DURABLE = {
    "SqliteIdempotencyStore": "replaycore.sqlite.store",
    "SqliteResultCache": "replaycore.sqlite.cache",
}
# The result cache too: the largest module of the package, which a user of
# keys, stores and journals (and the command line) never needs.
_CACHE = dict.fromkeys(
    (
        "CacheStats",
        "CachedResult",
        "Error",
        "Killed",
        "ResultCache",
        "Success",
        "Timeout",
        "idempotent",
    ),
    "replaycore.cache",
)


__getattr__ = lazy_names(
    __name__,
    # the reference, always reachable as an attribute (SPEC 1), the durable
    # stores and the result cache
    {"reference": "replaycore.reference", "cache": "replaycore.cache", **_CACHE, **_DURABLE},
)


# The crate's version (Cargo.toml), which maturin gives the distribution.
# Written out rather than read with importlib.metadata, which cost ~15-20 ms
# of start-up by itself; tests/test_metadata.py checks that it equals
# Cargo.toml, the built core and the installed distribution.
__version__ = "0.1.0"

__all__ = [
    "BACKEND",
    "CacheStats",
    "CachedResult",
    "Checkpoint",
    "Custom",
    "EffectIntent",
    "EffectResult",
    "Error",
    "EventCursor",
    "FieldError",
    "IdempotencyConflict",
    "IdempotencyStore",
    "IdempotencyStoreProtocol",
    "InProgress",
    "InvalidArgument",
    "InvalidArgumentType",
    "InvalidKeyFormat",
    "InvalidScope",
    "JournalCorruption",
    "JournalLocked",
    "JournalRecord",
    "JournalWriter",
    "Killed",
    "OutboxValidationError",
    "OutputDedupe",
    "OutputEvent",
    "OutputIntent",
    "OutputReconciliation",
    "OutputResult",
    "PendingEffect",
    "PendingSideEffect",
    "PutOutcome",
    "ReceiptEmittedNotEmittable",
    "ReceiptInvalid",
    "RecordDecodeError",
    "Recovery",
    "ReducerFinished",
    "RepairNeeded",
    "ReplayCoreError",
    "ReplayReducer",
    "ReplayResult",
    "ReplayViolation",
    "ReplayedError",
    "ResultCache",
    "RunLifecycle",
    "Scope",
    "SequenceGenerator",
    "SqliteIdempotencyStore",
    "SqliteResultCache",
    "StaleLease",
    "StoreStats",
    "StoreUnavailable",
    "StreamScope",
    "Success",
    "TerminalResult",
    "Timeout",
    "__version__",
    "check_cursor_compatibility",
    "content_digest",
    "derive_key",
    "derive_keys",
    "durable_replay_support",
    "encode_canonical",
    "idempotent",
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
