"""Large journals: the Rust core reads big files and buffers on a second
thread (rust/pipeline.rs); results and errors must stay those of the
reference, damage included."""

from __future__ import annotations

from pathlib import Path

import pytest
from replaycore import _core, reference
from replaycore.errors import JournalCorruption, ReplayViolation
from replaycore.synthetic import write_synthetic_journal

RECORDS = 30_000  # about 7 MB: above the size where buffers use two threads


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = write_synthetic_journal(tmp_path_factory.mktemp("large") / "run.rcj", RECORDS)
    return path.read_bytes()


def _variants(data: bytes) -> dict[str, bytes]:
    middle = len(data) // 2
    flipped = bytearray(data)
    flipped[middle] ^= 0x40
    garbage = data[:middle] + b"\x00garbage\xff" * 50 + data[middle:]
    return {
        "clean": data,
        "flipped": bytes(flipped),
        "garbage": garbage,
        "torn": data[:-7],
    }


def _outcome(fn, source, mode):  # type: ignore[no-untyped-def]
    try:
        return ("ok", fn(source, mode=mode))
    except (JournalCorruption, ReplayViolation) as exc:
        return ("err", type(exc), getattr(exc, "offset", None), str(exc))


@pytest.mark.parametrize("mode", ["audit", "resume"])
@pytest.mark.parametrize("variant", ["clean", "flipped", "garbage", "torn"])
def test_large_journals_match_the_reference(
    journal: bytes, tmp_path: Path, mode: str, variant: str
) -> None:
    data = _variants(journal)[variant]
    path = tmp_path / "run.rcj"
    path.write_bytes(data)
    expected = _outcome(reference.replay, data, mode)
    assert _outcome(_core.replay, data, mode) == expected
    assert _outcome(_core.replay, path, mode) == expected
    if variant == "clean":
        assert expected[0] == "ok"
        assert expected[1].records_applied == RECORDS
    if variant != "clean" and mode == "audit":
        assert expected[1].status == "repair_needed" or expected[1].torn_tail_bytes


def test_replay_many_matches_single_replays(journal: bytes, tmp_path: Path) -> None:
    paths = []
    for name, data in _variants(journal).items():
        path = tmp_path / f"{name}.rcj"
        path.write_bytes(data)
        paths.append(path)
    for threads in (1, 2, 3):
        got = _core.replay_many(paths, threads=threads, mode="audit")
        assert got == [reference.replay(p, mode="audit") for p in paths]
    strict = _core.replay_many(paths, return_exceptions=True)
    expected = [_outcome(reference.replay, p, "resume") for p in paths]
    assert [type(x) for x in strict] == [type(e[1]) if e[0] == "ok" else e[1] for e in expected]
    assert any(e[0] == "err" for e in expected)
