"""``replaycore convert`` between journal files: the Rust core's converter
(``_core.convert_journal``, ``rust/convert.rs``) against the general path
(``read_journal`` + ``JournalWriter``, :func:`replaycore.cli._copy`).

The converter writes each record from its encoded bytes. It must give the
very bytes the general path gives, or decline (None, nothing left behind) so
that the general path runs: never a different file, never a different error.
"""

from __future__ import annotations

import os
import signal
import struct
import threading
import time
import zlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from journals import MAGIC, frame_body, journals, rec
from replaycore import _core, cli
from replaycore import journal as rust
from replaycore import reference as python
from replaycore.errors import InvalidArgumentType
from replaycore.records import Custom, RunLifecycle

FUZZ = settings(
    max_examples=int(os.environ.get("REPLAYCORE_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SUFFIXES = (".rcj", ".jsonl")

#: What a harness puts in ``Custom.data``: every JSON type, floats of every
#: kind (NaN and infinities included), text with escapes and non-ASCII,
#: integers to the ends of msgpack's range, keys in any order.
data_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.floats(width=32)
    | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=6), inner, max_size=5)
    ),
    max_leaves=30,
)


def general(source: Path, target: Path, **limits: Any) -> Any:
    """What the general path writes at ``target``: its bytes, or its error type."""
    try:
        cli._copy(python.read_journal(source, **limits), target, SimpleNamespace(records=0))
    except Exception as exc:
        return type(exc)
    return target.read_bytes()


def native(source: Path, target: Path, **limits: Any) -> Any:
    """What the core's converter writes at ``target``: its bytes, or None
    when it declined (and then ``target`` must not exist)."""
    count = _core.convert_journal(source, target, **limits)
    if count is None:
        assert not target.exists()
        return None
    return target.read_bytes()


def check_alike(tmp: Path, source: Path) -> list[Any]:
    """Convert ``source`` into both formats both ways; the converter's file
    is the general path's, or it declined. Returns what it wrote per format."""
    written = []
    for suffix in SUFFIXES:
        expected = general(source, tmp / f"general{suffix}")
        got = native(source, tmp / f"native{suffix}")
        if got is not None:
            assert got == expected
        written.append(got)
        for path in tmp.glob("*" + suffix):
            if path != source:
                path.unlink()
    return written


def write_source(path: Path, records: list[Any]) -> Path:
    with python.JournalWriter(path, fsync="never") as writer:
        writer.append_many(records)
    return path


@FUZZ
@given(records=journals(), suffix=st.sampled_from(SUFFIXES))
def test_generated_journals_convert_to_the_same_bytes(tmp_path_factory, records, suffix):
    tmp = tmp_path_factory.mktemp("convert")
    source = tmp / f"source{suffix}"
    source.write_bytes(
        MAGIC + b"".join(frame_body(msgspec.msgpack.encode(r)) for r in records)
        if suffix == ".rcj"
        else b"".join(msgspec.json.encode(r) + b"\n" for r in records)
    )
    check_alike(tmp, source)


@FUZZ
@given(values=st.lists(data_values, min_size=1, max_size=4), suffix=st.sampled_from(SUFFIXES))
def test_custom_data_converts_to_the_same_bytes(tmp_path_factory, values, suffix):
    tmp = tmp_path_factory.mktemp("data")
    records = [rec(f"r{i}", i + 1, Custom(name="n", data=v)) for i, v in enumerate(values)]
    source = write_source(tmp / f"source{suffix}", records)
    written = check_alike(tmp, source)
    # What the library writes itself is never declined (float32 becomes a
    # float64 once written).
    assert None not in written


def test_the_converter_writes_floats_and_text_as_msgspec_does(tmp_path):
    floats = [0.0, -0.0, 1.0, 0.1, 1e-5, 1e-7, 1e15, 1e16, 1e22, 5e-324, 1.7976931348623157e308]
    floats += [123456789012345.67, 2.5e-5, float("nan"), float("inf"), -float("inf")]
    text = "".join(chr(c) for c in range(0x30)) + '"\\/\x7f\u00e9\u2028\U0001f600'
    data = {"floats": floats, "text": text, text: [text], "ints": [-(2**63), 2**64 - 1, -33, 255]}
    source = write_source(tmp_path / "source.rcj", [rec("r1", 1, Custom(name=text, data=data))])
    got = native(source, tmp_path / "native.jsonl")
    assert got == general(source, tmp_path / "general.jsonl")
    for written in (b'"\\u0000\\u0001', b"1e-7", b"0.00001", b"null"):
        assert written in got


def custom_frame(data_raw: bytes, seq: int = 1) -> bytes:
    """A frame of a custom record whose ``Custom.data`` is ``data_raw``, as
    another writer may have encoded it."""
    record = msgspec.msgpack.encode(rec(f"r{seq}", seq, Custom(name="n", data=None)))
    assert record.endswith(b"\xa4data\xc0")
    return frame_body(record[:-1] + data_raw)


DECLINED_DATA = {
    "float32": b"\xca" + struct.pack(">f", 1.5),
    "binary": b"\xc4\x02ab",
    "timestamp": b"\xd6\xff" + struct.pack(">I", 1),
    "other extension": b"\xd4\x01\x00",
    "keys out of order": b"\x82\xa1b\x01\xa1a\x02",
    "a repeated key": b"\x82\xa1a\x01\xa1a\x02",
    "an integer key": b"\x81\x01\x02",
    "an int not in its shortest form": b"\xcd\x00\x05",
    "a negative int in a longer form": b"\xd1\xff\xff",
    "a string with a longer header": b"\xd9\x01a",
    "an array with a longer header": b"\xdc\x00\x01\x01",
}


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("case", DECLINED_DATA)
def test_data_it_does_not_copy_exactly_is_left_to_the_general_path(tmp_path, case, suffix):
    source = tmp_path / "source.rcj"
    source.write_bytes(MAGIC + custom_frame(DECLINED_DATA[case]))
    assert list(python.read_journal(source))  # the general path takes it
    assert native(source, tmp_path / f"native{suffix}") is None
    # ... and the command still converts it, the way it always did, or says
    # why it cannot (a key that is not a string has no canonical order, an
    # extension other than a timestamp no JSON).
    target = tmp_path / f"out{suffix}"
    expected = general(source, tmp_path / f"general{suffix}")
    code = cli.main(["convert", str(source), str(target)])
    if case == "an integer key" or (case == "other extension" and suffix == ".jsonl"):
        assert (code, expected) == (cli.EXIT_UNREADABLE, InvalidArgumentType)
        assert not target.exists()
    else:
        assert code == 0
        assert target.read_bytes() == expected


@pytest.mark.parametrize("impl", [rust, python], ids=["rust", "python"])
def test_a_record_json_cannot_carry_is_a_typed_error_and_nothing_is_written(tmp_path, impl):
    path = tmp_path / "run.jsonl"
    with impl.JournalWriter(path, fsync="never") as writer:
        writer.append(rec("r1", 1, Custom(name="n", data=1)))
        bad = rec("r2", 3, Custom(name="n", data=[msgspec.msgpack.Ext(1, b"x")]))
        with pytest.raises(InvalidArgumentType, match="cannot be encoded as JSON"):
            writer.append_many([rec("r3", 2, Custom(name="n")), bad])
        assert writer.last_journal_seq == 1
    assert [r.record_id for r in python.read_journal(path)] == ["r1"]


def test_canonical_foreign_data_is_converted(tmp_path):
    source = tmp_path / "source.rcj"
    source.write_bytes(MAGIC + custom_frame(b"\x82\xa1a\x01\xa1b\x92\xcc\x80\xd0\xdf"))
    assert native(source, tmp_path / "native.jsonl") == b"".join(
        msgspec.json.encode(r) + b"\n" for r in python.read_journal(source)
    )


@pytest.mark.parametrize(
    ("name", "frames"),
    [
        ("a seq of 0 (the writer numbers it)", [custom_frame(b"\xc0", 0)]),
        ("a repeated seq", [custom_frame(b"\xc0", 1), custom_frame(b"\x01", 1)]),
        ("a seq going back", [custom_frame(b"\xc0", 2), custom_frame(b"\x01", 1)]),
        ("a corrupt frame", [custom_frame(b"\xc0", 1)[:-1] + b"\x00", custom_frame(b"\x01", 2)]),
    ],
)
def test_seqs_and_damage_are_left_to_the_general_path(tmp_path, name, frames):
    source = tmp_path / "source.rcj"
    source.write_bytes(MAGIC + b"".join(frames))
    for suffix in SUFFIXES:
        assert native(source, tmp_path / f"native{suffix}") is None
    code = cli.main(["convert", str(source), str(tmp_path / "out.jsonl")])
    expected = general(source, tmp_path / "general.jsonl")
    assert (code == 0) == isinstance(expected, bytes)


def test_a_torn_tail_and_blank_lines_are_skipped_as_read_journal_skips_them(tmp_path):
    records = [rec("r1", 1, RunLifecycle(status="started")), rec("r2", 2, Custom(name="n"))]
    (tmp_path / "lines").mkdir()
    (tmp_path / "frames").mkdir()
    lines = tmp_path / "lines" / "source.jsonl"
    lines.write_bytes(
        b"\n".join(msgspec.json.encode(r) for r in records) + b"\n  \n" + b'{"record_id": "r3"'
    )
    frames = tmp_path / "frames" / "source.rcj"
    frames.write_bytes(MAGIC + b"".join(frame_body(msgspec.msgpack.encode(r)) for r in records))
    frames.write_bytes(frames.read_bytes() + frame_body(b"\x80")[:7])
    for source in (lines, frames):
        assert None not in check_alike(source.parent, source)


def test_the_target_must_not_exist_and_arguments_are_checked(tmp_path):
    source = write_source(tmp_path / "source.rcj", [rec("r1", 1, Custom(name="n"))])
    target = tmp_path / "target.jsonl"
    target.write_bytes(b"kept\n")
    assert _core.convert_journal(source, target) is None
    assert target.read_bytes() == b"kept\n"  # an existing file is never written
    with pytest.raises(TypeError):
        _core.convert_journal(source, 7)
    with pytest.raises(ValueError, match="max_frame_bytes"):
        _core.convert_journal(source, tmp_path / "t.rcj", max_frame_bytes=0)


def big_frame_journal(path: Path, items: int) -> Path:
    """One custom record whose data is ``items`` ones (a byte each)."""
    data = b"\xdd" + struct.pack(">I", items) + b"\x01" * items
    path.write_bytes(MAGIC + custom_frame(data))
    return path


def test_one_big_record_converts_both_ways_with_the_limits_raised(tmp_path):
    source = big_frame_journal(tmp_path / "big.rcj", 3_000_000)
    lines = tmp_path / "big.jsonl"
    limits = {"max_frame_bytes": 2**32 - 1, "max_line_bytes": 2**40}
    assert _core.convert_journal(source, lines, **limits) == 1
    assert lines.read_bytes() == b'%s"data":[%s]}}\n' % (
        msgspec.json.encode(next(python.read_journal(source, **limits)))[:-2].split(b'"data"')[0],
        b",".join([b"1"] * 3_000_000),
    )
    back = tmp_path / "back.rcj"
    assert _core.convert_journal(lines, back, **limits) == 1
    assert back.read_bytes() == source.read_bytes()
    # Strict reading keeps its limits: over them, the general path raises.
    assert _core.convert_journal(source, tmp_path / "small.jsonl", max_frame_bytes=1000) is None


def test_ctrl_c_stops_the_converter_and_leaves_nothing(tmp_path):
    source = big_frame_journal(tmp_path / "big.rcj", 40_000_000)
    target = tmp_path / "out.jsonl"
    main = threading.get_ident()

    def interrupt() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if target.exists() and target.stat().st_size > 0:  # converting
                signal.pthread_kill(main, signal.SIGINT)
                return
            time.sleep(0.0005)

    helper = threading.Thread(target=interrupt)
    helper.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            _core.convert_journal(source, target, max_frame_bytes=2**32 - 1, max_line_bytes=2**40)
    finally:
        helper.join()
    assert not target.exists()


def test_a_frame_the_crc_was_fixed_for_is_read_exactly_like_the_general_path(tmp_path):
    body = msgspec.msgpack.encode(rec("r1", 1, Custom(name="n", data=[1, 2])))
    head = struct.pack("<II", len(body), zlib.crc32(body))
    source = tmp_path / "source.rcj"
    source.write_bytes(MAGIC + head + struct.pack("<I", zlib.crc32(head)) + body)
    assert None not in check_alike(tmp_path, source)
