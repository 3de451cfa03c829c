"""Per-run sequence counters (SPEC section 3), from the selected backend."""

from __future__ import annotations

from typing import TYPE_CHECKING

from replaycore._backend import BACKEND

if TYPE_CHECKING or BACKEND == "rust":
    from replaycore._core import SequenceGenerator
else:
    from replaycore.reference.sequence import SequenceGenerator

__all__ = ["SequenceGenerator"]
