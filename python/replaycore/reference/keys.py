"""Idempotency keys (SPEC section 2), pure Python.

This is the readable twin of the Rust core's key functions: same results,
same errors. It is also the baseline the benchmarks compare against.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

from replaycore._checks import (
    in_range,
    renamed,
    row_items,
    rows_iter,
    type_error,
    utf8,
)
from replaycore.errors import InvalidArgument, InvalidKeyFormat
from replaycore.records import encode_canonical

__all__ = [
    "content_digest",
    "derive_key",
    "derive_keys",
    "key_from_intent",
    "legacy_key",
    "legacy_keys",
    "parse_key",
]

_MAX_STEP = 2**32 - 1
_HEX = frozenset("0123456789abcdefABCDEF")

#: Domain header of every ``derive_key`` hash input (see :func:`derive_key`).
DERIVE_KEY_HEADER = b"replaycore/derive_key/v1\n"
_TAG_STR = b"\x01"
_TAG_BYTES = b"\x02"
_TAG_INT = b"\x03"


def legacy_key(run_id: str, episode: str, step_idx: int) -> str:
    """The widely used key ``"idem_"`` + 16 hex chars of SHA-256.

    The hash input is ``f"{run_id}::{episode}::{step_idx}"`` in UTF-8, so keys
    match existing systems that use this scheme. It is ambiguous (``("a::b",
    "c", 1)`` and ``("a", "b::c", 1)`` collide): new code should use
    :func:`derive_key`.

    Raises:
        InvalidArgumentType: a non-``str`` id or a non-``int`` (or ``bool``) step.
        InvalidArgument: a lone surrogate in an id, or ``step_idx`` outside
            ``0 <= step_idx < 2**32``.

    >>> legacy_key("run-1", "episode-a", 3)
    'idem_855a8094f9a2b886'
    """
    material = b"%s::%s::%d" % (
        utf8(run_id, "run_id"),
        utf8(episode, "episode"),
        in_range(step_idx, "step_idx", 0, _MAX_STEP),
    )
    return "idem_" + hashlib.sha256(material).hexdigest()[:16]


def key_from_intent(intent_id: str, actor: str, episode: str, step_idx: int | None = None) -> str:
    """``legacy_key(intent_id + ":" + actor, episode, step_idx or 0)``.

    Arguments are checked in order and errors name them as given here.
    """
    utf8(intent_id, "intent_id")
    utf8(actor, "actor")
    utf8(episode, "episode")
    step = 0 if step_idx is None else in_range(step_idx, "step_idx", 0, _MAX_STEP)
    return legacy_key(f"{intent_id}:{actor}", episode, step)


def parse_key(text: str) -> str:
    """Return ``text`` when it is a legacy key: ``"idem_"`` + 16 hex chars.

    Hex digits may be upper or lower case; the prefix is exactly ``idem_``.
    The text is returned unchanged. Anything else raises
    :class:`~replaycore.errors.InvalidKeyFormat` naming the input.

    >>> parse_key("idem_0123456789ABCDEF")
    'idem_0123456789ABCDEF'
    """
    if not isinstance(text, str):
        type_error("text", "a str", text)
    if len(text) != 21 or not text.startswith("idem_") or not _HEX.issuperset(text[5:]):
        raise InvalidKeyFormat(
            f"text is not an idempotency key ('idem_' + 16 hex chars): {text!r}", "text", text
        )
    return str(text)


def _part_bytes(part: Any, argument: str) -> bytes:
    # tag (1 byte) + u64 big-endian length + the part's bytes
    if isinstance(part, bool):
        type_error(argument, "a str, bytes or int", part)
    if isinstance(part, str):
        tag, data = _TAG_STR, utf8(part, argument)
    elif isinstance(part, bytes):
        tag, data = _TAG_BYTES, bytes(part)
    elif isinstance(part, int):
        tag, data = _TAG_INT, part.to_bytes(part.bit_length() // 8 + 1, "big", signed=True)
    else:
        type_error(argument, "a str, bytes or int", part)
    return tag + len(data).to_bytes(8, "big") + data


def _check_options(prefix: str, hex_len: int) -> None:
    utf8(prefix, "prefix")
    in_range(hex_len, "hex_len", 16, 64)


def _derive(parts: Sequence[Any], prefix: str, hex_len: int) -> str:
    if not parts:
        raise InvalidArgument("derive_key needs at least one part", "parts", tuple(parts))
    chunks = [DERIVE_KEY_HEADER, len(parts).to_bytes(4, "big")]
    chunks.extend(_part_bytes(part, f"parts[{i}]") for i, part in enumerate(parts))
    return prefix + hashlib.sha256(b"".join(chunks)).hexdigest()[:hex_len]


def derive_key(*parts: str | bytes | int, prefix: str = "idem_", hex_len: int = 32) -> str:
    """An unambiguous key for a list of parts: ``prefix`` + ``hex_len`` hex chars.

    Each part is a ``str``, ``bytes`` or ``int`` (any size, negative allowed;
    ``bool`` is refused). Parts are encoded with a type tag and a length, so
    two different part lists never give the same key except by a SHA-256
    collision (unlike :func:`legacy_key`). ``hex_len`` is 16..64.

    The hashed bytes are a wire format and never change silently::

        b"replaycore/derive_key/v1\\n"         25-byte domain header
        u32 big-endian                         number of parts
        for each part:
            1 byte tag                         0x01 str, 0x02 bytes, 0x03 int
            u64 big-endian L                   length of the part's bytes
            L bytes                            str: UTF-8; bytes: as given;
                                               int: two's complement, big-endian,
                                               L = bit_length // 8 + 1
                                               (0 -> 00, 128 -> 0080, -1 -> ff)

    The key is ``prefix`` followed by the first ``hex_len`` lowercase hex
    digits of the SHA-256 of those bytes. The prefix is not hashed.

    Raises:
        InvalidArgumentType: a part, prefix or hex_len of the wrong type.
        InvalidArgument: no parts, ``hex_len`` out of range, a lone surrogate.

    >>> derive_key("run-1", "charge", 3)
    'idem_4bc43e5384d2ea36bcb9d8867f1f1c22'
    """
    _check_options(prefix, hex_len)
    return _derive(parts, prefix, hex_len)


def legacy_keys(rows: Iterable[Sequence[Any]]) -> list[str]:
    """:func:`legacy_key` of each ``(run_id, episode, step_idx)`` row, in order.

    Errors name the row: ``rows[7].step_idx``. The first bad row raises.
    """
    keys = []
    for index, row in enumerate(rows_iter(rows)):
        items = row_items(row, index)
        if len(items) != 3:
            raise InvalidArgument(
                f"rows[{index}] must have 3 items (run_id, episode, step_idx), got {len(items)}",
                f"rows[{index}]",
                row,
            )
        try:
            keys.append(legacy_key(*items))
        except InvalidArgument as exc:
            raise renamed(exc, f"rows[{index}].{exc.argument}") from None
    return keys


def derive_keys(
    rows: Iterable[Sequence[str | bytes | int]], prefix: str = "idem_", hex_len: int = 32
) -> list[str]:
    """``derive_key(*row, prefix=prefix, hex_len=hex_len)`` of each row, in order.

    ``prefix`` and ``hex_len`` are checked once, first. Errors name the
    offending part as ``rows[i][j]``.
    """
    _check_options(prefix, hex_len)
    keys = []
    for index, row in enumerate(rows_iter(rows)):
        items = row_items(row, index)
        if not items:
            raise InvalidArgument(f"rows[{index}] needs at least one part", f"rows[{index}]", row)
        try:
            keys.append(_derive(items, prefix, hex_len))
        except InvalidArgument as exc:
            name = (exc.argument or "").replace("parts", f"rows[{index}]", 1)
            raise renamed(exc, name) from None
    return keys


def content_digest(value: Any) -> str:
    """``"sha256:"`` + 64 hex chars over the canonical encoding of ``value``.

    ``bytes``, ``bytearray`` and ``memoryview`` are hashed as given; anything
    else (a record Struct, a dict ...) is first encoded with replaycore's
    canonical msgpack encoder (:func:`replaycore.records.encode_canonical`).

    A non-contiguous ``memoryview`` is hashed over its logical bytes
    (``value.tobytes()``).

    Raises:
        InvalidArgumentType: ``value`` holds an object that cannot be encoded.
        InvalidArgument: ``value`` holds a lone surrogate or a too-large int.
    """
    if isinstance(value, memoryview) and not value.c_contiguous:
        data: bytes | bytearray | memoryview = value.tobytes()
    elif isinstance(value, bytes | bytearray | memoryview):
        data = value
    else:
        data = encode_canonical(value)
    return "sha256:" + hashlib.sha256(data).hexdigest()
