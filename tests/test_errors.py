"""Bad input on both backends: the same error class, the same ``.argument``.

Each case names a callable of the backend (a function, or a method of a
fresh SequenceGenerator / IdempotencyStore), its arguments, the exact error
class and the exact ``argument`` of api.md, and, when api.md fixes it, the
rejected ``value``.
"""

from __future__ import annotations

import pickle
import types
from collections.abc import Iterator, Mapping
from typing import Any

import msgspec
import pytest
from replaycore import records
from replaycore.errors import (
    IdempotencyConflict,
    InvalidArgument,
    InvalidArgumentType,
    InvalidKeyFormat,
    InvalidScope,
    ReplayCoreError,
)
from replaycore.types import Scope

MAX = 2**63 - 1
SUR = "\ud800"
T = InvalidArgumentType
V = InvalidArgument
UNSET = object()
SCOPE = Scope("client", "adapter", "idem_0123456789abcdef")
OBJ = object()


class Case:
    def __init__(
        self,
        target: str,
        args: tuple[Any, ...],
        kw: dict[str, Any] | None,
        error: type[Exception],
        argument: str,
        value: Any = UNSET,
    ) -> None:
        self.target, self.args, self.kw = target, args, kw or {}
        self.error, self.argument, self.value = error, argument, value

    def __repr__(self) -> str:
        # stable across runs (no memory addresses), so test ids can be selected
        shown = ", ".join(
            [*map(stable, self.args), *(f"{k}={stable(v)}" for k, v in self.kw.items())]
        )
        return f"{self.target}({shown})"[:90]


def stable(value: Any) -> str:
    if value is SCOPE:
        return "SCOPE"
    text = repr(value)
    if " at 0x" in text:
        text = type(value).__name__ if not callable(value) else f"{value.__name__}()"
    return text.replace(repr(OBJ), "object()")


def c(target, *args, error, argument, value=UNSET, **kw):
    return Case(target, args, kw, error, argument, value)


LEGACY = [
    c("legacy_key", None, "ep", 1, error=T, argument="run_id", value=None),
    c("legacy_key", b"run", "ep", 1, error=T, argument="run_id", value=b"run"),
    c("legacy_key", 5, "ep", 1, error=T, argument="run_id", value=5),
    c("legacy_key", "run", None, 1, error=T, argument="episode", value=None),
    c("legacy_key", "run", 1.5, 1, error=T, argument="episode", value=1.5),
    c("legacy_key", "run", "ep", None, error=T, argument="step_idx", value=None),
    c("legacy_key", "run", "ep", 1.0, error=T, argument="step_idx", value=1.0),
    c("legacy_key", "run", "ep", "1", error=T, argument="step_idx", value="1"),
    c("legacy_key", "run", "ep", True, error=T, argument="step_idx", value=True),
    c("legacy_key", "run", "ep", False, error=T, argument="step_idx", value=False),
    c("legacy_key", "run", "ep", -1, error=V, argument="step_idx", value=-1),
    c("legacy_key", "run", "ep", 2**32, error=V, argument="step_idx", value=2**32),
    c("legacy_key", "run", "ep", 2**64, error=V, argument="step_idx", value=2**64),
    c("legacy_key", "run", "ep", -(2**64), error=V, argument="step_idx", value=-(2**64)),
    c("legacy_key", "run", "ep", 2**200, error=V, argument="step_idx", value=2**200),
    c("legacy_key", SUR, "ep", 1, error=V, argument="run_id", value=SUR),
    c("legacy_key", "run", "a" + SUR, 1, error=V, argument="episode", value="a" + SUR),
    # parameters are checked in order, each fully
    c("legacy_key", SUR, None, -1, error=V, argument="run_id"),
    c("legacy_key", "r", SUR, None, error=V, argument="episode"),
    c("legacy_key", None, SUR, -1, error=T, argument="run_id"),
]

INTENT = [
    c("key_from_intent", None, "a", "e", error=T, argument="intent_id", value=None),
    c("key_from_intent", "i", b"a", "e", error=T, argument="actor", value=b"a"),
    c("key_from_intent", "i", "a", 3, error=T, argument="episode", value=3),
    c("key_from_intent", SUR, "a", "e", error=V, argument="intent_id", value=SUR),
    c("key_from_intent", "i", SUR, "e", error=V, argument="actor", value=SUR),
    c("key_from_intent", "i", "a", SUR, error=V, argument="episode", value=SUR),
    c("key_from_intent", "i", "a", "e", True, error=T, argument="step_idx", value=True),
    c("key_from_intent", "i", "a", "e", 0.0, error=T, argument="step_idx", value=0.0),
    c("key_from_intent", "i", "a", "e", -1, error=V, argument="step_idx", value=-1),
    c("key_from_intent", "i", "a", "e", 2**32, error=V, argument="step_idx", value=2**32),
    c("key_from_intent", "i", "a", "e", 2**64, error=V, argument="step_idx", value=2**64),
    c("key_from_intent", "i", "a", SUR, -1, error=V, argument="episode"),
    c("key_from_intent", "i", None, SUR, -1, error=T, argument="actor"),
]

PARSE = [
    c("parse_key", None, error=T, argument="text", value=None),
    c("parse_key", b"idem_0123456789abcdef", error=T, argument="text"),
    c("parse_key", 12, error=T, argument="text", value=12),
    c("parse_key", "idem_" + SUR * 16, error=InvalidKeyFormat, argument="text"),
    c("parse_key", SUR, error=InvalidKeyFormat, argument="text", value=SUR),
    c("parse_key", "IDEM_0123456789abcdef", error=InvalidKeyFormat, argument="text"),
    c("parse_key", "idem_" + "٣" * 16, error=InvalidKeyFormat, argument="text"),
    c("parse_key", "idem_123", error=InvalidKeyFormat, argument="text", value="idem_123"),
]

DERIVE = [
    c("derive_key", error=V, argument="parts", value=()),
    c("derive_key", True, error=T, argument="parts[0]", value=True),
    c("derive_key", "a", False, error=T, argument="parts[1]", value=False),
    c("derive_key", None, error=T, argument="parts[0]", value=None),
    c("derive_key", 1.5, error=T, argument="parts[0]", value=1.5),
    c("derive_key", "a", b"b", bytearray(b"c"), error=T, argument="parts[2]"),
    c("derive_key", memoryview(b"m"), error=T, argument="parts[0]"),
    c("derive_key", ("a",), error=T, argument="parts[0]", value=("a",)),
    c("derive_key", ["a"], error=T, argument="parts[0]", value=["a"]),
    c("derive_key", "ok", SUR, error=V, argument="parts[1]", value=SUR),
    c("derive_key", "x" + SUR + "y", error=V, argument="parts[0]", value="x" + SUR + "y"),
    c("derive_key", "a", SUR, True, error=V, argument="parts[1]"),
    c("derive_key", "a", True, SUR, error=T, argument="parts[1]"),
    c("derive_key", "a", prefix=None, error=T, argument="prefix", value=None),
    c("derive_key", "a", prefix=b"p", error=T, argument="prefix", value=b"p"),
    c("derive_key", "a", prefix=SUR, error=V, argument="prefix", value=SUR),
    c("derive_key", "a", hex_len=15, error=V, argument="hex_len", value=15),
    c("derive_key", "a", hex_len=65, error=V, argument="hex_len", value=65),
    c("derive_key", "a", hex_len=-(2**70), error=V, argument="hex_len"),
    c("derive_key", "a", hex_len=2**64, error=V, argument="hex_len", value=2**64),
    c("derive_key", "a", hex_len=True, error=T, argument="hex_len", value=True),
    c("derive_key", "a", hex_len=32.0, error=T, argument="hex_len", value=32.0),
    c("derive_key", "a", hex_len=None, error=T, argument="hex_len", value=None),
    # order: prefix, hex_len, zero parts, parts in order
    c("derive_key", prefix=None, hex_len=0, error=T, argument="prefix"),
    c("derive_key", hex_len=0, error=V, argument="hex_len"),
    c("derive_key", True, hex_len=99, error=V, argument="hex_len"),
    c("derive_key", True, prefix=SUR, error=V, argument="prefix"),
]


class NotIterable:
    pass


def bad_rows() -> Iterator[Any]:
    yield ("r", "e", 1)
    yield ("r", "e", -1)


LEGACY_ROWS = [
    c("legacy_keys", "abc", error=T, argument="rows", value="abc"),
    c("legacy_keys", "", error=T, argument="rows", value=""),
    c("legacy_keys", b"abc", error=T, argument="rows", value=b"abc"),
    c("legacy_keys", bytearray(b"abc"), error=T, argument="rows"),
    c("legacy_keys", None, error=T, argument="rows", value=None),
    c("legacy_keys", 5, error=T, argument="rows", value=5),
    c("legacy_keys", NotIterable(), error=T, argument="rows"),
    c("legacy_keys", ["abc"], error=T, argument="rows[0]", value="abc"),
    c("legacy_keys", [("r", "e", 1), {"r", "e"}], error=T, argument="rows[1]"),
    c("legacy_keys", [("r", "e", 1), None], error=T, argument="rows[1]", value=None),
    c("legacy_keys", [b"abc"], error=T, argument="rows[0]", value=b"abc"),
    c("legacy_keys", [("r", "e")], error=V, argument="rows[0]", value=("r", "e")),
    c("legacy_keys", [("r", "e", 1, 2)], error=V, argument="rows[0]"),
    c("legacy_keys", [[]], error=V, argument="rows[0]", value=[]),
    c("legacy_keys", [("r", "e", 1), ()], error=V, argument="rows[1]", value=()),
    c("legacy_keys", [(None, "e", 1)], error=T, argument="rows[0].run_id", value=None),
    c("legacy_keys", [("r", "e", 0), ("r", 7, 1)], error=T, argument="rows[1].episode"),
    c("legacy_keys", [("r", "e", True)], error=T, argument="rows[0].step_idx", value=True),
    c("legacy_keys", [("r", "e", 2**32)], error=V, argument="rows[0].step_idx"),
    c("legacy_keys", [("r", "e", 2**64)], error=V, argument="rows[0].step_idx"),
    c("legacy_keys", [["r", "e", -1]], error=V, argument="rows[0].step_idx", value=-1),
    c("legacy_keys", [(SUR, "e", 1)], error=V, argument="rows[0].run_id", value=SUR),
    c("legacy_keys", [("r", SUR, 1)], error=V, argument="rows[0].episode", value=SUR),
    c("legacy_keys", bad_rows, error=V, argument="rows[1].step_idx"),
    c("legacy_keys", [("r", "e", -1), ("r", "e", None)], error=V, argument="rows[0].step_idx"),
]

DERIVE_ROWS = [
    c("derive_keys", "abc", error=T, argument="rows", value="abc"),
    c("derive_keys", b"abc", error=T, argument="rows", value=b"abc"),
    c("derive_keys", None, error=T, argument="rows", value=None),
    c("derive_keys", 3, error=T, argument="rows", value=3),
    c("derive_keys", ["abc"], error=T, argument="rows[0]", value="abc"),
    c("derive_keys", [("a",), 5], error=T, argument="rows[1]", value=5),
    c("derive_keys", [("a",), ()], error=V, argument="rows[1]", value=()),
    c("derive_keys", [[]], error=V, argument="rows[0]", value=[]),
    c("derive_keys", [("a", True)], error=T, argument="rows[0][1]", value=True),
    c("derive_keys", [("a",), ("b", 1, bytearray())], error=T, argument="rows[1][2]"),
    c("derive_keys", [("a", 1.0)], error=T, argument="rows[0][1]", value=1.0),
    c("derive_keys", [(SUR,)], error=V, argument="rows[0][0]", value=SUR),
    c("derive_keys", [("a",)], prefix=SUR, error=V, argument="prefix", value=SUR),
    c("derive_keys", [("a",)], prefix=1, error=T, argument="prefix", value=1),
    c("derive_keys", [("a",)], hex_len=15, error=V, argument="hex_len", value=15),
    c("derive_keys", [("a",)], hex_len=65, error=V, argument="hex_len", value=65),
    c("derive_keys", [("a",)], hex_len=False, error=T, argument="hex_len", value=False),
    # prefix and hex_len are checked before rows
    c("derive_keys", "abc", hex_len=0, error=V, argument="hex_len"),
    c("derive_keys", None, prefix=None, error=T, argument="prefix"),
]

DIGEST = [
    c("content_digest", OBJ, error=T, argument="value", value=OBJ),
    c("content_digest", {OBJ}, error=T, argument="value"),
    c("content_digest", records.Custom(name="x", data=OBJ), error=T, argument="value"),
]

SEQ = [
    c("seq.next", None, error=T, argument="run_id", value=None),
    c("seq.next", b"run", error=T, argument="run_id", value=b"run"),
    c("seq.next", 1, error=T, argument="run_id", value=1),
    c("seq.peek", None, error=T, argument="run_id", value=None),
    c("seq.peek", b"r", error=T, argument="run_id", value=b"r"),
    c("seq.next_block", None, 1, error=T, argument="run_id", value=None),
    c("seq.next_block", "r", None, error=T, argument="n", value=None),
    c("seq.next_block", "r", True, error=T, argument="n", value=True),
    c("seq.next_block", "r", 1.0, error=T, argument="n", value=1.0),
    c("seq.next_block", "r", -1, error=V, argument="n", value=-1),
    c("seq.next_block", "r", -(2**70), error=V, argument="n"),
    c("seq.next_block", "r", 2**63, error=V, argument="n", value=2**63),
    c("seq.next_block", "r", 2**64, error=V, argument="n", value=2**64),
    c("seq.next_block", 1, -1, error=T, argument="run_id"),
    c("seq.observe", None, 1, error=T, argument="run_id", value=None),
    c("seq.observe", "r", None, error=T, argument="seq", value=None),
    c("seq.observe", "r", True, error=T, argument="seq", value=True),
    c("seq.observe", "r", 1.0, error=T, argument="seq", value=1.0),
    c("seq.observe", "r", -1, error=V, argument="seq", value=-1),
    c("seq.observe", "r", MAX + 1, error=V, argument="seq", value=MAX + 1),
    c("seq.observe", "r", 2**64, error=V, argument="seq", value=2**64),
    c("seq.observe", "r", -(2**64), error=V, argument="seq"),
    c("seq.observe", b"r", -1, error=T, argument="run_id"),
    c("SequenceGenerator.from_snapshot", None, error=T, argument="snapshot", value=None),
    c("SequenceGenerator.from_snapshot", [("a", 1)], error=T, argument="snapshot"),
    c("SequenceGenerator.from_snapshot", "ab", error=T, argument="snapshot", value="ab"),
    c("SequenceGenerator.from_snapshot", {1: 1}, error=T, argument="snapshot"),
    c("SequenceGenerator.from_snapshot", {b"a": 1}, error=T, argument="snapshot"),
    c("SequenceGenerator.from_snapshot", {"a": 1, None: 2}, error=T, argument="snapshot"),
    c("SequenceGenerator.from_snapshot", {"a": True}, error=T, argument="snapshot['a']"),
    c("SequenceGenerator.from_snapshot", {"a": "1"}, error=T, argument="snapshot['a']"),
    c("SequenceGenerator.from_snapshot", {"a": 1.0}, error=T, argument="snapshot['a']"),
    c("SequenceGenerator.from_snapshot", {"a": None}, error=T, argument="snapshot['a']"),
    c("SequenceGenerator.from_snapshot", {"a": -1}, error=V, argument="snapshot['a']"),
    c("SequenceGenerator.from_snapshot", {"b": 1, "a": MAX + 1}, error=V, argument="snapshot['a']"),
    c("SequenceGenerator.from_snapshot", {"a": 2**64}, error=V, argument="snapshot['a']"),
    c("SequenceGenerator.from_snapshot", {"it's": -1}, error=V, argument='snapshot["it\'s"]'),
]

STORE = [
    c("store.put", None, b"v", error=T, argument="scope", value=None),
    c("store.put", ("c", "a", "k"), b"v", error=T, argument="scope"),
    c("store.put", "c/a/k", b"v", error=T, argument="scope", value="c/a/k"),
    c("store.put", None, OBJ, error=T, argument="scope"),
    c("store.put", SCOPE, OBJ, error=T, argument="value", value=OBJ),
    c("store.put", SCOPE, None, error=T, argument="value", value=None),
    c("store.put", SCOPE, "text", error=T, argument="value", value="text"),
    c("store.put", SCOPE, bytearray(b"v"), error=T, argument="value"),
    c("store.put", SCOPE, memoryview(b"v"), error=T, argument="value"),
    c("store.put", SCOPE, {"a": 1}, error=T, argument="value"),
    c("store.put", SCOPE, records.Custom(name="x", data=OBJ), error=T, argument="value"),
    c("store.put", SCOPE, records.Custom(name="x", data={OBJ}), error=T, argument="value"),
    c("store.get", None, error=T, argument="scope", value=None),
    c("store.get", ("c", "a", "k"), error=T, argument="scope"),
]

CASES = [*LEGACY, *INTENT, *PARSE, *DERIVE, *LEGACY_ROWS, *DERIVE_ROWS, *DIGEST, *SEQ, *STORE]


def resolve(impl: types.ModuleType, target: str) -> Any:
    owner, _, name = target.rpartition(".")
    if owner == "seq":
        return getattr(impl.SequenceGenerator(), name)
    if owner == "store":
        return getattr(impl.IdempotencyStore(), name)
    if owner:
        return getattr(getattr(impl, owner), name)
    return getattr(impl, name)


def call(impl: types.ModuleType, case: Case) -> Any:
    args = tuple(a() if a is bad_rows else a for a in case.args)
    return resolve(impl, case.target)(*args, **case.kw)


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_bad_input(impl, case):
    with pytest.raises(ReplayCoreError, match=None) as info:
        call(impl, case)
    exc = info.value
    assert type(exc) is case.error
    assert exc.argument == case.argument
    if case.value is not UNSET:
        assert type(exc.value) is type(case.value)
        assert exc.value == case.value
    assert isinstance(exc, ValueError)
    assert isinstance(exc, TypeError) == (case.error is InvalidArgumentType)
    assert str(exc)


# memoryview values cannot be pickled, whatever the error class does.
PICKLABLE = [
    case
    for case in CASES
    if not any(isinstance(a, memoryview) for a in (*case.args, *case.kw.values()))
]


@pytest.mark.parametrize("case", PICKLABLE, ids=repr)
def test_errors_pickle(impl, case):
    with pytest.raises(ReplayCoreError, match=None) as info:
        call(impl, case)
    exc = info.value
    # object() values cannot be compared after a round trip; drop them.
    comparable = case.value is not UNSET and case.value is not OBJ
    copy = pickle.loads(pickle.dumps(exc))
    assert type(copy) is type(exc)
    assert copy.argument == exc.argument
    assert str(copy) == str(exc)
    assert copy.message == exc.message
    if comparable:
        assert copy.value == exc.value


def test_error_hierarchy():
    assert issubclass(InvalidArgument, ReplayCoreError)
    assert issubclass(InvalidArgument, ValueError)
    for cls in (InvalidArgumentType, InvalidKeyFormat, InvalidScope):
        assert issubclass(cls, InvalidArgument)
    assert issubclass(InvalidArgumentType, TypeError)
    assert not issubclass(InvalidKeyFormat, TypeError)
    assert issubclass(IdempotencyConflict, ReplayCoreError)


def test_conflict_pickles(impl):
    store = impl.IdempotencyStore()
    old = records.EffectResult(effect_id="e", status="ok")
    new = records.EffectResult(effect_id="e", status="failed")
    store.put(SCOPE, old)
    with pytest.raises(IdempotencyConflict, match=None) as info:
        store.put(SCOPE, new)
    copy = pickle.loads(pickle.dumps(info.value))
    assert type(copy) is IdempotencyConflict
    assert copy.scope == SCOPE
    assert copy.prior_digest == info.value.prior_digest == impl.content_digest(old)
    assert copy.new_digest == info.value.new_digest == impl.content_digest(new)
    assert copy.differing_fields == info.value.differing_fields == ["status"]
    assert str(copy) == str(info.value)
    assert copy.kind == "duplicate_id_conflict"


def test_exception_from_the_rows_iterable_propagates(impl):
    class Boom(Exception):
        pass

    def rows() -> Iterator[Any]:
        yield ("r", "e", 1)
        raise Boom("from the iterator")

    with pytest.raises(Boom, match="from the iterator"):
        impl.legacy_keys(rows())
    with pytest.raises(Boom, match="from the iterator"):
        impl.derive_keys(rows())


# -- Scope (a shared class, checked here for its errors) ---------------------


@pytest.mark.parametrize("field", ["client_id", "adapter_id", "idempotency_key"])
@pytest.mark.parametrize("bad", ["", " ", "\t\n", "\u3000", "\u2003 ", SUR, "a" + SUR])
def test_scope_rejects_blank_and_surrogate_parts(field, bad):
    parts = {"client_id": "c", "adapter_id": "a", "idempotency_key": "k"}
    parts[field] = bad
    with pytest.raises(InvalidScope, match=None) as info:
        Scope(**parts)
    assert type(info.value) is InvalidScope
    assert isinstance(info.value, ValueError)
    assert info.value.argument == field
    assert info.value.value == bad
    copy = pickle.loads(pickle.dumps(info.value))
    assert (type(copy), copy.argument, copy.value) == (InvalidScope, field, bad)


@pytest.mark.parametrize("bad", [None, 1, b"k", ("k",)])
def test_scope_rejects_non_str_parts(bad):
    with pytest.raises(InvalidArgumentType, match=None) as info:
        Scope("c", bad, "k")
    assert info.value.argument == "adapter_id"
    assert isinstance(info.value, TypeError)


# -- surrogates in values that are not text arguments ------------------------


def test_surrogate_run_ids_are_accepted(impl):
    seq = impl.SequenceGenerator()
    assert seq.next(SUR) == 1
    assert seq.next("a" + SUR) == 1
    assert seq.next(SUR) == 2
    seq.observe("\udfff", 5)
    assert seq.next_block(SUR, 2) == range(3, 5)
    assert seq.snapshot() == {SUR: 4, "a" + SUR: 1, "\udfff": 5}


@pytest.mark.parametrize(
    "value",
    [SUR, records.Custom(name=SUR), records.Custom(name="x", data={SUR: 1})],
    ids=repr,
)
def test_unencodable_surrogate_values_raise_replaycore_errors(impl, value):
    """SPEC 1: every error for a bad value derives from ReplayCoreError."""
    with pytest.raises((ReplayCoreError, ValueError, TypeError), match=None) as info:
        impl.content_digest(value)
    assert isinstance(info.value, ReplayCoreError)
    assert info.value.argument == "value"
    if isinstance(value, msgspec.Struct):
        store = impl.IdempotencyStore()
        with pytest.raises((ReplayCoreError, ValueError, TypeError), match=None) as info:
            store.put(SCOPE, value)
        assert isinstance(info.value, ReplayCoreError)
        assert info.value.argument == "value"
        assert len(store) == 0


# -- nothing is lost after an error ------------------------------------------


def test_sequence_state_unchanged_after_errors(impl):
    seq = impl.SequenceGenerator()
    seq.next("a")
    seq.next("a")
    seq.next_block("b", 5)
    seq.observe("c", 0)
    before = seq.snapshot()
    for fn, args in [
        (seq.next, (None,)),
        (seq.next_block, ("a", -1)),
        (seq.next_block, ("a", MAX)),
        (seq.next_block, ("new", -1)),
        (seq.next_block, ("new", True)),
        (seq.observe, ("a", -1)),
        (seq.observe, ("new", MAX + 1)),
        (seq.observe, ("new", None)),
        (seq.peek, (None,)),
    ]:
        with pytest.raises(ReplayCoreError, match=None):
            fn(*args)
        assert seq.snapshot() == before
    assert seq.peek("new") == 0
    assert seq.next("a") == 3
    assert seq.next("b") == 6


def test_store_state_unchanged_after_errors(impl):
    store = impl.IdempotencyStore()
    value = records.EffectResult(effect_id="e", status="ok")
    other = Scope("c", "a", "other")
    store.put(SCOPE, value)
    store.put(other, b"raw")
    store.put(other, b"raw")
    before = store.stats()
    for args in [
        (None, value),
        (SCOPE, "text"),
        (SCOPE, records.Custom(name="x", data=OBJ)),
        (Scope("c", "a", "new"), OBJ),
        (Scope("c", "a", "new"), bytearray(b"raw")),
    ]:
        with pytest.raises(ReplayCoreError, match=None):
            store.put(*args)
        assert store.stats() == before
        assert len(store) == 2
    assert Scope("c", "a", "new") not in store
    assert store.get(SCOPE) == value
    assert store.get(other) == b"raw"
    assert store.put(SCOPE, value).inserted is False


class OddMapping(Mapping[str, int]):
    """A Mapping that is not a dict."""

    def __init__(self, data: dict[str, int]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> int:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


@pytest.mark.parametrize(
    "wrap", [dict, types.MappingProxyType, OddMapping], ids=["dict", "proxy", "mapping"]
)
def test_from_snapshot_accepts_any_mapping(impl, wrap):
    seq = impl.SequenceGenerator.from_snapshot(wrap({"a": 3, SUR: MAX, "z": 0}))
    assert seq.snapshot() == {"a": 3, SUR: MAX, "z": 0}
    assert seq.next("a") == 4


def test_from_snapshot_is_positional_only(impl):
    with pytest.raises(TypeError, match=None):
        impl.SequenceGenerator.from_snapshot(snapshot={"a": 1})
