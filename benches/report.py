"""Print the Rust-vs-reference ratio table of the benchmarks, the record
mixes' table, and the PostgreSQL-vs-SQLite one.

Usage::

    python benches/report.py                   # runs pytest benches/ --benchmark-only first
    python benches/report.py --only mixes      # runs only benches/bench_mixes.py
    python benches/report.py --only postgres   # runs only benches/bench_postgres.py
    python benches/report.py --only postgres_journal   # the PostgreSQL journal
    python benches/report.py results.json      # reads a --benchmark-json file

The output starts with the machine the numbers were measured on (CPU model
and cores from ``/proc/cpuinfo``).

Each row of the first table is one benchmark group; ``speed-up`` is the
reference's median time divided by the Rust core's, both measured in the same
run on the same data.

The mixes table (``bench_mixes.py``, whose benchmarks carry
``extra_info["suite"] == "mixes"``) has one row per (operation, mix, size):
the Rust core's, the reference's and the plain-Python baseline's medians
(msgspec decoding for a replay, the hand-written loop for one-by-one
appends), and the Rust core's speed-up over each, marked ``(below N x)``
where it misses the issue's goal.

The PostgreSQL tables (``bench_postgres.py``, whose benchmarks carry
``extra_info["suite"] == "postgres"``) give rates, not times: ops/s or
messages/s = what one timed call moves / its median time. Single operations
put each PostgreSQL store beside its SQLite twin (ratio PostgreSQL / SQLite);
end-to-end delivery puts PostgresOutbox beside the bare psycopg loop measured
in the same run (ratio PostgresOutbox / bare) and SqliteOutbox.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any


def _run_benchmarks(out: Path, only: list[str] | None = None) -> None:
    here = Path(__file__).resolve().parent
    targets = [str(here / f"bench_{name}.py") for name in only] if only else [str(here)]
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        *targets,
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
        if _suite(bench) is not None:
            continue  # in postgres_table or mixes_table
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


def _suite(bench: dict[str, Any]) -> str | None:
    """The table a benchmark belongs to besides the main one: ``"postgres"``, ``"mixes"``."""
    suite = bench.get("extra_info", {}).get("suite")
    return str(suite) if suite is not None else None


def _postgres(bench: dict[str, Any]) -> bool:
    return _suite(bench) == "postgres"


def machine_line() -> str:
    """The machine running this script: CPU model, cores and memory, from /proc.

    >>> machine_line()  # doctest: +SKIP
    'Machine: AMD EPYC, 2 logical cores (2 physical), 2596 MHz, 23.5 GiB RAM'
    """
    info: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            info.setdefault(name.strip(), value.strip())
    parts = [
        info.get("model name", platform.processor() or "unknown CPU"),
        f"{os.cpu_count()} logical cores"
        + (f" ({info['cpu cores']} physical)" if "cpu cores" in info else ""),
    ]
    if "cpu MHz" in info:
        parts.append(f"{float(info['cpu MHz']):.0f} MHz")
    with contextlib.suppress(OSError, ValueError, IndexError):
        total = Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0]
        parts.append(f"{int(total) / 2**20:.1f} GiB RAM")
    return "Machine: " + ", ".join(parts) + f", {platform.system()} {platform.release()}"


def _speedup(rust: float, other: float | None, goal: float | None) -> str:
    """``other / rust`` as ``"12.3x"``, with ``" (below 20x)"`` when under ``goal``."""
    if other is None:
        return "-"
    ratio = other / rust
    below = f" (below {goal:g}x)" if goal is not None and ratio < goal else ""
    return f"{ratio:.1f}x{below}"


def mixes_table(results: dict[str, Any]) -> str:
    """The Markdown table of ``bench_mixes.py``'s benchmarks ("" without any).

    One row per (operation, mix, size), in the order they ran; the baseline
    column is ``msgspec`` for replays and ``plain loop`` for one-by-one appends.
    """
    rows: dict[tuple[str, str, int], dict[str, Any]] = {}
    for bench in results["benchmarks"]:
        if _suite(bench) != "mixes":
            continue
        info = bench["extra_info"]
        row = rows.setdefault(
            (info["operation"], f"{info['mix']} ({info['title']})", int(info["records"])),
            {"goals": info.get("goals", {}), "times": {}},
        )
        row["times"][info["side"]] = float(bench["stats"]["median"])
    if not rows:
        return ""
    lines = [
        "| operation | mix | records | Rust core | reference | msgspec / plain loop "
        "| x reference | x msgspec / plain loop |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (operation, mix, records), row in rows.items():
        times: dict[str, float] = row["times"]
        goals: dict[str, float] = row["goals"]
        rust = times.get("rust")
        if rust is None:
            continue
        python = times.get("python")
        base_side = next((side for side in ("msgspec", "plain loop") if side in times), None)
        base = times.get(base_side) if base_side else None
        cells = [
            operation,
            mix,
            f"{records:,}",
            _fmt_time(rust),
            _fmt_time(python) if python else "-",
            f"{_fmt_time(base)} ({base_side})" if base and base_side else "-",
            _speedup(rust, python, goals.get("python")),
            _speedup(rust, base, goals.get(base_side)) if base_side else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    seen = {side for row in rows.values() for side in row["times"]}
    notes = {
        "msgspec": "- msgspec: frames walked in Python, each body decoded with "
        "msgspec.msgpack.Decoder(JournalRecord), no CRC check, nothing kept; replay_many: "
        "the Rust core on every core, msgspec one file after another on one.",
        "plain loop": "- plain loop: structs.replace (journal_seq) + msgspec encode + 2 "
        "zlib.crc32 + a buffered write per record; fsync=batch syncs once at the end.",
    }
    lines += [
        "",
        f"Medians, {_machine(results)}.",
        "- x = the other side's median / the Rust core's; (below N x) = under the goal of "
        "the speed issue.",
        *(note for side, note in notes.items() if side in seen),
    ]
    return "\n".join(lines)


def _rate(bench: dict[str, Any]) -> float:
    """Operations or messages per second: what one timed call moves / its median time."""
    return float(bench["extra_info"]["per_call"]) / float(bench["stats"]["median"])


def _fmt_rate(rate: float | None, unit: str) -> str:
    return "-" if rate is None else f"{rate:,.0f} {unit}/s"


def _ratio(top: float | None, bottom: float | None) -> str:
    return f"{top / bottom:.2f}x" if top and bottom else "-"


def _machine(results: dict[str, Any]) -> str:
    """Cores, CPU and the commit, as pytest-benchmark recorded them."""
    machine = results.get("machine_info", {})
    cpu = machine.get("cpu", {}) if isinstance(machine, dict) else {}
    brand = cpu.get("brand_raw", "unknown CPU") if isinstance(cpu, dict) else "unknown CPU"
    node = machine.get("node", "") if isinstance(machine, dict) else ""
    commit = results.get("commit_info", {}) or {}
    count = cpu.get("count") if isinstance(cpu, dict) else None
    where = f"{count or os.cpu_count()} cores, {brand}" + (f" (host {node})" if node else "")
    if commit.get("id"):
        dirty = " with uncommitted changes" if commit.get("dirty") else ""
        where += f", commit {commit['id'][:10]}{dirty}"
    return where


def postgres_table(results: dict[str, Any]) -> str:
    """The Markdown PostgreSQL tables of a pytest-benchmark JSON document ("" without any)."""
    benches = [b for b in results["benchmarks"] if _postgres(b)]
    if not benches:
        return ""
    groups: dict[str, dict[str, dict[str, Any]]] = {}
    for bench in benches:
        operation = bench["group"].removeprefix("pg: ")
        groups.setdefault(operation, {})[bench["extra_info"]["store"]] = bench
    server: dict[str, str] = next(
        (b["extra_info"]["server"] for b in benches if "server" in b["extra_info"]), {}
    )
    single = [
        "| operation | PostgreSQL | SQLite | PostgreSQL / SQLite |",
        "|---|---:|---:|---:|",
    ]
    delivery = [
        "| end-to-end delivery | PostgresOutbox | bare psycopg loop | PostgresOutbox / bare "
        "| SqliteOutbox | PostgresOutbox / SQLite |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    journals = [
        "| journal operation | PostgresJournal | .rcj file | PostgreSQL / file |",
        "|---|---:|---:|---:|",
    ]
    for group, stores in groups.items():
        rates = {store: _rate(bench) for store, bench in stores.items()}
        info = next(iter(stores.values()))["extra_info"]
        unit = info["unit"]
        pg, lite, bare = rates.get("postgres"), rates.get("sqlite"), rates.get("bare")
        if "twin" in info:
            file = rates.get("file")
            journals.append(
                f"| {group} | {_fmt_rate(pg, unit)} | {_fmt_rate(file, unit)} "
                f"| {_ratio(pg, file)} |"
            )
        elif "workers" in info:
            delivery.append(
                f"| {group} | {_fmt_rate(pg, unit)} | {_fmt_rate(bare, unit)} | {_ratio(pg, bare)} "
                f"| {_fmt_rate(lite, unit)} | {_ratio(pg, lite)} |"
            )
        else:
            single.append(
                f"| {group} | {_fmt_rate(pg, unit)} | {_fmt_rate(lite, unit)} "
                f"| {_ratio(pg, lite)} |"
            )
    version = server.get("server_version", "unknown version")
    settings = ", ".join(
        f"{name} {server[name]}"
        for name in ("fsync", "synchronous_commit", "full_page_writes", "wal_sync_method")
        if name in server
    )
    lines = single if len(single) > 2 else []
    if len(delivery) > 2:
        lines += ["", *delivery]
    if len(journals) > 2:
        lines += ["", *journals]
    lines += [
        "",
        f"Medians, {_machine(results)}. PostgreSQL {version} on 127.0.0.1 of the same machine"
        + (f" ({settings})" if settings else "")
        + "; SQLite in WAL mode with synchronous=FULL; both under /tmp on one disk.",
        "- msg/s counts messages (a batch-100 call moves 100); end-to-end = messages / "
        "(barrier release to the last worker done).",
        "- bare psycopg loop: FOR UPDATE SKIP LOCKED claim + one-statement `id = ANY(...)` ack "
        "on a minimal table (no leases, tokens, attempts or dead letters).",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="?", type=Path, help="a --benchmark-json file to read")
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run only benches/bench_NAME.py (repeatable), e.g. --only postgres",
    )
    args = parser.parse_args(argv[1:])
    if args.results is not None:
        data = json.loads(args.results.read_text())
    else:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "bench.json"
            _run_benchmarks(out, args.only)
            data = json.loads(out.read_text())
    tables = [machine_line(), mixes_table(data), postgres_table(data)]
    if any(_suite(b) is None for b in data["benchmarks"]):
        tables.insert(1, table(data))  # no empty Rust table when only suites ran
    print("\n\n".join(t for t in tables if t))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
