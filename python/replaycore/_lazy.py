"""Names a module offers but loads only on first access.

The concern modules (``store``, ``cache``, ``outbox``) and the package offer
the durable stores where the SPEC places them, yet importing them must not
import an engine's driver (sqlite3, psycopg) for an in-memory user. Each
sets ``__getattr__ = lazy_names(__name__, {name: home module})``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_names"]


def lazy_names(owner: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``homes[name]`` and returns its
    ``name`` -- or the module itself when it is the submodule ``name``
    (``"reference": "replaycore.reference"``); any other name is an
    AttributeError as usual."""

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {owner!r} has no attribute {name!r}")
        module = importlib.import_module(home)
        return module if home == f"{owner}.{name}" else getattr(module, name)

    return __getattr__
