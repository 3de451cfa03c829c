"""The attempt ledger (SPEC section 8): one append-only JSON-lines file of
attempt events per (run, node).

:func:`path_for` names the file, :func:`append` adds events to it with
consecutive ``seq`` numbers, :func:`last_seq` and :func:`read` look at it, and
:func:`reconcile` / :func:`areconcile` wait until another worker's appends
have reached it.

Guarantees:

* **Serialized appends.** Appends to one ledger from any number of threads
  and processes are serialized by a per-process thread lock plus an
  exclusive ``fcntl.flock`` on the ledger file itself: no two records share
  a ``seq`` and no line is interleaved or torn, because each batch is
  written with a single ``write`` of its complete bytes to a file opened
  with ``O_APPEND``.
* **Durable returns.** The file is ``fsync``-ed before :func:`append`
  returns (and its directories too on the ledger's first append), so an
  append that returned survives a crash of the process or the machine.
* **Crash tolerance.** A last line left without its newline by a crash is
  terminated before the next batch, so it cannot swallow a record; lines
  that are not valid records (torn, garbage, a future ``version``) are
  skipped when reading -- never fatal. Finding the last ``seq`` takes the
  last line that is a JSON object with an integer ``seq`` >= 1, valid record
  or not, so an append never reuses a seq another tool wrote.
  A batch whose :func:`append` never returned may be cut by a crash (the
  kernel can stop a large write part-way when the process is killed): a
  prefix of its records may survive, followed by a torn line. Every record
  of an append that returned is there.
* **Flat append cost.** The last ``seq`` is found by reading the file
  backwards from its end until the last line holding one, so an append to a
  200,000-line ledger costs the same as one to an empty ledger.
* **No links below root.** :func:`append` never follows a symbolic link
  below ``root``: a run directory or a ledger file that is a link is refused
  with :class:`StoreUnavailable` and nothing is written (the file is opened
  relative to the run directory's descriptor, both with ``O_NOFOLLOW``, so
  a link swapped in meanwhile is refused too). ``root`` itself and the
  directories above it may be links. :func:`last_seq`, :func:`read` and
  :func:`reconcile` take the file's path and refuse a file that is a link.
* **Other tools' ledgers.** Ids are kept whole in file names up to the file
  system's 255 bytes (see :func:`path_for`), so a ledger another tool wrote
  in the same layout is found.

POSIX only (``fcntl``). I/O failures raise :class:`StoreUnavailable` with
the ``OSError`` as its cause; bad arguments raise :class:`InvalidArgument` /
:class:`InvalidArgumentType` naming the argument.

>>> import tempfile
>>> root = tempfile.mkdtemp()
>>> summary = append(root, "automation/v2/run", "research:sources", 1, "s-1",
...                  [LedgerEvent("attempt.started", {"tool": "search"})])
>>> summary.path.relative_to(root).as_posix(), summary.seq, summary.record_count
('automation-v2-run/research-sources.jsonl', 1, 1)
>>> [r.event_type for r in read(summary.path)]
['attempt.started']
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from replaycore._checks import in_range, text, type_error
from replaycore.errors import (
    InvalidArgument,
    InvalidArgumentType,
    ReplayCoreError,
    StoreUnavailable,
)

__all__ = [
    "MAX_NODE_SEGMENT_BYTES",
    "MAX_RUN_SEGMENT_BYTES",
    "AppendSummary",
    "InvalidArgument",
    "InvalidArgumentType",
    "LedgerEvent",
    "LedgerRecord",
    "ReconcileSummary",
    "ReplayCoreError",
    "StoreUnavailable",
    "append",
    "areconcile",
    "last_seq",
    "path_for",
    "read",
    "reconcile",
]

#: Largest ``attempt`` and ``seq`` a ledger holds (64-bit signed on the wire).
MAX_INT = 2**63 - 1

#: Longest sanitized run segment kept whole: the longest file name (255
#: bytes), so that every ledger another tool writes in this layout is found.
#: A longer one is cut and ends in ``-`` + 16 hex digits of the SHA-256 of
#: the original id, so distinct ids stay distinct. Sanitized segments are
#: ASCII: characters and bytes are the same count.
MAX_RUN_SEGMENT_BYTES = 255
#: Longest sanitized node segment kept whole: ``<node>.jsonl`` must fit in
#: 255 bytes.
MAX_NODE_SEGMENT_BYTES = 255 - len(".jsonl")
_HASH_HEX = 16

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")

_NonNegative = Annotated[int, msgspec.Meta(ge=0, le=MAX_INT)]
_Positive = Annotated[int, msgspec.Meta(ge=1, le=MAX_INT)]
_EventType = Annotated[str, msgspec.Meta(pattern=r"\S")]


# -- records -----------------------------------------------------------------


class LedgerEvent(msgspec.Struct, frozen=True):
    """One event to append: ``LedgerEvent(event_type, payload=None)``.

    ``event_type`` must be a ``str`` that is not blank (only whitespace) and
    holds no lone surrogate; it is stored trimmed. ``payload`` is any value
    msgspec can encode as JSON (dicts, lists, strings, numbers, bools, None,
    Structs, ...); it is checked when the event is appended and is read back
    as plain JSON values. msgspec writes a NaN or infinite float as ``null``.

    >>> LedgerEvent("tool.called", {"name": "search"}).event_type
    'tool.called'
    """

    event_type: str
    payload: Any = None

    def __post_init__(self) -> None:
        _check_event_type(self.event_type, "event_type")


class LedgerRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One line of a ledger, as :func:`read` returns it.

    ``version`` is 1; a line with another version is not a valid record of
    this version of replaycore and is skipped. ``seq`` counts from 1 within
    the ledger; ``ts_ms`` is the wall-clock time of the append (milliseconds
    since the Unix epoch, one value per batch, not guaranteed monotonic);
    ``event_type`` is trimmed; ``payload`` is any JSON value.
    """

    version: Literal[1] = 1
    run_id: str
    node_id: str
    attempt: _NonNegative
    session_id: str
    seq: _Positive
    ts_ms: _NonNegative
    event_type: _EventType
    payload: Any = None


class AppendSummary(msgspec.Struct, frozen=True, kw_only=True):
    """What :func:`append` did: the ledger's ``path``, the last ``seq`` it
    wrote (the ledger's current last seq when it wrote nothing) and how many
    records it wrote (``record_count``)."""

    path: Path
    seq: int
    record_count: int


class ReconcileSummary(msgspec.Struct, frozen=True, kw_only=True):
    """What :func:`reconcile` saw: whether the ledger reached the expected
    seq (``found``), its ``last_seq`` at the final attempt, the time spent
    (``elapsed_ms``, monotonic clock) and the number of reads (``attempts``,
    at least 1)."""

    found: bool
    last_seq: int
    elapsed_ms: int
    attempts: int


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(LedgerRecord)
_UNDECODABLE = (msgspec.DecodeError, UnicodeDecodeError)


class _Seq(msgspec.Struct):
    """What finding the last seq reads of a line: a JSON object's integer
    ``seq`` >= 1, whatever its other fields hold (another tool's line with a
    blank ``event_type`` or another ``version`` still holds its seq)."""

    seq: _Positive


_SEQ_DECODER = msgspec.json.Decoder(_Seq)


# -- argument checks -----------------------------------------------------------


def _identifier(value: Any, argument: str) -> str:
    checked = text(value, argument)
    if not checked.strip():
        raise InvalidArgument(f"{argument} must not be blank, got {checked!r}", argument, value)
    return checked


def _check_event_type(value: Any, argument: str) -> str:
    return _identifier(value, argument).strip()


def _integer(value: Any, argument: str, low: int, high: int = MAX_INT) -> int:
    return int(in_range(value, argument, low, high))


def _path(value: Any, argument: str) -> Path:
    if not isinstance(value, str | os.PathLike):
        type_error(argument, "a str or os.PathLike", value)
    text = os.fspath(value)
    if not isinstance(text, str):
        type_error(argument, "a str path (not bytes)", value)
    if not text:
        raise InvalidArgument(f"{argument} must not be empty", argument, value)
    return Path(text)


# -- paths ---------------------------------------------------------------------


def _segment(value: Any, argument: str, limit: int) -> str:
    if not isinstance(value, str):
        type_error(argument, "a str", value)
    segment = _UNSAFE.sub("-", value).strip("-") or "unknown"
    if len(segment) <= limit:
        return segment
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_HEX]
    head = segment[: limit - _HASH_HEX - 1].rstrip("-")
    return f"{head}-{digest}"


def path_for(root: str | os.PathLike[str], run_id: str, node_id: str) -> Path:
    """The ledger file of ``(run_id, node_id)``: ``<root>/<run>/<node>.jsonl``.

    Each id is sanitized into one path segment: ASCII letters, digits, ``-``
    and ``_`` are kept, every other character (``/``, ``.``, ``:``, NUL,
    any non-ASCII character) becomes ``-``, leading and trailing ``-`` are
    trimmed, and an empty result becomes ``unknown``. A segment is kept whole
    as long as a file name can hold it -- a run directory up to
    :data:`MAX_RUN_SEGMENT_BYTES` (255), a node up to
    :data:`MAX_NODE_SEGMENT_BYTES` (249, so that ``<node>.jsonl`` fits) -- so
    ledgers other tools write in this layout are found; only a longer one is
    cut and ends in ``-`` + 16 hex digits of the SHA-256 of the original id,
    so it remains a valid file name. The result is therefore
    always exactly two levels below ``root``: no id can point outside it.
    Different ids may share a ledger when they sanitize alike (``a/b`` and
    ``a:b``). Pure: touches no file.

    Raises :class:`InvalidArgumentType` when an id is not a ``str`` or
    ``root`` is not a path (arguments ``root``, ``run_id``, ``node_id``).

    >>> path_for("/ledgers", "automation/v2/run", "research:sources").as_posix()
    '/ledgers/automation-v2-run/research-sources.jsonl'
    >>> path_for("/ledgers", "..", "../../etc/passwd").as_posix()
    '/ledgers/unknown/etc-passwd.jsonl'
    """
    base = _path(root, "root")
    run = _segment(run_id, "run_id", MAX_RUN_SEGMENT_BYTES)
    node = _segment(node_id, "node_id", MAX_NODE_SEGMENT_BYTES)
    return base / run / f"{node}.jsonl"


# -- locking and low-level file access -------------------------------------------

# Threads of one process first take one of these striped locks (chosen by the
# ledger path), then the file lock. The stripe keeps memory bounded however
# many ledgers a process touches; two ledgers sharing a stripe only wait for
# each other, which is never wrong.
_STRIPES = 64
_thread_locks = [threading.Lock() for _ in range(_STRIPES)]


def _reset_thread_locks() -> None:
    # A fork while another thread held a stripe would leave it locked forever
    # in the child.
    global _thread_locks
    _thread_locks = [threading.Lock() for _ in range(_STRIPES)]


os.register_at_fork(after_in_child=_reset_thread_locks)


def _thread_lock(path: Path) -> threading.Lock:
    return _thread_locks[hash(os.path.abspath(path)) % _STRIPES]


_FIRST_BLOCK = 4096
_MAX_BLOCK = 1 << 20


def _record(line: bytes) -> LedgerRecord | None:
    try:
        return _DECODER.decode(line)
    except _UNDECODABLE:
        return None


def _line_seq(line: bytes) -> int:
    try:
        return _SEQ_DECODER.decode(line).seq
    except _UNDECODABLE:
        return 0


def _scan_last_seq(fd: int, size: int) -> int:
    """The seq of the file's last line that is a JSON object with an integer
    ``seq`` >= 1 (a valid record or not), or 0.

    Reads backwards from ``size`` in growing blocks and decodes lines from
    the last one up; only the lines after the last such line (normally
    none) are ever examined, so the cost does not depend on the file's
    length. ``pending`` holds, in reverse file order, the pieces of the line
    whose start has not been read yet.
    """
    pos = size
    block = _FIRST_BLOCK
    pending: list[bytes] = []
    while pos > 0:
        start = max(0, pos - block)
        chunk = os.pread(fd, pos - start, start)
        pos = start
        block = min(block * 2, _MAX_BLOCK)
        if pos > 0:
            cut = chunk.find(b"\n")
            if cut < 0:
                pending.append(chunk)
                continue
            complete = chunk[cut + 1 :]
            head = chunk[:cut]
        else:
            complete, head = chunk, b""
        if pending:
            complete += b"".join(reversed(pending))
        pending = [head]
        for line in reversed(complete.split(b"\n")):
            if line:
                seq = _line_seq(line)
                if seq:
                    return seq
    return 0


def _read_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    parts: list[bytes] = []
    offset = 0
    while offset < size:
        part = os.pread(fd, min(size - offset, 1 << 24), offset)
        if not part:
            break
        parts.append(part)
        offset += len(part)
    return b"".join(parts)


class _Linked(OSError):
    """A run directory or ledger file that is a symbolic link."""


def _no_link(path: Path, error: OSError, what: str) -> OSError:
    """``error`` from an ``O_NOFOLLOW`` open of ``path``: a :class:`_Linked`
    when ``path`` is a link (Linux says ELOOP, others may say ENOTDIR)."""
    if error.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK) and os.path.islink(path):
        return _Linked(error.errno, f"{what} is a symbolic link, which the ledger never follows")
    return error


def _open_shared(path: Path) -> int | None:
    """``path`` opened for reading under a shared flock, or None when missing;
    a file that is a link is refused."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _no_link(path, exc, "the ledger file") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs(directory: Path) -> None:
    """Create ``directory`` and its missing parents, durably."""
    missing: list[Path] = []
    probe = directory
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    os.makedirs(directory, exist_ok=True)
    for created in reversed(missing):
        _fsync_dir(created.parent)


_APPEND_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW
_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW


def _open_run_dir(directory: Path) -> int:
    """The run directory's descriptor, created (with its parents) when
    missing; a run directory that is a link is refused."""

    def opened() -> int:
        try:
            return os.open(directory, _DIRECTORY_FLAGS)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise _no_link(directory, exc, "the run directory") from exc

    try:
        return opened()
    except FileNotFoundError:
        _make_dirs(directory)
    return opened()


def _open_for_append(path: Path) -> int:
    """The ledger opened for appending, created (with its run directory) when
    missing. Opened relative to the run directory's descriptor, both without
    following links, so neither can be a link, even one swapped in between."""
    run_dir = _open_run_dir(path.parent)
    try:
        try:
            return os.open(path.name, _APPEND_FLAGS, dir_fd=run_dir)
        except FileNotFoundError:
            return os.open(path.name, _APPEND_FLAGS | os.O_CREAT, 0o644, dir_fd=run_dir)
        except OSError as exc:
            raise _no_link(path, exc, "the ledger file") from exc
    finally:
        os.close(run_dir)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


# -- public API ------------------------------------------------------------------


def _check_events(events: Any) -> list[LedgerEvent]:
    if isinstance(events, str | bytes | bytearray | Mapping | LedgerEvent):
        type_error("events", "an iterable of LedgerEvent", events)
    try:
        items = list(events)
    except TypeError:
        type_error("events", "an iterable of LedgerEvent", events)
    for index, event in enumerate(items):
        if not isinstance(event, LedgerEvent):
            type_error(f"events[{index}]", "a LedgerEvent", event)
    return items


def _encode_lines(
    run_id: str,
    node_id: str,
    attempt: int,
    session_id: str,
    events: list[LedgerEvent],
    first_seq: int,
    ts_ms: int,
) -> bytes:
    lines: list[bytes] = []
    for index, event in enumerate(events):
        event_type = _check_event_type(event.event_type, f"events[{index}].event_type")
        record = LedgerRecord(
            run_id=run_id,
            node_id=node_id,
            attempt=attempt,
            session_id=session_id,
            seq=first_seq + index,
            ts_ms=ts_ms,
            event_type=event_type,
            payload=event.payload,
        )
        try:
            lines.append(_ENCODER.encode(record))
        except (TypeError, ValueError, OverflowError) as exc:  # UnicodeEncodeError is a ValueError
            argument = f"events[{index}].payload"
            raise InvalidArgumentType(
                f"{argument} cannot be encoded as JSON: {exc}", argument, event.payload
            ) from None
    lines.append(b"")
    return b"\n".join(lines)


def append(
    root: str | os.PathLike[str],
    run_id: str,
    node_id: str,
    attempt: int,
    session_id: str,
    events: Iterable[LedgerEvent],
) -> AppendSummary:
    """Append ``events`` to the ledger of ``(run_id, node_id)`` under ``root``.

    The records get ``seq`` = the ledger's last seq + 1, + 2, ... in the
    order of ``events``, one shared ``ts_ms``, and are written with one
    ``write`` and ``fsync``-ed before the call returns: a returned append is
    durable, and a batch is never split by another writer's records (a
    crash during the call may leave a prefix of the batch, see the module
    docstring). The
    directories and the file are created as needed (and their entries
    synced). Returns ``AppendSummary(path, seq, record_count)`` where ``seq``
    is the last seq written. With no events nothing is written (no file or
    directory is created) and ``seq`` is the current last seq (0 when the
    ledger does not exist), ``record_count`` 0.

    Safe to call from any number of threads and processes at once on the
    same ledger (see the module docstring). Finding the last seq reads the
    file backwards from its end, so the cost does not grow with the ledger.

    Arguments are checked in order before anything is written, each error
    naming its argument: ``root`` (a non-empty str or ``os.PathLike``);
    ``run_id``, ``node_id`` (non-blank ``str`` without lone surrogates: a
    blank id is a caller bug, and all blank ids would share the ``unknown``
    ledger); ``attempt`` (``int``, not ``bool``, 0 <= attempt < 2**63);
    ``session_id`` (a ``str`` without lone surrogates; may be empty);
    ``events`` (an iterable of :class:`LedgerEvent`, argument
    ``events[i]``; a payload msgspec cannot encode as JSON raises
    :class:`InvalidArgumentType` with argument ``events[i].payload``).
    I/O failures raise :class:`StoreUnavailable`; the file is then cut back
    to its length before the call when possible.

    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> append(root, "run-1", "fetch", 1, "s-1", [LedgerEvent("a"), LedgerEvent("b")]).seq
    2
    >>> append(root, "run-1", "fetch", 1, "s-1", []).record_count
    0
    """
    base = _path(root, "root")
    run_id = _identifier(run_id, "run_id")
    node_id = _identifier(node_id, "node_id")
    attempt = _integer(attempt, "attempt", 0)
    session_id = text(session_id, "session_id")
    items = _check_events(events)
    path = path_for(base, run_id, node_id)
    if not items:
        return AppendSummary(path=path, seq=last_seq(path), record_count=0)
    # Encode once up front so that a bad payload raises before any file or
    # directory is created; encoding again under the lock with the real seqs
    # costs microseconds next to the fsync.
    _encode_lines(run_id, node_id, attempt, session_id, items, 1, 0)
    with _thread_lock(path):
        try:
            fd = _open_for_append(path)
        except OSError as exc:
            raise StoreUnavailable(f"cannot open ledger {path}: {exc}") from exc
        try:
            return _append_locked(fd, path, run_id, node_id, attempt, session_id, items)
        finally:
            os.close(fd)  # also releases the flock


def _append_locked(
    fd: int,
    path: Path,
    run_id: str,
    node_id: str,
    attempt: int,
    session_id: str,
    items: list[LedgerEvent],
) -> AppendSummary:
    size = -1
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        last = _scan_last_seq(fd, size)
        if last + len(items) > MAX_INT:
            raise InvalidArgument(
                f"ledger {path} is full: last seq {last} + {len(items)} events exceeds {MAX_INT}",
                "events",
                items,
            )
        data = _encode_lines(
            run_id, node_id, attempt, session_id, items, last + 1, time.time_ns() // 1_000_000
        )
        if size > 0 and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data  # terminate a line a crash left unfinished
        _write_all(fd, data)
        os.fsync(fd)
        if size == 0:
            # The first records of a ledger: make the file's directory entry
            # (and the run directory's) durable too. Whoever writes first
            # does it, whichever process happened to create the file.
            _fsync_dir(path.parent)
            _fsync_dir(path.parent.parent)
    except OSError as exc:
        if size >= 0:
            with contextlib.suppress(OSError):  # best effort: leave no partial batch behind
                os.ftruncate(fd, size)
        raise StoreUnavailable(f"cannot append to ledger {path}: {exc}") from exc
    return AppendSummary(path=path, seq=last + len(items), record_count=len(items))


def last_seq(path: str | os.PathLike[str]) -> int:
    """The seq of the ledger's last line that is a JSON object with an
    integer ``seq`` >= 1 -- a valid record, or a line another tool wrote
    that :func:`read` skips (a blank ``event_type``, another ``version``) but
    whose seq is taken all the same, so that an append never reuses a seq
    in the file; 0 when the file is missing or holds no such line.

    Reads backwards from the end of the file (cost independent of its
    length) under a shared ``flock``, so it never sees half of a batch.
    Writers number lines in order, so the last such line holds the highest
    seq. Raises
    :class:`InvalidArgumentType` for a bad ``path``, :class:`StoreUnavailable`
    when the file cannot be read.

    >>> last_seq("/nonexistent/ledger.jsonl")
    0
    """
    file = _path(path, "path")
    try:
        fd = _open_shared(file)
        if fd is None:
            return 0
        try:
            return _scan_last_seq(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)
    except OSError as exc:
        raise StoreUnavailable(f"cannot read ledger {file}: {exc}") from exc


def read(path: str | os.PathLike[str]) -> list[LedgerRecord]:
    """Every valid record of the ledger, in file order ([] when missing).

    Lines that are not valid records -- blank, garbage, torn by a crash,
    wrong field types, another ``version`` -- are skipped silently. Reads
    under a shared ``flock``, so a batch being appended is seen whole or not
    at all. Raises :class:`InvalidArgumentType` for a bad ``path``,
    :class:`StoreUnavailable` when the file cannot be read.

    >>> read("/nonexistent/ledger.jsonl")
    []
    """
    file = _path(path, "path")
    try:
        fd = _open_shared(file)
        if fd is None:
            return []
        try:
            data = _read_all(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise StoreUnavailable(f"cannot read ledger {file}: {exc}") from exc
    records: list[LedgerRecord] = []
    for line in data.split(b"\n"):
        if line:
            record = _record(line)
            if record is not None:
                records.append(record)
    return records


def _reconcile_args(
    path: Any, expected_min_seq: Any, max_wait_ms: Any, poll_interval_ms: Any
) -> tuple[Path, int, float, float]:
    file = _path(path, "path")
    target = max(_integer(expected_min_seq, "expected_min_seq", 0), 1)
    wait = _integer(max_wait_ms, "max_wait_ms", 0) / 1000
    interval = _integer(poll_interval_ms, "poll_interval_ms", 1) / 1000
    return file, target, wait, interval


def _elapsed_ms(start: float) -> int:
    return int((time.monotonic() - start) * 1000)


def reconcile(
    path: str | os.PathLike[str],
    expected_min_seq: int,
    max_wait_ms: int,
    poll_interval_ms: int = 25,
) -> ReconcileSummary:
    """Wait until the ledger at ``path`` reaches ``max(expected_min_seq, 1)``.

    Reads :func:`last_seq` at once, then every ``poll_interval_ms`` until it
    is at least the target (``found=True``) or ``max_wait_ms`` have passed
    (``found=False``); the last read happens at the deadline, and there is
    always at least one read. A missing file counts as seq 0. Elapsed time
    is measured with ``time.monotonic``. Blocks the calling thread; see
    :func:`areconcile` for asyncio.

    ``expected_min_seq`` and ``max_wait_ms`` are ``int`` >= 0,
    ``poll_interval_ms`` an ``int`` >= 1 (no busy polling); otherwise
    :class:`InvalidArgument` / :class:`InvalidArgumentType` naming it.

    >>> reconcile("/nonexistent/ledger.jsonl", 1, 0).found
    False
    """
    file, target, wait, interval = _reconcile_args(
        path, expected_min_seq, max_wait_ms, poll_interval_ms
    )
    start = time.monotonic()
    deadline = start + wait
    attempts = 0
    while True:
        attempts += 1
        seq = last_seq(file)
        remaining = deadline - time.monotonic()
        if seq >= target or remaining <= 0:
            return ReconcileSummary(
                found=seq >= target, last_seq=seq, elapsed_ms=_elapsed_ms(start), attempts=attempts
            )
        time.sleep(min(interval, remaining))


async def areconcile(
    path: str | os.PathLike[str],
    expected_min_seq: int,
    max_wait_ms: int,
    poll_interval_ms: int = 25,
) -> ReconcileSummary:
    """The asyncio form of :func:`reconcile`, with the same arguments and result.

    Waits with ``asyncio.sleep`` between reads, and reads the ledger in a
    worker thread (``asyncio.to_thread``) so the event loop never blocks on
    a writer's file lock. Cancelling the task stops the polling.

    >>> import asyncio
    >>> asyncio.run(areconcile("/nonexistent/ledger.jsonl", 1, 0)).attempts
    1
    """
    import asyncio  # here, not at the top: importing it costs ~25 ms at start-up

    file, target, wait, interval = _reconcile_args(
        path, expected_min_seq, max_wait_ms, poll_interval_ms
    )
    start = time.monotonic()
    deadline = start + wait
    attempts = 0
    while True:
        attempts += 1
        seq = await asyncio.to_thread(last_seq, file)
        remaining = deadline - time.monotonic()
        if seq >= target or remaining <= 0:
            return ReconcileSummary(
                found=seq >= target, last_seq=seq, elapsed_ms=_elapsed_ms(start), attempts=attempts
            )
        await asyncio.sleep(min(interval, remaining))
