"""The ``replaycore`` command line (SPEC section 11); ``python -m replaycore``
is the same program.

``replaycore replay PATH [--mode audit|resume|repair] [--json]`` prints a
readable report of a journal, or its ReplayResult as JSON. Exit codes:
0 complete; 1 repair needed, or a strict-mode ReplayViolation; 2 the input
cannot be read (missing file, no ``RCJ1`` magic, corruption in strict mode).

``replaycore replay postgresql://... --run RUN_ID`` replays one run of a
PostgreSQL journal (SPEC 12; ``--schema``, default ``replaycore``), and
``convert`` copies a run to a file or a file to a new run.

``replaycore inspect PATH`` counts what a journal holds without replaying it
and exits 1 when it is damaged, ``replaycore convert SRC DST`` rewrites a
journal in the other format (``.rcj`` <-> ``.jsonl``) and ``replaycore
bench`` times the Rust core against the pure-Python reference on a generated
journal.

What every command keeps to:

* **Arguments first.** Everything that can be checked is checked before any
  work; a bad argument is one line on stderr and exit 2 (``bench --records
  0``, ``--repeat 0``, a journal the temporary directory has no room for, an
  output extension other than ``.rcj`` or ``.jsonl``).
* **No traceback.** Unreadable input is one line and exit 2. Ctrl-C exits 130
  with temporary files removed: ``bench`` works in a temporary directory, and
  ``convert`` writes beside its target and renames the file into place only
  when it is complete, so an interrupted conversion leaves no partial
  journal. (A Rust call that is running, e.g. a replay, finishes before the
  interrupt is seen; it holds no Python state to interrupt.) A closed pipe
  (``replaycore ... | head``) ends quietly with exit 141 (128 + SIGPIPE,
  what a shell reports for ``cat``), not 1, which means "repair needed".
* **--json** prints one JSON object on stdout for every outcome: the report,
  which names its journal (``"journal"``), or
  ``{"journal": ..., "error": {"type", "message", "offset"}}``.
* **Terminals.** A report is coloured when stdout is a terminal (not with
  ``NO_COLOR``); while a long command runs, stderr shows a progress line
  (bytes and records per second, time left) when stderr is a terminal. Piped
  or redirected, the output is plain and nothing else is written.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

import msgspec

from replaycore import __version__
from replaycore._backend import BACKEND
from replaycore._terminal import Progress, Style, color_enabled, human_size, reading_position
from replaycore.errors import (
    InvalidArgument,
    JournalCorruption,
    RecordDecodeError,
    ReplayCoreError,
    ReplayViolation,
    StoreUnavailable,
)
from replaycore.journal import JournalWriter, inspect_journal, read_journal
from replaycore.records import JournalRecord
from replaycore.reference.journal import DEFAULT_MAX_FRAME_BYTES, DEFAULT_MAX_LINE_BYTES
from replaycore.replay import replay
from replaycore.results import ReplayResult

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

__all__ = ["main"]

EXIT_COMPLETE = 0
EXIT_REPAIR = 1
EXIT_DAMAGED = 1
EXIT_UNREADABLE = 2
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE

#: What a journal file may be called: its extension picks its format.
JOURNAL_SUFFIXES = (".rcj", ".jsonl")
#: ``bench --records`` bounds: at most ~25 GB of journal, which the reference
#: replays at ~200,000 records a second (8 minutes a run).
MIN_BENCH_RECORDS = 2
MAX_BENCH_RECORDS = 100_000_000
MAX_BENCH_REPEAT = 1_000
#: Bytes a generated record takes in a ``.rcj`` file, rounded up (~250 on average).
BENCH_BYTES_PER_RECORD = 256
#: Records per append when converting, at most ...
_CONVERT_BATCH = 10_000
#: ... and bytes: a batch is appended once its records encode to this many
#: bytes, so that a conversion holds a batch of small records or one big
#: record, never a batch of big ones (SPEC 6.2 "Memory").
_CONVERT_BATCH_BYTES = 1 << 20
#: Measures a record: msgpack, its shortest encoding (order does not matter).
_SIZE_ENCODER = msgspec.msgpack.Encoder()


class _Failure(Exception):
    """An outcome that is an error: exit ``code`` after one ``message``.

    ``error`` is the exception it reports; its class names the error in JSON.
    """

    def __init__(
        self, code: int, message: str, error: BaseException | None = None, kind: str | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.error = error
        self.kind = kind or (type(error).__name__ if error is not None else "UsageError")


class _Output:
    """Where a command's outcome goes: a report or JSON on ``out``, error lines
    and progress on ``err``."""

    def __init__(self, out: TextIO, err: TextIO, json: bool) -> None:
        self.out = out
        self.err = err
        self.json = json
        self.style = Style(color_enabled(out))
        #: The journal the command works on, as reports and errors name it.
        self.journal: str | None = None

    def text(self, text: str) -> None:
        print(text, file=self.out)

    def data(self, value: Any) -> None:
        self.out.write(msgspec.json.format(msgspec.json.encode(value), indent=2).decode() + "\n")

    def failure(self, failure: _Failure) -> int:
        # one line, even for a driver's message of several (libpq adds hints)
        message = " ".join(line.strip() for line in failure.message.strip().splitlines())
        if self.json:
            error: dict[str, Any] = {
                "type": failure.kind,
                "message": message,
                "offset": getattr(failure.error, "offset", None),
            }
            if isinstance(failure.error, ReplayViolation):
                error["kind"] = failure.error.kind
                error["record_id"] = failure.error.record_id
                error["journal_seq"] = failure.error.journal_seq
            self.data({"journal": self.journal, "error": error})
        else:
            print(f"replaycore: {message}", file=self.err)
        return failure.code

    def progress(self, label: str, path: str | Path | None = None, **totals: Any) -> Progress:
        """A progress line for the work on ``path`` (its size and read offset)."""
        if path is not None:
            with contextlib.suppress(OSError):
                totals.setdefault("total_bytes", os.path.getsize(path))
            totals.setdefault("bytes_done", reading_position(path))
        return Progress(self.err, label, **totals)

    def finished(self, progress: Progress, verb: str, records: int, size: int | None) -> None:
        """After a run long enough to show progress, what it did and how fast."""
        if not progress.shown:
            return
        seconds = max(progress.elapsed_s, 1e-9)
        done = f"{verb} {records:,} records"
        if size is not None:
            done += f", {human_size(size)} ({human_size(size / seconds)}/s)"
        print(f"{done} in {seconds:.1f} s: {records / seconds:,.0f} records/s", file=self.err)


def _yes(flag: bool, style: Style) -> str:
    return style.good("yes") if flag else style.bad("no")


def format_report(path: str, result: ReplayResult, style: Style | None = None) -> str:
    """The human-readable report of one replay (coloured by ``style``)."""
    s = style or Style(False)
    status = s.good(result.status) if result.status == "complete" else s.bad(result.status)
    lines = [
        f"journal          {s.bold(path)}",
        f"mode             {result.mode}",
        f"status           {status}",
        f"resume allowed   {_yes(result.resume_allowed, s)}",
        f"latest seq       {result.latest_journal_seq}  ({result.records_applied} records applied)",
        f"terminal status  {result.terminal_status or '-'}",
        f"next loop state  {result.next_loop_state or '-'}",
    ]
    if result.torn_tail_bytes:
        lines.append(
            f"torn tail        {s.warn(str(result.torn_tail_bytes))} bytes ignored"
            " (a crash mid-write)"
        )
    if result.skipped_lines:
        lines.append(f"skipped lines    {s.warn(str(result.skipped_lines))}")
    if result.sequence_gaps:
        gaps = ", ".join(f"{a}->{b}" for a, b in result.sequence_gaps)
        lines.append(f"sequence gaps    {s.warn(gaps)}")
    lines.append("")
    lines.append(s.bold(f"pending side effects ({len(result.unsafe_pending_side_effects)})"))
    for effect in result.unsafe_pending_side_effects:
        retry = s.good("retry allowed") if effect.retry_allowed else s.bad("NOT safe to retry")
        key = effect.idempotency_key or effect.dedupe_key or "no key"
        lines.append(
            f"  {effect.effect_id}  intent {effect.intent_record_id}  {retry} ({key})"
            f"  - {effect.reason}"
        )
    lines.append(s.bold(f"output repairs ({len(result.output_delivery_repairs)})"))
    for output in result.output_delivery_repairs:
        resend = s.good("resend allowed") if output.resend_allowed else s.bad("do not resend")
        operation = (
            f", operation {output.external_operation_id}" if output.external_operation_id else ""
        )
        lines.append(
            f"  {output.delivery_id}  {output.decision}: {output.terminal_status}{operation}"
            f"  ({resend})  - {output.reason}"
        )
    lines.append(s.bold(f"missing content refs ({len(result.missing_content_refs)})"))
    lines.extend(f"  {s.warn(ref)}" for ref in result.missing_content_refs)
    lines.append(s.bold(f"repairs ({len(result.repair_needed)})"))
    for repair in result.repair_needed:
        where = f"record {repair.record_id or '-'} seq {repair.journal_seq}"
        lines.append(f"  {s.bad(repair.kind)}  {where}  [{repair.retry}]  - {repair.reason}")
    return "\n".join(lines)


def format_inspection(
    path: str, stats: dict[str, Any], damage: str | None, style: Style | None = None
) -> str:
    """The human-readable report of ``inspect``: what :func:`inspect_journal`
    counted and whether the journal is damaged."""
    s = style or Style(False)
    rest = dict(stats)
    kinds = rest.pop("kinds", {})
    torn = rest.pop("torn_tail_bytes", 0)
    ranges = rest.pop("corrupt_ranges", [])
    lines = [f"journal            {s.bold(path)}"]
    for key in ("format", "records"):
        if key in rest:
            lines.append(f"{key:<18} {rest.pop(key)}")
    lines.append(f"{'kinds':<18} " + ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items())))
    for key, value in rest.items():
        lines.append(f"{key.replace('_', ' '):<18} {value}")
    if torn:
        lines.append(f"torn tail          {s.warn(str(torn))} bytes (a crash mid-write: ignored)")
    for start, end, reason in ranges:
        lines.append(f"corrupt            {s.bad(f'bytes {start}..{end}')}  {reason}")
    verdict = s.bad(f"damaged: {damage}") if damage else s.good("clean")
    lines.append(f"verdict            {verdict}")
    return "\n".join(lines)


# -- sources: files and PostgreSQL journals ---------------------------------------

_DSN_SCHEMES = ("postgresql://", "postgres://")


def _is_dsn(source: str) -> bool:
    """Whether a command-line source names a PostgreSQL database, not a file."""
    return source.startswith(_DSN_SCHEMES)


def _masked(dsn: str) -> str:
    """A connection URI as reports and errors show it: any password is ``***``."""
    import re
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "<unparsable dsn>"
    netloc = parts.netloc
    userinfo, at, host = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:***@{host}"
    query = re.sub(r"(^|&)(password=)[^&]*", r"\1\2***", parts.query)
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _label(source: str) -> str:
    return _masked(source) if _is_dsn(source) else source


def _journal(dsn: str, schema: str) -> Any:
    """The PostgresJournal of ``dsn`` (imported only when a DSN is given)."""
    try:
        from replaycore.postgres import PostgresJournal
    except ImportError as exc:
        raise InvalidArgument(
            f'a PostgreSQL journal needs the postgres extra (pip install "replaycore[postgres]"): '
            f"{exc}",
            "source",
            _masked(dsn),
        ) from None
    return PostgresJournal(dsn, schema=schema)


def _needs_run(args: argparse.Namespace, source: str) -> str:
    if args.run_id is None:
        raise InvalidArgument(f"{source} is a database: say which run with --run", "--run", None)
    return str(args.run_id)


def _no_run(args: argparse.Namespace) -> None:
    if args.run_id is not None:
        raise InvalidArgument("--run selects a run of a PostgreSQL journal", "--run", args.run_id)


def _check_output(path: Path, force: bool) -> None:
    """Refuse, before any work, an output file that convert must not write."""
    if path.suffix not in JOURNAL_SUFFIXES:
        raise InvalidArgument(
            f"{path}: a journal's extension picks its format, so it must be .rcj or .jsonl",
            "target",
            str(path),
        )
    if path.exists() and not force:
        raise InvalidArgument(f"{path} exists (use --force to replace it)", "target", str(path))
    if not path.parent.is_dir():
        raise InvalidArgument(f"{path.parent} is not a directory", "target", str(path))


@contextlib.contextmanager
def _replacing(target: Path) -> Iterator[Path]:
    """A path to write ``target`` at: in a temporary directory beside it, renamed
    onto ``target`` when the block completes, removed with the directory when
    it does not (an error, Ctrl-C)."""
    import shutil
    import tempfile

    directory = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        temporary = directory / target.name  # the same extension: the same format
        yield temporary
        os.replace(temporary, target)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _batches(records: Iterable[JournalRecord]) -> Iterator[list[JournalRecord]]:
    """``records`` in lists of at most :data:`_CONVERT_BATCH` records and,
    but for a record that is bigger by itself, :data:`_CONVERT_BATCH_BYTES`."""
    batch: list[JournalRecord] = []
    size = 0
    for record in records:
        batch.append(record)
        size += len(_SIZE_ENCODER.encode(record))
        if len(batch) >= _CONVERT_BATCH or size >= _CONVERT_BATCH_BYTES:
            yield batch
            batch, size = [], 0
        del record  # the batch holds it; once appended, nothing does
    if batch:
        yield batch


def _copy(records: Iterable[JournalRecord], path: Path, progress: Progress) -> int:
    """Write ``records`` to a new journal at ``path``, one batch at a time: memory
    holds a batch, never the journal. Returns how many were written."""
    count = 0
    with JournalWriter(path, fsync="batch") as writer:
        for batch in _batches(records):
            writer.append_many(batch)
            count += len(batch)
            progress.records = count
            del batch  # before the next batch is read
    return count


# -- the commands --------------------------------------------------------------------


def _cmd_replay(args: argparse.Namespace, o: _Output) -> int:
    source = args.path
    if _is_dsn(source):
        run_id = _needs_run(args, "the source")
        o.journal = f"{_masked(source)} schema {args.schema} run {run_id}"
    else:
        _no_run(args)
        o.journal = source
    try:
        if _is_dsn(source):
            with (
                o.progress(f"replay run {run_id}") as progress,
                _journal(source, args.schema) as journal,
            ):
                result = journal.replay(run_id, mode=args.mode, strict=args.strict)
            size = None
        else:
            with o.progress(f"replay {Path(source).name}", source) as progress:
                result = replay(source, mode=args.mode, strict=args.strict)
            size = progress.total_bytes
    except ReplayViolation as exc:
        raise _Failure(EXIT_REPAIR, f"{o.journal}: {exc}", exc) from None
    except (
        OSError,
        InvalidArgument,
        JournalCorruption,
        RecordDecodeError,
        StoreUnavailable,
    ) as exc:
        raise _Failure(EXIT_UNREADABLE, f"cannot read {o.journal}: {exc}", exc) from None
    o.finished(progress, "replayed", result.records_applied, size)
    if o.json:
        o.data({"journal": o.journal, **msgspec.to_builtins(result)})
    else:
        o.text(format_report(o.journal, result, o.style))
    return EXIT_COMPLETE if result.status == "complete" else EXIT_REPAIR


def _damage(stats: dict[str, Any]) -> str | None:
    """What is damaged in the journal ``stats`` describes; None when it is clean.

    Damage is what :func:`inspect_journal` lists in ``corrupt_ranges``: frames
    that fail their checks and lines that do not decode (SPEC 6.2). A torn
    tail is not damage: a crash mid-write leaves one, every reader ignores it
    and a writer cuts it (a replay of the journal is complete); nor are blank
    lines.
    """
    ranges = stats.get("corrupt_ranges") or []
    if not ranges:
        return None
    start, _, reason = ranges[0]
    more = f" (and {len(ranges) - 1} more)" if len(ranges) > 1 else ""
    return f"corrupt at byte {start}: {reason}{more}"


def _cmd_inspect(args: argparse.Namespace, o: _Output) -> int:
    o.journal = args.path
    try:
        with o.progress(f"inspect {Path(args.path).name}", args.path) as progress:
            stats = inspect_journal(args.path)
            damage = _damage(stats)
    except (OSError, JournalCorruption, RecordDecodeError) as exc:
        raise _Failure(EXIT_UNREADABLE, f"cannot read {args.path}: {exc}", exc) from None
    o.finished(progress, "inspected", int(stats.get("records", 0)), progress.total_bytes)
    if o.json:
        o.data({"journal": args.path, "damaged": damage is not None, "damage": damage, **stats})
    else:
        o.text(format_inspection(args.path, stats, damage, o.style))
    return EXIT_DAMAGED if damage is not None else EXIT_COMPLETE


def _cmd_convert(args: argparse.Namespace, o: _Output) -> int:
    source, target = args.source, args.target
    o.journal = _label(source)
    if _is_dsn(source) and _is_dsn(target):
        raise InvalidArgument(
            "convert copies between a file and a database", "target", _masked(target)
        )
    if not _is_dsn(target):
        _check_output(Path(target), args.force)
    if _is_dsn(source):
        _needs_run(args, "the source")
    elif not _is_dsn(target):
        _no_run(args)
    try:
        if _is_dsn(source):
            count, where = _convert_from_database(args, o)
        elif _is_dsn(target):
            count, where = _convert_into_database(args, o)
        else:
            count, where = _convert_file(args, o)
    except (OSError, ReplayCoreError) as exc:
        raise _Failure(EXIT_UNREADABLE, f"cannot convert {o.journal}: {exc}", exc) from None
    if o.json:
        o.data({"journal": o.journal, "target": _label(target), "records": count})
    else:
        o.text(f"wrote {count} records {where}")
    return EXIT_COMPLETE


def _convert_file(args: argparse.Namespace, o: _Output) -> tuple[int, str]:
    """convert a journal file into a new file, streaming."""
    source, target = Path(args.source), Path(args.target)
    with o.progress(f"convert {source.name}", source) as progress, _replacing(target) as path:
        count = convert_file(source, path, progress)
    o.finished(progress, "converted", count, progress.total_bytes)
    return count, f"to {target}"


def convert_file(
    source: Path,
    path: Path,
    progress: Progress | None = None,
    *,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> int:
    """Write the records of the journal ``source`` into a new journal at
    ``path`` (which must not exist), read strictly with the limits given.
    Returns how many were written.

    The Rust core converts without building the records
    (:func:`_convert_natively`); whatever it leaves, and everything on the
    reference, goes through ``read_journal`` and ``JournalWriter`` one batch
    at a time (:func:`_copy`), which gives the same file.
    """
    count = _convert_natively(source, path, max_frame_bytes, max_line_bytes)
    if count is None:
        path.unlink(missing_ok=True)
        counted: Any = progress or SimpleNamespace(records=0)  # nothing shows it
        records = read_journal(
            source, max_frame_bytes=max_frame_bytes, max_line_bytes=max_line_bytes
        )
        count = _copy(records, path, counted)
    elif progress is not None:
        progress.records = count
    return count


def _convert_natively(
    source: Path, path: Path, max_frame_bytes: int, max_line_bytes: int
) -> int | None:
    """Convert in the Rust core, which writes every record from its encoded
    bytes: memory holds about one record, never its Python objects (SPEC 6.2
    "Memory"). None when the core declines, leaving nothing at ``path``: a
    damaged source, a ``journal_seq`` the writer would number or refuse, or
    ``Custom.data`` it does not copy byte for byte (binary, extensions, float32,
    an encoding that is not canonical); the general path then gives the same
    file, or the same error, as it always did. None on the reference."""
    if BACKEND != "rust":
        return None
    from replaycore._core import convert_journal

    return convert_journal(
        source, path, max_frame_bytes=max_frame_bytes, max_line_bytes=max_line_bytes
    )


def _convert_from_database(args: argparse.Namespace, o: _Output) -> tuple[int, str]:
    """convert a run of a PostgreSQL journal into a file, streaming."""
    run_id, target = str(args.run_id), Path(args.target)
    with (
        o.progress(f"convert run {run_id}") as progress,
        _journal(args.source, args.schema) as journal,
        _replacing(target) as path,
    ):
        count = _copy(journal.read(run_id), path, progress)
    o.finished(progress, "converted", count, None)
    return count, f"of run {run_id} to {target}"


def _convert_into_database(args: argparse.Namespace, o: _Output) -> tuple[int, str]:
    """convert a journal file into a new run of a PostgreSQL journal, streaming."""
    source = Path(args.source)
    records = iter(read_journal(source))
    first = next(records, None)
    run_id: str | None = (
        args.run_id if args.run_id is not None else (first.run_id if first else None)
    )
    if run_id is None:
        raise InvalidArgument(f"{source} holds no record: say which run with --run", "--run", None)
    count = 0
    with (
        o.progress(f"convert {source.name}", source) as progress,
        _journal(args.target, args.schema) as journal,
    ):
        if journal.last_seq(run_id):
            raise _Failure(
                EXIT_USAGE,
                f"run {run_id} already has records; a journal only grows, "
                "so convert into a new run",
                kind="InvalidArgument",
            )
        if first is not None:
            for batch in _batches(itertools.chain([first], records)):
                journal.append(run_id, batch)
                count += len(batch)
                progress.records = count
    o.finished(progress, "converted", count, progress.total_bytes)
    return count, f"to run {run_id}"


def _free_bytes(directory: str) -> int | None:
    """Free space in ``directory``; None when it cannot be told."""
    import shutil

    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return None


def _check_bench(args: argparse.Namespace) -> None:
    """Refuse, before any work, a bench that cannot run or fit on the disk."""
    import tempfile

    records, repeat = args.records, args.repeat
    if not MIN_BENCH_RECORDS <= records <= MAX_BENCH_RECORDS:
        raise InvalidArgument(
            f"--records must be between {MIN_BENCH_RECORDS} and {MAX_BENCH_RECORDS:,}, "
            f"got {records:,}",
            "--records",
            records,
        )
    if not 1 <= repeat <= MAX_BENCH_REPEAT:
        raise InvalidArgument(
            f"--repeat must be between 1 and {MAX_BENCH_REPEAT:,}, got {repeat:,}",
            "--repeat",
            repeat,
        )
    directory = tempfile.gettempdir()
    need = records * BENCH_BYTES_PER_RECORD
    free = _free_bytes(directory)
    if free is not None and need > free:
        raise InvalidArgument(
            f"--records {records:,} needs about {human_size(need)} in {directory}, which has "
            f"{human_size(free)} free (TMPDIR chooses another directory)",
            "--records",
            records,
        )


def _best_of(
    o: _Output, name: str, repeat: int, fn: Callable[[], Any], path: Path, records: int
) -> float:
    best = float("inf")
    for run in range(1, repeat + 1):
        with o.progress(f"bench: {name}, run {run} of {repeat}", path) as progress:
            start = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - start)
        o.finished(progress, f"{name} replayed", records, progress.total_bytes)
    return max(best, 1e-9)


def _cmd_bench(args: argparse.Namespace, o: _Output) -> int:
    _check_bench(args)
    import tempfile

    from replaycore import reference
    from replaycore.synthetic import synthetic_records

    try:
        from replaycore import _core
    except ImportError as exc:
        raise _Failure(EXIT_USAGE, f"bench needs the Rust core: {exc}", exc) from None
    n = args.records
    with tempfile.TemporaryDirectory(prefix="replaycore-bench-") as tmp:
        path = Path(tmp) / "bench.rcj"
        label = f"bench: writing {n:,} records"
        with (
            o.progress(label, total_records=n, bytes_done=lambda: path.stat().st_size) as progress,
            _core.JournalWriter(path, fsync="never") as writer,
        ):
            for batch in _batches(synthetic_records(n)):
                writer.append_many(batch)
                progress.records += len(batch)
        size = path.stat().st_size
        o.finished(progress, "wrote", n, size)
        rust = _best_of(o, "Rust core", args.repeat, lambda: _core.replay(path), path, n)
        python = _best_of(o, "reference", args.repeat, lambda: reference.replay(path), path, n)
    if o.json:
        o.data(
            {
                "records": n,
                "bytes": size,
                "repeat": args.repeat,
                "rust_s": rust,
                "reference_s": python,
                "speedup": python / rust,
            }
        )
        return EXIT_COMPLETE
    s = o.style
    o.text(f"journal      {n:,} records, {size / 1e6:.1f} MB")
    o.text(f"Rust core    {rust:.3f} s  ({n / rust / 1e6:.2f} M records/s)")
    o.text(f"reference    {python:.3f} s  ({n / python / 1e6:.2f} M records/s)")
    o.text(f"speed-up     {s.bold(f'{python / rust:.1f}x')}")
    return EXIT_COMPLETE


# -- arguments -----------------------------------------------------------------------


class _Exit(Exception):
    """argparse is done (``--help``): return ``code``."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class _Parser(argparse.ArgumentParser):
    """argparse that never exits the process: help goes to the command's
    stream and returns 0, a usage error becomes one line and exit 2."""

    def __init__(self, *args: Any, out: TextIO, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.out = out

    def print_help(self, file: SupportsWrite[str] | None = None) -> None:
        super().print_help(self.out if file is None else file)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            raise _Failure(status, message.strip())
        raise _Exit(status)

    def error(self, message: str) -> NoReturn:
        raise _Failure(EXIT_USAGE, f"{message} (see {self.prog} --help)")


def _parser(out: TextIO) -> _Parser:
    parser = _Parser(
        prog="replaycore",
        description=f"Replay and inspect run journals (backend: {BACKEND}).",
        epilog="Exit codes: 0 complete or clean, 1 repair needed or damaged, "
        "2 unreadable input or a bad argument, 130 interrupted, 141 the reader of the "
        "output went away (a closed pipe).",
        out=out,
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    as_json = "print one JSON object on stdout: the report or the error"

    p = commands.add_parser(
        "replay", help="replay a journal and report whether the run may resume", out=out
    )
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
    p.add_argument("--json", action="store_true", help=as_json)
    p.set_defaults(run=_cmd_replay)

    p = commands.add_parser(
        "inspect", help="count what a journal holds, without replaying it", out=out
    )
    p.add_argument("path", help="a .rcj or .jsonl journal")
    p.add_argument("--json", action="store_true", help=as_json)
    p.set_defaults(run=_cmd_inspect)

    p = commands.add_parser("convert", help="rewrite a journal as .rcj or .jsonl", out=out)
    p.add_argument("source", help="a journal file, or a postgresql:// database with --run")
    p.add_argument(
        "target",
        help="the new journal: a .rcj or .jsonl file (its extension picks the format) or a "
        "postgresql:// database (the run is --run, else the records' run id)",
    )
    p.add_argument("--run", dest="run_id", help="the run of a PostgreSQL journal to read or write")
    p.add_argument(
        "--schema", default="replaycore", help="the PostgreSQL schema (default replaycore)"
    )
    p.add_argument("--force", action="store_true", help="replace the target if it exists")
    p.add_argument("--json", action="store_true", help=as_json)
    p.set_defaults(run=_cmd_convert)

    p = commands.add_parser("bench", help="time the Rust core against the reference", out=out)
    p.add_argument(
        "--records",
        type=int,
        default=200_000,
        help=f"records in the generated journal ({MIN_BENCH_RECORDS} to {MAX_BENCH_RECORDS:,}; "
        "default 200,000)",
    )
    p.add_argument(
        "--repeat", type=int, default=3, help="runs per backend, the best counts (default 3)"
    )
    p.add_argument("--json", action="store_true", help=as_json)
    p.set_defaults(run=_cmd_bench)
    return parser


def _dispatch(argv: list[str], o: _Output) -> int:
    try:
        args = _parser(o.out).parse_args(argv)
    except _Exit as done:
        return done.code
    if args.version:
        o.text(f"replaycore {__version__}")
        return EXIT_COMPLETE
    if args.command is None:
        raise _Failure(
            EXIT_USAGE,
            "say which command: replay, inspect, convert or bench (see replaycore --help)",
        )
    code: int = args.run(args, o)
    return code


def _discard(*streams: TextIO) -> None:
    """After a closed pipe, point the streams' descriptors at /dev/null, so
    the interpreter's last flush finds nowhere to fail (the recipe of the
    Python docs, ``signal`` module, "Note on SIGPIPE")."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for stream in streams:
            try:
                os.dup2(devnull, stream.fileno())
            except (AttributeError, ValueError, OSError):  # not a file (a StringIO)
                continue
    finally:
        os.close(devnull)


def main(
    argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run the command line; returns the exit code, never raises (SPEC 11).

    ``argv`` defaults to ``sys.argv[1:]``, ``out`` and ``err`` to the standard
    streams.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    arguments = sys.argv[1:] if argv is None else list(argv)
    o = _Output(out, err, json="--json" in arguments)
    try:
        try:
            code = _dispatch(arguments, o)
        except _Failure as failure:
            code = o.failure(failure)
        except InvalidArgument as exc:
            code = o.failure(_Failure(EXIT_USAGE, str(exc), exc))
        except KeyboardInterrupt:
            code = o.failure(_Failure(EXIT_INTERRUPTED, "interrupted", kind="KeyboardInterrupt"))
        except BrokenPipeError:
            raise
        except (ReplayCoreError, OSError) as exc:
            where = f"{o.journal}: " if o.journal else ""
            code = o.failure(_Failure(EXIT_UNREADABLE, f"{where}{exc}", exc))
        out.flush()
        return code
    except BrokenPipeError:
        _discard(out, err)
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    raise SystemExit(main())
