"""The content-equality store (SPEC section 4): same key + same content is a
replay, same key + different content is a conflict.

:class:`IdempotencyStore` is the in-memory store of the selected backend;
:class:`IdempotencyStoreProtocol` is what every store implements. The
durable stores live with their engines and are importable from here too
(loaded on first access, so an in-memory user imports neither ``sqlite3``
nor psycopg): :class:`~replaycore.sqlite.SqliteIdempotencyStore` (one file,
embedded default) and :class:`~replaycore.postgres.PostgresIdempotencyStore`
(many machines).

The rest of this module is the part of the rules every durable store
shares: how a value is kept (its type name and canonical bytes), how a
stored value comes back, and what a put decides once the prior entry is
known.

Each durable entry keeps the value's canonical bytes and the name of its
type, ``"module:qualname"`` (``"builtins:bytes"`` for raw bytes). Reading an
entry resolves that name to a class: first through a per-process registry of
the classes this process has stored (so a class defined inside a function
works in the process that defined it), then by importing ``module`` and
walking ``qualname``. A name that resolves to nothing usable raises
:class:`~replaycore.errors.StoreUnavailable` saying which type is missing.
"""

from __future__ import annotations

import importlib
import threading
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import msgspec

from replaycore._backend import BACKEND
from replaycore._lazy import lazy_names
from replaycore.errors import IdempotencyConflict, InvalidArgumentType, StoreUnavailable
from replaycore.records import decode_canonical, differing_fields, encode_canonical
from replaycore.types import PutOutcome, Scope, StoreStats

if TYPE_CHECKING or BACKEND == "rust":
    from replaycore._core import IdempotencyStore
else:
    from replaycore.reference.store import IdempotencyStore

if TYPE_CHECKING:
    from replaycore.postgres.store import PostgresIdempotencyStore
    from replaycore.sqlite.store import SqliteIdempotencyStore

__all__ = [
    "IdempotencyStore",
    "IdempotencyStoreProtocol",
    "PostgresIdempotencyStore",
    "PutOutcome",
    "Scope",
    "SqliteIdempotencyStore",
    "StoreStats",
]

_DURABLE = {
    "SqliteIdempotencyStore": "replaycore.sqlite.store",
    "PostgresIdempotencyStore": "replaycore.postgres.store",
}


__getattr__ = lazy_names(__name__, _DURABLE)


@runtime_checkable
class IdempotencyStoreProtocol(Protocol):
    """The operations every content-equality store offers."""

    def put(self, scope: Scope, value: Any) -> PutOutcome[Any]:
        """Insert, replay (equal content) or raise ``IdempotencyConflict``."""
        ...

    def get(self, scope: Scope) -> Any | None:
        """The stored value of ``scope``, or None."""
        ...

    def stats(self) -> StoreStats:
        """Counters: entries, inserts, replays, conflicts."""
        ...

    def __len__(self) -> int: ...

    def __contains__(self, scope: object) -> bool: ...


# -- the rules the durable stores share ---------------------------------------

BYTES_TYPE = "builtins:bytes"

# Classes this process has stored, by "module:qualname". Consulted before
# importlib so that classes defined inside functions (qualname "<locals>")
# resolve in the process that defined them; the latest class of a name wins.
_TYPES: dict[str, type] = {BYTES_TYPE: bytes}
_TYPES_LOCK = threading.Lock()


def _type_name(kind: type) -> str:
    return f"{kind.__module__}:{kind.__qualname__}"


def encode_value(value: Any) -> tuple[str, bytes]:
    """The stored type name of ``value`` and its canonical bytes.

    Raises InvalidArgumentType (argument ``"value"``) for anything but a
    msgspec Struct or ``bytes`` (a ``bytes`` subclass is kept as ``bytes``).
    """
    if isinstance(value, bytes):
        return BYTES_TYPE, bytes(value)
    if isinstance(value, msgspec.Struct):
        kind = type(value)
        data = encode_canonical(value)
        name = _type_name(kind)
        with _TYPES_LOCK:
            _TYPES[name] = kind
        return name, data
    raise InvalidArgumentType(
        f"value must be a msgspec Struct or bytes, not {type(value).__name__}", "value", value
    )


def _resolve(name: str) -> type:
    """The class a stored type name stands for, or StoreUnavailable."""
    with _TYPES_LOCK:
        kind = _TYPES.get(name)
    if kind is not None:
        return kind
    module_name, _, qualname = name.partition(":")
    if not module_name or not qualname or "<locals>" in qualname:
        raise StoreUnavailable(
            f"stored value type {name!r} cannot be resolved: it is not importable and was not "
            "stored by this process (define the class at module level to read it elsewhere)"
        )
    try:
        found: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        raise StoreUnavailable(f"stored value type {name!r} cannot be resolved: {exc}") from exc
    if not (isinstance(found, type) and issubclass(found, msgspec.Struct)):
        raise StoreUnavailable(
            f"stored value type {name!r} resolves to {found!r}, which is not a msgspec Struct"
        )
    with _TYPES_LOCK:
        _TYPES.setdefault(name, found)
    return found


def decode_value(name: str, data: bytes) -> Any:
    """A fresh object of the stored type, or StoreUnavailable when it cannot be rebuilt."""
    if name == BYTES_TYPE:
        return bytes(data)
    kind = _resolve(name)
    try:
        return decode_canonical(bytes(data), kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise StoreUnavailable(
            f"stored value no longer decodes as {name!r} (did the class change?): {exc}"
        ) from exc


def scope_key(scope: Any, argument: str = "scope") -> tuple[str, str, str]:
    """The three strings that name a scope's entry; InvalidArgumentType for a non-Scope."""
    if not isinstance(scope, Scope):
        raise InvalidArgumentType(
            f"{argument} must be a Scope, not {type(scope).__name__}", argument, scope
        )
    return (scope.client_id, scope.adapter_id, scope.idempotency_key)


def digest(data: bytes) -> str:
    """The content digest of canonical bytes, as conflicts report it."""
    import hashlib  # here, not at the top: it loads OpenSSL, a few ms of start-up

    return "sha256:" + hashlib.sha256(data).hexdigest()


def replay_or_conflict(
    scope: Scope, value: Any, data: bytes, prior: Any, prior_data: bytes
) -> PutOutcome[Any]:
    """What a put of ``value`` (canonical ``data``) finds when ``prior`` is stored.

    Returns ``PutOutcome(False, prior)`` for equal bytes (a replay); raises
    IdempotencyConflict with both digests and the differing fields otherwise.
    """
    if prior_data == data:
        return PutOutcome(False, prior)
    raise IdempotencyConflict(
        scope, digest(prior_data), digest(data), differing_fields(prior, value)
    )
