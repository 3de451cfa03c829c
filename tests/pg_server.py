"""A throwaway PostgreSQL server for the tests: initdb, start, stop, crash, restart.

The stores are tested against a real server, not a mock, because what they
promise (a committed write survives a crash; a dropped connection is retried
or reported) is only true of the real thing. Each ``PostgresServer`` owns one
data directory under ``/tmp`` and one TCP port, chosen free once and kept
for the object's life, so DSNs handed out before a ``crash()`` or
``restart()`` still work afterwards.

Durability settings are never relaxed: ``fsync`` and ``synchronous_commit``
stay on, since the crash tests check exactly what they guarantee.

Nothing here depends on pytest; ``conftest.py`` wraps it in fixtures.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from psycopg.abc import Query

DEBIAN_BINDIRS = Path("/usr/lib/postgresql")
PROGRAMS = ("initdb", "pg_ctl", "postgres")
# initdb refuses to run as root, and so does the server: as root, both run
# as this system user (Debian's postgresql package creates it).
SERVER_USER = "postgres"
# Seconds that pg_ctl waits for a start (crash recovery included) or a stop.
PG_CTL_TIMEOUT = 60
# Networks whose host connections are trusted: loopback, and 10.0.0.0/8 for
# the network namespaces of netns.py (10.213.N.0/24).
TRUSTED_NETWORKS = ("127.0.0.1/32", "::1/128", "10.0.0.0/8")


def _bindir_version(path: Path) -> tuple[int, ...]:
    """(15,) for /usr/lib/postgresql/15/bin, so that 10 sorts after 9.6."""
    return tuple(int(part) for part in re.findall(r"\d+", path.parent.name))


def find_bindir() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres, or None.

    PATH wins, so a developer can point the tests at a build of their own;
    otherwise the newest of Debian's versioned directories, which are not on
    PATH by default.
    """
    on_path = shutil.which("pg_ctl")
    if on_path is not None:
        bindir = Path(on_path).parent
        if all((bindir / program).is_file() for program in PROGRAMS):
            return bindir
    candidates = [
        bindir
        for bindir in DEBIAN_BINDIRS.glob("*/bin")
        if all((bindir / program).is_file() for program in PROGRAMS)
    ]
    if not candidates:
        return None
    return max(candidates, key=_bindir_version)


def why_unavailable() -> str | None:
    """Why a PostgresServer cannot run on this machine, or None when it can."""
    if find_bindir() is None:
        return (
            "PostgreSQL server programs (initdb, pg_ctl) not found; install Debian's "
            "postgresql package or put them on PATH"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return (
                f"running as root, but there is no {SERVER_USER!r} system user to run "
                "initdb and the server as (PostgreSQL refuses to run as root)"
            )
        if shutil.which("runuser") is None:
            return "running as root, but runuser (util-linux) is missing"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'psycopg[binary]')"
    return None


def _free_port() -> int:
    """A TCP port that nothing listens on now (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _clean_environment() -> dict[str, str]:
    """The environment without PG* variables, which would redirect pg_ctl and initdb.

    LC_ALL=C keeps the server's messages in English for the error reports.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


class PostgresServer:
    """One PostgreSQL server in ``base_dir``: data in ``data/``, socket and log beside it.

    ``base_dir`` defaults to a new ``tempfile.mkdtemp`` directory under /tmp;
    either way the server owns it and ``cleanup()`` deletes it. As root, the
    server runs as the ``postgres`` user, who must be able to reach
    ``base_dir``: pytest's ``tmp_path`` lies under a 0700 directory of root's,
    so don't pass that.
    """

    host = "127.0.0.1"

    def __init__(
        self, base_dir: Path | None = None, listen: Sequence[str] = ("127.0.0.1",)
    ) -> None:
        bindir = find_bindir()
        if bindir is None:
            raise RuntimeError(why_unavailable())
        if base_dir is None:
            base_dir = Path(tempfile.mkdtemp(prefix="replaycore-pg-", dir="/tmp"))
        self.base_dir = base_dir
        self.data_dir = base_dir / "data"
        self.log_file = base_dir / "server.log"
        self.listen = tuple(listen)
        self.bindir = bindir
        self.port = _free_port()
        self._as_root = os.geteuid() == 0

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> None:
        """Start the server and wait until it accepts connections.

        The first call runs initdb; later calls (after ``stop()`` or
        ``crash()``) start on the same data directory and port, and the
        server replays its WAL first when it was crashed.
        """
        if not self.data_dir.exists():
            self._initdb()
        self._pg_ctl("start", "-w", "-t", str(PG_CTL_TIMEOUT), "-l", str(self.log_file))

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``smart``, ``fast`` (clean shutdown) or ``immediate`` (a crash)."""
        self._pg_ctl("stop", "-w", "-t", str(PG_CTL_TIMEOUT), "-m", mode)

    def crash(self) -> None:
        """Stop the server as a crash would: no checkpoint, WAL replayed on the next start.

        Every backend is killed at once, so open connections break and
        nothing that was not committed survives.
        """
        self.stop("immediate")

    def restart(self) -> None:
        """A clean shutdown (if running) and a new start on the same port."""
        if self.running:
            self.stop("fast")
        self.start()

    @property
    def running(self) -> bool:
        """True while a server process runs on this data directory (``pg_ctl status``)."""
        if not self.data_dir.exists():
            return False
        # pg_ctl status exits 0 when running, 3 when not, 4 without a data directory.
        return self._run([self._program("pg_ctl"), "status", "-D", str(self.data_dir)]) == 0

    def cleanup(self) -> None:
        """Stop the server if it runs, then delete ``base_dir`` with everything in it."""
        try:
            if self.running:
                try:
                    self.stop("fast")
                except RuntimeError:
                    self.stop("immediate")
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.cleanup()  # __exit__ is not called when __enter__ fails
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    # -- clients ------------------------------------------------------------

    def dsn(self, dbname: str = "postgres", host: str | None = None) -> str:
        """A libpq URI for user postgres (trusted, no password) on this server's port.

        ``host`` is one of the ``listen`` addresses, by default 127.0.0.1;
        from inside a network namespace, pass that namespace's gateway.
        """
        host = host or self.host
        if ":" in host:
            host = f"[{host}]"  # an IPv6 address, as URIs write it
        return f"postgresql://{SERVER_USER}@{host}:{self.port}/{dbname}"

    def psql(
        self, query: Query, params: Sequence[Any] | None = None, dbname: str = "postgres"
    ) -> list[tuple[Any, ...]]:
        """Run one statement in autocommit mode and return its rows ([] for none).

        For test set-up and inspection only, hence a new connection each call.
        """
        import psycopg

        with psycopg.connect(self.dsn(dbname), autocommit=True, connect_timeout=10) as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description is not None else []

    def create_database(self, name: str) -> None:
        """CREATE DATABASE name (quoted as an identifier)."""
        from psycopg import sql

        self.psql(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def terminate_backends(self, dbname: str | None = None) -> int:
        """Kill every client connection (of ``dbname`` only, if given); return how many.

        Simulates a server-side disconnect: each victim's next query raises
        ``psycopg.OperationalError``. The calling connection is spared.
        """
        query: str = (
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
        params: list[str] = []
        if dbname is not None:
            query += " AND datname = %s"
            params.append(dbname)
        return sum(1 for (killed,) in self.psql(query, params) if killed)

    # -- internals ----------------------------------------------------------

    def _initdb(self) -> None:
        """Create the cluster and write its settings, once per base_dir."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if self._as_root:
            # mkdtemp makes base_dir 0700 root; the server user must own it.
            user = pwd.getpwnam(SERVER_USER)
            os.chown(self.base_dir, user.pw_uid, user.pw_gid)
            if self._run(["test", "-w", str(self.base_dir)]):
                raise RuntimeError(
                    f"the {SERVER_USER} user cannot write to {self.base_dir}: a parent "
                    "directory is not traversable (pytest's tmp_path is under a 0700 "
                    "directory); use a directory under /tmp"
                )
        self._check(
            "initdb",
            [
                self._program("initdb"),
                "-D",
                str(self.data_dir),
                "--auth=trust",
                "-U",
                SERVER_USER,
                "-E",
                "UTF8",
                "--locale=C",
            ],
        )
        settings = {
            "port": str(self.port),
            "listen_addresses": ",".join(self.listen),
            "unix_socket_directories": str(self.base_dir),
            "max_connections": "300",
            # Already the defaults; written out so that no one "speeds up" the tests
            # by turning them off: the crash tests check what they guarantee.
            "fsync": "on",
            "synchronous_commit": "on",
            "full_page_writes": "on",
        }
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# replaycore tests (tests/pg_server.py)\n")
            for name, value in settings.items():
                conf.write(f"{name} = '{value}'\n")
        hba = ["local all all trust"]
        hba += [f"host all all {network} trust" for network in TRUSTED_NETWORKS]
        (self.data_dir / "pg_hba.conf").write_text("\n".join(hba) + "\n")

    def _program(self, name: str) -> str:
        return str(self.bindir / name)

    def _as_server_user(self, argv: Iterable[str]) -> list[str]:
        argv = list(argv)
        return ["runuser", "-u", SERVER_USER, "--", *argv] if self._as_root else argv

    def _run(self, argv: list[str]) -> int:
        """Exit status of argv run as the server user, output discarded."""
        return subprocess.run(
            self._as_server_user(argv),
            cwd=self.base_dir,
            env=_clean_environment(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=PG_CTL_TIMEOUT,
            check=False,
        ).returncode

    def _pg_ctl(self, *args: str) -> None:
        self._check(f"pg_ctl {args[0]}", [self._program("pg_ctl"), "-D", str(self.data_dir), *args])

    def _check(self, what: str, argv: list[str]) -> None:
        """Run argv as the server user; on failure raise with its output and the log's tail."""
        try:
            result = subprocess.run(
                self._as_server_user(argv),
                cwd=self.base_dir,  # the server user may not be able to enter ours
                env=_clean_environment(),
                capture_output=True,
                text=True,
                timeout=PG_CTL_TIMEOUT + 10,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"{what} timed out\n{self._log_tail()}") from exc
        if result.returncode != 0:
            raise RuntimeError(
                f"{what} failed (exit {result.returncode}) for the server in {self.base_dir}"
                f" on port {self.port}:\n{result.stdout}{result.stderr}{self._log_tail()}"
            )

    def _log_tail(self, lines: int = 30) -> str:
        try:
            tail = self.log_file.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return "(no server log)"
        return f"--- last lines of {self.log_file}:\n" + "\n".join(tail)
