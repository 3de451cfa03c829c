"""Benchmark fixtures: every benchmark runs once per backend on identical data.

Each test is placed in a pytest-benchmark group named after the operation, so
``pytest benches/ --benchmark-only`` prints the Rust core and the reference
side by side, and ``python benches/report.py`` turns that into a ratio table.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

BACKENDS = {"rust": "replaycore._core", "python": "replaycore.reference"}


@pytest.fixture(params=list(BACKENDS), ids=list(BACKENDS))
def impl(request: pytest.FixtureRequest) -> ModuleType:
    """The backend module under test: ``replaycore._core`` or ``replaycore.reference``."""
    return importlib.import_module(BACKENDS[request.param])
