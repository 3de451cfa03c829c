"""SPEC 6.2 "Memory": replaying or inspecting a journal holds at most 4 times
its largest record on top of the reducer's state, a long JSON line of small
integers in ``Custom.data`` included.

The journal is written here; a fresh interpreter notes its resident set size
once replaycore is imported, reads the journal and reports its peak
(``VmHWM``). The growth must stay under 4 times the record plus a fixed
allowance (allocator slack, the readers' buffers). Only the Rust core is held
to it here: the reference decodes a record with msgspec into Python objects
(a list of ints costs an 8-byte pointer per int), about 4 times a line of
one-digit ints by itself; ``benches/memory.py`` measures both backends.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from replaycore.records import Custom, JournalRecord, encode_canonical

ALLOWANCE = 24 * 2**20

CHILD = """
import json, sys
from replaycore import _core

def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024

action, path, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
options = {"max_line_bytes": limit} if path.endswith(".jsonl") else {"max_frame_bytes": limit}
before = status("VmRSS")
if action == "replay":
    assert _core.replay(path, **options).records_applied == 1
else:
    assert _core.inspect_journal(path, **options)["records"] == 1
print(json.dumps({"grown": status("VmHWM") - before}))
"""


def write_json_line(path: Path, count: int) -> int:
    """One line whose ``Custom.data`` holds ``count`` one-digit ints."""
    ints = (b"0,1,2,3,4,5,6,7,8,9," * (count // 10 + 1))[: 2 * count - 1]
    line = (
        b'{"record_id":"big","journal_seq":1,"run_id":"run","payload":'
        b'{"kind":"custom","name":"ints","data":[' + ints + b"]}}"
    )
    path.write_bytes(line + b"\n")
    return len(line)


def write_frame(path: Path, count: int) -> int:
    """One frame whose ``Custom.data`` holds ``count`` one-digit ints."""
    empty = encode_canonical(
        JournalRecord(record_id="big", journal_seq=1, run_id="run", payload=Custom(name="ints"))
    )
    ints = (bytes(range(10)) * (count // 10 + 1))[:count]
    body = empty[:-1] + b"\xdd" + struct.pack(">I", count) + ints  # data replaces its nil
    head = struct.pack("<II", len(body), zlib.crc32(body))
    path.write_bytes(b"RCJ1" + head + struct.pack("<I", zlib.crc32(head)) + body)
    return len(body)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
@pytest.mark.parametrize("action", ["replay", "inspect"])
@pytest.mark.parametrize(
    ("name", "write", "ints"),
    [("run.jsonl", write_json_line, 10_000_000), ("run.rcj", write_frame, 20_000_000)],
)
def test_a_big_record_costs_at_most_four_times_its_size(tmp_path, name, write, ints, action):
    path = tmp_path / name
    size = write(path, ints)
    assert size >= 20_000_000
    out = subprocess.run(
        [sys.executable, "-c", CHILD, action, str(path), str(size)],
        check=True,
        capture_output=True,
        text=True,
    )
    grown = json.loads(out.stdout.splitlines()[-1])["grown"]
    assert grown < 4 * size + ALLOWANCE, (grown, size)
    # sanity: the record was read at all
    assert grown > size // 2, (grown, size)
