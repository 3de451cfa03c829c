"""Where the time of a replay goes: one journal, from reading its bytes to replaying it.

Usage::

    python benches/hardware.py                  # mix a, REPLAYCORE_BENCH_RECORDS or 1,000,000
    python benches/hardware.py 200000 --mix c   # 200,000 records of mix c
    python benches/hardware.py --rounds 9

Writes one ``.rcj`` journal of a mix of :mod:`mixes` into a temporary
directory, then times, on that one file (page cache warm):

* reading it: into a fresh ``bytes``, and in 1 MiB chunks into one reused
  buffer (the floor under any reader: copying out of the page cache);
* CRC-32 of the whole file in one ``zlib.crc32`` call, and of every frame
  header and body as a reader checks them (from a Python loop, so that line
  is Python's per-frame overhead as much as CRC), both over the bytes in
  memory;
* decoding only: the Rust core's ``inspect_journal`` (decoded, counted,
  nothing reduced) and the msgspec loop of :func:`baselines.msgspec_decode`;
* the Rust core's ``read_journal`` (every record handed to Python);
* ``replay`` by the Rust core and by the reference (with the mix's replay
  options).

Each line gives the best of ``--rounds`` rounds (the reference: best of 1
above 200,000 records) in ms, and the median, GB/s and million records/s of
the best, and the share of the chunked read's speed it reaches: 100 % would
mean the step costs no more than copying the file out of the page cache.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from baselines import frame_crcs, msgspec_decode, read_file
from mixes import MIXES, write_mix
from replaycore import _core, reference
from report import machine_line

CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Timing:
    """The seconds each round of one step took."""

    label: str
    seconds: list[float]

    @property
    def best(self) -> float:
        return min(self.seconds)


def measure(label: str, step: Callable[[], object], rounds: int, expect: object) -> Timing:
    """Run ``step`` ``rounds`` times; each run must return ``expect`` (else AssertionError)."""
    seconds = []
    for _ in range(rounds):
        start = time.perf_counter()
        got = step()
        seconds.append(time.perf_counter() - start)
        assert got == expect, f"{label}: got {got!r}, expected {expect!r}"
    return Timing(label, seconds)


def report(timings: list[Timing], size: int, records: int, floor: float) -> str:
    """The table: one line per timing, its speed against ``floor`` (the read's best)."""
    width = max(len(t.label) for t in timings)
    lines = [
        f"{'step':<{width}}  {'best ms':>9}  {'median ms':>9}  {'GB/s':>6}  "
        f"{'M rec/s':>7}  {'of read':>7}  rounds",
    ]
    for timing in timings:
        best = timing.best
        lines.append(
            f"{timing.label:<{width}}  {best * 1e3:9.1f}  "
            f"{statistics.median(timing.seconds) * 1e3:9.1f}  {size / best / 1e9:6.2f}  "
            f"{records / best / 1e6:7.2f}  {floor / best:7.1%}  {len(timing.seconds)}"
        )
    return "\n".join(lines)


def arguments(doc: str, what: str, rounds: int) -> argparse.ArgumentParser:
    """The command line of a script timing the steps of one journal: the
    number of records in ``what`` (REPLAYCORE_BENCH_RECORDS or 1,000,000) and
    ``--rounds`` (default ``rounds``); ``doc``'s first paragraph describes it."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument(
        "records",
        nargs="?",
        type=int,
        default=int(os.environ.get("REPLAYCORE_BENCH_RECORDS", "1000000")),
        help=f"records in {what} (default REPLAYCORE_BENCH_RECORDS or 1,000,000)",
    )
    parser.add_argument(
        "--rounds", type=int, default=rounds, help=f"rounds per step (default {rounds})"
    )
    return parser


def main(argv: list[str]) -> int:
    parser = arguments(__doc__, "the journal", 5)
    parser.add_argument("--mix", choices=sorted(MIXES), default="a", help="the mix (default a)")
    args = parser.parse_args(argv[1:])
    n, mix, rounds = args.records, MIXES[args.mix], args.rounds
    slow = 1 if n > 200_000 else rounds
    with tempfile.TemporaryDirectory() as tmp:
        path = write_mix(Path(tmp), mix.key, n)
        size = path.stat().st_size
        data = path.read_bytes()
        options = mix.replay_options(n)

        def chunked() -> int:
            return read_file(path, chunk=CHUNK)

        def inspect() -> int:
            return int(_core.inspect_journal(path)["records"])

        def decode_loop() -> int:
            return msgspec_decode(path)

        def read_all() -> int:
            return sum(1 for _ in _core.read_journal(path))

        def replay(backend: ModuleType) -> Callable[[], tuple[str, int]]:
            def run() -> tuple[str, int]:
                result = backend.replay(path, **options)
                return result.status, result.records_applied

            return run

        read = measure("read file (1 MiB chunks, reused buffer)", chunked, rounds, size)
        decode = measure("decode only: Rust inspect_journal", inspect, rounds, n)
        msgspec = measure("decode only: msgspec loop (no CRC)", decode_loop, rounds, n)
        rust = measure("replay: Rust core", replay(_core), rounds, ("complete", n))
        python = measure("replay: reference", replay(reference), slow, ("complete", n))
        crc = zlib.crc32(data)
        timings = [
            read,
            measure("read file (fresh bytes)", lambda: read_file(path), rounds, size),
            measure("CRC-32 of the whole file (in memory)", lambda: zlib.crc32(data), rounds, crc),
            measure(
                "CRC-32 per frame, Python loop (in memory)", lambda: frame_crcs(data), rounds, n
            ),
            decode,
            msgspec,
            measure("Rust read_journal (records to Python)", read_all, rounds, n),
            rust,
            python,
        ]
    print(machine_line())
    print(
        f"Journal: mix {mix.key} ({mix.title}), {n:,} records, {size:,} bytes "
        f"({size / n:.0f} bytes a record), .rcj, page cache warm"
        + (f", replayed with {', '.join(options)}" if options else "")
        + "."
    )
    print(
        f"Best of {rounds} rounds (reference: of {slow}); GB/s, M rec/s and 'of read' "
        "from the best."
    )
    print()
    print(report(timings, size, n, read.best))
    print()
    print(
        f"Rust replay = {rust.best / decode.best:.2f}x its decode-only time and "
        f"{rust.best / read.best:.1f}x the chunked read; msgspec loop / Rust replay = "
        f"{msgspec.best / rust.best:.2f}x; reference / Rust replay = "
        f"{python.best / rust.best:.1f}x."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
