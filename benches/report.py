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
from typing import Any


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


def _label(bench: dict[str, Any]) -> str:
    if bench.get("param"):
        return str(bench["param"])
    return "python" if "reference" in bench["name"] else "rust"


def table(results: dict[str, Any]) -> str:
    """The Markdown ratio table of a pytest-benchmark JSON document."""
    groups: dict[str, dict[str, float]] = {}
    for bench in results["benchmarks"]:
        groups.setdefault(bench["group"], {})[_label(bench)] = bench["stats"]["median"]
    lines = [
        "| operation | Rust core | reference | speed-up |",
        "|---|---:|---:|---:|",
    ]
    notes = []
    for group, times in groups.items():
        python = times.get("python")
        if "threads=1" in times and "threads=2" in times:
            one, two = times["threads=1"], times["threads=2"]
            rust = f"{_fmt_time(two)} (2 threads), {_fmt_time(one)} (1 thread)"
            notes.append(f"{group}: 2 threads vs 1 thread = {one / two:.2f}x")
            speedup = f"{python / two:.1f}x" if python else "-"
            ref = _fmt_time(python) if python else "-"
            lines.append(f"| {group} | {rust} | {ref} | {speedup} |")
            continue
        rust_time = times.get("rust")
        if rust_time is None or python is None:
            continue
        lines.append(
            f"| {group} | {_fmt_time(rust_time)} | {_fmt_time(python)} "
            f"| {python / rust_time:.1f}x |"
        )
    replay = next((t for g, t in groups.items() if g.startswith("replay .rcj")), None)
    decode = next((t for g, t in groups.items() if g.startswith("decode only")), None)
    if replay and decode and "rust" in replay and "rust" in decode:
        notes.append(f"Rust replay / Rust decode-only = {replay['rust'] / decode['rust']:.2f}")
    machine = results.get("machine_info", {})
    cpu = machine.get("cpu", {}) if isinstance(machine, dict) else {}
    brand = cpu.get("brand_raw", "unknown CPU") if isinstance(cpu, dict) else "unknown CPU"
    lines.append("")
    lines.append(f"Medians, {os.cpu_count()} cores, {brand}.")
    lines.extend(f"- {note}" for note in notes)
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
