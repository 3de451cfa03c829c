"""The ``replaycore`` command line (SPEC section 11) and the bundled examples."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
from replaycore import reference
from replaycore.cli import main
from replaycore.records import EffectIntent, JournalRecord, RunLifecycle, encode_canonical
from replaycore.results import ReplayResult

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "journals"
FORMATS = (".rcj", ".jsonl")


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize(
    ("name", "code", "status"),
    [
        ("clean", 0, "complete"),
        ("crash_pending_payment", 1, "repair_needed"),
        ("dedupe_proof", 0, "complete"),
        ("torn_tail", 0, "complete"),
    ],
)
def test_examples_replay_with_the_documented_outcome(
    name: str, code: int, status: str, suffix: str
) -> None:
    path = str(EXAMPLES / f"{name}{suffix}")
    got, out, err = run("replay", path)
    assert (got, err) == (code, "")
    assert f"status           {status}" in out
    got, out, _ = run("replay", path, "--json")
    assert got == code
    result = msgspec.json.decode(out, type=ReplayResult)
    assert result == reference.replay(path)
    assert result.status == status


def test_crash_report_names_the_unsafe_payment() -> None:
    _, out, _ = run("replay", str(EXAMPLES / "crash_pending_payment.rcj"))
    assert "resume allowed   no" in out
    assert "charge-card" in out
    assert "NOT safe to retry" in out
    assert "non_idempotent_pending_side_effect" in out


def test_torn_tail_and_dedupe_proof_are_reported() -> None:
    _, out, _ = run("replay", str(EXAMPLES / "torn_tail.rcj"))
    assert "torn tail" in out
    _, out, _ = run("replay", str(EXAMPLES / "dedupe_proof.jsonl"), "--mode", "audit")
    assert "completed_by_dedupe_proof" in out
    assert "mode             audit" in out


def test_unreadable_inputs_exit_2(tmp_path: Path) -> None:
    assert run("replay", str(tmp_path / "missing.rcj"))[0] == 2
    no_magic = tmp_path / "bad.rcj"
    no_magic.write_bytes(b"XXXX" + b"\x00" * 20)
    code, _, err = run("replay", str(no_magic), "--mode", "audit")
    assert code == 2
    assert "RCJ1" in err
    corrupt = tmp_path / "corrupt.rcj"
    data = bytearray((EXAMPLES / "clean.rcj").read_bytes())
    data[20] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    assert run("replay", str(corrupt))[0] == 2  # strict in resume mode
    code, out, _ = run("replay", str(corrupt), "--mode", "audit")
    assert code == 1
    assert "journal_corruption" in out


def test_strict_violation_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "dup.rcj"
    record = JournalRecord(
        record_id="r1", journal_seq=1, run_id="run", payload=RunLifecycle(status="running")
    )
    frames = b"RCJ1"
    for seq in (1, 2):
        again = msgspec.structs.replace(record, journal_seq=seq)
        body = encode_canonical(again)
        head = len(body).to_bytes(4, "little") + _crc(body).to_bytes(4, "little")
        frames += head + _crc(head).to_bytes(4, "little") + body
    path.write_bytes(frames)
    code, _, err = run("replay", str(path))
    assert code == 1
    assert "duplicate non-idempotent journal record" in err
    code, out, _ = run("replay", str(path), "--lenient")
    assert code == 1
    assert "replay_invariant_violation" in out


def _crc(data: bytes) -> int:
    import zlib

    return zlib.crc32(data)


def test_inspect_counts_kinds() -> None:
    code, out, _ = run("inspect", str(EXAMPLES / "crash_pending_payment.rcj"), "--json")
    assert code == 0
    stats = json.loads(out)
    assert stats["records"] == 5
    assert stats["kinds"]["effect_intent"] == 2


@pytest.mark.parametrize(("source", "target"), [(".rcj", ".jsonl"), (".jsonl", ".rcj")])
def test_convert_round_trips(tmp_path: Path, source: str, target: str) -> None:
    src = EXAMPLES / f"crash_pending_payment{source}"
    dst = tmp_path / f"out{target}"
    assert run("convert", str(src), str(dst))[0] == 0
    assert list(reference.read_journal(dst)) == list(reference.read_journal(src))
    assert run("convert", str(src), str(dst))[0] == 2  # exists, no --force
    assert run("convert", str(src), str(dst), "--force")[0] == 0


def test_bench_prints_a_ratio() -> None:
    code, out, _ = run("bench", "--records", "2000", "--repeat", "1")
    assert code == 0
    assert "speed-up" in out


def test_console_script_on_the_reference_backend() -> None:
    env = dict(os.environ, REPLAYCORE_BACKEND="python")
    script = Path(sys.executable).with_name("replaycore")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "replaycore.cli"]
    done = subprocess.run(
        [*command, "replay", str(EXAMPLES / "crash_pending_payment.jsonl")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "charge-card" in done.stdout


def test_example_generator_reproduces_the_bundled_journals(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "make_journals", EXAMPLES.parent / "make_journals.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(tmp_path)
    bundled = sorted(p.name for p in EXAMPLES.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == bundled
    for name in bundled:
        assert (tmp_path / name).read_bytes() == (EXAMPLES / name).read_bytes(), name
    records = list(reference.read_journal(EXAMPLES / "crash_pending_payment.rcj"))
    assert isinstance(records[-1].payload, EffectIntent)
    assert records[-1].payload.idempotency_key is None


# -- PostgreSQL journals (SPEC 11, 12) ---------------------------------------------


@pytest.mark.parametrize("name", ["clean", "crash_pending_payment", "dedupe_proof"])
def test_a_journal_converted_into_postgres_replays_as_the_file_does(
    name: str, pg_dsn: str, pg_schema: str, tmp_path: Path
) -> None:
    source = EXAMPLES / f"{name}.rcj"
    run_id = next(iter(reference.read_journal(source))).run_id
    code, out, err = run("convert", str(source), pg_dsn, "--schema", pg_schema)
    assert (code, err) == (0, "")
    assert f"to run {run_id}" in out
    expected = reference.replay(source)
    code, out, err = run("replay", pg_dsn, "--schema", pg_schema, "--run", run_id, "--json")
    assert err == ""
    assert msgspec.json.decode(out, type=ReplayResult) == expected
    assert code == (0 if expected.status == "complete" else 1)
    code, out, _ = run("replay", pg_dsn, "--schema", pg_schema, "--run", run_id)
    assert f"run {run_id}" in out.splitlines()[0]
    assert f"status           {expected.status}" in out
    # ... and back into a file, in the other format
    back = tmp_path / f"{name}.jsonl"
    code, out, err = run("convert", pg_dsn, str(back), "--schema", pg_schema, "--run", run_id)
    assert (code, err) == (0, "")
    assert list(reference.read_journal(back)) == list(reference.read_journal(source))


def test_postgres_cli_refusals(pg_dsn: str, pg_schema: str, tmp_path: Path) -> None:
    source = EXAMPLES / "clean.rcj"
    run_id = next(iter(reference.read_journal(source))).run_id
    code, _, err = run("replay", pg_dsn, "--schema", pg_schema)
    assert code == 2
    assert "--run" in err
    code, _, err = run("replay", str(source), "--run", run_id)
    assert code == 2
    assert "--run" in err
    assert run("convert", str(source), pg_dsn, "--schema", pg_schema)[0] == 0
    code, _, err = run("convert", str(source), pg_dsn, "--schema", pg_schema)
    assert code == 2
    assert "already has records" in err
    code, _, err = run("replay", pg_dsn, "--schema", "no; drop", "--run", run_id)
    assert code == 2
    assert "schema" in err
    # an unknown run is an empty journal: nothing pending, complete
    code, out, _ = run("replay", pg_dsn, "--schema", pg_schema, "--run", "no-such-run", "--json")
    assert code == 0
    assert msgspec.json.decode(out, type=ReplayResult).latest_journal_seq == 0


def test_postgres_cli_server_down_is_unreadable(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dsn = f"postgresql://nobody@127.0.0.1:{port}/db?connect_timeout=2"
    code, _, err = run("replay", dsn, "--run", "r")
    assert code == 2
    assert "cannot read" in err
