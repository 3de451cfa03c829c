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
    path = duplicate_record_journal(tmp_path / "dup.rcj")
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


# -- SPEC 11: what a new user meets ---------------------------------------------------
# Arguments refused before any work, no traceback from any input, argument or
# signal, one JSON object per outcome, colour and progress on terminals only.


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def one_line(err: str) -> None:
    assert err.startswith("replaycore: "), err
    assert err.endswith("\n")
    assert err.count("\n") == 1, err
    assert "Traceback" not in err


def duplicate_record_journal(path: Path) -> Path:
    """A journal whose second record repeats the first's id: a strict ReplayViolation."""
    record = JournalRecord(
        record_id="r1", journal_seq=1, run_id="run", payload=RunLifecycle(status="running")
    )
    frames = b"RCJ1"
    for seq in (1, 2):
        body = encode_canonical(msgspec.structs.replace(record, journal_seq=seq))
        head = len(body).to_bytes(4, "little") + _crc(body).to_bytes(4, "little")
        frames += head + _crc(head).to_bytes(4, "little") + body
    path.write_bytes(frames)
    return path


def corrupt_copy(path: Path) -> Path:
    """clean.rcj with one byte of its first frame's body flipped."""
    data = bytearray((EXAMPLES / "clean.rcj").read_bytes())
    data[20] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def test_version_is_the_package_version() -> None:
    import replaycore

    assert run("--version") == (0, f"replaycore {replaycore.__version__}\n", "")


def test_help_returns_0_on_stdout() -> None:
    code, out, err = run("--help")
    assert (code, err) == (0, "")
    assert "usage: replaycore" in out
    assert "replay" in out
    assert "inspect" in out
    code, out, err = run("bench", "--help")
    assert (code, err) == (0, "")
    assert "--records" in out


def test_python_dash_m_replaycore_is_the_same_program() -> None:
    import replaycore

    done = subprocess.run(
        [sys.executable, "-m", "replaycore", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (
        0,
        f"replaycore {replaycore.__version__}\n",
        "",
    )
    done = subprocess.run(
        [sys.executable, "-m", "replaycore", "replay", str(EXAMPLES / "crash_pending_payment.rcj")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "charge-card" in done.stdout


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["bench", "--records", "0"], "--records must be between 2 and"),
        (["bench", "--records", "1"], "--records must be between 2 and"),
        (["bench", "--records", str(10**23)], "--records must be between 2 and"),
        (["bench", "--records", "10**23"], "invalid int value"),
        (["bench", "--repeat", "0"], "--repeat must be between 1 and"),
        (["bench", "--repeat", "-3"], "--repeat must be between 1 and"),
        (["convert", "{clean}", "{tmp}/out.txt"], "must be .rcj or .jsonl"),
        # the output is checked first: the source is never opened
        (["convert", "{tmp}/missing.rcj", "{tmp}/OUT.RCJ"], "must be .rcj or .jsonl"),
        (["convert", "{clean}", "{tmp}/no-such-dir/out.rcj"], "is not a directory"),
        ([], "say which command"),
        (["frobnicate"], "invalid choice"),
        (["replay"], "required: path"),
        (["replay", "{clean}", "--mode", "bogus"], "invalid choice"),
        (["inspect", "{clean}", "--no-such-flag"], "unrecognized arguments"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2_before_any_work(
    argv: list[str], says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where bench would write
    argv = [a.format(clean=EXAMPLES / "clean.rcj", tmp=tmp_path) for a in argv]
    code, out, err = run(*argv)
    assert (code, out) == (2, "")
    one_line(err)
    assert says in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tmp"]  # nothing written
    assert list(scratch.iterdir()) == []


def test_bench_refuses_a_journal_the_disk_cannot_hold(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import tempfile

    import replaycore.cli

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(replaycore.cli, "_free_bytes", lambda directory: 100_000)
    code, out, err = run("bench", "--records", "1000")
    assert (code, out) == (2, "")
    one_line(err)
    assert f"in {tmp_path}, which has 100.0 kB free" in err
    assert list(tmp_path.iterdir()) == []


def test_bench_prints_finite_figures() -> None:
    code, out, err = run("bench", "--records", "2000", "--repeat", "1", "--json")
    assert (code, err) == (0, "")
    figures = json.loads(out)
    assert figures["records"] == 2000
    assert figures["repeat"] == 1
    assert figures["bytes"] > 2000 * 100
    for key in ("rust_s", "reference_s", "speedup"):
        assert 0 < figures[key] < float("inf"), key


def json_error(out: str) -> dict[str, object]:
    outcome = json.loads(out)  # exactly one JSON document, nothing around it
    assert set(outcome) == {"journal", "error"}
    error = outcome["error"]
    assert {"type", "message", "offset"} <= set(error)
    return outcome


def test_with_json_every_error_is_one_json_object_naming_the_journal(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.rcj")
    code, out, err = run("replay", missing, "--json")
    assert (code, err) == (2, "")
    outcome = json_error(out)
    assert outcome["journal"] == missing
    assert outcome["error"]["type"] == "FileNotFoundError"

    no_magic = tmp_path / "bad.rcj"
    no_magic.write_bytes(b"XXXX" + b"\x00" * 20)
    code, out, err = run("replay", str(no_magic), "--json", "--mode", "audit")
    assert (code, err) == (2, "")
    outcome = json_error(out)
    assert outcome["error"]["type"] == "JournalCorruption"
    assert outcome["error"]["offset"] == 0
    assert "RCJ1" in outcome["error"]["message"]

    corrupt = corrupt_copy(tmp_path / "corrupt.rcj")
    code, out, err = run("replay", str(corrupt), "--json")  # strict in resume mode
    assert (code, err) == (2, "")
    outcome = json_error(out)
    assert outcome["journal"] == str(corrupt)
    assert outcome["error"]["type"] == "JournalCorruption"
    assert outcome["error"]["offset"] == 4

    code, out, err = run("inspect", missing, "--json")
    assert (code, err) == (2, "")
    assert json_error(out)["journal"] == missing


def test_a_strict_violation_with_json_is_a_json_error_exit_1(tmp_path: Path) -> None:
    path = duplicate_record_journal(tmp_path / "dup.rcj")
    code, out, err = run("replay", str(path), "--strict", "--json")
    assert (code, err) == (1, "")
    outcome = json_error(out)
    assert outcome["journal"] == str(path)
    error = outcome["error"]
    assert error["type"] == "ReplayViolation"
    assert "duplicate non-idempotent journal record" in error["message"]
    assert error["journal_seq"] == 2
    assert error["record_id"] == "r1"


@pytest.mark.parametrize(
    "argv",
    [
        ["bench", "--records", "0", "--json"],
        ["replay", "--json", "--mode", "bogus", "x.rcj"],
        ["convert", "--json", str(EXAMPLES / "clean.rcj"), "out.txt"],
    ],
)
def test_with_json_a_refused_argument_is_a_json_error_exit_2(argv: list[str]) -> None:
    code, out, err = run(*argv)
    assert (code, err) == (2, "")
    error = json_error(out)["error"]
    assert error["type"] in ("InvalidArgument", "UsageError")
    assert error["offset"] is None


def test_json_reports_name_their_journal(tmp_path: Path) -> None:
    path = str(EXAMPLES / "crash_pending_payment.rcj")
    code, out, _ = run("replay", path, "--json")
    assert code == 1
    assert json.loads(out)["journal"] == path
    code, out, _ = run("inspect", path, "--json")
    assert code == 0
    stats = json.loads(out)
    assert (stats["journal"], stats["damaged"], stats["damage"]) == (path, False, None)
    target = tmp_path / "out.jsonl"
    code, out, err = run("convert", path, str(target), "--json")
    assert (code, err) == (0, "")
    assert json.loads(out) == {"journal": path, "target": str(target), "records": 5}


@pytest.mark.parametrize(
    ("name", "code"),
    [("clean.rcj", 0), ("clean.jsonl", 0), ("torn_tail.rcj", 0), ("torn_tail.jsonl", 0)],
)
def test_inspect_exits_0_on_a_clean_journal(name: str, code: int) -> None:
    # A torn tail is what a crash mid-write leaves: readers ignore it, it is not damage.
    got, out, err = run("inspect", str(EXAMPLES / name))
    assert (got, err) == (code, "")
    assert "verdict            clean" in out


def test_inspect_exits_1_on_a_damaged_journal(tmp_path: Path) -> None:
    corrupt = corrupt_copy(tmp_path / "corrupt.rcj")
    code, out, err = run("inspect", str(corrupt))
    assert (code, err) == (1, "")
    assert "verdict            damaged: corrupt at byte 4: body CRC mismatch" in out
    code, out, _ = run("inspect", str(corrupt), "--json")
    assert code == 1
    stats = json.loads(out)
    assert stats["damaged"] is True
    assert stats["corrupt_ranges"][0][0] == 4
    assert run("inspect", str(tmp_path / "missing.rcj"))[0] == 2


def test_inspect_blank_jsonl_lines_are_not_damage(tmp_path: Path) -> None:
    path = tmp_path / "blank.jsonl"
    path.write_bytes((EXAMPLES / "clean.jsonl").read_bytes() + b"\n   \n")
    code, out, _ = run("inspect", str(path), "--json")
    assert code == 0
    stats = json.loads(out)
    assert (stats["skipped_lines"], stats["damaged"]) == (2, False)


def test_inspect_exits_1_on_a_jsonl_line_that_is_not_a_record(tmp_path: Path) -> None:
    path = tmp_path / "garbage.jsonl"
    path.write_bytes(b'{"not": "a record"}\n' + (EXAMPLES / "clean.jsonl").read_bytes())
    code, out, err = run("inspect", str(path))
    assert (code, err) == (1, "")
    assert "verdict            damaged: corrupt at byte 0: line 1 " in out


def test_convert_holds_one_batch_not_the_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import replaycore.cli as cli

    # The general path: the reference's, and the core's for what its own
    # converter declines (tests/test_convert.py).
    monkeypatch.setattr(cli, "_convert_natively", lambda *args, **kw: None)
    monkeypatch.setattr(cli, "_CONVERT_BATCH", 2)
    count = {"read": 0, "written": 0, "held": 0}
    real_read, real_writer = cli.read_journal, cli.JournalWriter

    def read_journal(path: Path, **limits: int) -> object:
        for record in real_read(path, **limits):
            count["read"] += 1
            count["held"] = max(count["held"], count["read"] - count["written"])
            yield record

    class Writer:
        def __init__(self, path: Path, fsync: str) -> None:
            self.inner = real_writer(path, fsync=fsync)

        def __enter__(self) -> Writer:
            return self

        def __exit__(self, *exc: object) -> None:
            self.inner.close()

        def append_many(self, records: list[JournalRecord]) -> object:
            count["written"] += len(records)
            return self.inner.append_many(records)

    monkeypatch.setattr(cli, "read_journal", read_journal)
    monkeypatch.setattr(cli, "JournalWriter", Writer)
    source = EXAMPLES / "clean.rcj"
    target = tmp_path / "clean.jsonl"
    code, out, err = run("convert", str(source), str(target))
    assert (code, err) == (0, "")
    assert out == f"wrote 6 records to {target}\n"
    assert (count["read"], count["written"]) == (6, 6)
    assert count["held"] <= 2  # one batch; reading the journal into a list holds 6
    assert list(reference.read_journal(target)) == list(reference.read_journal(source))


@pytest.mark.parametrize("force", [False, True])
def test_an_interrupted_convert_exits_130_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, force: bool
) -> None:
    import replaycore.cli as cli

    monkeypatch.setattr(cli, "_convert_natively", lambda *args, **kw: None)  # the general path
    monkeypatch.setattr(cli, "_CONVERT_BATCH", 1)
    real_read = cli.read_journal

    def interrupted(path: Path, **limits: int) -> object:
        for i, record in enumerate(real_read(path, **limits)):
            if i == 3:
                raise KeyboardInterrupt  # Ctrl-C with three records written
            yield record

    monkeypatch.setattr(cli, "read_journal", interrupted)
    target = tmp_path / "out.jsonl"
    if force:
        target.write_bytes(b"the journal --force would replace\n")
    argv = ["convert", str(EXAMPLES / "clean.rcj"), str(target), *(["--force"] if force else [])]
    code, out, err = run(*argv)
    assert (code, out) == (130, "")
    one_line(err)
    assert "interrupted" in err
    assert [p.name for p in tmp_path.iterdir()] == (["out.jsonl"] if force else [])
    if force:  # renamed into place only when complete: the old file is intact
        assert target.read_bytes() == b"the journal --force would replace\n"


def test_ctrl_c_exits_130_and_removes_the_bench_journal(tmp_path: Path) -> None:
    import signal
    import time

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    bench = subprocess.Popen(
        [sys.executable, "-m", "replaycore", "bench", "--records", "5000000", "--repeat", "1"],
        env=dict(os.environ, TMPDIR=str(scratch)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until the journal is being written
            journals = list(scratch.rglob("bench.rcj"))
            if journals and journals[0].stat().st_size > 0:
                break
            time.sleep(0.02)
        else:
            pytest.fail("bench never started writing its journal")
        bench.send_signal(signal.SIGINT)
        out, err = bench.communicate(timeout=60)
    finally:
        bench.kill()
    assert (bench.returncode, out) == (130, "")
    assert err == "replaycore: interrupted\n"
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["replay", str(EXAMPLES / "crash_pending_payment.rcj")],
        ["replay", str(EXAMPLES / "clean.jsonl"), "--json"],
        ["inspect", str(EXAMPLES / "clean.rcj")],
    ],
)
def test_a_closed_pipe_ends_quietly(argv: list[str]) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # `replaycore ... | head` after head has exited
    try:
        done = subprocess.run(
            [sys.executable, "-m", "replaycore", *argv],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (141, "")


def test_the_report_is_coloured_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(EXAMPLES / "crash_pending_payment.rcj")
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("TERM", raising=False)
    terminal, err = Terminal(), io.StringIO()
    assert main(["replay", path], terminal, err) == 1
    assert "\x1b[1;31mrepair_needed\x1b[0m" in terminal.getvalue()
    assert "\x1b[1;31mNOT safe to retry\x1b[0m" in terminal.getvalue()
    assert err.getvalue() == ""
    piped = io.StringIO()
    assert main(["replay", path], piped, io.StringIO()) == 1
    assert "\x1b" not in piped.getvalue()
    # the coloured report is the plain one with escapes around some words
    plain = terminal.getvalue()
    for code in ("\x1b[1;31m", "\x1b[32m", "\x1b[33m", "\x1b[1m", "\x1b[0m"):
        plain = plain.replace(code, "")
    assert plain == piped.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    terminal = Terminal()
    assert main(["replay", path], terminal, io.StringIO()) == 1
    assert terminal.getvalue() == piped.getvalue()


def test_progress_is_drawn_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    import replaycore.cli as cli

    real_replay = cli.replay

    def slow_replay(*args: object, **options: object) -> ReplayResult:
        time.sleep(0.8)  # well past the half second before progress shows
        return real_replay(*args, **options)

    monkeypatch.setattr(cli, "replay", slow_replay)
    path = str(EXAMPLES / "clean.rcj")
    out, err = io.StringIO(), io.StringIO()
    assert main(["replay", path], out, err) == 0
    assert err.getvalue() == ""  # not a terminal: nothing but the report
    out, terminal = io.StringIO(), Terminal()
    assert main(["replay", path], out, terminal) == 0
    drawn = terminal.getvalue().split("\r")
    assert drawn[0] == ""
    assert drawn[1].startswith("replay clean.rcj  0:00 elapsed")  # redrawn in place
    assert drawn[-2].strip() == ""  # erased when done, then what it did:
    assert drawn[-1].startswith("replayed 6 records, 1.5 kB (")
    assert drawn[-1].endswith(" records/s\n")
    assert "\n" not in "".join(drawn[:-1])
    assert "\x1b" not in out.getvalue()  # stdout is no terminal: a plain report
    assert "status           complete" in out.getvalue()


def test_the_progress_line() -> None:
    import time

    from replaycore._terminal import Progress, human_size

    assert [human_size(n) for n in (999, 1505, 2_500_000, 10**23)] == [
        "999 B",
        "1.5 kB",
        "2.5 MB",
        "100,000.0 EB",
    ]
    progress = Progress(io.StringIO(), "convert run.rcj", total_bytes=1000, bytes_done=lambda: 250)
    progress.records = 40
    time.sleep(0.01)
    line = progress.line()
    assert line.startswith("convert run.rcj  25%  ETA 0:00  250 B of 1.0 kB  ")
    assert "  40 records  " in line
    counted = Progress(io.StringIO(), "bench", total_records=200)
    counted.records = 50
    assert counted.line().startswith("bench  25%  ETA ")
    assert "50 of 200 records" in counted.line()
    with Progress(io.StringIO(), "quiet", delay_s=0, interval_s=0.01) as silent:
        time.sleep(0.1)
    assert not silent.shown  # never drawn where stderr is no terminal
    assert silent.stream.getvalue() == ""  # type: ignore[attr-defined]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fdinfo"), reason="needs Linux /proc")
def test_reading_position_is_the_offset_of_the_open_file(tmp_path: Path) -> None:
    from replaycore._terminal import reading_position

    path = tmp_path / "journal.rcj"
    path.write_bytes(b"x" * 1000)
    position = reading_position(path)
    assert position() is None  # not open
    with open(path, "rb", buffering=0) as journal:
        journal.read(300)
        assert position() == 300
    assert position() is None


def test_a_database_password_never_reaches_the_output(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dsn = f"postgresql://ada:s3cret@127.0.0.1:{port}/db?connect_timeout=2&password=s3cret"
    code, out, err = run("replay", dsn, "--run", "r")
    assert (code, out) == (2, "")
    one_line(err)
    assert "s3cret" not in err
    assert f"postgresql://ada:***@127.0.0.1:{port}/db" in err
    code, out, err = run("replay", dsn, "--run", "r", "--json")
    assert (code, err) == (2, "")
    assert "s3cret" not in out
    assert json_error(out)["journal"].startswith(f"postgresql://ada:***@127.0.0.1:{port}/db")
