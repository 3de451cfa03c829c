"""The ``replaycore`` command line (SPEC section 11).

``replaycore replay PATH [--mode audit|resume|repair] [--json]`` prints a
readable report of a journal, or its ReplayResult as JSON. Exit codes:
0 complete; 1 repair needed, or a strict-mode ReplayViolation; 2 the input
cannot be read (missing file, no ``RCJ1`` magic, corruption in strict mode).

``replaycore replay postgresql://... --run RUN_ID`` replays one run of a
PostgreSQL journal (SPEC 12; ``--schema``, default ``replaycore``), and
``convert`` copies a run to a file or a file to a new run.

``replaycore inspect PATH`` counts what a journal holds without replaying it,
``replaycore convert SRC DST`` rewrites a journal in the other format
(``.rcj`` <-> ``.jsonl``) and ``replaycore bench`` times the Rust core
against the pure-Python reference on a generated journal.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import msgspec

from replaycore import reference
from replaycore._backend import BACKEND
from replaycore.errors import (
    InvalidArgument,
    JournalCorruption,
    RecordDecodeError,
    ReplayCoreError,
    ReplayViolation,
    StoreUnavailable,
)
from replaycore.journal import JournalWriter, inspect_journal, read_journal
from replaycore.replay import replay
from replaycore.results import ReplayResult

__all__ = ["main"]

EXIT_COMPLETE = 0
EXIT_REPAIR = 1
EXIT_UNREADABLE = 2


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def format_report(path: str, result: ReplayResult) -> str:
    """The human-readable report of one replay."""
    lines = [
        f"journal          {path}",
        f"mode             {result.mode}",
        f"status           {result.status}",
        f"resume allowed   {_yes(result.resume_allowed)}",
        f"latest seq       {result.latest_journal_seq}  ({result.records_applied} records applied)",
        f"terminal status  {result.terminal_status or '-'}",
        f"next loop state  {result.next_loop_state or '-'}",
    ]
    if result.torn_tail_bytes:
        lines.append(f"torn tail        {result.torn_tail_bytes} bytes ignored (a crash mid-write)")
    if result.skipped_lines:
        lines.append(f"skipped lines    {result.skipped_lines}")
    if result.sequence_gaps:
        gaps = ", ".join(f"{a}->{b}" for a, b in result.sequence_gaps)
        lines.append(f"sequence gaps    {gaps}")
    lines.append("")
    lines.append(f"pending side effects ({len(result.unsafe_pending_side_effects)})")
    for effect in result.unsafe_pending_side_effects:
        retry = "retry allowed" if effect.retry_allowed else "NOT safe to retry"
        key = effect.idempotency_key or effect.dedupe_key or "no key"
        lines.append(
            f"  {effect.effect_id}  intent {effect.intent_record_id}  {retry} ({key})"
            f"  - {effect.reason}"
        )
    lines.append(f"output repairs ({len(result.output_delivery_repairs)})")
    for output in result.output_delivery_repairs:
        resend = "resend allowed" if output.resend_allowed else "do not resend"
        operation = (
            f", operation {output.external_operation_id}" if output.external_operation_id else ""
        )
        lines.append(
            f"  {output.delivery_id}  {output.decision}: {output.terminal_status}{operation}"
            f"  ({resend})  - {output.reason}"
        )
    lines.append(f"missing content refs ({len(result.missing_content_refs)})")
    lines.extend(f"  {ref}" for ref in result.missing_content_refs)
    lines.append(f"repairs ({len(result.repair_needed)})")
    for repair in result.repair_needed:
        where = f"record {repair.record_id or '-'} seq {repair.journal_seq}"
        lines.append(f"  {repair.kind}  {where}  [{repair.retry}]  - {repair.reason}")
    return "\n".join(lines)


_DSN_SCHEMES = ("postgresql://", "postgres://")


def _is_dsn(source: str) -> bool:
    """Whether a command-line source names a PostgreSQL database, not a file."""
    return source.startswith(_DSN_SCHEMES)


def _journal(dsn: str, schema: str) -> Any:
    """The PostgresJournal of ``dsn`` (imported only when a DSN is given)."""
    try:
        from replaycore.postgres import PostgresJournal
    except ImportError as exc:
        raise InvalidArgument(
            f'a PostgreSQL journal needs the postgres extra (pip install "replaycore[postgres]"): '
            f"{exc}",
            "source",
            dsn,
        ) from None
    return PostgresJournal(dsn, schema=schema)


def _needs_run(args: argparse.Namespace, source: str) -> str:
    if args.run_id is None:
        raise InvalidArgument(f"{source} is a database: say which run with --run", "--run", None)
    return str(args.run_id)


def _cmd_replay(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    label = args.path
    try:
        if _is_dsn(args.path):
            run_id = _needs_run(args, "the source")
            with _journal(args.path, args.schema) as journal:
                label = f"{journal._engine.where} schema {args.schema} run {run_id}"
                result = journal.replay(run_id, mode=args.mode, strict=args.strict)
        else:
            if args.run_id is not None:
                raise InvalidArgument("--run selects a run of a PostgreSQL journal", "--run", None)
            result = replay(args.path, mode=args.mode, strict=args.strict)
    except ReplayViolation as exc:
        print(f"replaycore: {exc}", file=err)
        return EXIT_REPAIR
    except (OSError, JournalCorruption, RecordDecodeError, StoreUnavailable) as exc:
        print(f"replaycore: cannot read {label}: {exc}", file=err)
        return EXIT_UNREADABLE
    if args.json:
        out.write(msgspec.json.format(msgspec.json.encode(result), indent=2).decode() + "\n")
    else:
        print(format_report(label, result), file=out)
    return EXIT_COMPLETE if result.status == "complete" else EXIT_REPAIR


def _cmd_inspect(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        stats = inspect_journal(args.path)
    except (OSError, JournalCorruption) as exc:
        print(f"replaycore: cannot read {args.path}: {exc}", file=err)
        return EXIT_UNREADABLE
    if args.json:
        out.write(msgspec.json.format(msgspec.json.encode(stats), indent=2).decode() + "\n")
        return EXIT_COMPLETE
    for key, value in stats.items():
        if key == "kinds":
            value = ", ".join(f"{kind} {count}" for kind, count in sorted(value.items()))
        print(f"{key:<18} {value}", file=out)
    return EXIT_COMPLETE


# Records per append when converting into a PostgreSQL journal.
_CONVERT_BATCH = 10_000


def _batches(records: Iterable[Any]) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for record in records:
        batch.append(record)
        if len(batch) == _CONVERT_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _convert_database(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """convert between a journal file and a run of a PostgreSQL journal, streaming."""
    source, target = args.source, args.target
    count = 0
    try:
        if _is_dsn(source):  # a run into a file
            if _is_dsn(target):
                raise InvalidArgument(
                    "convert copies between a file and a database", "target", target
                )
            run_id = _needs_run(args, "the source")
            path = Path(target)
            if path.exists() and not args.force:
                print(f"replaycore: {path} exists (use --force to replace it)", file=err)
                return EXIT_UNREADABLE
            with _journal(source, args.schema) as journal:
                path.unlink(missing_ok=True)
                with JournalWriter(path, fsync="batch") as writer:
                    for batch in _batches(journal.read(run_id)):
                        writer.append_many(batch)
                        count += len(batch)
            print(f"wrote {count} records of run {run_id} to {path}", file=out)
            return EXIT_COMPLETE
        records = iter(read_journal(Path(source)))  # a file into a run
        first = next(records, None)
        target_run: str | None = (
            args.run_id if args.run_id is not None else (first.run_id if first else None)
        )
        if target_run is None:
            raise InvalidArgument(
                f"{source} holds no record: say which run with --run", "--run", None
            )
        with _journal(target, args.schema) as journal:
            if journal.last_seq(target_run):
                print(
                    f"replaycore: run {target_run} already has records; a journal only grows, "
                    "so convert into a new run",
                    file=err,
                )
                return EXIT_UNREADABLE
            if first is not None:
                for batch in _batches(itertools.chain([first], records)):
                    journal.append(target_run, batch)
                    count += len(batch)
        print(f"wrote {count} records to run {target_run}", file=out)
        return EXIT_COMPLETE
    except (OSError, ReplayCoreError) as exc:
        print(f"replaycore: cannot convert {source}: {exc}", file=err)
        return EXIT_UNREADABLE


def _cmd_convert(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if _is_dsn(args.source) or _is_dsn(args.target):
        return _convert_database(args, out, err)
    if args.run_id is not None:
        raise InvalidArgument("--run selects a run of a PostgreSQL journal", "--run", None)
    source, target = Path(args.source), Path(args.target)
    if target.exists() and not args.force:
        print(f"replaycore: {target} exists (use --force to replace it)", file=err)
        return EXIT_UNREADABLE
    try:
        records = list(read_journal(source))
        target.unlink(missing_ok=True)
        with JournalWriter(target, fsync="batch") as writer:
            writer.append_many(records)
    except (OSError, ReplayCoreError) as exc:
        print(f"replaycore: cannot convert {source}: {exc}", file=err)
        return EXIT_UNREADABLE
    print(f"wrote {len(records)} records to {target}", file=out)
    return EXIT_COMPLETE


def _best_of(repeat: int, fn: Callable[[], Any]) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _cmd_bench(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from replaycore import _core
    from replaycore.synthetic import write_synthetic_journal

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.rcj"
        progress = err.isatty()
        if progress:
            print(f"writing a {args.records:,}-record journal ...", file=err)
        write_synthetic_journal(path, args.records)
        size = path.stat().st_size
        if progress:
            print("replaying with the Rust core ...", file=err)
        rust = _best_of(args.repeat, lambda: _core.replay(path))
        if progress:
            print("replaying with the reference ...", file=err)
        python = _best_of(args.repeat, lambda: reference.replay(path))
    print(f"journal      {args.records:,} records, {size / 1e6:.1f} MB", file=out)
    print(f"Rust core    {rust:.3f} s  ({args.records / rust / 1e6:.2f} M records/s)", file=out)
    print(f"reference    {python:.3f} s  ({args.records / python / 1e6:.2f} M records/s)", file=out)
    print(f"speed-up     {python / rust:.1f}x", file=out)
    return EXIT_COMPLETE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="replaycore",
        description=f"Replay and inspect run journals (backend: {BACKEND}).",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("replay", help="replay a journal and report whether the run may resume")
    p.add_argument("path", help="a .rcj or .jsonl journal, or a postgresql:// database with --run")
    p.add_argument("--run", dest="run_id", help="the run to replay from a PostgreSQL journal")
    p.add_argument(
        "--schema", default="replaycore", help="the PostgreSQL schema (default replaycore)"
    )
    p.add_argument("--mode", choices=("audit", "resume", "repair"), default="resume")
    strictness = p.add_mutually_exclusive_group()
    strictness.add_argument(
        "--strict",
        dest="strict",
        action="store_true",
        default=None,
        help="stop at the first violation",
    )
    strictness.add_argument(
        "--lenient", dest="strict", action="store_false", help="report every violation as a repair"
    )
    p.add_argument("--json", action="store_true", help="print the ReplayResult as JSON")
    p.set_defaults(run=_cmd_replay)

    p = commands.add_parser("inspect", help="count what a journal holds, without replaying it")
    p.add_argument("path")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_cmd_inspect)

    p = commands.add_parser("convert", help="rewrite a journal as .rcj or .jsonl")
    p.add_argument("source", help="a journal file, or a postgresql:// database with --run")
    p.add_argument(
        "target",
        help="the new journal: a file (its extension picks the format) or a postgresql:// "
        "database (the run is --run, else the records' run id)",
    )
    p.add_argument("--run", dest="run_id", help="the run of a PostgreSQL journal to read or write")
    p.add_argument(
        "--schema", default="replaycore", help="the PostgreSQL schema (default replaycore)"
    )
    p.add_argument("--force", action="store_true", help="replace the target if it exists")
    p.set_defaults(run=_cmd_convert)

    p = commands.add_parser("bench", help="time the Rust core against the reference")
    p.add_argument("--records", type=int, default=200_000)
    p.add_argument("--repeat", type=int, default=3)
    p.set_defaults(run=_cmd_bench)
    return parser


def main(
    argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run the command line; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        code: int = args.run(args, out or sys.stdout, err or sys.stderr)
    except InvalidArgument as exc:
        print(f"replaycore: {exc}", file=err or sys.stderr)
        return EXIT_UNREADABLE
    return code


if __name__ == "__main__":
    raise SystemExit(main())
