"""Shared fixtures of the replaycore test suite.

* ``impl`` runs a behaviour test once per backend: the Rust core
  (``replaycore._core``, id ``rust``) and the pure-Python reference
  (``replaycore.reference``, id ``python``).
* The hypothesis profile ``replaycore`` is loaded for every test: no deadline
  (the first call of a backend may be slow), 200 examples by default, more
  with ``REPLAYCORE_HYPOTHESIS_EXAMPLES=<n>``.
* Before any test runs, the session checks that ``replaycore`` is the
  installed package (a wheel, or an editable install of this repository),
  not a bare source tree put on ``sys.path`` by hand, which would test stale
  or missing compiled code. ``REPLAYCORE_ALLOW_SOURCE=1`` turns the check off.
* PostgreSQL (``pg_server.py``, ``netns.py``): ``pg_server`` is a real server
  started once per session on a free port of 127.0.0.1; ``pg_dsn`` is its
  DSN, ``pg_schema`` a fresh schema name per test (dropped afterwards), and
  ``pg_hosts`` a second server reached from two network namespaces, for
  tests that need clients on different addresses (root only). Tests using
  them are marked ``postgres``. A test that leaves a server stopped or
  crashed gets it started again for the next one. Without PostgreSQL they
  skip, unless ``REPLAYCORE_REQUIRE_POSTGRES=1`` (set by CI): then they fail,
  and so does a session in which no ``postgres`` test passed.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import pytest
from hypothesis import HealthCheck, settings
from netns import TestHosts
from netns import why_unavailable as netns_unavailable
from pg_server import PostgresServer
from pg_server import why_unavailable as postgres_unavailable
from support import SKEW_S

REPO = Path(__file__).resolve().parents[1]
SOURCE_PACKAGE = REPO / "python" / "replaycore"

BACKENDS = {"rust": "replaycore._core", "python": "replaycore.reference"}

settings.register_profile(
    "replaycore",
    deadline=None,
    max_examples=int(os.environ.get("REPLAYCORE_HYPOTHESIS_EXAMPLES", "200")),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile("replaycore")


def _editable_install_of_repo() -> bool:
    """True when pip's metadata says replaycore is an editable install of REPO."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution("replaycore")
    except PackageNotFoundError:
        return False
    raw = dist.read_text("direct_url.json")
    if not raw:
        return False
    info = json.loads(raw)
    if not info.get("dir_info", {}).get("editable", False):
        return False
    url = info.get("url", "")
    return url.startswith("file://") and Path(url[len("file://") :]).resolve() == REPO


def installed_package_problem() -> str | None:
    """Why the imported replaycore is not an installed package, or None when it is."""
    import replaycore

    location = Path(replaycore.__file__).resolve().parent
    if location != SOURCE_PACKAGE:
        return None
    if _editable_install_of_repo():
        return None
    return (
        f"replaycore was imported from the source tree {location} without being installed "
        "(pip install -e . or a wheel); set REPLAYCORE_ALLOW_SOURCE=1 to test it anyway"
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.environ.get("REPLAYCORE_ALLOW_SOURCE") == "1":
        return
    problem = installed_package_problem()
    if problem is not None:
        raise pytest.UsageError(problem)


@pytest.fixture(params=list(BACKENDS), ids=list(BACKENDS))
def impl(request: pytest.FixtureRequest) -> ModuleType:
    """The backend module under test (``replaycore._core`` or ``replaycore.reference``)."""
    return importlib.import_module(BACKENDS[request.param])


# -- PostgreSQL ------------------------------------------------------------------

REQUIRE_POSTGRES = os.environ.get("REPLAYCORE_REQUIRE_POSTGRES") == "1"
# A test that uses one of these is marked ``postgres``.
POSTGRES_FIXTURES = frozenset({"pg_server", "pg_dsn", "pg_schema", "pg_schemas", "pg_hosts"})


class PostgresHosts(NamedTuple):
    """What ``pg_hosts`` gives: a server listening on each host's gateway, and the hosts."""

    server: PostgresServer
    hosts: TestHosts


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "postgres: needs a PostgreSQL server (the pg_* fixtures add it)"
    )
    if REQUIRE_POSTGRES:
        config.pluginmanager.register(PostgresRequired(config), "replaycore-require-postgres")


@pytest.hookimpl(tryfirst=True)  # before -m selects on the marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if POSTGRES_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)


def _skip_or_fail(reason: str | None) -> None:
    """Skip the test for ``reason``, or fail it when PostgreSQL tests are required."""
    if reason is None:
        return
    if REQUIRE_POSTGRES:
        pytest.fail(f"{reason} (REPLAYCORE_REQUIRE_POSTGRES=1)", pytrace=False)
    pytest.skip(reason)


def _ensure_running(server: PostgresServer) -> None:
    """Start ``server`` again (recovering it if crashed) when a test left it down."""
    if not server.running:
        server.start()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole session, on 127.0.0.1 and a free port."""
    _skip_or_fail(postgres_unavailable())
    with PostgresServer(listen=("127.0.0.1",)) as server:
        yield server


@pytest.fixture
def pg_dsn(pg_server: PostgresServer) -> str:
    """The DSN of ``pg_server``'s postgres database."""
    return pg_server.dsn()


@pytest.fixture
def pg_schema(pg_server: PostgresServer) -> Iterator[str]:
    """A schema name no other test uses; the store under test creates the schema.

    Dropped after the test, with a lock timeout, so that a connection the
    test leaked inside a transaction cannot hang the session; a schema that
    cannot be dropped stays behind, harmless since names are never reused.
    """
    name = f"t_{uuid.uuid4().hex[:8]}"
    yield name
    _ensure_running(pg_server)
    _drop_schema(pg_server, name)


def _drop_schema(server: PostgresServer, name: str) -> None:
    from psycopg import Error, sql

    drop = sql.SQL("SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS {} CASCADE").format(
        sql.Identifier(name)
    )
    with contextlib.suppress(Error):
        server.psql(drop)


@pytest.fixture
def pg_schemas(pg_server: PostgresServer) -> Iterator[Callable[[], str]]:
    """A factory of fresh schema names (one store each), all dropped after the test.

    For fixtures that build several independent stores in one test, as the
    SQLite ones open a new file per store.
    """
    names: list[str] = []

    def new() -> str:
        names.append(f"t_{uuid.uuid4().hex[:8]}")
        return names[-1]

    yield new
    _ensure_running(pg_server)
    for name in names:
        _drop_schema(pg_server, name)


@pytest.fixture(scope="session")
def pg_hosts() -> Iterator[PostgresHosts]:
    """Two network-namespace hosts and a server each can reach at its ``gateway``.

    The server also listens on 127.0.0.1. Needs root (``ip netns add``).
    """
    _skip_or_fail(postgres_unavailable() or netns_unavailable())
    with TestHosts(2) as hosts:
        listen = ("127.0.0.1", *(host.gateway for host in hosts.hosts))
        with PostgresServer(listen=listen) as server:
            yield PostgresHosts(server, hosts)


@pytest.fixture(autouse=True)
def _restart_postgres_left_down(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test that stopped or crashed a session server, start it for the next test."""
    yield
    # funcargs holds only the fixtures that were set up, so a skipped pg_server is not retried.
    funcargs = getattr(request.node, "funcargs", None) or {}
    if isinstance(funcargs.get("pg_server"), PostgresServer):
        _ensure_running(funcargs["pg_server"])
    if isinstance(funcargs.get("pg_hosts"), PostgresHosts):
        _ensure_running(funcargs["pg_hosts"].server)


class PostgresRequired:
    """With REPLAYCORE_REQUIRE_POSTGRES=1, fail a session that did not really test PostgreSQL.

    A missing server already fails the tests that use it; this catches the
    quieter ways for PostgreSQL coverage to vanish. Two rules, kept simple:

    * postgres tests were selected but none passed (all skipped, say), or
    * the whole suite was run (tests/ or the repository, no -k or -m) and no
      postgres test was even collected.

    A run of other tests only (a path, -k, -m) selects none and is let be.
    """

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.selected = 0
        self.passed = 0
        self.problem: str | None = None

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.selected = sum(1 for item in session.items if item.get_closest_marker("postgres"))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" and report.passed and "postgres" in report.keywords:
            self.passed += 1

    def _whole_suite(self) -> bool:
        option = self.config.option
        if option.keyword or option.markexpr:
            return False
        tests = Path(__file__).resolve().parent
        here = self.config.invocation_params.dir
        for arg in self.config.args:
            path = (here / arg.split("::")[0]).resolve()
            if tests == path or tests.is_relative_to(path):
                return True
        return False

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.config.option.collectonly:
            return
        if self.selected and not self.passed:
            self.problem = f"none of the {self.selected} postgres tests passed"
        elif not self.selected and self._whole_suite():
            self.problem = "the whole suite ran, but no postgres test was collected"
        if self.problem and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.problem:
            terminalreporter.write_sep("=", "REPLAYCORE_REQUIRE_POSTGRES=1", red=True)
            terminalreporter.write_line(f"session failed: {self.problem}", red=True)


@pytest.fixture
def skewed_local_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's clock a year ahead of the server's: a time that comes from
    it (rather than from the database) falls outside every bound checked."""
    real_time, real_time_ns = time.time, time.time_ns
    monkeypatch.setattr(time, "time", lambda: real_time() + SKEW_S)
    monkeypatch.setattr(time, "time_ns", lambda: real_time_ns() + SKEW_S * 10**9)
