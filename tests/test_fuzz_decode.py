"""Differential decoding (SPEC 6.1, 6.2): damaged and adversarial journals give
equal results, or errors of the same type, on both backends, through every
entry point, and only ``ReplayCoreError``s."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
import replaycore._core as rust
import replaycore.reference as python
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from journals import MAGIC, frame_body, json_lines, rec
from replaycore.errors import ReplayCoreError
from replaycore.records import Custom, EffectIntent, RunLifecycle

BACKENDS = (rust, python)
# 60 examples per test by default (about a second); a campaign sets
# REPLAYCORE_FUZZ_EXAMPLES (docs/reliability.md).
FUZZ = settings(
    max_examples=int(os.environ.get("REPLAYCORE_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def outcome(call: Any) -> Any:
    """The value of ``call()`` (iterators drained), or the type of its error,
    which must be a ReplayCoreError."""
    try:
        value = call()
        return list(value) if not isinstance(value, dict | msgspec.Struct) else value
    except ReplayCoreError as exc:
        return type(exc)


def entry_points(impl: Any, path: Path, data: bytes) -> list[Any]:
    calls: list[Any] = [
        lambda: impl.replay(path, mode="audit"),
        lambda: impl.replay(path, mode="resume"),
        lambda: impl.replay(path, mode="repair"),
        lambda: impl.read_journal(path),
        lambda: impl.read_journal(path, strict=False),
        lambda: impl.inspect_journal(path),
    ]
    if path.suffix == ".rcj":
        calls.append(lambda: impl.replay(data, mode="audit"))
    return [outcome(call) for call in calls]


def alike(a: Any, b: Any) -> bool:
    """Equal, or equal but for NaN (a NaN in ``Custom.data`` never equals
    itself; the reprs show every field)."""
    return bool(a == b) or repr(a) == repr(b)


def same_everywhere(tmp_path: Path, name: str, data: bytes) -> list[Any]:
    path = tmp_path / name
    path.write_bytes(data)
    got = [entry_points(impl, path, data) for impl in BACKENDS]
    assert alike(got[0], got[1]), got
    return got[0]


def body_outcome(body: bytes) -> list[Any]:
    """Apply one record body through ReplayReducer.apply on both backends."""
    results = []
    for impl in BACKENDS:

        def run(impl: Any = impl) -> Any:
            reducer = impl.ReplayReducer(mode="audit")
            reducer.apply(body)
            return reducer.finish()

        results.append(outcome(run))
    assert alike(results[0], results[1]), results
    return results


def custom_body(data_raw: bytes, unknown_raw: bytes | None = None) -> bytes:
    parts = [b"\xa9record_id\xa1r", b"\xabjournal_seq\x01", b"\xa6run_id\xa1x"]
    parts.append(b"\xa7payload\x83\xa4kind\xa6custom\xa4name\xa1n\xa4data" + data_raw)
    if unknown_raw is not None:
        parts.append(b"\xa2zz" + unknown_raw)
    return bytes([0x80 | len(parts)]) + b"".join(parts)


ADVERSARIAL = {
    "invalid utf-8": b"\xa1\xff",
    "invalid utf-8 key": b"\x81\xa1\xff\x01",
    "map key": b"\x81\x80\x01",
    "ext key": b"\x81\xd4\x05a\x01",
    "array key": b"\x81\x91\x91\x01\x01",
    "timestamp 5 bytes": b"\xc7\x05\xff" + b"\x00" * 5,
    "timestamp nanos": b"\xd7\xff" + (10**9 << 34).to_bytes(8, "big"),
    "timestamp out of range": b"\xc7\x0c\xff" + b"\x00" * 4 + (2**62).to_bytes(8, "big"),
    "timestamp ok": b"\xd6\xff\x00\x00\x00\x01",
    "deep 254": b"\x91" * 254 + b"\xc0",
    "deep 255": b"\x91" * 255 + b"\xc0",
    "deep 1000": b"\x91" * 1000 + b"\xc0",
    "deep 100000": b"\x91" * 100_000 + b"\xc0",
}


@pytest.mark.parametrize("where", ["data", "unknown"])
@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_adversarial_values_decode_alike(tmp_path, name, where):
    raw = ADVERSARIAL[name]
    body = custom_body(raw) if where == "data" else custom_body(b"\xc0", raw)
    results = body_outcome(body)
    # the nesting limit: the record 1, the payload 2, data or zz's value 3..
    if name.startswith("deep"):
        levels = int(name.split()[1])
        depth = levels + (2 if where == "data" else 1)
        assert isinstance(results[0], type) == (depth > 256), results[0]
    audit = same_everywhere(tmp_path, "run.rcj", MAGIC + frame_body(body))[0]
    assert audit.records_applied == (0 if isinstance(results[0], type) else 1)


def test_deep_json_lines_are_corruption_not_recursion(tmp_path):
    for levels in (250, 254, 255, 1000, 50_000):
        data = "[" * levels + "]" * levels
        line = (
            '{"record_id":"r","journal_seq":1,"run_id":"x",'
            f'"payload":{{"kind":"custom","name":"n","data":{data}}}}}\n'
        ).encode()
        got = same_everywhere(tmp_path, "run.jsonl", line)
        audit = got[0]
        assert (audit.records_applied == 1) == (levels + 2 <= 256), levels


RECORDS = [
    rec("r1", 1, RunLifecycle(status="running")),
    rec("r2", 2, EffectIntent(effect_id="e", effect_kind="http", idempotency_key="k")),
    rec("r3", 3, Custom(name="n", data={"a": [1, "é", None], "b": 2.5})),
    rec("r4", 4, RunLifecycle(status="completed")),
]


def damage(data: bytes, draw: Any) -> bytes:
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        if not buf:
            break
        at = draw(st.integers(0, len(buf) - 1))
        if op == "flip":
            buf[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del buf[at:]
        elif op == "insert":
            buf[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            del buf[at : at + draw(st.integers(1, 16))]
    return bytes(buf)


@FUZZ
@given(st.data())
def test_damaged_framed_journals_agree(tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("rcj")
    records = data.draw(
        st.lists(st.sampled_from(RECORDS), min_size=1, max_size=4, unique_by=lambda r: r.record_id)
    )
    bodies = [msgspec.msgpack.encode(r) for r in records]
    if data.draw(st.booleans()):
        # damage a body and fix its CRCs, so only the decoder can tell
        index = data.draw(st.integers(0, len(bodies) - 1))
        bodies[index] = damage(bodies[index], data.draw)
        framed = MAGIC + b"".join(frame_body(b) for b in bodies)
    else:
        framed = damage(MAGIC + b"".join(frame_body(b) for b in bodies), data.draw)
    same_everywhere(tmp, "run.rcj", framed)
    for body in bodies:
        body_outcome(body)


@FUZZ
@given(st.data())
def test_damaged_json_lines_agree(tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("jsonl")
    records = data.draw(
        st.lists(st.sampled_from(RECORDS), min_size=1, max_size=4, unique_by=lambda r: r.record_id)
    )
    text = damage(json_lines(sorted(records, key=lambda r: r.journal_seq)), data.draw)
    same_everywhere(tmp, "run.jsonl", text)


any_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=20,
)


@FUZZ
@given(value=any_values, raw=st.binary(max_size=24))
def test_random_msgpack_values_in_custom_data_agree(tmp_path_factory, value, raw):
    tmp = tmp_path_factory.mktemp("data")
    for data_raw in (msgspec.msgpack.encode(value), raw or b"\xc0"):
        for body in (custom_body(data_raw), custom_body(b"\xc0", data_raw)):
            body_outcome(body)
            same_everywhere(tmp, "run.rcj", MAGIC + frame_body(body))


# -- the CLI ---------------------------------------------------------------------------------


def cli(backend: str, *args: str) -> tuple[int, Any, str]:
    """``replaycore ARGS --json`` in a fresh interpreter on ``backend``:
    (exit code, the JSON it printed, stderr)."""
    env = {**os.environ, "REPLAYCORE_BACKEND": backend}
    done = subprocess.run(
        [sys.executable, "-m", "replaycore", *args, "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    return done.returncode, json.loads(done.stdout), done.stderr


CLI_CASES = {
    **{f"rcj {name}": (name, "rcj") for name in ADVERSARIAL},
    "jsonl deep 254": ("deep 254", "jsonl"),
    "jsonl deep 1000": ("deep 1000", "jsonl"),
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_the_cli_gives_the_same_answer_on_both_backends(tmp_path, case):
    """``replay`` (resume and audit) and ``inspect`` on the adversarial
    journals: the same exit code and the same JSON from both backends, and
    never a traceback."""
    name, fmt = CLI_CASES[case]
    if fmt == "rcj":
        data = MAGIC + frame_body(custom_body(ADVERSARIAL[name]))
    else:
        levels = int(name.split()[1])
        nested = "[" * levels + "]" * levels
        data = (
            '{"record_id":"r","journal_seq":1,"run_id":"x",'
            f'"payload":{{"kind":"custom","name":"n","data":{nested}}}}}\n'
        ).encode()
    path = tmp_path / f"run.{fmt}"
    path.write_bytes(data)
    for args in (
        ["replay", str(path)],
        ["replay", str(path), "--mode", "audit"],
        ["inspect", str(path)],
    ):
        rust_code, rust_out, rust_err = cli("rust", *args)
        python_code, python_out, python_err = cli("python", *args)
        assert "Traceback" not in rust_err + python_err
        assert rust_code in (0, 1, 2), (args, rust_code, rust_err)
        assert (rust_code, rust_out) == (python_code, python_out), args
