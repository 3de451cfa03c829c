"""Journal files (SPEC 6.2): JournalWriter, read_journal, JSON lines, replay of
paths, bytes and iterables, and replay_many."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
from journals import (
    MAGIC,
    canonical,
    frame,
    frame_body,
    frame_offsets,
    framed,
    json_lines,
    rec,
    repair,
    result,
)
from replaycore.errors import (
    InvalidArgument,
    InvalidArgumentType,
    JournalCorruption,
    JournalLocked,
    ReplayCoreError,
    ReplayViolation,
)
from replaycore.records import (
    Checkpoint,
    Custom,
    EffectIntent,
    EffectResult,
    JournalRecord,
    RunLifecycle,
)

FORMATS = ["rcj", "jsonl"]


def unsequenced(n: int, start: int = 1) -> list[JournalRecord]:
    """``n`` records with ``journal_seq`` 0, for the writer to number."""
    return [
        rec(f"r{i}", 0, Custom(name="step", data={"i": i, "pad": "x" * (i % 3)}))
        for i in range(start, start + n)
    ]


def numbered(records: list[JournalRecord], first: int = 1) -> list[JournalRecord]:
    return [msgspec.structs.replace(r, journal_seq=first + i) for i, r in enumerate(records)]


def encode(fmt: str, records: list[Any]) -> bytes:
    return framed(records) if fmt == "rcj" else json_lines(records)


# -- JournalWriter ------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_writer_numbers_records_and_continues_after_reopen(impl, tmp_path, fmt):
    path = tmp_path / f"run.{fmt}"
    first, second = unsequenced(3), unsequenced(2, start=4)
    with impl.JournalWriter(path) as writer:
        assert writer.last_journal_seq == 0
        written = [writer.append(first[0]), *writer.append_many(first[1:])]
        assert written == numbered(first)
        assert writer.last_journal_seq == 3
    assert path.read_bytes() == encode(fmt, numbered(first))
    with impl.JournalWriter(str(path), fsync="never") as writer:
        assert writer.last_journal_seq == 3
        assert writer.append_many(second) == numbered(second, 4)
        assert writer.last_journal_seq == 5
    assert list(impl.read_journal(path)) == numbered(first + second)
    assert path.read_bytes() == encode(fmt, numbered(first + second))


@pytest.mark.parametrize("fmt", FORMATS)
def test_explicit_seqs_are_written_as_given(impl, tmp_path, fmt):
    path = tmp_path / f"run.{fmt}"
    given = [rec("a", 10, Custom(name="x")), rec("b", 20, Custom(name="y"))]
    with impl.JournalWriter(path) as writer:
        assert writer.append_many(given) == given
        assert writer.last_journal_seq == 20
        assert writer.append(rec("c", 0, Custom(name="z"))).journal_seq == 21
    assert [r.journal_seq for r in impl.read_journal(path)] == [10, 20, 21]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_seq_at_or_below_the_last_is_refused_so_reopen_never_reuses_one(impl, tmp_path, fmt):
    # A record written again verbatim would carry an old seq; the writer
    # refuses it (writing nothing), so the file's last record always holds the
    # highest seq and a reopened writer continues after it.
    path = tmp_path / f"run.{fmt}"
    with impl.JournalWriter(path) as writer:
        writer.append(rec("r1", 0, RunLifecycle(status="running")))
        retried = writer.append(rec("r2", 0, Custom(name="call"), idempotency_key="i-2"))
        writer.append(rec("r3", 0, Custom(name="x")))
        size = path.stat().st_size
        with pytest.raises(InvalidArgument) as info:
            writer.append_many([rec("r4", 0, Custom(name="y")), retried])
        assert info.value.argument == "records[1].journal_seq"
        assert path.stat().st_size == size
        assert writer.last_journal_seq == 3
    with impl.JournalWriter(path) as writer:
        assert writer.last_journal_seq == 3
        assert writer.append(rec("r4", 0, Custom(name="y"))).journal_seq == 4
    assert impl.replay(path).records_applied == 4


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("fsync", ["always", "batch", "never"])
def test_fsync_modes(impl, tmp_path, fmt, fsync):
    path = tmp_path / f"run.{fmt}"
    writer = impl.JournalWriter(path, fsync=fsync)
    writer.append_many(unsequenced(2))
    writer.flush()
    assert list(impl.read_journal(path)) == numbered(unsequenced(2))
    writer.close()
    writer.close()  # closing twice is harmless
    with pytest.raises(ReplayCoreError):
        writer.append(unsequenced(1)[0])
    assert list(impl.read_journal(path)) == numbered(unsequenced(2))


@pytest.mark.parametrize("fsync", ["sometimes", "ALWAYS", ""])
def test_bad_fsync_mode_is_refused(impl, tmp_path, fsync):
    with pytest.raises(InvalidArgument) as info:
        impl.JournalWriter(tmp_path / "run.rcj", fsync=fsync)
    assert info.value.argument == "fsync"


@pytest.mark.parametrize("fmt", FORMATS)
def test_second_writer_is_locked_out(impl, tmp_path, fmt):
    path = tmp_path / f"run.{fmt}"
    first = impl.JournalWriter(path)
    first.append(unsequenced(1)[0])
    with pytest.raises(JournalLocked) as info:
        impl.JournalWriter(path)
    assert isinstance(info.value, ReplayCoreError)
    first.append(unsequenced(1, start=2)[0])  # the first writer is unharmed
    first.close()
    with impl.JournalWriter(path) as again:
        assert again.last_journal_seq == 2
    assert list(impl.read_journal(path)) == numbered(unsequenced(2))


@pytest.mark.parametrize("fmt", ["rcj", "jsonl"])
def test_writer_refuses_a_path_that_is_a_symbolic_link(impl, tmp_path, fmt):
    """SPEC 6.2 "Links": a journal never appends into a file it did not
    create; the target is left as it was, and a dangling link is not
    created through."""
    target = tmp_path / f"other.{fmt}"
    target.write_bytes(encode(fmt, numbered(unsequenced(2))))
    before = target.read_bytes()
    link = tmp_path / f"run.{fmt}"
    link.symlink_to(target)
    with pytest.raises(InvalidArgument, match="symbolic link") as info:
        impl.JournalWriter(link)
    assert info.value.argument == "path"
    assert target.read_bytes() == before
    dangling = tmp_path / f"dangling.{fmt}"
    dangling.symlink_to(tmp_path / f"nowhere.{fmt}")
    with pytest.raises(InvalidArgument, match="symbolic link"):
        impl.JournalWriter(dangling)
    assert not (tmp_path / f"nowhere.{fmt}").exists()
    # A directory above the journal may be a link.
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "via").symlink_to(real, target_is_directory=True)
    with impl.JournalWriter(tmp_path / "via" / f"run.{fmt}") as writer:
        assert writer.append(unsequenced(1)[0]).journal_seq == 1
    assert list(impl.read_journal(real / f"run.{fmt}")) == numbered(unsequenced(1))


def test_rcj_torn_tail_is_truncated_on_reopen_at_every_cut(impl, tmp_path):
    records = numbered(unsequenced(5))
    data = framed(records)
    offsets = frame_offsets(records)
    start, end = offsets[4], offsets[5]
    for cut in range(start, end):
        path = tmp_path / f"cut{cut}.rcj"
        path.write_bytes(data[:cut])
        with impl.JournalWriter(path) as writer:
            assert writer.last_journal_seq == 4, cut
            assert path.stat().st_size == start, cut
            writer.append(rec("new", 0, Custom(name="after")))
        assert list(impl.read_journal(path)) == [
            *records[:4],
            rec("new", 5, Custom(name="after")),
        ], cut


def test_jsonl_torn_tail_is_truncated_on_reopen_at_every_cut(impl, tmp_path):
    records = numbered(unsequenced(5))
    data = json_lines(records)
    start = len(json_lines(records[:4]))
    for cut in range(start, len(data)):
        path = tmp_path / f"cut{cut}.jsonl"
        path.write_bytes(data[:cut])
        complete_line = cut == len(data) - 1  # only the newline was lost
        kept = records if complete_line else records[:4]
        with impl.JournalWriter(path) as writer:
            assert writer.last_journal_seq == len(kept), cut
            writer.append(rec("new", 0, Custom(name="after")))
        expected = [*kept, rec("new", len(kept) + 1, Custom(name="after"))]
        assert list(impl.read_journal(path)) == expected, cut
        assert path.read_bytes() == json_lines(expected), cut


@pytest.mark.parametrize("size", [1, 2, 3])
def test_rcj_cut_inside_the_magic_is_restarted(impl, tmp_path, size):
    path = tmp_path / "run.rcj"
    path.write_bytes(MAGIC[:size])
    with impl.JournalWriter(path) as writer:
        assert writer.last_journal_seq == 0
        writer.append(unsequenced(1)[0])
    assert path.read_bytes() == framed(numbered(unsequenced(1)))


def test_writer_refuses_a_file_without_magic(impl, tmp_path):
    path = tmp_path / "run.rcj"
    path.write_bytes(b"JUNKJUNK" + frame(rec("r1", 1, Custom(name="x"))))
    with pytest.raises(JournalCorruption) as info:
        impl.JournalWriter(path)
    assert info.value.offset == 0
    assert path.read_bytes().startswith(b"JUNKJUNK")  # nothing was truncated


# -- read_journal and JSON lines ---------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_read_journal_returns_the_records(impl, tmp_path, fmt):
    records = [
        rec("r1", 1, RunLifecycle(status="running"), at_ms=7, content_refs=["ref-a"]),
        rec("r2", 2, EffectIntent(effect_id="e", effect_kind="http", dedupe_key="")),
        rec(
            "r3",
            3,
            Checkpoint(checkpoint_seq=1, covers_journal_seq=2, loop_state="s", created_at_ms=9),
        ),
        rec("r4", 4, Custom(name="n", data={"z": [1, None, "é"], "a": True})),
    ]
    path = tmp_path / f"run.{fmt}"
    path.write_bytes(encode(fmt, records))
    assert list(impl.read_journal(path)) == records
    assert list(impl.read_journal(str(path))) == records


def test_jsonl_blank_lines_are_skipped_and_bad_lines_are_corruption(impl, tmp_path):
    records = [rec("r1", 1, RunLifecycle(status="running")), rec("r2", 2, Custom(name="x"))]
    first = json_lines(records[:1])
    unknown = json_lines(records[1:]).replace(b'"custom"', b'"telemetry"')
    bad = [b"{not json\n", unknown, b'{"record_id": "r9"}\n', b"[1, 2]\n"]
    body = b"\n" + first + b"   \t\n" + b"".join(bad) + json_lines(records[1:])
    path = tmp_path / "run.jsonl"
    path.write_bytes(body)
    starts, pos = [], 1 + len(first) + 5
    for line in bad:
        starts.append(pos)
        pos += len(line)
    repairs = [
        repair(
            "journal_corruption",
            "",
            1,
            f"line {n} does not decode to a record; skipped bytes {start}..{start + len(line) - 1}",
        )
        for n, start, line in zip(range(4, 8), starts, bad, strict=True)
    ]
    expected = result(
        "audit",
        "repair_needed",
        latest_journal_seq=2,
        records_applied=2,
        skipped_lines=6,
        repair_needed=repairs,
    )
    assert impl.replay(path, mode="audit") == expected
    for mode in ("resume", "repair"):
        with pytest.raises(JournalCorruption) as info:
            impl.replay(path, mode=mode)
        assert info.value.offset == starts[0]
        assert "line 4" in str(info.value)
    with pytest.raises(JournalCorruption) as info:
        list(impl.read_journal(path))
    assert info.value.offset == starts[0]
    assert list(impl.read_journal(path, strict=False)) == records
    found = impl.inspect_journal(path)
    assert (found["records"], found["skipped_lines"]) == (2, 6)
    assert [r[:2] for r in found["corrupt_ranges"]] == [
        (start, start + len(line) - 1) for start, line in zip(starts, bad, strict=True)
    ]
    # only blank lines: complete; a final newline adds no blank line
    clean = b"\n" + first + b"  \n" + json_lines(records[1:])
    path.write_bytes(clean)
    complete = result(
        "resume", "complete", latest_journal_seq=2, records_applied=2, skipped_lines=2
    )
    assert impl.replay(path) == complete
    path.write_bytes(clean + b"\n")
    assert impl.replay(path).skipped_lines == 3


@pytest.mark.parametrize("mode", ["audit", "resume"])
def test_jsonl_torn_last_line_and_a_journal_of_garbage(impl, tmp_path, mode):
    records = [rec("r1", 1, RunLifecycle(status="running")), rec("r2", 2, Custom(name="x"))]
    data = json_lines(records)
    path = tmp_path / "run.jsonl"
    path.write_bytes(data[:-7])  # the last line lost its end: a torn tail
    torn = len(json_lines(records[1:])) - 7
    expected = result(
        mode, "complete", latest_journal_seq=1, records_applied=1, torn_tail_bytes=torn
    )
    assert impl.replay(path, mode=mode) == expected
    assert list(impl.read_journal(path)) == records[:1]
    path.write_bytes(data[:-1])  # only the newline lost: still a record
    assert impl.replay(path, mode=mode).records_applied == 2
    path.write_bytes(b"garbage\n\x00\xff\xfe\nmore garbage\n")
    if mode == "resume":
        with pytest.raises(JournalCorruption) as info:
            impl.replay(path, mode=mode)
        assert info.value.offset == 0
    else:
        got = impl.replay(path, mode=mode)
        assert got.status == "repair_needed"
        assert [r.kind for r in got.repair_needed] == ["journal_corruption"] * 3


def test_jsonl_violations_and_corrupt_lines_together(impl, tmp_path):
    path = tmp_path / "run.jsonl"
    records = [rec("r1", 2, Custom(name="x")), rec("r2", 1, Custom(name="y"))]
    head = json_lines(records[:1])
    path.write_bytes(head + b"garbage\n" + json_lines(records[1:]))
    assert impl.replay(path, mode="audit") == result(
        "audit",
        "repair_needed",
        latest_journal_seq=2,
        records_applied=1,
        skipped_lines=1,
        repair_needed=[
            repair(
                "journal_corruption",
                "",
                2,
                f"line 2 does not decode to a record; skipped bytes {len(head)}..{len(head) + 7}",
            ),
            repair(
                "replay_invariant_violation", "r2", 1, "journal records must be strictly increasing"
            ),
        ],
    )
    with pytest.raises(JournalCorruption):
        impl.replay(path, mode="resume")


def with_unknown_fields(record: JournalRecord) -> dict[str, Any]:
    raw = msgspec.to_builtins(record)
    raw["written_by"] = "replaycore 9.0"
    raw["payload"]["shard"] = {"id": 3}
    return raw


@pytest.mark.parametrize("fmt", FORMATS)
def test_unknown_fields_are_ignored(impl, tmp_path, fmt):
    records = [
        rec("r1", 1, RunLifecycle(status="running")),
        rec("r2", 2, EffectResult(effect_id="e", status="ok")),
    ]
    raws = [with_unknown_fields(r) for r in records]
    path = tmp_path / f"run.{fmt}"
    if fmt == "rcj":
        path.write_bytes(MAGIC + b"".join(frame_body(canonical(raw)) for raw in raws))
    else:
        path.write_bytes(b"".join(msgspec.json.encode(raw) + b"\n" for raw in raws))
    assert list(impl.read_journal(path)) == records
    expected = result("resume", "complete", latest_journal_seq=2, records_applied=2)
    assert impl.replay(path) == expected
    if fmt == "rcj":
        assert impl.replay(path.read_bytes()) == expected
    reducer = impl.ReplayReducer()
    for raw in raws:
        reducer.apply(msgspec.msgpack.encode(raw))
    assert reducer.finish() == expected


# -- sources of replay ------------------------------------------------------------------------


def sample_journal() -> list[JournalRecord]:
    return [
        rec("r1", 1, RunLifecycle(status="running")),
        rec("r2", 2, EffectIntent(effect_id="e1", effect_kind="http", idempotency_key="i")),
        rec("r3", 3, EffectIntent(effect_id="e2", effect_kind="http")),
        rec("r4", 5, EffectResult(effect_id="e2", status="ok"), content_refs=["ref-a", "ref-b"]),
    ]


@pytest.mark.parametrize("mode", ["audit", "resume", "repair"])
def test_path_bytes_and_iterable_give_equal_results(impl, tmp_path, mode):
    records = sample_journal()
    rcj, jsonl = tmp_path / "run.rcj", tmp_path / "run.jsonl"
    rcj.write_bytes(framed(records))
    jsonl.write_bytes(json_lines(records))
    odd_name = tmp_path / "run.log"  # any other name is framed
    odd_name.write_bytes(framed(records))
    options = {"available_content_refs": ["ref-a"], "missing_content_policy": "placeholder"}
    expected = impl.replay(records, mode=mode, **options)
    assert expected.records_applied == 4
    assert expected.missing_content_refs == ["ref-b"]
    sources = [
        rcj,
        str(rcj),
        jsonl,
        str(jsonl),
        odd_name,
        framed(records),
        bytearray(framed(records)),
        memoryview(framed(records)),
        iter(records),
        tuple(records),
        [canonical(r) for r in records],
    ]
    for source in sources:
        assert impl.replay(source, mode=mode, **options) == expected


def test_replay_many_in_order(impl, tmp_path):
    records = sample_journal()
    path = tmp_path / "run.rcj"
    path.write_bytes(framed(records))
    sources = [path, records[:1], framed(records[:2]), records[:3], []]
    expected = [impl.replay(s, mode="audit") for s in sources]
    assert len({r.records_applied for r in expected}) == 5
    for threads in (None, 1, 2, 4):
        assert impl.replay_many(sources, threads=threads, mode="audit") == expected
        assert impl.replay_many(iter(sources), threads=threads, mode="audit") == expected
    assert impl.replay_many([]) == []


def test_replay_many_reads_available_refs_once_for_every_source(impl):
    records = [
        rec("a", 1, Custom(name="x"), content_refs=["ref-1"]),
        rec("b", 2, Custom(name="x"), content_refs=["ref-2", "ref-3"]),
    ]
    sources = [records, framed(records), records[:1]]
    given = ["ref-1", "ref-2"]
    expected = [impl.replay(s, available_content_refs=given) for s in sources]
    assert [r.missing_content_refs for r in expected] == [["ref-3"], ["ref-3"], []]
    for threads in (1, 3):
        # an iterator serves every source, not only the first
        got = impl.replay_many(sources, threads=threads, available_content_refs=iter(given))
        assert got == expected
        assert impl.replay_many(sources, available_content_refs=frozenset(given)) == expected
    # refs that are not str fail every source with a typed error, never
    # with Python's own TypeError (unhashable items, no iterable at all)
    for bad in (lambda: [["ref-1"]], lambda: 5, lambda: "ref-1", lambda: iter(["ref-1", 3])):
        with pytest.raises(InvalidArgumentType) as info:
            impl.replay_many(sources, available_content_refs=bad())
        assert info.value.argument == "available_content_refs"
        with pytest.raises(InvalidArgumentType):
            impl.replay(records, available_content_refs=bad())
    failed = impl.replay_many(sources, available_content_refs=iter([3]), return_exceptions=True)
    assert [type(x) for x in failed] == [InvalidArgumentType] * 3
    # an earlier option is still checked first
    failed = impl.replay_many(sources, mode="x", available_content_refs=[3], return_exceptions=True)
    assert [x.argument for x in failed] == ["mode"] * 3


def test_replay_many_raises_the_first_failure_or_returns_failures_in_place(impl):
    good = sample_journal()
    out_of_order = [rec("a", 2, Custom(name="x")), rec("b", 1, Custom(name="x"))]
    no_magic = b"NOPE" + frame(good[0])
    sources = [good, out_of_order, good, no_magic, good]
    for threads in (None, 1, 3):
        with pytest.raises(ReplayViolation) as info:
            impl.replay_many(sources, threads=threads)
        assert (info.value.record_id, info.value.journal_seq) == ("b", 1)
        with pytest.raises(JournalCorruption):
            impl.replay_many([good, no_magic, out_of_order], threads=threads)
        got = impl.replay_many(sources, threads=threads, return_exceptions=True)
        assert [type(x).__name__ for x in got] == [
            "ReplayResult",
            "ReplayViolation",
            "ReplayResult",
            "JournalCorruption",
            "ReplayResult",
        ]
        assert got[0] == got[2] == got[4] == impl.replay(good)
        assert (got[1].kind, got[1].record_id) == ("invalid_state_transition", "b")
        assert got[3].offset == 0
    # options apply to every source: audit does not raise
    audited = impl.replay_many(sources[:3], mode="audit")
    assert [r.status for r in audited] == ["repair_needed", "repair_needed", "repair_needed"]
    assert audited[1].repair_needed[0].kind == "replay_invariant_violation"


def test_replay_of_a_missing_file_is_an_os_error(impl, tmp_path):
    with pytest.raises(FileNotFoundError):
        impl.replay(tmp_path / "absent.rcj")
    assert not Path(tmp_path / "absent.rcj").exists()


# -- max_line_bytes ------------------------------------------------------------------


def test_a_line_over_max_line_bytes_is_corruption_or_a_repair(impl, tmp_path):
    records = [
        rec("r1", 1, RunLifecycle(status="running")),
        rec("r2", 2, Custom(name="big", data=list(range(200)))),
        rec("r3", 3, Custom(name="x")),
    ]
    lines = [json_lines([r]) for r in records]
    path = tmp_path / "run.jsonl"
    path.write_bytes(b"".join(lines))
    long = len(lines[1]) - 1  # newline excluded
    start, limit = len(lines[0]), long - 1
    reason = f"line 2 is longer than the limit of {limit} bytes"
    # a line of exactly the limit is read
    exact = impl.replay(path, max_line_bytes=long)
    assert exact == impl.replay(records)
    assert exact.records_applied == 3
    for mode in ("resume", "repair"):
        with pytest.raises(JournalCorruption) as info:
            impl.replay(path, mode=mode, max_line_bytes=limit)
        assert info.value.offset == start
        assert reason in str(info.value)
    expected = result(
        "audit",
        "repair_needed",
        latest_journal_seq=3,
        records_applied=2,
        skipped_lines=1,
        sequence_gaps=[(1, 3)],
        repair_needed=[
            repair(
                "journal_corruption",
                "",
                1,
                f"{reason}; skipped bytes {start}..{start + long}",
            )
        ],
    )
    assert impl.replay(path, mode="audit", max_line_bytes=limit) == expected
    assert impl.replay_many([path, path], mode="audit", max_line_bytes=limit) == [expected] * 2
    with pytest.raises(JournalCorruption) as info:
        list(impl.read_journal(path, max_line_bytes=limit))
    assert info.value.offset == start
    assert list(impl.read_journal(path, strict=False, max_line_bytes=limit)) == [
        records[0],
        records[2],
    ]
    assert list(impl.read_journal(path, max_line_bytes=long)) == records
    found = impl.inspect_journal(path, max_line_bytes=limit)
    assert (found["records"], found["skipped_lines"]) == (2, 1)
    assert found["corrupt_ranges"] == [(start, start + long, reason)]
    assert impl.inspect_journal(path, max_line_bytes=long)["records"] == 3
    # the limit is on JSON lines only: a framed journal ignores it
    rcj = tmp_path / "run.rcj"
    rcj.write_bytes(framed(records))
    assert impl.replay(rcj, max_line_bytes=1) == impl.replay(records)
    assert list(impl.read_journal(rcj, max_line_bytes=1)) == records


BAD_LIMITS = [
    (0, InvalidArgument, "max_line_bytes must be in 1..=9223372036854775807, got 0"),
    (-5, InvalidArgument, "max_line_bytes must be in 1..=9223372036854775807, got -5"),
    (2**63, InvalidArgument, f"max_line_bytes must be in 1..=9223372036854775807, got {2**63}"),
    (True, InvalidArgumentType, "max_line_bytes must be an int, not bool"),
    (None, InvalidArgumentType, "max_line_bytes must be an int, not NoneType"),
    (1.5, InvalidArgumentType, "max_line_bytes must be an int, not float"),
    ("64", InvalidArgumentType, "max_line_bytes must be an int, not str"),
]


@pytest.mark.parametrize(("bad", "error", "message"), BAD_LIMITS)
def test_bad_max_line_bytes_is_refused_alike(impl, tmp_path, bad, error, message):
    path = tmp_path / "run.jsonl"
    path.write_bytes(json_lines([rec("r1", 1, Custom(name="x"))]))
    calls = [
        lambda: impl.replay(path, max_line_bytes=bad),
        lambda: impl.replay([], max_line_bytes=bad),
        lambda: impl.replay_many([path], max_line_bytes=bad),
        lambda: list(impl.read_journal(path, max_line_bytes=bad)),
        lambda: impl.inspect_journal(path, max_line_bytes=bad),
    ]
    for call in calls:
        with pytest.raises(error) as info:
            call()
        assert type(info.value) is error
        assert str(info.value) == message
        assert info.value.argument == "max_line_bytes"
        assert info.value.value is bad
    got = impl.replay_many([path, []], max_line_bytes=bad, return_exceptions=True)
    assert [type(x) for x in got] == [error, error]


def test_replay_reducer_reads_no_json_lines_and_takes_no_max_line_bytes(impl):
    with pytest.raises(TypeError):
        impl.ReplayReducer(max_line_bytes=10)
