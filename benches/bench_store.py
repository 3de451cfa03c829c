"""The content-equality store: put then get 100,000 bytes values (SPEC section 4)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest
from replaycore import Scope

ENTRIES = 100_000

SCOPES = [Scope("client-a", f"adapter-{i % 7}", f"idem_{i:016x}") for i in range(ENTRIES)]
VALUES = [b'{"status":"delivered","n":%d}' % i + b"." * 64 for i in range(ENTRIES)]


def _put_then_get(store_type: Any) -> int:
    store = store_type()
    put = store.put
    get = store.get
    for scope, value in zip(SCOPES, VALUES, strict=True):
        put(scope, value)
    found = 0
    for scope in SCOPES:
        found += get(scope) is not None
    return found


@pytest.mark.benchmark(group="store put+get (100,000 bytes values)")
def test_store_put_get(benchmark: Any, impl: ModuleType) -> None:
    assert benchmark(_put_then_get, impl.IdempotencyStore) == ENTRIES


def _replay_all(store: Any) -> int:
    put = store.put
    replays = 0
    for scope, value in zip(SCOPES, VALUES, strict=True):
        replays += not put(scope, value).inserted
    return replays


@pytest.mark.benchmark(group="store replay put (100,000 bytes values)")
def test_store_replay(benchmark: Any, impl: ModuleType) -> None:
    store = impl.IdempotencyStore()
    _put_then_get(lambda: store)
    assert benchmark(_replay_all, store) == ENTRIES
