"""The pure-Python reference implementation of replaycore's compute core.

It exposes the same functions and classes as the top-level facade for SPEC
sections 2-4, 6 and 7 (keys, sequence counters, content-equality store,
journal files, replay) and behaves
identically to the Rust core: it is the executable specification, the
baseline of the benchmarks and the oracle of the differential tests. It is
always importable, whichever backend the facade uses.

>>> import replaycore
>>> from replaycore import reference
>>> reference.legacy_key("run-1", "ep", 3) == replaycore.legacy_key("run-1", "ep", 3)
True
"""

from replaycore.records import JournalRecord
from replaycore.reference.journal import JournalWriter, inspect_journal, read_journal
from replaycore.reference.keys import (
    content_digest,
    derive_key,
    derive_keys,
    key_from_intent,
    legacy_key,
    legacy_keys,
    parse_key,
)
from replaycore.reference.replay import (
    ReplayReducer,
    check_cursor_compatibility,
    durable_replay_support,
    journal_cursor_for_seq,
    replay,
    replay_many,
)
from replaycore.reference.sequence import SequenceGenerator
from replaycore.reference.store import IdempotencyStore
from replaycore.results import EventCursor, PendingEffect, RepairNeeded, ReplayResult, StreamScope
from replaycore.types import PutOutcome, Scope, StoreStats

__all__ = [
    "EventCursor",
    "IdempotencyStore",
    "JournalRecord",
    "JournalWriter",
    "PendingEffect",
    "PutOutcome",
    "RepairNeeded",
    "ReplayReducer",
    "ReplayResult",
    "Scope",
    "SequenceGenerator",
    "StoreStats",
    "StreamScope",
    "check_cursor_compatibility",
    "content_digest",
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
