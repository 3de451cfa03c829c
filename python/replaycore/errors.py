"""The exception hierarchy of replaycore.

Every error replaycore raises for a bad value, bad bytes or a bad state derives
from :class:`ReplayCoreError`, so a harness can catch the library's failures in
one ``except`` clause. Errors that are also value errors (a malformed key, a
blank scope part, an out-of-range number) subclass :class:`ValueError` too;
an argument of the wrong type raises :class:`InvalidArgumentType`, which is a
:class:`TypeError` as well as a :class:`ValueError`.

Both backends (the Rust core and :mod:`replaycore.reference`) raise these same
classes with the same attributes. Every class is picklable, so errors survive a
trip through :mod:`multiprocessing` or :mod:`concurrent.futures`.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "IdempotencyConflict",
    "InvalidArgument",
    "InvalidArgumentType",
    "InvalidKeyFormat",
    "InvalidScope",
    "ReplayCoreError",
]


class ReplayCoreError(Exception):
    """Base class of every error replaycore raises on purpose."""


class InvalidArgument(ReplayCoreError, ValueError):
    """An argument has a value replaycore cannot accept.

    ``argument`` names the parameter (``"step_idx"``, ``"parts[2]"``, ...) and
    ``value`` holds the rejected value itself, so a log line can show both.
    """

    def __init__(self, message: str, argument: str | None = None, value: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.argument = argument
        self.value = value

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.argument, self.value))


class InvalidArgumentType(InvalidArgument, TypeError):
    """An argument has the wrong type (for example a ``bool`` key part).

    It is a :class:`TypeError` and, like every argument error of replaycore,
    a :class:`ValueError` and a :class:`ReplayCoreError`.
    """


class InvalidKeyFormat(InvalidArgument):
    """A string is not a well-formed idempotency key (see ``parse_key``).

    ``value`` is the rejected text.
    """


class InvalidScope(InvalidArgument):
    """A :class:`~replaycore.Scope` part is not a usable non-blank string."""


class IdempotencyConflict(ReplayCoreError):
    """The same scope was stored before with different content.

    The spec name of this failure is ``duplicate_id_conflict`` (``kind``).
    Nothing was overwritten: the prior value is still the one stored.

    Attributes:
        scope: the :class:`~replaycore.Scope` that collided.
        prior_digest: ``content_digest`` of the stored value.
        new_digest: ``content_digest`` of the rejected value.
        differing_fields: dotted paths of the fields that differ
            (``["payload.status"]``) when both values are Structs, sorted;
            empty otherwise.
    """

    kind = "duplicate_id_conflict"

    def __init__(
        self,
        scope: Any,
        prior_digest: str,
        new_digest: str,
        differing_fields: list[str] | None = None,
    ) -> None:
        self.scope = scope
        self.prior_digest = prior_digest
        self.new_digest = new_digest
        self.differing_fields: list[str] = list(differing_fields or [])
        detail = f"; differing fields: {', '.join(self.differing_fields)}" if self.differing_fields else ""
        super().__init__(
            f"duplicate_id_conflict: {scope!r} already holds different content "
            f"(stored {prior_digest}, offered {new_digest}){detail}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            type(self),
            (self.scope, self.prior_digest, self.new_digest, self.differing_fields),
        )
