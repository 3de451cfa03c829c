"""The replay reducer (SPEC section 7), from the selected backend.

:func:`replay` reads one run's journal (a path, a framed buffer or an
iterable of records) and returns a :class:`~replaycore.ReplayResult` saying
whether the run may resume, which side effects are unsafe to retry, which
output deliveries need reconciliation and what content is missing;
:func:`replay_many` does it for many journals in parallel;
:class:`ReplayReducer` applies records one at a time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from replaycore._backend import BACKEND

if TYPE_CHECKING or BACKEND == "rust":
    from replaycore._core import (
        ReplayReducer,
        check_cursor_compatibility,
        durable_replay_support,
        journal_cursor_for_seq,
        replay,
        replay_many,
    )
else:
    from replaycore.reference.replay import (
        ReplayReducer,
        check_cursor_compatibility,
        durable_replay_support,
        journal_cursor_for_seq,
        replay,
        replay_many,
    )

__all__ = [
    "ReplayReducer",
    "check_cursor_compatibility",
    "durable_replay_support",
    "journal_cursor_for_seq",
    "replay",
    "replay_many",
]
