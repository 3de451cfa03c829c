"""Plain-Python baselines the benchmarks hold replaycore against.

Not replaycore code paths: what a harness could write itself in a few lines
with msgspec and zlib, following docs/format.md section 3, so the tables can
say how much the library adds (or costs) over doing it by hand.

* :func:`msgspec_decode` — read a ``.rcj`` file, walk its frames by their
  headers, decode every body with ``msgspec.msgpack.Decoder(JournalRecord)``.
  By default no CRC is checked and the records are dropped as they are
  decoded: the cheapest honest decoding, a lower bound for a replay (which
  checks both CRCs and also reduces).
* :func:`plain_append` — append records one at a time the way a hand-written
  loop would: number the record (``msgspec.structs.replace``), encode it
  canonically, CRC the body and the header, write the frame into a buffered
  file opened ``"ab"``. The file is a valid ``.rcj`` journal.
* :func:`read_file` — the file into memory, whole or in reused chunks: the
  floor under every reader.

>>> import tempfile, pathlib
>>> from replaycore.synthetic import synthetic_records
>>> path = pathlib.Path(tempfile.mkdtemp()) / "run.rcj"
>>> plain_append(synthetic_records(10), path, fsync="never")
10
>>> msgspec_decode(path)
10
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import msgspec
from replaycore.records import JournalRecord

__all__ = ["MAGIC", "frame_crcs", "msgspec_decode", "plain_append", "read_file"]

MAGIC = b"RCJ1"
_HEADER = struct.Struct("<III")
_LENGTH_CRC = struct.Struct("<II")
_CRC = struct.Struct("<I")
_DECODER = msgspec.msgpack.Decoder(JournalRecord)
_ENCODER = msgspec.msgpack.Encoder(order="deterministic")


def msgspec_decode(path: Path, *, check_crc: bool = False) -> int:
    """Decode every frame body of the ``.rcj`` journal ``path``; returns how many.

    Assumes an undamaged file (no torn tail, no corruption): a baseline, not a
    reader. With ``check_crc`` each body's CRC is checked too (not the
    header's), raising ``ValueError`` on a mismatch.
    """
    data = path.read_bytes()
    view = memoryview(data)
    decode = _DECODER.decode
    unpack = _HEADER.unpack_from
    crc32 = zlib.crc32
    pos, size, count = len(MAGIC), len(data), 0
    while pos < size:
        length, body_crc, _ = unpack(data, pos)
        start = pos + _HEADER.size
        pos = start + length
        body = view[start:pos]
        if check_crc and crc32(body) != body_crc:
            raise ValueError(f"body CRC mismatch at offset {start - _HEADER.size}")
        decode(body)
        count += 1
    return count


def frame_crcs(data: bytes) -> int:
    """CRC-32 every frame header and body of a framed buffer, as a reader checks them.

    Returns the number of frames; raises ``ValueError`` at the first mismatch.
    The loop itself is Python: the result bounds what per-frame checking
    costs from Python, not what it costs in C.
    """
    view = memoryview(data)
    unpack = _HEADER.unpack_from
    crc32 = zlib.crc32
    pos, size, count = len(MAGIC), len(data), 0
    while pos < size:
        length, body_crc, header_crc = unpack(data, pos)
        start = pos + _HEADER.size
        if crc32(view[pos : pos + 8]) != header_crc or crc32(view[start : start + length]) != (
            body_crc
        ):
            raise ValueError(f"CRC mismatch in the frame at offset {pos}")
        pos = start + length
        count += 1
    return count


def plain_append(
    records: Iterable[JournalRecord], path: Path, *, fsync: Literal["never", "batch"]
) -> int:
    """Append ``records`` one by one to the new ``.rcj`` file ``path``; returns how many.

    Each record gets ``journal_seq`` = the previous + 1 (from 1: ``path``
    must not hold records yet), and its frame is written on its own into a
    buffered file; ``fsync="batch"`` syncs once at the end, as a
    ``JournalWriter`` does on close. No locking, no torn-tail check, no
    argument checks: what a hand-written loop does.
    """
    encode = _ENCODER.encode
    pack_head = _LENGTH_CRC.pack
    pack_crc = _CRC.pack
    crc32 = zlib.crc32
    replace = msgspec.structs.replace
    last = 0
    with path.open("ab") as out:
        if out.tell() == 0:
            out.write(MAGIC)
        write = out.write
        for record in records:
            last += 1
            body = encode(replace(record, journal_seq=last))
            head = pack_head(len(body), crc32(body))
            write(head + pack_crc(crc32(head)) + body)
        if fsync == "batch":
            out.flush()
            os.fsync(out.fileno())
    return last


def read_file(path: Path, *, chunk: int | None = None) -> int:
    """Read ``path`` into memory; returns the bytes read.

    Without ``chunk``, into a fresh ``bytes`` (``Path.read_bytes``); with it,
    ``chunk`` bytes at a time into one reused buffer, as a streaming reader
    does (no allocation, only the copy out of the page cache).
    """
    if chunk is None:
        return len(path.read_bytes())
    buffer = bytearray(chunk)
    total = 0
    with path.open("rb", buffering=0) as source:
        while read := source.readinto(buffer):
            total += read
    return total
