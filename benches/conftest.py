"""Benchmark fixtures: every benchmark runs once per backend on identical data.

Each test is placed in a pytest-benchmark group named after the operation, so
``pytest benches/ --benchmark-only`` prints the Rust core and the reference
side by side, and ``python benches/report.py`` turns that into a ratio table.

PostgreSQL (``bench_postgres.py``): ``pg_server`` is a throwaway server of
``tests/pg_server.py`` (initdb, fsync and synchronous_commit on, 127.0.0.1 and
a free port), started once per session when a benchmark first asks for it;
``pg_dsn`` is its DSN, ``pg_settings`` its version and durability
settings, and ``pg_schemas`` a factory of fresh schema names
(``b_<uuid hex>``), every one dropped after the benchmark. Without PostgreSQL
the benchmarks using them skip with the reason, unless
``REPLAYCORE_REQUIRE_POSTGRES=1`` (set by CI): then they fail.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

# tests/pg_server.py is the one place that knows how to run a server; import it.
sys.path.append(str(Path(__file__).resolve().parents[1] / "tests"))
from pg_server import PostgresServer
from pg_server import why_unavailable as postgres_unavailable

BACKENDS = {"rust": "replaycore._core", "python": "replaycore.reference"}
REQUIRE_POSTGRES = os.environ.get("REPLAYCORE_REQUIRE_POSTGRES") == "1"


@pytest.fixture(params=list(BACKENDS), ids=list(BACKENDS))
def impl(request: pytest.FixtureRequest) -> ModuleType:
    """The backend module under test: ``replaycore._core`` or ``replaycore.reference``."""
    return importlib.import_module(BACKENDS[request.param])


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the session (fsync on), or a skip saying why there is none."""
    reason = postgres_unavailable()
    if reason is not None:
        if REQUIRE_POSTGRES:
            pytest.fail(f"{reason} (REPLAYCORE_REQUIRE_POSTGRES=1)", pytrace=False)
        pytest.skip(reason)
    with PostgresServer(listen=("127.0.0.1",)) as server:
        yield server


@pytest.fixture(scope="session")
def pg_dsn(pg_server: PostgresServer) -> str:
    """The DSN of ``pg_server``'s postgres database."""
    return pg_server.dsn()


@pytest.fixture
def pg_schemas(pg_server: PostgresServer) -> Iterator[Callable[[], str]]:
    """A factory of fresh schema names, all dropped (with what they hold) after the test."""
    names: list[str] = []

    def new() -> str:
        names.append(f"b_{uuid.uuid4().hex}")
        return names[-1]

    yield new
    for name in names:
        drop_schema(pg_server, name)


def drop_schema(server: PostgresServer, name: str) -> None:
    """DROP SCHEMA name CASCADE, waiting at most 10 s for locks (a leak must not hang)."""
    from psycopg import Error, sql

    drop = sql.SQL("SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS {} CASCADE").format(
        sql.Identifier(name)
    )
    with contextlib.suppress(Error):
        server.psql(drop)


@pytest.fixture(scope="session")
def pg_settings(pg_server: PostgresServer) -> dict[str, Any]:
    """The server's version and durability settings, for the report's machine line."""
    rows = pg_server.psql(
        "SELECT name, setting FROM pg_settings WHERE name IN "
        "('server_version', 'fsync', 'synchronous_commit', 'full_page_writes', 'wal_sync_method')"
    )
    return {str(name): str(setting) for name, setting in rows}
