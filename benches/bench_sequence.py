"""Sequence counters: 100,000 calls of next() over 64 runs (SPEC section 3)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

CALLS = 100_000
RUN_IDS = [f"run-{i % 64:03d}" for i in range(CALLS)]


def _next_all(generator: Any) -> int:
    step = generator.next
    last = 0
    for run_id in RUN_IDS:
        last = step(run_id)
    return last


@pytest.mark.benchmark(group="SequenceGenerator.next (100,000 calls)")
def test_sequence_next(benchmark: Any, impl: ModuleType) -> None:
    expected = RUN_IDS.count(RUN_IDS[-1])
    assert benchmark(lambda: _next_all(impl.SequenceGenerator())) == expected
