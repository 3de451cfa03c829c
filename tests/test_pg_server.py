"""The PostgreSQL test infrastructure itself: pg_server, pg_schema, pg_hosts.

The store tests trust these fixtures to give a real, durable server that can
be crashed and disconnected on demand; each promise is checked here, so a
broken fixture fails loudly instead of making the store tests pass vacuously.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import TYPE_CHECKING

import psycopg
import pytest
from psycopg import sql

if TYPE_CHECKING:
    from conftest import PostgresHosts
    from pg_server import PostgresServer


def test_server_answers_select_1(pg_server: PostgresServer, pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert pg_dsn == f"postgresql://postgres@127.0.0.1:{pg_server.port}/postgres"


def test_durability_settings_are_on(pg_server: PostgresServer) -> None:
    """The crash tests mean nothing if someone turned fsync or synchronous commit off."""
    rows = pg_server.psql(
        "SELECT current_setting('fsync'), current_setting('synchronous_commit'),"
        " current_setting('max_connections')"
    )
    assert rows == [("on", "on", "300")]


def test_crash_then_start_keeps_a_committed_row(pg_server: PostgresServer, pg_schema: str) -> None:
    table = sql.Identifier(pg_schema, "t")
    pg_server.psql(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(pg_schema)))
    pg_server.psql(sql.SQL("CREATE TABLE {} (x int)").format(table))
    with psycopg.connect(pg_server.dsn()) as conn:
        conn.execute(sql.SQL("INSERT INTO {} VALUES (42)").format(table))
        conn.commit()
        conn.execute(sql.SQL("INSERT INTO {} VALUES (7)").format(table))  # never committed
        dsn_before = pg_server.dsn()
        pg_server.crash()
        assert not pg_server.running
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    started = time.monotonic()
    pg_server.start()
    recovery = time.monotonic() - started
    assert pg_server.running
    assert pg_server.dsn() == dsn_before  # same port after the crash
    assert pg_server.psql(sql.SQL("SELECT x FROM {}").format(table)) == [(42,)]
    assert recovery < 30


def test_restart_keeps_the_port_and_the_data(pg_server: PostgresServer, pg_schema: str) -> None:
    pg_server.psql(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(pg_schema)))
    port = pg_server.port
    pg_server.restart()
    assert pg_server.port == port
    found = pg_server.psql("SELECT count(*) FROM pg_namespace WHERE nspname = %s", [pg_schema])
    assert found == [(1,)]


def test_terminate_backends_kills_an_open_connection(pg_server: PostgresServer) -> None:
    pg_server.create_database("other_db")
    try:
        with (
            psycopg.connect(pg_server.dsn()) as victim,
            psycopg.connect(pg_server.dsn("other_db")) as bystander,
        ):
            victim.execute("SELECT 1")
            bystander.execute("SELECT 1")
            assert pg_server.terminate_backends(dbname="postgres") >= 1
            with pytest.raises(psycopg.OperationalError):
                victim.execute("SELECT 1")
            # Only the named database's connections were killed.
            assert bystander.execute("SELECT 1").fetchone() == (1,)
            assert pg_server.terminate_backends() >= 1
            with pytest.raises(psycopg.OperationalError):
                bystander.execute("SELECT 1")
    finally:
        pg_server.psql("DROP DATABASE other_db")


def test_a_stopped_server_is_started_for_the_next_test(pg_server: PostgresServer) -> None:
    """Leaves the server crashed; the next test finds it running (conftest restarts it)."""
    pg_server.crash()


def test_the_server_crashed_by_the_previous_test_runs_again(pg_server: PostgresServer) -> None:
    assert pg_server.running
    assert pg_server.psql("SELECT 1") == [(1,)]


_seen_schemas: list[str] = []


@pytest.mark.parametrize("run", [1, 2])
def test_pg_schema_is_new_each_test_and_dropped_after(
    pg_server: PostgresServer, pg_schema: str, run: int
) -> None:
    """Each run gets an unused name; the one before's schema, created here, is gone."""
    assert pg_schema not in _seen_schemas
    exists = "SELECT count(*) FROM pg_namespace WHERE nspname = %s"
    for earlier in _seen_schemas:
        assert pg_server.psql(exists, [earlier]) == [(0,)]
    assert pg_server.psql(exists, [pg_schema]) == [(0,)]
    _seen_schemas.append(pg_schema)
    pg_server.psql(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(pg_schema)))
    pg_server.psql(sql.SQL("CREATE TABLE {} (x int)").format(sql.Identifier(pg_schema, "t")))


CLIENT = """
import sys, psycopg
with psycopg.connect(sys.argv[1], connect_timeout=10) as conn:
    print(*conn.execute("SELECT 1, inet_client_addr()").fetchone())
"""


def test_namespace_hosts_reach_the_server_from_their_own_addresses(
    pg_hosts: PostgresHosts,
) -> None:
    server, hosts = pg_hosts
    assert len(hosts.hosts) == 2
    seen = []
    for host in hosts.hosts:
        argv = host.command([sys.executable, "-c", CLIENT, server.dsn(host=host.gateway)])
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        one, address = result.stdout.split()
        assert one == "1"
        assert address == host.address
        seen.append(address)
    assert len(set(seen)) == 2
    # The same server is reachable from the root namespace too.
    assert server.psql("SELECT 1") == [(1,)]


def test_namespace_hosts_do_not_reach_the_machines_loopback(pg_hosts: PostgresHosts) -> None:
    """127.0.0.1 inside a namespace is its own loopback: proof the client really is elsewhere."""
    server, hosts = pg_hosts
    argv = hosts.hosts[0].command([sys.executable, "-c", CLIENT, server.dsn(host="127.0.0.1")])
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert "Connection refused" in result.stderr
