"""Journal files (SPEC section 6.2), from the selected backend.

:class:`JournalWriter` appends records crash-safely to a framed ``.rcj`` file
or a ``.jsonl`` file; :func:`read_journal` iterates a journal's records;
:func:`inspect_journal` counts what a journal holds without replaying it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from replaycore._backend import BACKEND

if TYPE_CHECKING or BACKEND == "rust":
    from replaycore._core import JournalWriter, inspect_journal, read_journal
else:
    from replaycore.reference.journal import JournalWriter, inspect_journal, read_journal

__all__ = ["JournalWriter", "inspect_journal", "read_journal"]
