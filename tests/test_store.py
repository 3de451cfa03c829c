"""The content-equality store (SPEC section 4) on both backends."""

from __future__ import annotations

import msgspec
import pytest
from replaycore import records
from replaycore.errors import IdempotencyConflict
from replaycore.types import PutOutcome, Scope, StoreStats
from support import BytesSub, Point

SCOPE = Scope("client", "adapter", "idem_0123456789abcdef")


def record(status: str = "ok", **changes: object) -> records.JournalRecord:
    fields: dict[str, object] = {
        "record_id": "r1",
        "journal_seq": 1,
        "run_id": "run-7",
        "payload": records.EffectResult(effect_id="pay-1", status=status),
    }
    fields.update(changes)
    return records.JournalRecord(**fields)  # type: ignore[arg-type]


def test_insert_returns_the_value_itself(impl):
    store = impl.IdempotencyStore()
    value = record()
    out = store.put(SCOPE, value)
    assert type(out) is PutOutcome
    assert out.inserted is True
    assert out.value is value
    assert len(store) == 1
    assert SCOPE in store
    assert store.stats() == StoreStats(entries=1, inserts=1, replays=0, conflicts=0)


def test_replay_of_struct_returns_fresh_equal_prior(impl):
    store = impl.IdempotencyStore()
    first = record()
    store.put(SCOPE, first)
    again = record()
    out = store.put(SCOPE, again)
    assert out == PutOutcome(False, first)
    assert out.inserted is False
    assert type(out.value) is records.JournalRecord
    assert out.value == first
    assert out.value is not first
    assert out.value is not again
    assert out.value.kind == "effect_result"
    assert store.stats() == StoreStats(entries=1, inserts=1, replays=1, conflicts=0)


def test_replay_of_bytes(impl):
    store = impl.IdempotencyStore()
    assert store.put(SCOPE, b"payload").inserted is True
    out = store.put(SCOPE, b"payload")
    assert out == PutOutcome(False, b"payload")
    assert type(out.value) is bytes


def test_bytes_subclass_is_stored_as_bytes(impl):
    store = impl.IdempotencyStore()
    value = BytesSub(b"sub")
    assert store.put(SCOPE, value).value is value
    assert type(store.get(SCOPE)) is bytes
    assert store.get(SCOPE) == b"sub"
    out = store.put(SCOPE, b"sub")
    assert out.inserted is False
    assert type(out.value) is bytes


def test_user_struct_round_trips(impl):
    store = impl.IdempotencyStore()
    store.put(SCOPE, Point(1, 2))
    got = store.get(SCOPE)
    assert type(got) is Point
    assert got == Point(1, 2)
    out = store.put(SCOPE, Point(1, 2))
    assert out.inserted is False
    assert type(out.value) is Point
    with pytest.raises(IdempotencyConflict, match=None) as info:
        store.put(SCOPE, Point(1, 3))
    assert info.value.differing_fields == ["y"]


def test_get_decodes_a_fresh_value(impl):
    store = impl.IdempotencyStore()
    value = records.Custom(name="c", data={"b": [1, 2], "a": {"x": None}})
    store.put(SCOPE, value)
    one, two = store.get(SCOPE), store.get(SCOPE)
    assert one == value
    assert type(one) is records.Custom
    assert one is not value
    assert one is not two
    # only the canonical bytes are kept: mutating the stored object's data changes nothing
    value.data["b"].append(3)
    assert store.get(SCOPE) == records.Custom(name="c", data={"b": [1, 2], "a": {"x": None}})


def test_get_missing_is_none(impl):
    store = impl.IdempotencyStore()
    assert store.get(SCOPE) is None
    store.put(SCOPE, b"x")
    assert store.get(Scope("client", "adapter", "other")) is None
    assert store.stats() == StoreStats(entries=1, inserts=1, replays=0, conflicts=0)


def test_conflict_between_records(impl):
    store = impl.IdempotencyStore()
    old, new = record("ok"), record("failed")
    store.put(SCOPE, old)
    with pytest.raises(IdempotencyConflict, match=None) as info:
        store.put(SCOPE, new)
    exc = info.value
    assert exc.scope == SCOPE
    assert exc.prior_digest == impl.content_digest(old)
    assert exc.new_digest == impl.content_digest(new)
    assert exc.prior_digest != exc.new_digest
    assert exc.differing_fields == ["payload.status"]
    assert exc.kind == "duplicate_id_conflict"
    assert store.get(SCOPE) == old
    assert store.stats() == StoreStats(entries=1, inserts=1, replays=0, conflicts=1)


def test_conflict_lists_every_differing_field(impl):
    store = impl.IdempotencyStore()
    old = record("ok")
    new = record("failed", at_ms=5, content_refs=["blob"])
    store.put(SCOPE, old)
    with pytest.raises(IdempotencyConflict, match=None) as info:
        store.put(SCOPE, new)
    assert info.value.differing_fields == ["at_ms", "content_refs", "payload.status"]
    assert info.value.differing_fields == records.differing_fields(old, new)


def test_conflict_of_payload_kind(impl):
    store = impl.IdempotencyStore()
    old = record()
    new = record(payload=records.RunLifecycle(status="ok"))
    store.put(SCOPE, old)
    with pytest.raises(IdempotencyConflict, match=None) as info:
        store.put(SCOPE, new)
    assert "payload.kind" in info.value.differing_fields
    assert info.value.differing_fields == records.differing_fields(old, new)


def test_conflict_between_bytes(impl):
    store = impl.IdempotencyStore()
    store.put(SCOPE, b"one")
    with pytest.raises(IdempotencyConflict, match=None) as info:
        store.put(SCOPE, b"two")
    exc = info.value
    assert exc.differing_fields == []
    assert exc.prior_digest == impl.content_digest(b"one")
    assert exc.new_digest == impl.content_digest(b"two")
    assert store.get(SCOPE) == b"one"


def test_nothing_is_overwritten_after_conflicts(impl):
    store = impl.IdempotencyStore()
    store.put(SCOPE, record("ok"))
    for status in ("failed", "pending", "failed"):
        with pytest.raises(IdempotencyConflict, match=None):
            store.put(SCOPE, record(status))
    assert store.get(SCOPE) == record("ok")
    out = store.put(SCOPE, record("ok"))
    assert out.inserted is False
    assert out.value == record("ok")
    assert store.stats() == StoreStats(entries=1, inserts=1, replays=1, conflicts=3)


def test_bytes_vs_struct(impl):
    store = impl.IdempotencyStore()
    rec = record()
    store.put(SCOPE, b"raw")
    with pytest.raises(IdempotencyConflict, match=None) as info:
        store.put(SCOPE, rec)
    assert info.value.differing_fields == []
    assert info.value.new_digest == impl.content_digest(rec)
    assert info.value.prior_digest == impl.content_digest(b"raw")

    other = Scope("client", "adapter", "struct-first")
    store.put(other, rec)
    with pytest.raises(IdempotencyConflict, match=None) as info:
        store.put(other, b"raw")
    assert info.value.differing_fields == []
    assert store.get(other) == rec


def test_equal_canonical_bytes_replay_as_the_stored_type(impl):
    # Content equality is equality of the canonical bytes, whatever the type offered.
    store = impl.IdempotencyStore()
    rec = record()
    store.put(SCOPE, records.encode_canonical(rec))
    out = store.put(SCOPE, rec)
    assert out.inserted is False
    assert type(out.value) is bytes
    assert out.value == records.encode_canonical(rec)

    other = Scope("client", "adapter", "struct-first")
    store.put(other, rec)
    out = store.put(other, records.encode_canonical(rec))
    assert out.inserted is False
    assert type(out.value) is records.JournalRecord
    assert out.value == rec


def test_same_fields_other_struct_type_replays_as_first_type(impl):
    class Twin(msgspec.Struct):
        x: int
        y: int

    store = impl.IdempotencyStore()
    store.put(SCOPE, Point(1, 2))
    out = store.put(SCOPE, Twin(1, 2))
    assert out.inserted is False
    assert type(out.value) is Point


def test_stats_and_len(impl):
    store = impl.IdempotencyStore()
    assert len(store) == 0
    assert store.stats() == StoreStats(entries=0, inserts=0, replays=0, conflicts=0)
    scopes = [Scope("c", "a", f"k{i}") for i in range(5)]
    for i, scope in enumerate(scopes):
        store.put(scope, bytes([i]))
    for scope in scopes[:3]:
        store.put(scope, bytes([scopes.index(scope)]))
    for scope in scopes[:2]:
        with pytest.raises(IdempotencyConflict, match=None):
            store.put(scope, b"other")
    assert len(store) == 5
    stats = store.stats()
    assert type(stats) is StoreStats
    assert stats == StoreStats(entries=5, inserts=5, replays=3, conflicts=2)


def test_contains(impl):
    store = impl.IdempotencyStore()
    store.put(SCOPE, b"x")
    assert SCOPE in store
    assert Scope("client", "adapter", "idem_0123456789abcdef") in store
    assert Scope("client", "adapter", "idem_0123456789abcdeF") not in store
    for other in [
        ("client", "adapter", "idem_0123456789abcdef"),
        ["client", "adapter", "idem_0123456789abcdef"],
        "client",
        None,
        b"x",
        1,
        object(),
    ]:
        assert (other in store) is False


@pytest.mark.parametrize(
    "other",
    [
        Scope("client2", "adapter", "idem_0123456789abcdef"),
        Scope("client", "adapter2", "idem_0123456789abcdef"),
        Scope("client", "adapter", "idem_0123456789abcdee"),
        Scope("adapter", "client", "idem_0123456789abcdef"),
        Scope("client:adapter", "x", "idem_0123456789abcdef"),
    ],
    ids=repr,
)
def test_scopes_differing_in_one_part_do_not_collide(impl, other):
    store = impl.IdempotencyStore()
    store.put(SCOPE, b"one")
    out = store.put(other, b"two")
    assert out.inserted is True
    assert store.get(SCOPE) == b"one"
    assert store.get(other) == b"two"
    assert len(store) == 2


class ScopeSub(Scope, frozen=True, gc=False):
    """A Scope subclass: an instance of Scope, so the store must accept it."""


def test_scope_subclass_is_the_same_entry(impl):
    # api.md: entries are keyed by the Scope's three strings, not by its class.
    store = impl.IdempotencyStore()
    store.put(SCOPE, b"x")
    sub = ScopeSub(SCOPE.client_id, SCOPE.adapter_id, SCOPE.idempotency_key)
    assert sub in store
    assert store.get(sub) == b"x"
    assert store.put(sub, b"x").inserted is False
    with pytest.raises(IdempotencyConflict, match=None):
        store.put(sub, b"y")
    assert len(store) == 1
    other = ScopeSub("c", "a", "fresh")
    assert store.put(other, b"z").inserted is True
    assert Scope("c", "a", "fresh") in store


def test_joined_parts_do_not_collide(impl):
    # A store keyed by "a" + sep + "b" + sep + "c" would merge these.
    store = impl.IdempotencyStore()
    left = Scope("a\x00b", "c", "k")
    right = Scope("a", "b\x00c", "k")
    third = Scope("a|b", "c", "k")
    fourth = Scope("a", "b|c", "k")
    for i, scope in enumerate((left, right, third, fourth)):
        assert store.put(scope, bytes([i])).inserted is True
    assert [store.get(s) for s in (left, right, third, fourth)] == [b"\0", b"\1", b"\2", b"\3"]


def test_unicode_scopes(impl):
    store = impl.IdempotencyStore()
    scope = Scope("клиент", "adapter😀", "ключ")
    store.put(scope, b"v")
    assert scope in store
    assert store.get(Scope("клиент", "adapter😀", "ключ")) == b"v"


def test_empty_bytes_is_a_value(impl):
    store = impl.IdempotencyStore()
    assert store.put(SCOPE, b"").inserted is True
    assert store.get(SCOPE) == b""
    assert SCOPE in store
    assert store.put(SCOPE, b"").inserted is False
    with pytest.raises(IdempotencyConflict, match=None):
        store.put(SCOPE, b"\x00")
