"""Print the Rust-vs-reference ratio table of the benchmarks.

Usage::

    python benches/report.py                 # runs pytest benches/ --benchmark-only first
    python benches/report.py results.json    # reads a --benchmark-json file

Each row is one benchmark group; ``speed-up`` is the reference's median time
divided by the Rust core's, both measured in the same run on the same data.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def _run_benchmarks(out: Path) -> None:
    here = Path(__file__).resolve().parent
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(here),
        "--benchmark-only",
        f"--benchmark-json={out}",
        "-q",
        "-p",
        "no:cacheprovider",
    ]
    subprocess.run(cmd, check=True, stdout=sys.stderr)


def _fmt_time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def table(results: dict[str, object]) -> str:
    """The Markdown ratio table of a pytest-benchmark JSON document."""
    groups: dict[str, dict[str, float]] = {}
    for bench in results["benchmarks"]:  # type: ignore[attr-defined]
        backend = bench["param"] or bench["name"].rsplit("[", 1)[-1].rstrip("]")
        groups.setdefault(bench["group"], {})[backend] = bench["stats"]["median"]
    lines = [
        "| operation | Rust core | reference | speed-up |",
        "|---|---:|---:|---:|",
    ]
    for group, times in groups.items():
        rust, python = times.get("rust"), times.get("python")
        if rust is None or python is None:
            continue
        lines.append(
            f"| {group} | {_fmt_time(rust)} | {_fmt_time(python)} | {python / rust:.1f}x |"
        )
    machine = results.get("machine_info", {})
    cpu = machine.get("cpu", {}) if isinstance(machine, dict) else {}
    brand = cpu.get("brand_raw", "unknown CPU") if isinstance(cpu, dict) else "unknown CPU"
    lines.append("")
    lines.append(f"Medians, {os.cpu_count()} cores, {brand}.")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        data = json.loads(Path(argv[1]).read_text())
    else:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "bench.json"
            _run_benchmarks(out)
            data = json.loads(out.read_text())
    print(table(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
