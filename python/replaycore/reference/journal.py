"""Journal files (SPEC section 6.2), pure Python.

Two formats, chosen by the file's extension:

* ``.rcj`` -- framed msgpack: the magic ``RCJ1``, then frames of a 12-byte
  header (``u32`` body length, ``u32`` CRC-32 of the body, ``u32`` CRC-32 of
  those first 8 header bytes; little-endian, zlib's CRC-32) and the body, one
  canonical msgpack record.
* ``.jsonl`` -- one JSON record per line. Blank lines are skipped; an
  unterminated last line that does not decode is a torn tail; any other
  line that is not a record (or is longer than ``max_line_bytes``) is
  corruption, reported with its byte offset and 1-based line number.

A crash mid-write leaves a *torn tail* (fewer than 12 bytes for a header, or
a valid header whose body runs past the end): readers ignore it and a writer
truncates it before appending. Anything else that fails a check is
*corruption*: :class:`~replaycore.errors.JournalCorruption` with the frame's
byte offset, or, when not strict, a skipped byte range reported to the caller
while reading resynchronizes at the next valid frame.
"""

from __future__ import annotations

import fcntl
import io
import os
import re
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

import msgspec

from replaycore._checks import in_range, type_error
from replaycore.errors import (
    InvalidArgument,
    JournalCorruption,
    JournalLocked,
    RecordDecodeError,
)
from replaycore.records import JournalRecord, _Payload, encode_canonical, encode_json

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "DEFAULT_MAX_LINE_BYTES",
    "MAGIC",
    "MAX_DEPTH",
    "FrameEvent",
    "JournalWriter",
    "LineEvent",
    "decode_record",
    "encode_frame",
    "framed_buffer",
    "inspect_journal",
    "iter_frames",
    "iter_json_lines",
    "journal_format",
    "open_journal",
    "read_journal",
]

MAGIC = b"RCJ1"
HEADER = struct.Struct("<III")
DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_LINE_BYTES = 64 * 1024 * 1024
BODY_DOES_NOT_DECODE = "body does not decode to a record"
#: Deepest nesting of containers in a record, its own map or object counting
#: as 1 (SPEC 6.1). msgspec itself would raise RecursionError somewhere
#: around 1000 levels, depending on the Python stack.
MAX_DEPTH = 256
TOO_DEEP = f"nested more than {MAX_DEPTH} containers deep"
#: Bytes read from a journal file at a time: the readers' buffer, and the
#: piece in which a long line is read (SPEC 6.2 "Memory": a journal is read
#: a record at a time through it, never held whole).
_READ_SIZE = 1 << 20

FsyncMode = Literal["always", "batch", "never"]
JournalFormat = Literal["rcj", "jsonl"]

_MSGPACK_DECODER = msgspec.msgpack.Decoder(JournalRecord)
_JSON_DECODER = msgspec.json.Decoder(JournalRecord)
_JSON_ENCODER = msgspec.json.Encoder(order="deterministic")


def journal_format(path: str | os.PathLike[str]) -> JournalFormat:
    """``"jsonl"`` for a ``.jsonl`` file, ``"rcj"`` for every other name."""
    return "jsonl" if os.fspath(path).endswith(".jsonl") else "rcj"


def open_journal(path: str | os.PathLike[str]) -> BinaryIO:
    """A journal file opened for reading, through a buffer of 1 MiB."""
    return open(Path(path), "rb", buffering=_READ_SIZE)


# msgspec raises DecodeError, or UnicodeDecodeError (a ValueError) for a str
# that is not UTF-8: both mean "not a record".
_UNDECODABLE = (msgspec.DecodeError, ValueError)

# The nesting check is cheap on ordinary records: a value nested deeper than
# MAX_DEPTH needs more than MAX_DEPTH container headers (msgpack) or opening
# brackets (JSON), and counting those bytes is one pass in C. Only a record
# holding that many is walked exactly, in Python.
_CONTAINER_MARKERS = bytes([*range(0x80, 0xA0), *range(0xDC, 0xE0)])
_NOT_CONTAINER_MARKERS = bytes(b for b in range(256) if b not in _CONTAINER_MARKERS)
# Size of what follows a marker: fixed sizes, then (length bytes, extra bytes).
_FIXED = {0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8, 0xD0: 1, 0xD1: 2, 0xD2: 4}
_FIXED |= {0xD3: 8, 0xD4: 2, 0xD5: 3, 0xD6: 5, 0xD7: 9, 0xD8: 17}
_SIZED = {0xC4: (1, 0), 0xC5: (2, 0), 0xC6: (4, 0), 0xD9: (1, 0), 0xDA: (2, 0), 0xDB: (4, 0)}
_SIZED |= {0xC7: (1, 1), 0xC8: (2, 1), 0xC9: (4, 1)}
_CONTAINERS = {0xDC: (2, 1), 0xDD: (4, 1), 0xDE: (2, 2), 0xDF: (4, 2)}
_JSON_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


def _msgpack_too_deep(data: bytes | bytearray) -> bool:
    """True when msgpack ``data`` nests more than :data:`MAX_DEPTH` containers.

    Malformed data may give either answer: msgspec refuses it anyway.
    """
    if len(data) <= MAX_DEPTH or len(data.translate(None, _NOT_CONTAINER_MARKERS)) <= MAX_DEPTH:
        return False
    left = [1]  # values still to read in each open container; [0] is the top
    pos, size = 0, len(data)
    while left:
        if left[-1] == 0:
            left.pop()
            continue
        left[-1] -= 1
        if pos >= size:
            return False
        marker = data[pos]
        pos += 1
        if marker <= 0x7F or marker >= 0xE0 or 0xA0 <= marker <= 0xBF:
            pos += marker - 0xA0 if 0xA0 <= marker <= 0xBF else 0
            continue
        if marker <= 0x9F:
            items = (marker & 0x0F) * (2 if marker <= 0x8F else 1)
        elif marker in _CONTAINERS:
            width, per = _CONTAINERS[marker]
            items = int.from_bytes(data[pos : pos + width], "big") * per
            pos += width
        else:
            if marker in _FIXED:
                pos += _FIXED[marker]
            elif marker in _SIZED:
                width, extra = _SIZED[marker]
                pos += width + extra + int.from_bytes(data[pos : pos + width], "big")
            continue
        left.append(items)
        if len(left) - 1 > MAX_DEPTH:
            return True
    return False


def _json_too_deep(line: bytes | bytearray) -> bool:
    """True when a JSON ``line`` nests more than :data:`MAX_DEPTH` arrays and objects."""
    if line.count(b"[") + line.count(b"{") <= MAX_DEPTH:
        return False
    depth = 0
    for token in _JSON_TOKENS.finditer(line):
        bracket = token.group()
        if bracket in (b"[", b"{"):
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif bracket in (b"]", b"}"):
            depth -= 1
    return False


def decode_json_line(line: bytes | bytearray) -> JournalRecord | None:
    """The record a JSON line decodes to, or None when it is not one
    (too deep included, SPEC 6.1)."""
    if _json_too_deep(line):
        return None
    try:
        return _JSON_DECODER.decode(line)
    except _UNDECODABLE:
        return None


def _unknown_kind(data: bytes | bytearray | memoryview) -> str | None:
    """The payload kind of undecodable record bytes, when it is a str this
    schema does not know (whatever else is wrong with the record)."""
    try:
        raw = msgspec.msgpack.decode(data)
    except _UNDECODABLE:
        return None
    payload = raw.get("payload") if isinstance(raw, dict) else None
    kind = payload.get("kind") if isinstance(payload, dict) else None
    return kind if isinstance(kind, str) and kind not in _Payload.KINDS else None


def _decode_failure(
    exc: Exception, data: bytes | bytearray | memoryview, offset: int | None
) -> RecordDecodeError:
    """A typed error for bytes that are not a record, naming an unknown kind."""
    kind = None if _msgpack_too_deep(bytes(data)) else _unknown_kind(data)
    message = f"unknown record kind {kind!r}" if kind is not None else f"not a record: {exc}"
    return RecordDecodeError(message, kind, offset)


def decode_record(data: bytes | bytearray | memoryview, offset: int | None = None) -> JournalRecord:
    """Decode one msgpack-encoded record; raises ``RecordDecodeError``,
    also for a value nested more than :data:`MAX_DEPTH` containers deep."""
    if isinstance(data, memoryview):
        data = data.tobytes()
    if _msgpack_too_deep(data):
        raise RecordDecodeError(f"not a record: {TOO_DEEP}", None, offset)
    try:
        return _MSGPACK_DECODER.decode(data)
    except _UNDECODABLE as exc:
        raise _decode_failure(exc, data, offset) from None


def encode_frame(record: JournalRecord) -> bytes:
    """The framed bytes (header and canonical body) of one record."""
    body = encode_canonical(record)
    head = struct.pack("<II", len(body), zlib.crc32(body))
    return head + struct.pack("<I", zlib.crc32(head)) + body


@dataclass(frozen=True, slots=True)
class FrameEvent:
    """One step of reading a framed buffer.

    ``kind`` is ``"record"`` (``record`` and ``body`` set), ``"corrupt"``
    (``offset`` .. ``end`` skipped for ``reason``) or ``"torn"`` (``end -
    offset`` bytes of torn tail).
    """

    kind: Literal["record", "corrupt", "torn"]
    offset: int
    end: int
    record: JournalRecord | None = None
    body: bytes | None = None
    reason: str = ""


def _read_frame(file: BinaryIO, pos: int, size: int, limit: int) -> tuple[str, int, bytes | None]:
    """Read and check the frame at ``pos``, where ``file`` stands, in a file of
    ``size`` bytes: ``("ok", end, body)``, ``("torn", size, None)`` or
    ``(reason, 0, None)``. A body is read only once its header passed."""
    if size - pos < HEADER.size:
        return "torn", size, None
    header = file.read(HEADER.size)
    if len(header) < HEADER.size:  # the file shrank while being read
        return "torn", size, None
    length, body_crc, header_crc = HEADER.unpack(header)
    if zlib.crc32(header[:8]) != header_crc:
        return "header check failed", 0, None
    if length > limit:
        return f"declared body length {length} exceeds the limit of {limit} bytes", 0, None
    end = pos + HEADER.size + length
    if end > size:
        return "torn", size, None
    body = file.read(length)
    if len(body) < length:
        return "torn", size, None
    if zlib.crc32(body) != body_crc:
        return "body CRC mismatch", 0, None
    return "ok", end, body


def _resync(file: BinaryIO, start: int, size: int, limit: int) -> int:
    """The next offset from ``start`` where a complete, CRC-valid frame starts,
    or ``size``; ``file`` is left there."""
    for pos in range(start, size - HEADER.size + 1):
        file.seek(pos)
        if _read_frame(file, pos, size, limit)[0] == "ok":
            file.seek(pos)
            return pos
    return size


def iter_frames(
    file: BinaryIO,
    *,
    strict: bool = True,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
) -> Iterator[FrameEvent]:
    """Walk a framed journal (starting with ``RCJ1``) in a seekable binary file.

    Yields a ``record`` event per decoded frame, then at most one ``torn``
    event. Damage raises :class:`JournalCorruption` when ``strict``; else it
    yields a ``corrupt`` event for the skipped range and resynchronizes at
    the next complete frame whose header and body checks pass.

    The file is read a frame at a time: what is held is the frame being
    decoded, never the journal. The generator keeps no reference to a frame
    it has yielded, so a consumer that drops the event before asking for the
    next holds one record at a time.
    """
    size = file.seek(0, os.SEEK_END)
    file.seek(0)
    if file.read(len(MAGIC)) != MAGIC:
        raise JournalCorruption(0, "missing RCJ1 magic")
    pos = len(MAGIC)
    while pos < size:
        verdict, end, body = _read_frame(file, pos, size, max_frame_bytes)
        if verdict == "torn":
            yield FrameEvent("torn", pos, size)
            return
        if body is not None:
            try:
                record = decode_record(body, pos)
            except RecordDecodeError:
                verdict = BODY_DOES_NOT_DECODE
            else:
                yield FrameEvent("record", pos, end, record, body)
                del record, body
                pos = end
                continue
        if strict:
            raise JournalCorruption(pos, verdict)
        resume = _resync(file, pos + 1, size, max_frame_bytes)
        yield FrameEvent("corrupt", pos, resume, reason=verdict)
        pos = resume


def framed_buffer(data: bytes | bytearray | memoryview) -> BinaryIO:
    """A framed journal held in memory, as the file :func:`iter_frames` reads."""
    return io.BytesIO(data if isinstance(data, bytes) else memoryview(data).cast("B"))


@dataclass(frozen=True, slots=True)
class LineEvent:
    """One line of a JSON-lines journal (SPEC 6.2).

    ``kind`` is ``"record"`` (``record`` set), ``"blank"``, ``"corrupt"``
    (``reason`` names the line) or ``"torn"`` (the unterminated last line,
    which does not decode). ``offset`` .. ``end`` are the line's bytes, its
    newline excluded; ``number`` is 1-based.
    """

    kind: Literal["record", "blank", "corrupt", "torn"]
    offset: int
    end: int
    number: int
    record: JournalRecord | None = None
    reason: str = ""


def _read_line(file: BinaryIO, limit: int) -> tuple[bytes | bytearray | None, int, bool]:
    """The next line of ``file``: its bytes (its newline included), its length
    without the newline, and whether it has one. The bytes are None when the
    line is longer than ``limit``: such a line is read past, never held whole.
    At the end of the file: ``(None, 0, False)``."""
    piece = file.readline(_READ_SIZE)
    line: bytes | bytearray | None = piece or None
    length = len(piece)
    while piece and not piece.endswith(b"\n"):
        piece = file.readline(_READ_SIZE)
        length += len(piece)
        if line is None or length > limit + 1:  # + 1: its newline
            line = None
        elif piece:
            if isinstance(line, bytes):
                line = bytearray(line)
            line += piece
    terminated = piece.endswith(b"\n")
    length -= terminated
    return (line if length <= limit else None), length, terminated


def iter_json_lines(
    file: BinaryIO, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> Iterator[LineEvent]:
    """Each line of a JSON-lines journal in a binary file, as a :class:`LineEvent`.

    The newline ending the last line is not a line. A line longer than
    ``max_line_bytes`` does not decode (corruption, or the torn tail when it
    is the unterminated last line), even when it is whitespace only.

    The file is read a line at a time: what is held is the line being
    decoded, never the journal; as with :func:`iter_frames`, nothing of a
    line stays referenced here once its event is yielded.
    """
    pos, number = 0, 0
    while True:
        line, length, terminated = _read_line(file, max_line_bytes)
        if not length and not terminated:
            return
        number += 1
        end = pos + length
        record = None
        if line is None:
            reason = f"line {number} is longer than the limit of {max_line_bytes} bytes"
        elif line.isspace():
            yield LineEvent("blank", pos, end, number)
            pos = end + 1
            continue
        else:
            # the newline is JSON whitespace: decoding the line with it
            # spares a copy of the line without it
            record = decode_json_line(line)
            reason = f"line {number} does not decode to a record"
        del line
        if record is not None:
            yield LineEvent("record", pos, end, number, record)
            del record
        elif terminated:
            yield LineEvent("corrupt", pos, end, number, reason=reason)
        else:
            yield LineEvent("torn", pos, end, number)
        pos = end + 1


def read_journal(
    path: str | os.PathLike[str],
    *,
    strict: bool = True,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> Iterator[JournalRecord]:
    """Iterate the records of a journal file, in file order.

    Torn tails are ignored; corruption (a damaged frame, a corrupt JSON
    line, a line longer than ``max_line_bytes``) raises
    :class:`JournalCorruption`, or is skipped when ``strict=False``.
    """
    source = Path(path)
    in_range(max_line_bytes, "max_line_bytes", 1, 2**63 - 1)
    with open_journal(source) as file:
        if journal_format(path) == "jsonl":
            for line in iter_json_lines(file, max_line_bytes=max_line_bytes):
                if line.record is not None:
                    yield line.record
                elif line.kind == "corrupt" and strict:
                    raise JournalCorruption(line.offset, line.reason)
                del line  # the caller holds the record; nothing else of it stays
            return
        for event in iter_frames(file, strict=strict, max_frame_bytes=max_frame_bytes):
            if event.record is not None:
                yield event.record
            del event


def inspect_journal(
    path: str | os.PathLike[str],
    *,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> dict[str, Any]:
    """Count what a journal holds without replaying it.

    Every record is decoded, nothing is reduced. Damage in a framed file is
    listed in ``corrupt_ranges`` (``(start, end, reason)``, as a lenient
    read skips it), never raised, except a missing ``RCJ1`` magic
    (:class:`JournalCorruption`); a JSON line counts as a record when it
    decodes to one, a corrupt one is listed in ``corrupt_ranges`` too and
    counts in ``skipped_lines`` with the blank ones (a line longer than
    ``max_line_bytes`` is corrupt), a torn last line in
    ``torn_tail_bytes``. ``first_journal_seq`` and ``last_journal_seq`` are those
    of the first and last record in file order (0 without records); ``kinds``
    counts records per kind, sorted by kind; ``bytes`` is the file's size.

    >>> inspect_journal(tmp / "run.rcj")["records"]  # doctest: +SKIP
    5
    """
    in_range(max_frame_bytes, "max_frame_bytes", 1, 2**32 - 1)
    in_range(max_line_bytes, "max_line_bytes", 1, 2**63 - 1)
    fmt = journal_format(path)
    kinds: dict[str, int] = {}
    counts = {"records": 0, "first": 0, "last": 0, "torn": 0, "skipped": 0}
    corrupt: list[tuple[int, int, str]] = []

    def seen(record: JournalRecord) -> None:
        if counts["records"] == 0:
            counts["first"] = record.journal_seq
        counts["records"] += 1
        counts["last"] = record.journal_seq
        kinds[record.kind] = kinds.get(record.kind, 0) + 1

    with open_journal(path) as file:
        if fmt == "jsonl":
            for line in iter_json_lines(file, max_line_bytes=max_line_bytes):
                if line.record is not None:
                    seen(line.record)
                elif line.kind == "torn":
                    counts["torn"] += line.end - line.offset
                else:
                    counts["skipped"] += 1
                    if line.kind == "corrupt":
                        corrupt.append((line.offset, line.end, line.reason))
                del line  # before the next is read: one record at a time
        else:
            for event in iter_frames(file, strict=False, max_frame_bytes=max_frame_bytes):
                if event.record is not None:
                    seen(event.record)
                elif event.kind == "corrupt":
                    corrupt.append((event.offset, event.end, event.reason))
                else:
                    counts["torn"] += event.end - event.offset
                del event
        size = file.seek(0, os.SEEK_END)
    return {
        "format": fmt,
        "records": counts["records"],
        "kinds": dict(sorted(kinds.items())),
        "first_journal_seq": counts["first"],
        "last_journal_seq": counts["last"],
        "torn_tail_bytes": counts["torn"],
        "skipped_lines": counts["skipped"],
        "corrupt_ranges": corrupt,
        "bytes": size,
    }


def _scan_rcj_end(fd: int, size: int, limit: int) -> tuple[int, int]:
    """End of the last complete frame and that frame's journal_seq.

    Walks the frame headers only (each header is 12 bytes; bodies are
    skipped by their length), then decodes the last body alone.
    """
    magic = os.pread(fd, len(MAGIC), 0)
    if magic != MAGIC:
        raise JournalCorruption(0, "missing RCJ1 magic")
    pos = len(MAGIC)
    last_start = -1
    while size - pos >= HEADER.size:
        header = os.pread(fd, HEADER.size, pos)
        length, _, header_crc = HEADER.unpack(header)
        if zlib.crc32(header[:8]) != header_crc:
            raise JournalCorruption(pos, "header check failed")
        if length > limit:
            raise JournalCorruption(
                pos, f"declared body length {length} exceeds the limit of {limit} bytes"
            )
        if pos + HEADER.size + length > size:
            break
        last_start = pos
        pos += HEADER.size + length
    if last_start < 0:
        return pos, 0
    length, body_crc, _ = HEADER.unpack(os.pread(fd, HEADER.size, last_start))
    body = os.pread(fd, length, last_start + HEADER.size)
    if zlib.crc32(body) != body_crc:
        raise JournalCorruption(last_start, "body CRC mismatch")
    try:
        record = decode_record(body, last_start)
    except RecordDecodeError:
        raise JournalCorruption(last_start, BODY_DOES_NOT_DECODE) from None
    return pos, record.journal_seq


def _scan_jsonl_end(fd: int, size: int) -> tuple[int, int, bool]:
    """Where to append in a JSON-lines journal, the last journal_seq, and
    whether the last line still needs its newline.

    Reads backwards from the end, a block at a time, until a line that
    decodes is found. An unterminated last line that does not decode is a
    torn write and is cut off; one that decodes is kept and terminated.
    """
    block = 64 * 1024
    buf = b""
    pos = size
    end = size
    while pos > 0:
        start = max(0, pos - block)
        buf = os.pread(fd, pos - start, start) + buf
        pos = start
        cut = 0 if pos == 0 else buf.find(b"\n") + 1
        if cut == 0 and pos != 0:
            continue  # no complete line in view yet
        lines = buf[cut:].split(b"\n")
        starts = []
        offset = pos + cut
        for line in lines:
            starts.append(offset)
            offset += len(line) + 1
        for index in range(len(lines) - 1, -1, -1):
            line = lines[index]
            if index == len(lines) - 1:
                if not line:
                    continue  # the file ends with a newline
                record = decode_json_line(line)
                if record is not None:
                    return size, record.journal_seq, True
                end = starts[index]  # a torn last line
                continue
            if line.strip():
                record = decode_json_line(line)
                if record is not None:
                    return end, record.journal_seq, False
    return end, 0, False


class JournalWriter:
    """Appends records to a journal file, crash-safely.

    The format follows the extension: ``.jsonl`` for JSON lines, anything
    else for framed msgpack (``.rcj``). Opening an existing journal finds its
    last record without decoding every record (only frame headers are
    walked), truncates a torn tail left by a crash, and continues
    ``journal_seq`` after it. A record appended with ``journal_seq == 0``
    gets the next number; a record with its own ``journal_seq`` must be above
    the last one written (else ``InvalidArgument`` and nothing is written), so
    the file's last record always holds its highest ``journal_seq`` and a
    reopened writer can never hand out a number twice.

    ``fsync``: ``"always"`` syncs after every append (a returned append is on
    disk); ``"batch"`` syncs on :meth:`flush` and :meth:`close`; ``"never"``
    leaves it to the OS. One writer per file: a second writer on the same
    file (any process) raises :class:`JournalLocked`. Thread-safe.

    A path whose last component is a symbolic link is refused with
    :class:`InvalidArgument` (argument ``path``) and nothing is created or
    written: a journal never appends into a file it did not create.
    Directories above it may be links.

    >>> with JournalWriter(tmp / "run.rcj") as writer:  # doctest: +SKIP
    ...     writer.append(record).journal_seq
    1
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fsync: FsyncMode = "always",
        *,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> None:
        if fsync not in ("always", "batch", "never"):
            raise InvalidArgument(
                f"fsync must be 'always', 'batch' or 'never', got {fsync!r}", "fsync", fsync
            )
        in_range(max_frame_bytes, "max_frame_bytes", 1, 2**32 - 1)
        self.path = Path(path)
        self.format: JournalFormat = journal_format(path)
        self.fsync: FsyncMode = fsync
        self._lock = threading.Lock()
        try:
            # O_NOFOLLOW: a journal never appends into a file it did not
            # create, so a last component that is a link (even a dangling
            # one, which O_CREAT would create through) is refused.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError:
            if self.path.is_symlink():
                raise InvalidArgument(
                    f"{self.path} is a symbolic link: a JournalWriter never appends into a "
                    "file it did not create",
                    "path",
                    path,
                ) from None
            raise
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise JournalLocked(f"{self.path} is open in another JournalWriter") from None
            self._last_seq = self._prepare(fd, max_frame_bytes)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._closed = False

    def _prepare(self, fd: int, limit: int) -> int:
        size = os.fstat(fd).st_size
        if self.format == "rcj":
            if size == 0:
                os.write(fd, MAGIC)
                self._sync_file(fd)
                return 0
            if size < len(MAGIC):
                if MAGIC.startswith(os.pread(fd, size, 0)):  # a crash while writing the magic
                    os.ftruncate(fd, 0)
                    os.write(fd, MAGIC)
                    self._sync_file(fd)
                    return 0
                raise JournalCorruption(0, "missing RCJ1 magic")
            end, last = _scan_rcj_end(fd, size, limit)
        else:
            end, last, terminate = _scan_jsonl_end(fd, size)
            if terminate:  # a complete last record that lost only its newline
                os.pwrite(fd, b"\n", size)
                end = size + 1
        if end < os.fstat(fd).st_size:
            os.ftruncate(fd, end)
            self._sync_file(fd)
        os.lseek(fd, 0, os.SEEK_END)
        return last

    def _sync_file(self, fd: int) -> None:
        if self.fsync != "never":
            os.fsync(fd)

    @property
    def last_journal_seq(self) -> int:
        """The ``journal_seq`` of the file's last record (its highest; 0 when empty)."""
        return self._last_seq

    def _encode(self, record: JournalRecord) -> bytes:
        if self.format == "rcj":
            return encode_frame(record)
        try:
            return _JSON_ENCODER.encode(record) + b"\n"
        except Exception:
            return encode_json(record) + b"\n"  # raises the typed error

    def append(self, record: JournalRecord) -> JournalRecord:
        """Append one record and return it as written (with its ``journal_seq``)."""
        return self.append_many([record])[0]

    def append_many(self, records: Any) -> list[JournalRecord]:
        """Append records in order with one write; returns them as written."""
        with self._lock:
            if self._closed:
                raise InvalidArgument("the journal writer is closed", "self", self.path)
            written: list[JournalRecord] = []
            chunks: list[bytes] = []
            last = self._last_seq
            for index, record in enumerate(records):
                if not isinstance(record, JournalRecord):
                    type_error(f"records[{index}]", "a JournalRecord", record)
                if record.journal_seq == 0:
                    record = msgspec.structs.replace(record, journal_seq=last + 1)
                elif record.journal_seq <= last:
                    raise InvalidArgument(
                        f"records[{index}].journal_seq must be above the last written "
                        f"({last}), got {record.journal_seq}",
                        f"records[{index}].journal_seq",
                        record.journal_seq,
                    )
                last = record.journal_seq
                chunks.append(self._encode(record))
                written.append(record)
            if not chunks:
                return written
            os.write(self._fd, b"".join(chunks))
            if self.fsync == "always":
                os.fsync(self._fd)
            self._last_seq = last
            return written

    def flush(self) -> None:
        """Make every appended record durable (``fsync``) unless ``fsync="never"``."""
        with self._lock:
            if not self._closed:
                self._sync_file(self._fd)

    def close(self) -> None:
        """Flush and close the file; further appends raise."""
        with self._lock:
            if self._closed:
                return
            self._sync_file(self._fd)
            os.close(self._fd)
            self._closed = True

    def __enter__(self) -> JournalWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
