"""Where the time of a PostgreSQL replay goes: one run, from the socket to the reducer.

Usage::

    python benches/postgres_limits.py            # REPLAYCORE_BENCH_RECORDS or 1,000,000
    python benches/postgres_limits.py 200000 --rounds 5

Starts a throwaway PostgreSQL server (``tests/pg_server.py``: initdb into a
temporary directory, 127.0.0.1, a free port, fsync on), appends one run of
:func:`replaycore.synthetic.synthetic_records` to a :class:`PostgresJournal`
(10,000 records a call) and writes the same records to an ``.rcj`` file.
Then it times, best and median of ``--rounds``:

* ``replaycore.replay`` of the file: the figure a PostgreSQL replay is
  compared with;
* ``PostgresJournal.replay`` of the run;
* fetching the run's pages only (what ``replay`` reads, on its two
  connections), and reducing those pages only, once fetched (one thread, as
  ``replay`` reduces them);
* the floor under any fetch of the same bytes: one stored value the size of
  a page, fetched as many times as the run has pages, on one connection
  (binary results, no query work but reading the value). PostgreSQL 15
  sends a result through its 8 KiB send buffer, one ``send`` per 8 KiB
  (``strace`` shows 147 ``sendto`` calls for a 1.2 MB value);
* the same bytes between two threads over a loopback TCP socket, written in
  8 KiB and in 1 MiB pieces: what the kernel alone costs.

Each line gives milliseconds, MB/s of frames and the step's time as a share
of the file replay's.
"""

from __future__ import annotations

import socket
import statistics
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import replaycore
from baselines import MAGIC
from hardware import Timing, arguments, measure
from replaycore import JournalWriter, ReplayReducer
from replaycore.synthetic import synthetic_records
from report import machine_line

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from pg_server import PostgresServer

RUN = "run-limits"
APPEND = 10_000


def loopback(total: int, piece: int) -> int:
    """Send ``total`` bytes in ``piece``-byte writes to a reader thread over
    127.0.0.1; returns the bytes received."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        got = [0]

        def read() -> None:
            connection, _ = server.accept()
            buffer = bytearray(1 << 20)
            with connection:
                while received := connection.recv_into(buffer):
                    got[0] += received

        reader = threading.Thread(target=read)
        reader.start()
        data = b"\0" * piece
        with socket.create_connection(("127.0.0.1", port)) as sender:
            for _ in range(total // piece):
                sender.sendall(data)
        reader.join()
    return got[0]


def table(timings: list[Timing], size: int, baseline: float) -> str:
    """One line per timing: ms, MB/s of ``size`` bytes, share of ``baseline``."""
    width = max(len(t.label) for t in timings)
    lines = [f"{'step':<{width}}  {'best ms':>8}  {'median ms':>9}  {'MB/s':>6}  {'of file':>7}"]
    for timing in timings:
        best = timing.best
        lines.append(
            f"{timing.label:<{width}}  {best * 1e3:8.1f}  "
            f"{statistics.median(timing.seconds) * 1e3:9.1f}  {size / best / 1e6:6.0f}  "
            f"{best / baseline:6.2f}x"
        )
    return "\n".join(lines)


def limits(dsn: str, schema: str, n: int, rounds: int) -> str:
    """The report for a run of ``n`` records in ``schema`` (which must not
    exist yet) on the server at ``dsn``: the lines described above."""
    records = [msgspec.structs.replace(r, journal_seq=0) for r in synthetic_records(n, run_id=RUN)]
    from replaycore.postgres import PostgresJournal

    with tempfile.TemporaryDirectory() as tmp, PostgresJournal(dsn, schema=schema) as journal:
        path = Path(tmp) / "run.rcj"
        with JournalWriter(path, fsync="never") as writer:
            writer.append_many(records)
        for start in range(0, n, APPEND):
            journal.append(RUN, records[start : start + APPEND])
        del records
        # The pages replay() reads (private helpers: this script times replay's parts).
        raw = RUN.encode()
        last, count = journal._extents([raw])[raw]
        pages = list(journal._pages(raw, last, count))
        size = sum(len(page) - len(MAGIC) for page in pages)
        page_size = size // len(pages)
        expect = ("complete", n)

        def file_replay() -> tuple[str, int]:
            result = replaycore.replay(path)
            return result.status, result.records_applied

        def pg_replay() -> tuple[str, int]:
            result = journal.replay(RUN)
            return result.status, result.records_applied

        def fetch() -> int:
            return sum(len(page) - len(MAGIC) for page in journal._pages(raw, last, count))

        def reduce() -> tuple[str, int]:
            reducer = ReplayReducer()
            for page in pages:
                reducer.apply_many(page)
            result = reducer.finish()
            return result.status, result.records_applied

        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(f"VACUUM ANALYZE {schema}.journal_records")
            connection.execute(
                f"CREATE TABLE {schema}.blob AS SELECT convert_to(repeat('x', %s), 'UTF8') AS b",
                (page_size,),
            )
            connection.execute(f"ALTER TABLE {schema}.blob ALTER COLUMN b SET STORAGE EXTERNAL")
            pgconn: Any = connection.pgconn
            query = f"SELECT b FROM {schema}.blob".encode()

            def blob() -> int:
                total = 0
                for _ in pages:
                    total += len(pgconn.exec_params(query, [], result_format=1).get_value(0, 0))
                return total

            eight_kib, one_mib = size // 8192 * 8192, size >> 20 << 20
            file = measure("replay: .rcj file (Rust core)", file_replay, rounds, expect)
            timings = [
                file,
                measure("replay: PostgresJournal", pg_replay, rounds, expect),
                measure("fetch the run's pages only (2 connections)", fetch, rounds, size),
                measure("reduce the fetched pages only (1 thread)", reduce, rounds, expect),
                measure(
                    f"floor: one {page_size / 1e6:.1f} MB value x {len(pages)} (1 connection)",
                    blob,
                    rounds,
                    page_size * len(pages),
                ),
                measure(
                    "floor: loopback TCP, 8 KiB writes",
                    lambda: loopback(eight_kib, 8192),
                    rounds,
                    eight_kib,
                ),
                measure(
                    "floor: loopback TCP, 1 MiB writes",
                    lambda: loopback(one_mib, 1 << 20),
                    rounds,
                    one_mib,
                ),
            ]
    return "\n".join(
        [
            f"{n:,} records, {size / 1e6:.0f} MB of frames in {len(pages)} pages",
            table(timings, size, file.best),
        ]
    )


def main(argv: list[str]) -> int:
    args = arguments(__doc__, "the run", 3).parse_args(argv[1:])
    with PostgresServer() as server:
        report = limits(server.dsn(), "limits", max(args.records, 2), args.rounds)
    print(machine_line())
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
