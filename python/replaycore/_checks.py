"""Argument checks shared by the Python modules (the reference, the ledger,
the cache).

They raise the same errors, naming the same arguments, as the Rust core.
"""

from __future__ import annotations

from typing import Any, NoReturn

from replaycore.errors import InvalidArgument, InvalidArgumentType

#: Largest value a sequence counter may hold (the Rust core stores i64).
MAX_COUNTER = 2**63 - 1


def type_error(argument: str, expected: str, value: Any) -> NoReturn:
    raise InvalidArgumentType(
        f"{argument} must be {expected}, not {type(value).__name__}", argument, value
    )


def utf8(value: Any, argument: str) -> bytes:
    """``value`` encoded as UTF-8; it must be a ``str`` without lone surrogates."""
    if not isinstance(value, str):
        type_error(argument, "a str", value)
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidArgument(
            f"{argument} holds a lone surrogate at index {exc.start}: {value!r}", argument, value
        ) from None


def text(value: Any, argument: str) -> str:
    """``value`` itself when it is a ``str`` that can be written as UTF-8."""
    utf8(value, argument)
    result: str = value
    return result


def integer(value: Any, argument: str) -> int:
    """``value`` itself when it is an ``int`` (``bool`` is refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        type_error(argument, "an int", value)
    return value


def in_range(value: Any, argument: str, low: int, high: int) -> int:
    """``value`` when it is an ``int`` with ``low <= value <= high``."""
    number = integer(value, argument)
    if not low <= number <= high:
        raise InvalidArgument(
            f"{argument} must be in {low}..={high}, got {number}", argument, value
        )
    return number


def renamed(exc: InvalidArgument, argument: str) -> InvalidArgument:
    """The same error about an argument known by another name (``rows[3].episode``)."""
    old = exc.argument or ""
    message = exc.message.replace(old, argument, 1) if old else exc.message
    return type(exc)(message, argument, exc.value)


def rows_iter(rows: Any) -> Any:
    """An iterator over a batch's rows; a str or bytes is never a batch."""
    if isinstance(rows, str | bytes | bytearray):
        type_error("rows", "an iterable of rows", rows)
    try:
        return iter(rows)
    except TypeError:
        type_error("rows", "an iterable of rows", rows)


def row_items(row: Any, index: int) -> tuple[Any, ...] | list[Any]:
    """A batch row, which must be a tuple or a list."""
    if not isinstance(row, tuple | list):
        type_error(f"rows[{index}]", "a tuple or list", row)
    return row
