"""Peak memory of replaying a generated journal, Rust core and reference.

Usage: ``python benches/memory.py [RECORDS]`` (default 1,000,000). Each
replay runs in a fresh interpreter; the figure is its peak resident set size
(``ru_maxrss``) minus that of an interpreter that only imported replaycore,
divided by the number of records. Record ids are ``rec-000000001``: the Rust
core keeps each in an arena as a length byte and its 13 bytes; they are
reported separately, since the reducer must keep every applied id to detect
duplicates.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from replaycore.synthetic import write_synthetic_journal

PROBE = """
import resource, sys
from replaycore import _core, reference
{action}
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
ID_ARENA_BYTES = 14


def _peak_kib(action: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(action=action)],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(out.stdout.split()[-1])


def main(argv: list[str]) -> int:
    records = int(argv[1]) if len(argv) > 1 else 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        path = write_synthetic_journal(Path(tmp) / "run.rcj", records)
        size = path.stat().st_size
        baseline = _peak_kib("pass")
        rust = _peak_kib(f"r = _core.replay({str(path)!r}); assert r.records_applied == {records}")
        python = _peak_kib(f"r = reference.replay({str(path)!r})")
    per_record = (rust - baseline) * 1024 / records
    print(f"journal: {records:,} records, {size / 1e6:.1f} MB")
    print(f"Rust core: +{(rust - baseline) / 1024:.1f} MiB peak = {per_record:.1f} bytes/record")
    print(
        f"  of which record ids {ID_ARENA_BYTES} bytes/record; "
        f"beyond the ids: {per_record - ID_ARENA_BYTES:.1f} bytes/record"
    )
    print(
        f"reference: +{(python - baseline) / 1024:.1f} MiB peak = "
        f"{(python - baseline) * 1024 / records:.1f} bytes/record"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
