"""The attempt ledger (SPEC section 8): paths, seq numbering, damaged files,
threads, processes, a SIGKILL mid-work, and reconcile."""

from __future__ import annotations

import asyncio
import hashlib
import json
import multiprocessing
import os
import re
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from replaycore import errors, ledger
from replaycore.ledger import (
    AppendSummary,
    LedgerEvent,
    LedgerRecord,
    ReconcileSummary,
    append,
    areconcile,
    last_seq,
    path_for,
    read,
    reconcile,
)

SEGMENT = re.compile(r"[A-Za-z0-9_-]+")


def record_line(seq: int, event_type: str = "e", payload: Any = None, **fields: Any) -> bytes:
    """A valid ledger line, written directly (as another writer would have)."""
    values: dict[str, Any] = {
        "run_id": "r",
        "node_id": "n",
        "attempt": 1,
        "session_id": "s",
        "seq": seq,
        "ts_ms": 1,
        "event_type": event_type,
        "payload": payload,
    }
    values.update(fields)
    return msgspec.json.encode(LedgerRecord(**values)) + b"\n"


def seqs(path: Path) -> list[int]:
    return [record.seq for record in read(path)]


def one(root: Path, event_type: str = "tick", payload: Any = None, **kw: Any) -> AppendSummary:
    args: dict[str, Any] = {"run_id": "run", "node_id": "node", "attempt": 1, "session_id": "s"}
    args |= kw
    return append(
        root,
        args["run_id"],
        args["node_id"],
        args["attempt"],
        args["session_id"],
        [LedgerEvent(event_type, payload)],
    )


# -- path_for -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("run_id", "node_id", "expected"),
    [
        ("automation/v2/run", "research:sources", "automation-v2-run/research-sources.jsonl"),
        ("..", "..", "unknown/unknown.jsonl"),
        ("", "", "unknown/unknown.jsonl"),
        (".", "---", "unknown/unknown.jsonl"),
        ("Run_01-A", "_node_", "Run_01-A/_node_.jsonl"),
        ("-a-", "--b--c--", "a/b--c.jsonl"),
        ("a..b", "a/../b", "a--b/a----b.jsonl"),
        (" spaced out ", "tab\there", "spaced-out/tab-here.jsonl"),
        ("a\x00b", "nul\x00", "a-b/nul.jsonl"),
        ("é", "aéb", "unknown/a-b.jsonl"),
        ("\u0663\u0664", "\uff21\uff22", "unknown/unknown.jsonl"),  # non-ASCII digit, letter
        ("\ud800x", "😀y😀", "x/y.jsonl"),
        ("/etc/passwd", "C:\\Windows", "etc-passwd/C--Windows.jsonl"),
        ("~user", "$HOME", "user/HOME.jsonl"),
    ],
)
def test_path_for_sanitizes_each_segment(
    tmp_path: Path, run_id: str, node_id: str, expected: str
) -> None:
    path = path_for(tmp_path, run_id, node_id)
    assert path.relative_to(tmp_path).as_posix() == expected
    assert path_for(str(tmp_path), run_id, node_id) == path


HOSTILE = [
    "../../x",
    "../" * 40 + "etc/passwd",
    "/absolute/path",
    "/",
    "..",
    "...",
    ".hidden",
    "a/../../..",
    "\x00",
    "x\x00/../y",
    "\\..\\..\\windows",
    "ünïcødé/ᚠᛇᚻ/😀",
    "\u202e\u200b",
    "\ud800",
    "con",
    "a" * 10_000,
    "/" + "../" * 5000,
    "é" * 300,
]


@pytest.mark.parametrize("hostile", HOSTILE, ids=range(len(HOSTILE)))
def test_no_id_leaves_root(tmp_path: Path, hostile: str) -> None:
    root = tmp_path / "root"
    for run_id, node_id in [(hostile, "n"), ("r", hostile), (hostile, hostile)]:
        path = path_for(root, run_id, node_id)
        relative = path.relative_to(root)
        assert len(relative.parts) == 2
        run, node = relative.parts
        assert node.endswith(".jsonl")
        for segment, limit in [
            (run, ledger.MAX_RUN_SEGMENT_BYTES),
            (node.removesuffix(".jsonl"), ledger.MAX_NODE_SEGMENT_BYTES),
        ]:
            assert SEGMENT.fullmatch(segment)
            assert not segment.startswith("-")
            assert not segment.endswith("-")
            assert len(segment) <= limit
        assert len(node.encode()) <= 255
        assert path.resolve().is_relative_to(root.resolve())
    if hostile.strip() and "\ud800" not in hostile:
        summary = one(root, run_id=hostile, node_id=hostile)
        assert summary.path == path_for(root, hostile, hostile)
        assert summary.path.is_file()
        assert [p for p in root.rglob("*") if p.is_file()] == [summary.path]
        assert read(summary.path)[0].run_id == hostile


def test_long_ids_stay_distinct_and_short(tmp_path: Path) -> None:
    first = path_for(tmp_path, "r" * 5000 + "1", "n" * 5000 + "1")
    second = path_for(tmp_path, "r" * 5000 + "2", "n" * 5000 + "2")
    assert first.parent != second.parent
    assert first.name != second.name
    # Cut to the longest file name, ending in - and 16 hex digits of the id's SHA-256.
    assert len(first.parent.name) == 255
    assert len(first.name) == 255
    digest = hashlib.sha256(("r" * 5000 + "1").encode()).hexdigest()[:16]
    assert first.parent.name == "r" * (255 - 17) + "-" + digest
    digest = hashlib.sha256(("n" * 5000 + "1").encode()).hexdigest()[:16]
    assert first.name == "n" * (249 - 17) + "-" + digest + ".jsonl"


def test_segments_are_kept_whole_up_to_the_longest_file_name(tmp_path: Path) -> None:
    """Another tool's ledger with a long id is found: a run directory of up to
    255 bytes and a node of up to 249 (+ ".jsonl" = 255) are not cut."""
    for length in (200, 201, 249, 255):
        assert path_for(tmp_path, "r" * length, "n").parent.name == "r" * length
    for length in (200, 201, 249):
        assert path_for(tmp_path, "r", "n" * length).name == "n" * length + ".jsonl"
    assert path_for(tmp_path, "r" * 256, "n").parent.name != "r" * 256
    assert len(path_for(tmp_path, "r" * 256, "n").parent.name) == 255
    assert path_for(tmp_path, "r", "n" * 250).name != "n" * 250 + ".jsonl"
    # Such names really are valid file names here.
    summary = one(tmp_path, run_id="r" * 255, node_id="n" * 249)
    assert summary.path.is_file()
    assert seqs(summary.path) == [1]


@pytest.mark.parametrize(
    ("root", "run_id", "node_id", "argument"),
    [
        (b"/tmp", "r", "n", "root"),
        (None, "r", "n", "root"),
        ("/tmp", None, "n", "run_id"),
        ("/tmp", "r", b"n", "node_id"),
        ("/tmp", 1, "n", "run_id"),
    ],
)
def test_path_for_rejects_wrong_types(root: Any, run_id: Any, node_id: Any, argument: str) -> None:
    with pytest.raises(errors.InvalidArgumentType) as info:
        path_for(root, run_id, node_id)
    assert info.value.argument == argument


# -- structs and argument checks ----------------------------------------------


def test_errors_are_importable_from_the_module() -> None:
    assert ledger.InvalidArgument is errors.InvalidArgument
    assert ledger.InvalidArgumentType is errors.InvalidArgumentType
    assert ledger.StoreUnavailable is errors.StoreUnavailable
    assert ledger.ReplayCoreError is errors.ReplayCoreError


def test_ledger_event_checks_its_type() -> None:
    assert LedgerEvent("x").payload is None
    assert LedgerEvent("x", [1]) == LedgerEvent(event_type="x", payload=[1])
    with pytest.raises(errors.InvalidArgument) as blank:
        LedgerEvent(" \t\n")
    assert blank.value.argument == "event_type"
    assert not isinstance(blank.value, TypeError)
    with pytest.raises(errors.InvalidArgumentType) as wrong:
        LedgerEvent(3)  # type: ignore[arg-type]
    assert wrong.value.argument == "event_type"
    with pytest.raises(errors.InvalidArgument) as surrogate:
        LedgerEvent("a\udfff")
    assert surrogate.value.argument == "event_type"


class Unencodable:
    pass


GOOD: dict[str, Any] = {
    "run_id": "r",
    "node_id": "n",
    "attempt": 1,
    "session_id": "s",
    "events": [LedgerEvent("e")],
}


@pytest.mark.parametrize(
    ("name", "value", "error", "argument"),
    [
        ("run_id", "", errors.InvalidArgument, "run_id"),
        ("run_id", "  ", errors.InvalidArgument, "run_id"),
        ("run_id", 7, errors.InvalidArgumentType, "run_id"),
        ("run_id", "\ud800", errors.InvalidArgument, "run_id"),
        ("node_id", None, errors.InvalidArgumentType, "node_id"),
        ("node_id", "\t", errors.InvalidArgument, "node_id"),
        ("attempt", True, errors.InvalidArgumentType, "attempt"),
        ("attempt", 1.0, errors.InvalidArgumentType, "attempt"),
        ("attempt", "1", errors.InvalidArgumentType, "attempt"),
        ("attempt", -1, errors.InvalidArgument, "attempt"),
        ("attempt", 2**63, errors.InvalidArgument, "attempt"),
        ("session_id", None, errors.InvalidArgumentType, "session_id"),
        ("session_id", "\udc80", errors.InvalidArgument, "session_id"),
        ("events", "ab", errors.InvalidArgumentType, "events"),
        ("events", b"ab", errors.InvalidArgumentType, "events"),
        ("events", {"a": 1}, errors.InvalidArgumentType, "events"),
        ("events", 5, errors.InvalidArgumentType, "events"),
        ("events", None, errors.InvalidArgumentType, "events"),
        ("events", LedgerEvent("e"), errors.InvalidArgumentType, "events"),
        ("events", [LedgerEvent("e"), ("x", 1)], errors.InvalidArgumentType, "events[1]"),
        (
            "events",
            [LedgerEvent("e"), LedgerEvent("e", {"x": Unencodable()})],
            errors.InvalidArgumentType,
            "events[1].payload",
        ),
        ("events", [LedgerEvent("e", "\ud800")], errors.InvalidArgumentType, "events[0].payload"),
    ],
)
def test_append_rejects_bad_arguments_and_writes_nothing(
    tmp_path: Path, name: str, value: Any, error: type[Exception], argument: str
) -> None:
    root = tmp_path / "root"
    args = GOOD | {name: value}
    with pytest.raises(error) as info:
        append(root, **args)
    assert type(info.value) is error
    assert info.value.argument == argument  # type: ignore[attr-defined]
    assert not root.exists()


def test_append_accepts_edge_values(tmp_path: Path) -> None:
    summary = append(tmp_path, "r", "n", 0, "", (LedgerEvent(t) for t in ["a", "b"]))
    assert summary.seq == 2
    summary = append(tmp_path, "r", "n", 2**63 - 1, "s", (LedgerEvent("c"),))
    assert [(r.attempt, r.session_id) for r in read(summary.path)] == [
        (0, ""),
        (0, ""),
        (2**63 - 1, "s"),
    ]


@pytest.mark.parametrize(
    ("kwargs", "error", "argument"),
    [
        ({"path": 3}, errors.InvalidArgumentType, "path"),
        ({"path": ""}, errors.InvalidArgument, "path"),
        ({"expected_min_seq": -1}, errors.InvalidArgument, "expected_min_seq"),
        ({"expected_min_seq": False}, errors.InvalidArgumentType, "expected_min_seq"),
        ({"max_wait_ms": 1.5}, errors.InvalidArgumentType, "max_wait_ms"),
        ({"max_wait_ms": -1}, errors.InvalidArgument, "max_wait_ms"),
        ({"poll_interval_ms": 0}, errors.InvalidArgument, "poll_interval_ms"),
        ({"poll_interval_ms": None}, errors.InvalidArgumentType, "poll_interval_ms"),
    ],
)
def test_reconcile_rejects_bad_arguments(
    tmp_path: Path, kwargs: dict[str, Any], error: type[Exception], argument: str
) -> None:
    args: dict[str, Any] = {"path": tmp_path / "x.jsonl", "expected_min_seq": 1, "max_wait_ms": 0}
    args |= kwargs
    with pytest.raises(error) as sync_info:
        reconcile(**args)
    assert sync_info.value.argument == argument  # type: ignore[attr-defined]
    with pytest.raises(error) as async_info:
        asyncio.run(areconcile(**args))
    assert async_info.value.argument == argument  # type: ignore[attr-defined]


@pytest.mark.parametrize("bad", [3, b"/x", None, ""])
def test_readers_reject_bad_paths(bad: Any) -> None:
    for fn in (last_seq, read):
        with pytest.raises(errors.InvalidArgument) as info:
            fn(bad)
        assert info.value.argument == "path"


# -- appending and reading ----------------------------------------------------


def test_records_carry_every_field(tmp_path: Path) -> None:
    before = time.time_ns() // 1_000_000
    summary = append(
        tmp_path,
        "automation/v2/run",
        "research:sources",
        3,
        "session-9",
        [LedgerEvent("  started \n", {"k": [1, 2.5, None, True]}), LedgerEvent("done", "ok")],
    )
    after = time.time_ns() // 1_000_000
    assert summary == AppendSummary(
        path=tmp_path / "automation-v2-run" / "research-sources.jsonl", seq=2, record_count=2
    )
    first, second = read(summary.path)
    assert first == LedgerRecord(
        run_id="automation/v2/run",
        node_id="research:sources",
        attempt=3,
        session_id="session-9",
        seq=1,
        ts_ms=first.ts_ms,
        event_type="started",
        payload={"k": [1, 2.5, None, True]},
    )
    assert first.version == 1
    assert before <= first.ts_ms == second.ts_ms <= after
    assert (second.seq, second.event_type, second.payload) == (2, "done", "ok")
    lines = summary.path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    assert list(json.loads(lines[0])) == [
        "version",
        "run_id",
        "node_id",
        "attempt",
        "session_id",
        "seq",
        "ts_ms",
        "event_type",
        "payload",
    ]


def test_seq_continues_across_appends_and_processes(tmp_path: Path) -> None:
    summaries = [one(tmp_path, f"e{i}") for i in range(3)]
    assert [(s.seq, s.record_count) for s in summaries] == [(1, 1), (2, 1), (3, 1)]
    batch = append(tmp_path, "run", "node", 2, "s", [LedgerEvent("a"), LedgerEvent("b")])
    assert (batch.seq, batch.record_count) == (5, 2)
    code = textwrap.dedent(
        """
        import sys
        from replaycore.ledger import LedgerEvent, append
        print(append(sys.argv[1], "run", "node", 3, "other", [LedgerEvent("x")]).seq)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "6"
    assert one(tmp_path).seq == 7
    assert seqs(batch.path) == [1, 2, 3, 4, 5, 6, 7]
    assert last_seq(batch.path) == 7
    # Ledgers of other nodes and runs count on their own.
    assert one(tmp_path, node_id="other").seq == 1
    assert one(tmp_path, run_id="run2").seq == 1


def test_empty_events_write_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    summary = append(root, "run", "node", 1, "s", [])
    assert summary == AppendSummary(path=path_for(root, "run", "node"), seq=0, record_count=0)
    assert not root.exists()
    one(root)
    one(root)
    before = summary.path.read_bytes()
    assert append(root, "run", "node", 1, "s", iter([])) == AppendSummary(
        path=summary.path, seq=2, record_count=0
    )
    assert summary.path.read_bytes() == before


def test_missing_ledger_reads_as_empty(tmp_path: Path) -> None:
    assert last_seq(tmp_path / "nope.jsonl") == 0
    assert read(tmp_path / "nope" / "nope.jsonl") == []
    assert last_seq(str(tmp_path / "nope.jsonl")) == 0


# Lines that are not records and hold no seq: skipped by read and by last_seq.
MALFORMED = [
    b"garbage",
    b'{"version":1,"run_id":"r","node_id":"n","attempt":1,',  # partial JSON
    b'{"version":1,"run_id":"r","node_id":"n","attempt":1,"session_id":"s","seq":"9",'
    b'"ts_ms":1,"event_type":"e","payload":null}',  # seq as a string
    b'{"version":1,"run_id":"r","node_id":"n","attempt":1,"session_id":"s","seq":true,'
    b'"ts_ms":1,"event_type":"e","payload":null}',
    b'{"version":1,"run_id":"r","node_id":"n","attempt":1,"session_id":"s","seq":0,'
    b'"ts_ms":1,"event_type":"e","payload":null}',  # seq counts from 1
    b'{"version":1,"run_id":"r","node_id":"n","attempt":1,"session_id":"s","seq":9.0,'
    b'"ts_ms":1,"event_type":"e","payload":null}',  # not an integer
    b'{"version":1,"run_id":"r","node_id":"n","attempt":1,"session_id":"s","seq":-9,'
    b'"ts_ms":1,"event_type":"e","payload":null}',
    b'{"version":1,"run_id":"r","node_id":"n","attempt":1,"session_id":"s",'
    b'"ts_ms":1,"event_type":"e","payload":null}',  # no seq
    b"",
    b"   \t ",
    b"\r",
    b"[1,2,3]",
    b'[{"seq": 9}]',
    b"null",
    b"9",
    b"\x00\x00\x00\x00",
    b"\xff\xfe{}",
]

# Lines another tool may write in the common layout that are not valid records
# (read skips them) but hold an integer seq >= 1, which the next append must
# not reuse (SPEC 8: the last seq is the last JSON object's integer seq).
FOREIGN_WITH_SEQ = [
    b'{"version":1,"run_id":"r","node_id":"n","attempt":-1,"session_id":"s","seq":9,'
    b'"ts_ms":1,"event_type":"e","payload":null}',
    b'{"version":1,"run_id":"r","node_id":"n","attempt":1,"session_id":"s","seq":9,'
    b'"ts_ms":1,"event_type":"  ","payload":null}',  # blank event_type
    b'{"version":1,"run_id":"r","node_id":"n","attempt":1,"session_id":"s","seq":9,'
    b'"ts_ms":1,"event_type":"","payload":null}',  # empty event_type
    b'{"version":2,"run_id":"r","node_id":"n","attempt":1,"session_id":"s","seq":9,'
    b'"ts_ms":1,"event_type":"e","payload":null}',  # another version
    b'{"version":1,"run_id":"r","node_id":"n","attempt":1,"seq":9,"ts_ms":1,"event_type":"e"}',
    b'{"version":1,"run_id":5,"node_id":"n","attempt":1,"session_id":"s","seq":9,'
    b'"ts_ms":1,"event_type":"e","payload":null}',
    b'{"seq": 9}',
]


@pytest.mark.parametrize("bad", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_lines_are_skipped(tmp_path: Path, bad: bytes) -> None:
    path = path_for(tmp_path, "run", "node")
    path.parent.mkdir()
    path.write_bytes(record_line(1) + bad + b"\n" + record_line(2) + bad + b"\n" + bad + b"\n")
    assert seqs(path) == [1, 2]
    assert last_seq(path) == 2
    assert one(tmp_path).seq == 3
    assert seqs(path) == [1, 2, 3]
    only_bad = tmp_path / "bad.jsonl"
    only_bad.write_bytes(bad + b"\n" + bad)
    assert last_seq(only_bad) == 0
    assert read(only_bad) == []


@pytest.mark.parametrize("foreign", FOREIGN_WITH_SEQ, ids=range(len(FOREIGN_WITH_SEQ)))
def test_a_foreign_line_with_a_seq_holds_it(tmp_path: Path, foreign: bytes) -> None:
    path = path_for(tmp_path, "run", "node")
    path.parent.mkdir()
    path.write_bytes(record_line(1) + foreign + b"\n" + b"junk\n")
    assert seqs(path) == [1]  # not a record ...
    assert last_seq(path) == 9  # ... but its seq is taken
    assert one(tmp_path).seq == 10
    assert seqs(path) == [1, 10]


def test_a_ledger_written_line_by_line_by_another_tool_is_continued(tmp_path: Path) -> None:
    """A ledger in the common layout written by another writer -- its own
    field order and spacing, a blank event type, another version, and a last
    line torn without its newline -- is found under the same path and
    continued without reusing any seq in it."""
    run_id, node_id = "automation/" + "r" * 240, "n" * 249  # whole segments of 251 and 249
    path = tmp_path / ("automation-" + "r" * 240) / ("n" * 249 + ".jsonl")
    assert path_for(tmp_path, run_id, node_id) == path

    def line(seq: int, event_type: str, version: int = 1) -> bytes:
        fields = {
            "version": version,
            "run_id": run_id,
            "node_id": node_id,
            "attempt": 1,
            "session_id": "other-tool",
            "seq": seq,
            "ts_ms": 1_700_000_000_000 + seq,
            "event_type": event_type,
            "payload": {"n": seq},
        }
        return json.dumps(fields, separators=(", ", ": ")).encode() + b"\n"

    path.parent.mkdir()
    torn = line(6, "attempt.finished")[:-30]
    path.write_bytes(
        line(1, "attempt.started")
        + line(2, "tool.called")
        + line(3, "")
        + line(4, "tool.returned", version=2)
        + line(5, "tool.returned")
        + torn
    )
    assert seqs(path) == [1, 2, 5]
    assert last_seq(path) == 5  # the torn line holds no seq
    summary = append(tmp_path, run_id, node_id, 2, "mine", [LedgerEvent("a"), LedgerEvent("b")])
    assert (summary.path, summary.seq) == (path, 7)
    assert seqs(path) == [1, 2, 5, 6, 7]
    lines = path.read_bytes().split(b"\n")
    assert lines[5] == torn  # kept, and terminated so it cannot swallow a record
    assert last_seq(path) == 7


def test_last_valid_record_far_from_the_end(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    # A valid record bigger than the first read block, then 3 MB of garbage lines,
    # then one 2 MB garbage line without a newline.
    big = "x" * 100_000
    path.write_bytes(
        record_line(1) + record_line(2, payload=big) + b"junk line\n" * 300_000 + b"{" * 2_000_000
    )
    assert last_seq(path) == 2
    assert [r.payload for r in read(path)] == [None, big]


def test_last_record_spanning_many_blocks(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    big = {"text": "y" * 3_000_000, "tail": list(range(100))}
    path.write_bytes(record_line(1) + record_line(2, payload=big))
    assert last_seq(path) == 2
    path.write_bytes(record_line(1) + record_line(2, payload=big)[:-1])  # no final newline
    assert last_seq(path) == 2
    path.write_bytes(record_line(1) + record_line(2, payload=big)[:-2])  # torn
    assert last_seq(path) == 1


@settings(max_examples=60)
@given(
    st.lists(
        st.one_of(
            st.integers(0, 40_000).map(lambda n: ("record", n)),
            st.binary(max_size=9000).map(lambda b: ("junk", b.replace(b"\n", b" "))),
        ),
        max_size=12,
    ),
    st.booleans(),
)
def test_last_seq_agrees_with_read(
    tmp_path_factory: pytest.TempPathFactory, lines: list[tuple[str, Any]], newline: bool
) -> None:
    data = b""
    seq = 0
    for kind, value in lines:
        if kind == "record":
            seq += 1
            data += record_line(seq, payload="p" * value)
        else:
            data += value + b"\n"
    if not newline:
        data = data[:-1]
    path = tmp_path_factory.mktemp("prop") / "ledger.jsonl"
    path.write_bytes(data)
    records = read(path)
    assert last_seq(path) == (records[-1].seq if records else 0) == seq


def test_torn_last_line_is_terminated(tmp_path: Path) -> None:
    path = path_for(tmp_path, "run", "node")
    path.parent.mkdir()
    torn = record_line(2)[:40]
    path.write_bytes(record_line(1) + torn)  # a crash mid-write of record 2
    assert last_seq(path) == 1
    assert one(tmp_path, "after").seq == 2
    first, kept, new, end = path.read_bytes().split(b"\n")
    assert (first + b"\n", kept, end) == (record_line(1), torn, b"")
    assert msgspec.json.decode(new, type=LedgerRecord).seq == 2
    assert [(r.seq, r.event_type) for r in read(path)] == [(1, "e"), (2, "after")]
    assert one(tmp_path).seq == 3


def test_complete_record_missing_only_its_newline_counts(tmp_path: Path) -> None:
    path = path_for(tmp_path, "run", "node")
    path.parent.mkdir()
    path.write_bytes(record_line(1) + record_line(2)[:-1])
    assert last_seq(path) == 2
    assert one(tmp_path).seq == 3
    assert seqs(path) == [1, 2, 3]
    assert path.read_bytes().endswith(b"\n")
    assert path.read_bytes().count(b"\n") == 3


def test_io_failures_raise_store_unavailable(tmp_path: Path) -> None:
    directory = tmp_path / "dir.jsonl"
    directory.mkdir()
    with pytest.raises(errors.StoreUnavailable):
        last_seq(directory)
    with pytest.raises(errors.StoreUnavailable):
        read(directory)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(errors.StoreUnavailable) as info:
        one(blocker)
    assert isinstance(info.value.__cause__, OSError)


# -- concurrency ----------------------------------------------------------------


# -- links ---------------------------------------------------------------------


def test_a_run_directory_that_is_a_link_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    (root / "run").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(errors.StoreUnavailable, match="symbolic link"):
        one(root, run_id="run")
    assert list(elsewhere.iterdir()) == []
    # A dangling link is refused too, and not created through.
    (root / "gone").symlink_to(tmp_path / "missing", target_is_directory=True)
    with pytest.raises(errors.StoreUnavailable, match="symbolic link"):
        one(root, run_id="gone")
    assert not (tmp_path / "missing").exists()


def test_a_ledger_file_that_is_a_link_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    root = tmp_path / "root"
    target = tmp_path / "target.jsonl"
    target.write_bytes(record_line(1))
    path = path_for(root, "run", "node")
    path.parent.mkdir(parents=True)
    path.symlink_to(target)
    with pytest.raises(errors.StoreUnavailable, match="symbolic link"):
        one(root)
    assert target.read_bytes() == record_line(1)
    for reader in (last_seq, read):
        with pytest.raises(errors.StoreUnavailable, match="symbolic link"):
            reader(path)
    with pytest.raises(errors.StoreUnavailable, match="symbolic link"):
        reconcile(path, 1, 0, 1)
    # A dangling link is not created through.
    path.unlink()
    path.symlink_to(tmp_path / "never.jsonl")
    with pytest.raises(errors.StoreUnavailable, match="symbolic link"):
        one(root)
    assert not (tmp_path / "never.jsonl").exists()


def test_a_root_that_is_a_link_is_followed(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "root").symlink_to(real, target_is_directory=True)
    summary = one(tmp_path / "root")
    assert summary.seq == 1
    assert seqs(real / "run" / "node.jsonl") == [1]


def check_batches(path: Path, summaries: list[AppendSummary], per_batch: int) -> None:
    """Every seq exactly once, every line valid, and each batch contiguous."""
    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    lines = raw[:-1].split(b"\n")
    records = [msgspec.json.decode(line, type=LedgerRecord) for line in lines]
    assert [r.seq for r in records] == list(range(1, len(summaries) * per_batch + 1))
    assert sorted(s.seq for s in summaries) == list(range(per_batch, len(records) + 1, per_batch))
    by_seq = {r.seq: r for r in records}
    for summary in summaries:
        batch = [by_seq[summary.seq - k] for k in range(per_batch - 1, -1, -1)]
        assert len({(r.session_id, r.payload["i"]) for r in batch}) == 1
        assert [r.event_type for r in batch] == [f"part{k}" for k in range(per_batch)]


def _batch(i: int, per_batch: int) -> list[LedgerEvent]:
    return [LedgerEvent(f"part{k}", {"i": i, "pad": "x" * 300}) for k in range(per_batch)]


def test_threads_never_share_a_seq(tmp_path: Path) -> None:
    threads_n, appends, per_batch = 8, 50, 2
    barrier = threading.Barrier(threads_n)
    results: dict[int, list[AppendSummary]] = {}

    def work(t: int) -> None:
        barrier.wait(timeout=30)
        results[t] = [
            append(tmp_path, "run", "node", 1, f"thread-{t}", _batch(i, per_batch))
            for i in range(appends)
        ]

    threads = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(results) == list(range(threads_n))
    summaries = [s for t in results for s in results[t]]
    for t in results:  # each thread sees its own appends in increasing order
        assert [s.seq for s in results[t]] == sorted(s.seq for s in results[t])
    check_batches(path_for(tmp_path, "run", "node"), summaries, per_batch)


def _process_worker(
    root: str, worker: int, appends: int, per_batch: int, barrier: Any, out: Any
) -> None:
    barrier.wait(timeout=60)
    summaries = [
        append(root, "run", "node", 1, f"proc-{worker}", _batch(i, per_batch))
        for i in range(appends)
    ]
    out.put((worker, [s.seq for s in summaries]))


def test_processes_never_share_a_seq(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    workers, appends, per_batch = 4, 50, 2
    barrier = ctx.Barrier(workers)
    out = ctx.Queue()
    procs = [
        ctx.Process(
            target=_process_worker, args=(str(tmp_path), w, appends, per_batch, barrier, out)
        )
        for w in range(workers)
    ]
    for proc in procs:
        proc.start()
    try:
        got = dict(out.get(timeout=90) for _ in range(workers))
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
    assert [proc.exitcode for proc in procs] == [0] * workers
    assert sorted(got) == list(range(workers))
    path = path_for(tmp_path, "run", "node")
    summaries = [
        AppendSummary(path=path, seq=s, record_count=per_batch) for w in got for s in got[w]
    ]
    check_batches(path, summaries, per_batch)


CRASH_CHILD = textwrap.dedent(
    """
    import sys
    from replaycore.ledger import LedgerEvent, append
    root = sys.argv[1]
    i = 0
    while True:
        i += 1
        events = [LedgerEvent("tick", {"i": i, "pad": "x" * 4000}) for _ in range(1 + i % 3)]
        summary = append(root, "run", "node", 1, "child", events)
        sys.stdout.write(f"{summary.seq} {summary.record_count}\\n")
        sys.stdout.flush()
    """
)


def test_sigkill_mid_work_keeps_every_acknowledged_record(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CRASH_CHILD, str(tmp_path)], stdout=subprocess.PIPE
    )
    assert child.stdout is not None
    acked: list[tuple[int, int]] = []
    buffer = b""
    deadline = time.monotonic() + 60
    try:
        while len(acked) < 60 and time.monotonic() < deadline:
            ready, _, _ = select.select([child.stdout], [], [], 1.0)
            if ready:
                chunk = os.read(child.stdout.fileno(), 4096)
                assert chunk, "the child exited early"
                buffer += chunk
                *done, buffer = buffer.split(b"\n")
                acked.extend((int(seq), int(count)) for seq, count in map(bytes.split, done))
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    assert len(acked) >= 60
    path = path_for(tmp_path, "run", "node")
    records = read(path)
    present = [r.seq for r in records]
    assert present == list(range(1, len(present) + 1))
    # Every record of every acknowledged batch is there; an unacknowledged
    # batch cut by the kill may be partly there (a prefix of its records).
    acked_seqs = {s for last, count in acked for s in range(last - count + 1, last + 1)}
    assert len(acked_seqs) == sum(count for _, count in acked)
    assert acked_seqs <= set(present)
    after = one(tmp_path, "after-crash")
    assert after.seq == present[-1] + 1 if present else 1
    assert last_seq(path) == after.seq
    assert read(path)[-1].event_type == "after-crash"


# -- reconcile --------------------------------------------------------------------


def test_reconcile_found_at_once(tmp_path: Path) -> None:
    path = one(tmp_path).path
    one(tmp_path)
    summary = reconcile(path, 2, 10_000, 5)
    assert (summary.found, summary.last_seq, summary.attempts) == (True, 2, 1)
    assert summary.elapsed_ms >= 0
    # expected_min_seq 0 means "at least one record".
    assert reconcile(path, 0, 0).found


def test_reconcile_not_found(tmp_path: Path) -> None:
    path = one(tmp_path).path
    summary = reconcile(path, 5, 40, 10)
    assert isinstance(summary, ReconcileSummary)
    assert (summary.found, summary.last_seq) == (False, 1)
    assert summary.attempts >= 1
    assert summary.elapsed_ms >= 39  # it gave up only at the deadline


def test_reconcile_missing_file(tmp_path: Path) -> None:
    summary = reconcile(tmp_path / "missing.jsonl", 0, 0, 1)
    assert (summary.found, summary.last_seq, summary.attempts) == (False, 0, 1)
    summary = reconcile(tmp_path / "missing.jsonl", 1, 20, 5)
    assert (summary.found, summary.last_seq) == (False, 0)
    assert summary.attempts >= 1


def test_reconcile_waits_for_another_writer(tmp_path: Path) -> None:
    path = path_for(tmp_path, "run", "node")
    started = threading.Event()

    def writer() -> None:
        started.wait(timeout=30)
        for _ in range(3):
            one(tmp_path)

    thread = threading.Thread(target=writer)
    thread.start()
    started.set()
    summary = reconcile(path, 3, 30_000, 2)
    thread.join(timeout=30)
    assert summary.found
    assert summary.last_seq >= 3
    assert summary.attempts >= 1


def test_areconcile(tmp_path: Path) -> None:
    path = path_for(tmp_path, "run", "node")

    async def scenario() -> tuple[ReconcileSummary, ReconcileSummary, ReconcileSummary]:
        missing = await areconcile(path, 1, 10, 2)
        waiting = asyncio.create_task(areconcile(path, 2, 30_000, 2))
        await asyncio.to_thread(one, tmp_path)
        await asyncio.to_thread(one, tmp_path)
        found = await waiting
        not_found = await areconcile(path, 3, 20, 5)
        return missing, found, not_found

    missing, found, not_found = asyncio.run(scenario())
    assert (missing.found, missing.last_seq) == (False, 0)
    assert missing.attempts >= 1
    assert (found.found, found.last_seq) == (True, 2)
    assert found.attempts >= 1
    assert (not_found.found, not_found.last_seq) == (False, 2)
    assert not_found.elapsed_ms >= 19
