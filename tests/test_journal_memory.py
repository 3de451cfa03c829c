"""SPEC 6.2 "Memory": replaying, inspecting or converting a journal holds at
most 4 times its largest record on top of the reducer's state, a long JSON
line of small integers in ``Custom.data`` included.

The journal is written here; a fresh interpreter notes its resident set size
once replaycore is imported, reads the journal and reports its peak
(``VmHWM``). The growth must stay under 4 times the record plus a fixed
allowance (allocator slack, the readers' buffers). On records of small
integers only the Rust core (replay, inspect and its own converter,
``_core.convert_journal``) is held to it: the reference decodes a record with
msgspec into Python objects (a list of ints costs an 8-byte pointer per int,
4 times a line of one-digit ints and 8 times a frame by itself), and so does
its ``convert``, which hands records from ``read_journal`` to a
``JournalWriter``. On records of big strings, where objects cost what they
encode to, the reference is held to it too, as is its ``convert``;
``benches/memory.py`` measures both backends on every case.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from replaycore.records import Custom, JournalRecord, encode_canonical
from replaycore.reference.journal import JournalWriter

ALLOWANCE = 24 * 2**20

#: What both children start with: reading the process's own memory counters.
STATUS = """
def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
"""

CHILD = (
    """
import json, sys
from replaycore import _core
"""
    + STATUS
    + """
action, path, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
options = {"max_line_bytes": limit} if path.endswith(".jsonl") else {"max_frame_bytes": limit}
before = status("VmRSS")
if action == "replay":
    assert _core.replay(path, **options).records_applied == 1
elif action == "inspect":
    assert _core.inspect_journal(path, **options)["records"] == 1
else:  # convert into the other format, with the same read limit
    target = path + (".rcj" if path.endswith(".jsonl") else ".jsonl")
    assert _core.convert_journal(path, target, **options) == 1
print(json.dumps({"grown": status("VmHWM") - before}))
"""
)


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
@pytest.mark.parametrize("action", ["replay", "inspect", "convert"])
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


#: The child for the cases below: ``backend`` is ``rust`` or ``python``.
CASE = (
    """
import json, os, sys
from pathlib import Path
from replaycore import _core, cli, reference

"""
    + STATUS
    + """
action, path, records = sys.argv[1], sys.argv[2], int(sys.argv[3])
impl = _core if os.environ["REPLAYCORE_BACKEND"] == "rust" else reference
before = status("VmRSS")
if action == "replay":
    assert impl.replay(path).records_applied == records
elif action == "inspect":
    assert impl.inspect_journal(path)["records"] == records
elif action == "read":
    assert sum(1 for _ in impl.read_journal(path)) == records
else:  # convert, as the command does, through the facade
    target = Path(path).with_name("converted" + (".rcj" if path.endswith(".jsonl") else ".jsonl"))
    done = cli.convert_file(Path(path), target)
    assert done == records
print(json.dumps({"grown": status("VmHWM") - before}))
"""
)
BIG_STRING = 10_000_000


def write_strings(path: Path, records: int) -> int:
    """A journal of ``records`` records, each a ``Custom`` holding one string of
    10 MB; returns the largest record's encoded size."""
    with JournalWriter(path, fsync="never") as writer:
        for i in range(records):
            data = f"{i}" * BIG_STRING
            writer.append(
                JournalRecord(
                    record_id=f"r{i}",
                    journal_seq=0,
                    run_id="run",
                    payload=Custom(name="s", data=data),
                )
            )
    return path.stat().st_size // records + 1


def grown(backend: str, action: str, path: Path, records: int) -> int:
    out = subprocess.run(
        [sys.executable, "-c", CASE, action, str(path), str(records)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "REPLAYCORE_BACKEND": backend},
    )
    return int(json.loads(out.stdout.splitlines()[-1])["grown"])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
@pytest.mark.parametrize("action", ["replay", "inspect", "read", "convert"])
@pytest.mark.parametrize("name", ["run.rcj", "run.jsonl"])
def test_the_reference_holds_one_big_record_at_a_time(tmp_path, name, action):
    """Four records of 10 MB strings: the reference reads the journal a
    record at a time (not the whole file, not two records at once), and
    convert appends a big record alone, not in a batch of them."""
    path = tmp_path / name
    size = write_strings(path, 4)
    used = grown("python", action, path, 4)
    # read_journal hands out records; the test drops each at once
    assert used < 4 * size + ALLOWANCE, (used, size)
    assert used > size // 2, (used, size)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
@pytest.mark.parametrize("backend", ["rust", "python"])
@pytest.mark.parametrize("name", ["run.rcj", "run.jsonl"])
def test_convert_holds_one_big_record_at_a_time(tmp_path, name, backend):
    """Converting four big records costs what converting one does: records
    are appended in batches bounded in bytes, not only in count. (The Rust
    core's read_journal hands out msgspec objects and its writer encodes
    them again, so one big string record costs about 5 times its size.)"""
    one, four = tmp_path / "one" / name, tmp_path / "four" / name
    one.parent.mkdir()
    four.parent.mkdir()
    size = write_strings(one, 1)
    write_strings(four, 4)
    alone = grown(backend, "convert", one, 1)
    assert grown(backend, "convert", four, 4) < alone + ALLOWANCE, (alone, size)
