"""Chooses the implementation behind the facade, once, at import.

``REPLAYCORE_BACKEND=python`` selects the pure-Python reference; unset,
empty or ``rust`` selects the Rust core. Any other value is refused, so a typo
never silently benchmarks the wrong backend.
"""

from __future__ import annotations

import os
from typing import Literal

from replaycore.errors import InvalidArgument

__all__ = ["BACKEND"]


def _choose() -> Literal["rust", "python"]:
    requested = os.environ.get("REPLAYCORE_BACKEND", "").strip().lower()
    if requested in ("", "rust"):
        return "rust"
    if requested == "python":
        return "python"
    raise InvalidArgument(
        f"REPLAYCORE_BACKEND must be 'rust' or 'python', got {requested!r}",
        "REPLAYCORE_BACKEND",
        requested,
    )


BACKEND: Literal["rust", "python"] = _choose()
