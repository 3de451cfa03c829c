"""Key derivation: one key, and batches of 100,000 rows (SPEC section 2)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

ROWS = 100_000

LEGACY_ROWS = [(f"run-{i % 97:04d}", f"episode-{i % 13}", i) for i in range(ROWS)]
DERIVE_ROWS = [(f"run-{i % 97:04d}", "tool_call", i, b"\x00payload") for i in range(ROWS)]


@pytest.mark.benchmark(group="legacy_key (one key)")
def test_legacy_key(benchmark: Any, impl: ModuleType) -> None:
    key = benchmark(impl.legacy_key, "run-2f9c1", "episode-7", 42)
    assert key.startswith("idem_")


@pytest.mark.benchmark(group="derive_key (one key)")
def test_derive_key(benchmark: Any, impl: ModuleType) -> None:
    key = benchmark(impl.derive_key, "run-2f9c1", "tool_call", 42)
    assert len(key) == 5 + 32


@pytest.mark.benchmark(group="legacy_keys (100,000 rows)")
def test_legacy_keys(benchmark: Any, impl: ModuleType) -> None:
    keys = benchmark(impl.legacy_keys, LEGACY_ROWS)
    assert len(keys) == ROWS


@pytest.mark.benchmark(group="derive_keys (100,000 rows)")
def test_derive_keys(benchmark: Any, impl: ModuleType) -> None:
    keys = benchmark(impl.derive_keys, DERIVE_ROWS)
    assert len(keys) == ROWS
