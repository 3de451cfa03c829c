"""PostgresResultCache.execute beside idemkit's PostgreSQL backend, one run, one server.

Usage::

    pip install idemkit==1.0.2 asyncpg   # the peer; not a dependency of replaycore
    python benches/idemkit_peer.py [CALLS] [ROUNDS]   # defaults 1,000 and 2

Starts a throwaway PostgreSQL server (``tests/pg_server.py``: initdb into a
temporary directory, 127.0.0.1, a free port, fsync on) and, ROUNDS times,
makes CALLS first executions then CALLS replays, one call after another from
one client, with idemkit's ``idempotent`` decorator over ``PostgresBackend``
and with :meth:`PostgresResultCache.execute`, on the same server. Both record
a claim durably before the step runs and its outcome durably after (two
commits a first execution), and a replay reads the stored outcome. Prints
calls/s and replaycore's ratio to idemkit for each round.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from pg_server import PostgresServer
from replaycore.cache import Success
from replaycore.postgres import PostgresResultCache


def step_value(i: int) -> dict[str, Any]:
    """What the step returns: a small JSON object, as the benchmark suite's."""
    return {"status": "delivered", "n": i, "receipt": "r" * 32}


async def idemkit_rates(dsn: str, calls: int, table: str) -> tuple[float, float]:
    """(first executions/s, replays/s) of idemkit's decorator."""
    from idemkit.adapters.ai import idempotent
    from idemkit.backends.postgres import PostgresBackend, init_pg

    await init_pg(dsn, table=table)
    backend = PostgresBackend.from_url(dsn, table=table)

    @idempotent(backend=backend)
    async def step(i: int) -> dict[str, Any]:
        return step_value(i)

    await step(-1)  # the pool and the listener, before timing
    start = time.perf_counter()
    for i in range(calls):
        assert await step(i) == step_value(i)
    first = calls / (time.perf_counter() - start)
    start = time.perf_counter()
    for i in range(calls):
        assert await step(i) == step_value(i)
    replays = calls / (time.perf_counter() - start)
    await backend.aclose()
    return first, replays


def replaycore_rates(dsn: str, calls: int, schema: str) -> tuple[float, float]:
    """(first executions/s, replays/s) of PostgresResultCache.execute."""

    def never() -> Any:
        raise AssertionError("a replay ran the step")

    with PostgresResultCache(dsn, schema=schema) as cache:
        cache.execute("warm-up", lambda: 0)
        start = time.perf_counter()
        for i in range(calls):
            assert cache.execute(f"step-{i}", lambda i=i: step_value(i)) == Success(step_value(i))
        first = calls / (time.perf_counter() - start)
        start = time.perf_counter()
        for i in range(calls):
            assert cache.execute(f"step-{i}", never) == Success(step_value(i))
        replays = calls / (time.perf_counter() - start)
    return first, replays


def main(argv: list[str]) -> int:
    calls = int(argv[1]) if len(argv) > 1 else 1_000
    rounds = int(argv[2]) if len(argv) > 2 else 2
    with PostgresServer() as server:
        dsn = server.dsn()
        for n in range(rounds):
            peer_first, peer_replays = asyncio.run(idemkit_rates(dsn, calls, f"idemkit_{n}"))
            first, replays = replaycore_rates(dsn, calls, f"replaycore_{n}")
            print(
                f"round {n + 1}: first executions: idemkit {peer_first:,.0f}/s, "
                f"replaycore {first:,.0f}/s ({first / peer_first:.2f}x); "
                f"replays: idemkit {peer_replays:,.0f}/s, "
                f"replaycore {replays:,.0f}/s ({replays / peer_replays:.2f}x)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
