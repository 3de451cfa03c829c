"""The README's examples run as written, and so does the tutorial's examples/harness.py.

Every ```python block of README.md runs on its own: a fresh interpreter
(``sys.executable``), an empty directory as cwd, nothing from the other
blocks. A block that uses ``replaycore.postgres`` reads its DSN from
``REPLAYCORE_DSN``; it gets a fresh database of the session's PostgreSQL
server (``pg_server``), so it skips or fails as the other PostgreSQL tests
do (``REPLAYCORE_REQUIRE_POSTGRES``, see conftest.py). Test ids name the
nearest heading and the block's position under it, e.g.
``test_readme_block_runs[replay-1]``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import replaycore
from pg_server import PostgresServer

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
HARNESS = REPO / "examples" / "harness.py"
BLOCK_TIMEOUT_S = 120
HARNESS_TIMEOUT_S = 60
# The one language a runnable block has; the others are shown, not run.
SHOWN_LANGUAGES = {"bash", "text"}
# CI runs the second line of the README's first block (tests/test_readme.py keeps it so).
SETUP_COMMANDS = [
    "pip install . && replaycore replay examples/journals/crash_pending_payment.rcj",
    'pip install ".[test]" && pytest',
]


class Block(NamedTuple):
    """One fenced block of the README."""

    language: str
    heading: str  # the nearest heading above it, without the leading #s
    line: int  # 1-based line of the opening fence
    code: str

    @property
    def uses_postgres(self) -> bool:
        return "replaycore.postgres" in self.code


def fenced_blocks(text: str) -> list[Block]:
    """Every fenced block of a Markdown text, with the heading it sits under."""
    blocks: list[Block] = []
    heading = "top"
    opened: tuple[str, int] | None = None
    lines: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if opened is None:
            if line.startswith("```"):
                opened, lines = (line[3:].strip(), number), []
            elif line.startswith("#"):
                heading = line.lstrip("#").strip()
        elif line.rstrip() == "```":
            blocks.append(Block(opened[0], heading, opened[1], "\n".join(lines) + "\n"))
            opened = None
        else:
            lines.append(line)
    assert opened is None, f"README.md: the block opened on line {opened[1]} is never closed"
    return blocks


def block_id(heading: str, position: int) -> str:
    """``"Keys (§2)"``, 1 -> ``"keys-1"``: the heading without its section, slugged."""
    words = re.sub(r"\([^)]*\)", "", heading).lower()
    return "-".join([*re.findall(r"[a-z0-9]+", words), str(position)])


def python_blocks() -> list[Any]:
    per_heading: dict[str, int] = {}
    params = []
    for block in fenced_blocks(README.read_text(encoding="utf-8")):
        if block.language != "python":
            continue
        per_heading[block.heading] = per_heading.get(block.heading, 0) + 1
        params.append(pytest.param(block, id=block_id(block.heading, per_heading[block.heading])))
    return params


ALL_BLOCKS = python_blocks()
LOCAL_BLOCKS = [param for param in ALL_BLOCKS if not param.values[0].uses_postgres]
POSTGRES_BLOCKS = [param for param in ALL_BLOCKS if param.values[0].uses_postgres]


def run_block(block: Block, tmp_path: Path, env: dict[str, str]) -> None:
    """Run ``block`` as a script in a fresh interpreter, cwd an empty directory."""
    script = tmp_path / "block.py"  # outside the cwd, so the cwd starts empty
    script.write_text(block.code, encoding="utf-8")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    try:
        proc = subprocess.run(
            [sys.executable, str(script)],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"README.md line {block.line} ({block.heading}) did not finish in "
            f"{BLOCK_TIMEOUT_S} s: does it wait for work that never comes?",
            pytrace=False,
        )
    where = f"README.md line {block.line} ({block.heading})"
    output = f"--- stdout\n{proc.stdout}--- stderr\n{proc.stderr}"
    assert proc.returncode == 0, f"{where} exited {proc.returncode}\n{output}"
    assert "Traceback" not in proc.stderr, f"{where} printed a traceback\n{output}"


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "REPLAYCORE_DSN"}
    env.update(extra)
    return env


# -- the README's blocks ---------------------------------------------------------------------


def test_readme_has_the_blocks_these_tests_run() -> None:
    headings = {param.values[0].heading for param in ALL_BLOCKS}
    assert len(LOCAL_BLOCKS) >= 10
    assert {
        "Many machines: PostgreSQL",
        "Resuming crashed runs on another machine",
    } <= {param.values[0].heading for param in POSTGRES_BLOCKS}
    assert "Tutorial: a harness that survives a crash" in headings
    ids = [param.id for param in ALL_BLOCKS]
    assert len(ids) == len(set(ids)), ids


def test_every_block_is_python_bash_or_text() -> None:
    blocks = fenced_blocks(README.read_text(encoding="utf-8"))
    odd = [(b.line, b.language) for b in blocks if b.language not in {"python", *SHOWN_LANGUAGES}]
    assert odd == [], "README.md blocks must be ```python (run by these tests), ```bash or ```text"


def test_the_setup_commands_at_the_top_are_unchanged() -> None:
    first = fenced_blocks(README.read_text(encoding="utf-8"))[0]
    assert (first.language, first.heading, first.line) == ("bash", "replaycore", 3)
    assert first.code.splitlines() == SETUP_COMMANDS


def test_postgres_blocks_take_their_dsn_from_the_environment() -> None:
    for param in POSTGRES_BLOCKS:
        assert 'os.environ.get("REPLAYCORE_DSN"' in param.values[0].code, param.id


@pytest.mark.parametrize("block", LOCAL_BLOCKS)
def test_readme_block_runs(block: Block, tmp_path: Path) -> None:
    run_block(block, tmp_path, environment())


@pytest.fixture
def fresh_database_dsn(pg_server: PostgresServer, pg_dsn: str) -> Iterator[str]:
    """The DSN of a new database of ``pg_server``, dropped afterwards."""
    name = f"readme_{uuid.uuid4().hex[:8]}"
    pg_server.create_database(name)
    yield pg_server.dsn(name)
    from psycopg import Error, sql

    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    with contextlib.suppress(Error):  # a leftover database is harmless: names are never reused
        pg_server.psql(drop)


@pytest.mark.parametrize("block", POSTGRES_BLOCKS)
def test_readme_postgres_block_runs(block: Block, tmp_path: Path, fresh_database_dsn: str) -> None:
    run_block(block, tmp_path, environment(REPLAYCORE_DSN=fresh_database_dsn))
    # Run again on the same database: a block must also cope with what it left there.
    rerun = tmp_path / "again"
    rerun.mkdir()
    run_block(block, rerun, environment(REPLAYCORE_DSN=fresh_database_dsn))


# -- the tutorial: examples/harness.py -------------------------------------------------------

PLAN = ["fetch-order", "reserve-stock", "charge-card", "send-receipt"]
# The journal path the README's expected output shows.
README_JOURNAL = "/tmp/replaycore-harness-1a2b3c4d/order-1001.rcj"


def harness(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(HARNESS), *args],
        cwd=cwd,
        env=env or environment(),
        capture_output=True,
        text=True,
        timeout=HARNESS_TIMEOUT_S,
    )


def effects_performed(journal: Path) -> list[str]:
    """The effects the outside world saw, in order (one line each in the effects log)."""
    log = journal.with_name(journal.name + ".effects.log")
    return [line.split()[0] for line in log.read_text().splitlines()] if log.exists() else []


def steps(stdout: str) -> dict[str, str]:
    """The tutorial's output by step: {"1": ..., "2": ..., ...}."""
    parts = re.split(r"^(\d)\. ", stdout, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_the_tutorial_crashes_refuses_the_unsafe_effect_and_resumes(tmp_path: Path) -> None:
    journal = tmp_path / "journals" / "order-1001.rcj"
    journal.parent.mkdir()
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    proc = harness(str(journal), cwd=elsewhere)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    by_step = steps(proc.stdout)
    assert sorted(by_step) == ["1", "2", "3", "4", "5"], proc.stdout

    assert "charge-card: intent journaled -- the worker dies here (SIGKILL)" in by_step["1"]
    assert "worker killed by SIGKILL in the middle of charge-card" in by_step["1"]
    # The restart reports the unsafe effect by id, refuses it, and writes nothing.
    assert "done already: fetch-order, reserve-stock" in by_step["2"]
    assert "UNSAFE charge-card (intent order-1001/0006)" in by_step["2"]
    assert "retry_allowed=False" in by_step["2"]
    assert "refusing to re-run charge-card" in by_step["2"]
    assert "worker exited 3 (repair needed)" in by_step["2"]
    assert "payment provider: no charge for order-1001" in by_step["3"]
    assert "--resolve charge-card not_performed" in by_step["3"]
    # The completed effects are skipped, not performed again.
    assert "skip fetch-order: done before the crash" in by_step["4"]
    assert "skip reserve-stock: done before the crash" in by_step["4"]
    assert "fetch-order: intent journaled" not in by_step["4"]
    assert "reserve-stock: intent journaled" not in by_step["4"]
    assert "run completed" in by_step["4"]
    assert "status=complete, terminal_status=completed" in by_step["5"]

    assert effects_performed(journal) == PLAN  # each exactly once, in plan order
    result = replaycore.replay(journal)
    assert (result.status, result.terminal_status) == ("complete", "completed")
    assert list(elsewhere.iterdir()) == []  # nothing written to the cwd


def test_the_tutorial_output_is_the_one_the_readme_shows(tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    shown = [
        b.code
        for b in fenced_blocks(text)
        if b.heading == "Tutorial: a harness that survives a crash" and b.language == "text"
    ]
    assert len(shown) == 1
    journal = tmp_path / "order-1001.rcj"
    proc = harness(str(journal), cwd=REPO)  # from the repository, as the README runs it
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.replace(str(journal), README_JOURNAL) == shown[0]


def test_the_tutorial_writes_to_a_temporary_directory_by_default(tmp_path: Path) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    proc = harness(cwd=cwd, env=environment(TMPDIR=str(temp)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first.startswith("journal: "), proc.stdout
    journal = Path(first.removeprefix("journal: "))
    assert journal.parent.parent == temp
    assert journal.parent.name.startswith("replaycore-harness-")
    assert effects_performed(journal) == PLAN
    assert list(cwd.iterdir()) == []


def test_the_tutorial_refuses_a_journal_that_exists(tmp_path: Path) -> None:
    journal = tmp_path / "order-1001.rcj"
    journal.write_bytes(b"")
    proc = harness(str(journal), cwd=tmp_path)
    assert proc.returncode == 2
    assert "exists already" in proc.stdout
    assert journal.read_bytes() == b""


def test_a_restarted_worker_writes_nothing_while_an_unkeyed_effect_is_pending(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "order-1001.rcj"
    crashed = harness("--worker", str(journal), "--crash-in", "charge-card", cwd=tmp_path)
    assert crashed.returncode == -signal.SIGKILL
    assert effects_performed(journal) == ["fetch-order", "reserve-stock"]  # not charged
    result = replaycore.replay(journal)
    assert [(e.effect_id, e.retry_allowed) for e in result.unsafe_pending_side_effects] == [
        ("charge-card", False)
    ]
    assert not result.resume_allowed

    before = journal.read_bytes()
    for _ in range(2):  # however often it is restarted
        restarted = harness("--worker", str(journal), cwd=tmp_path)
        assert restarted.returncode == 3, restarted.stdout + restarted.stderr
        assert "UNSAFE charge-card" in restarted.stdout
        assert journal.read_bytes() == before
    assert effects_performed(journal) == ["fetch-order", "reserve-stock"]

    # The operator step refuses an effect that is not pending.
    wrong = harness("--resolve", "send-receipt", "succeeded", str(journal), cwd=tmp_path)
    assert wrong.returncode == 2
    assert journal.read_bytes() == before


def test_a_restarted_worker_retries_a_keyed_effect_by_itself(tmp_path: Path) -> None:
    journal = tmp_path / "order-1001.rcj"
    crashed = harness("--worker", str(journal), "--crash-in", "reserve-stock", cwd=tmp_path)
    assert crashed.returncode == -signal.SIGKILL
    pending = replaycore.replay(journal).unsafe_pending_side_effects
    assert [(e.effect_id, e.retry_allowed) for e in pending] == [("reserve-stock", True)]

    restarted = harness("--worker", str(journal), cwd=tmp_path)
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert "retry reserve-stock: its idempotency key makes that safe" in restarted.stdout
    assert "skip fetch-order: done before the crash" in restarted.stdout
    assert effects_performed(journal) == PLAN
    assert replaycore.replay(journal).terminal_status == "completed"
