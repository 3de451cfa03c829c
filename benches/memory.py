"""Peak memory of replaying, inspecting and converting journals, Rust core and reference.

Usage: ``python benches/memory.py [RECORDS] [LINE_MB]`` (defaults 1,000,000
and 200). Three journals are generated:

* a framed ``.rcj`` journal of RECORDS synthetic records,
* a ``.jsonl`` journal whose middle line is one ``custom`` record of about
  LINE_MB megabytes: ``Custom.data`` is a list of single-digit integers
  (100 million of them for 200 MB), the case SPEC 6.2 "Memory" names, and
* a framed journal of one record holding the same integers (one byte each
  in msgpack, so a frame of LINE_MB / 2 megabytes).

Each journal is replayed and inspected, and converted into the other
format (``.rcj`` to ``.jsonl`` and back) as ``replaycore convert`` does
(:func:`replaycore.cli.convert_file`: the Rust core's converter, which
writes each record from its bytes, or ``read_journal`` + ``JournalWriter``
for what it declines and on the reference; the command itself keeps the
default 64 MiB limits, which the big records exceed). The reference
converts with ``REPLAYCORE_BACKEND=python``.

Each case runs in a fresh interpreter, which notes its resident set size
after importing replaycore, runs the case, and reports its peak (``VmHWM``
from ``/proc/self/status``); the figure is the growth between the two. For
the journal of small records it is given per record; for the others as a
multiple of the big record (its line, or its frame body),
which SPEC 6.2 bounds at 4 on top of the reducer's state (for the
journal of small records, per record only: there the reducer's state and
the readers' fixed buffers are all there is). Record ids of the
framed journal are ``rec-000000001``: the Rust core keeps each in an arena
as a length byte and its 13 bytes, reported apart, since the reducer must
keep every applied id to detect duplicates.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

from replaycore.records import Custom, JournalRecord, encode_canonical
from replaycore.synthetic import write_synthetic_journal

#: The child: its RSS before the case, and its peak after it, in KiB.
PROBE = """
import json, sys
from pathlib import Path
from types import SimpleNamespace
from replaycore import _core, cli, journal, reference

def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])

before = status("VmRSS")
{action}
print(json.dumps({{"before": before, "peak": status("VmHWM")}}))
"""
ID_ARENA_BYTES = 14
BACKENDS = {"rust": "_core", "reference": "reference"}
#: What ``REPLAYCORE_BACKEND`` selects each backend behind the facade.
FACADE = {"rust": "rust", "reference": "python"}


def growth_bytes(action: str, backend: str = "rust") -> int:
    """Peak RSS growth of a fresh interpreter running ``action``, in bytes;
    ``backend`` is the one behind the facade (``cli``, ``journal``)."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(action=action)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "REPLAYCORE_BACKEND": FACADE[backend]},
    )
    probe = json.loads(out.stdout.splitlines()[-1])
    return (probe["peak"] - probe["before"]) * 1024


def largest_frame(path: Path) -> int:
    """The longest frame body of a framed journal (headers only are read)."""
    largest, offset = 0, 4
    with path.open("rb") as f:
        f.seek(offset)
        while header := f.read(12):
            if len(header) < 12:
                break
            (length,) = struct.unpack_from("<I", header)
            largest = max(largest, length)
            f.seek(length, 1)
    return largest


def write_long_line_journal(path: Path, megabytes: int) -> int:
    """A three-line journal whose middle line holds ``megabytes`` MB of small
    ints in ``Custom.data``; returns that line's length."""
    count = megabytes * 1_000_000 // 2
    digits = b"0,1,2,3,4,5,6,7,8,9,"
    ints = (digits * (count // 10 + 1))[: 2 * count - 1]
    line = (
        b'{"record_id":"big","journal_seq":2,"run_id":"run","payload":'
        b'{"kind":"custom","name":"ints","data":[' + ints + b"]}}"
    )
    with path.open("wb") as f:
        f.write(
            b'{"record_id":"r1","journal_seq":1,"run_id":"run",'
            b'"payload":{"kind":"run_lifecycle","status":"running"}}\n'
        )
        f.write(line + b"\n")
        f.write(
            b'{"record_id":"r3","journal_seq":3,"run_id":"run",'
            b'"payload":{"kind":"run_lifecycle","status":"completed"}}\n'
        )
    return len(line)


def write_big_frame_journal(path: Path, megabytes: int) -> int:
    """A framed journal of one record whose ``Custom.data`` is ``megabytes``
    MB of small ints (one byte each in msgpack); returns its body length."""
    count = megabytes * 1_000_000
    empty = encode_canonical(
        JournalRecord(record_id="big", journal_seq=1, run_id="run", payload=Custom(name="ints"))
    )
    assert empty.endswith(b"\xc0")  # data=None, the last field
    digits = bytes(range(10))
    body = empty[:-1] + b"\xdd" + struct.pack(">I", count) + (digits * (count // 10 + 1))[:count]
    head = struct.pack("<II", len(body), zlib.crc32(body))
    path.write_bytes(b"RCJ1" + head + struct.pack("<I", zlib.crc32(head)) + body)
    return len(body)


def report(label: str, grown: int, largest: int, records: int | None = None) -> None:
    if records:
        # Small records: the reducer's state and the readers' fixed buffers
        # are all there is, so the figure per record is the telling one.
        print(f"  {label:<20} +{grown / 2**20:8.1f} MiB, {grown / records:.1f} bytes/record")
    else:
        print(f"  {label:<20} +{grown / 2**20:8.1f} MiB, {grown / largest:5.2f}x the record")


def convert_growth(backend: str, path: Path, limits: str, records: int) -> int:
    """Peak RSS growth of converting ``path`` into the other format, as
    ``replaycore convert`` does, with the read limits ``limits`` set."""
    target = path.with_name(f"converted-{backend}{'.rcj' if path.suffix == '.jsonl' else '.jsonl'}")
    grown = growth_bytes(
        f"n = cli.convert_file(Path({str(path)!r}), Path({str(target)!r}), {limits}); "
        f"assert n == {records}",
        backend,
    )
    target.unlink()
    return grown


def one_big_record(path: Path, limits: str, size: int, records: int) -> None:
    """Replay, inspect and convert ``path`` (whose largest record is ``size``
    bytes, ``records`` in all) on each backend with the ``limits`` set."""
    for name, module in BACKENDS.items():
        grown = growth_bytes(
            f"r = {module}.replay({str(path)!r}, {limits}); assert r.records_applied == {records}"
        )
        report(f"{name} replay", grown, size)
        grown = growth_bytes(
            f"s = {module}.inspect_journal({str(path)!r}, {limits}); "
            f"assert s['records'] == {records}"
        )
        report(f"{name} inspect", grown, size)
        report(f"{name} convert", convert_growth(name, path, limits, records), size)


def main(argv: list[str]) -> int:
    records = int(argv[1]) if len(argv) > 1 else 1_000_000
    megabytes = int(argv[2]) if len(argv) > 2 else 200
    with tempfile.TemporaryDirectory() as tmp:
        rcj = write_synthetic_journal(Path(tmp) / "run.rcj", records)
        frame = largest_frame(rcj)
        print(
            f"framed journal: {records:,} records, {rcj.stat().st_size / 1e6:.1f} MB, "
            f"largest record {frame} bytes"
        )
        for name, module in BACKENDS.items():
            grown = growth_bytes(
                f"r = {module}.replay({str(rcj)!r}); assert r.records_applied == {records}"
            )
            report(f"{name} replay", grown, frame, records)
            if name == "rust":
                print(
                    f"    of which record ids {ID_ARENA_BYTES} bytes/record; "
                    f"beyond the ids: {grown / records - ID_ARENA_BYTES:.1f} bytes/record"
                )
            grown = growth_bytes(f"{module}.inspect_journal({str(rcj)!r})")
            report(f"{name} inspect", grown, frame, records)
            report(f"{name} convert", convert_growth(name, rcj, "", records), frame, records)

        jsonl = write_synthetic_journal(Path(tmp) / "run.jsonl", records)
        print(f"the same records as JSON lines: {jsonl.stat().st_size / 1e6:.1f} MB")
        for name in BACKENDS:
            grown = convert_growth(name, jsonl, "", records)
            report(f"{name} convert", grown, frame, records)
        jsonl.unlink()

        long = Path(tmp) / "long.jsonl"
        line = write_long_line_journal(long, megabytes)
        print(f"JSON lines journal: one line of {line / 1e6:.1f} MB ({line // 2:,} small ints)")
        # its converted record is a frame of half the line
        limits = f"max_line_bytes={line + 1}, max_frame_bytes={line}"
        one_big_record(long, limits, line, 3)

        big = Path(tmp) / "big.rcj"
        body = write_big_frame_journal(big, megabytes // 2)
        ints = megabytes // 2 * 1_000_000
        print(f"framed journal: one frame of {body / 1e6:.1f} MB ({ints:,} small ints)")
        one_big_record(big, f"max_frame_bytes={body}, max_line_bytes={4 * body}", body, 1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
