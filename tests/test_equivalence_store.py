"""Differential tests: random operation sequences on SequenceGenerator and
IdempotencyStore, applied in lockstep to one instance of each backend.

After every operation both backends must have given the same result (or the
same exception class and argument), and their observable state (snapshot,
len, stats, stored values) must be equal.
"""

from __future__ import annotations

import replaycore._core as rust
import replaycore.reference as ref
from hypothesis import given
from hypothesis import strategies as st
from replaycore.types import Scope
from support import MAX_COUNTER, StrSub, junk, outcome, same, store_values

# -- SequenceGenerator --------------------------------------------------------

run_ids = st.one_of(
    st.sampled_from(["A", "B", "", "日本", "\ud800", "\udfff", "a\ud800", "\ud800\udc00", "𐀀"]),
    st.sampled_from(["A", "B"]).map(StrSub),
    st.sampled_from([None, b"A", 1, True]),
)

counts = st.one_of(
    st.integers(0, 5),
    st.integers(-3, 3),
    st.sampled_from([MAX_COUNTER, MAX_COUNTER - 1, 2**63, 2**64, -(2**64), 2**62]),
    junk,
)

seqs = st.one_of(
    st.integers(0, 20),
    st.sampled_from(
        [MAX_COUNTER, MAX_COUNTER - 1, MAX_COUNTER - 2, 2**63, 2**64, -1, -(2**63), 2**62]
    ),
    junk,
)

snapshot_values = st.one_of(st.integers(0, 10), st.sampled_from([MAX_COUNTER, -1, 2**63]), junk)
snapshots = st.one_of(
    st.dictionaries(run_ids.filter(lambda r: isinstance(r, str)), st.integers(0, 10), max_size=4),
    st.dictionaries(st.one_of(run_ids, st.integers()), snapshot_values, max_size=4),
    st.sampled_from([None, [("A", 1)], "A", 3]),
)

seq_ops = st.one_of(
    st.tuples(st.just("next"), run_ids),
    st.tuples(st.just("next"), run_ids),
    st.tuples(st.just("peek"), run_ids),
    st.tuples(st.just("next_block"), run_ids, counts),
    st.tuples(st.just("observe"), run_ids, seqs),
    st.tuples(st.just("snapshot")),
    st.tuples(st.just("from_snapshot"), snapshots),
    st.tuples(st.just("restore")),
)


@given(st.lists(seq_ops, max_size=40))
def test_sequence_generators_agree(ops):
    gens = {"rust": rust.SequenceGenerator(), "python": ref.SequenceGenerator()}
    mods = {"rust": rust, "python": ref}
    for op, *args in ops:
        results = {}
        for name, gen in gens.items():
            if op == "from_snapshot":
                results[name] = outcome(mods[name].SequenceGenerator.from_snapshot, *args)
                if results[name][0] == "ok":
                    gens[name] = results[name][1]
                    results[name] = ("ok", gens[name].snapshot())
            elif op == "restore":
                # round trip through the other backend's snapshot
                other = gens["python" if name == "rust" else "rust"]
                gens[name] = mods[name].SequenceGenerator.from_snapshot(other.snapshot())
                results[name] = ("ok", None)
            else:
                results[name] = outcome(getattr(gen, op), *args)
        assert same(results["rust"], results["python"]), (op, args, results)
        assert gens["rust"].snapshot() == gens["python"].snapshot(), (op, args)
    snap = gens["python"].snapshot()
    for run_id in snap:
        assert gens["rust"].peek(run_id) == snap[run_id]


# -- IdempotencyStore ---------------------------------------------------------


class ScopeSub(Scope, frozen=True, gc=False):
    pass


scope_parts = st.sampled_from(["c", "a", "k", "k2", "日本", " ", "", "\ud800", "x\x00y"])


def make_scope(parts: tuple[str, str, str]) -> object:
    """A Scope, or the raw tuple when Scope refuses the parts (blank, surrogate)."""
    try:
        return Scope(*parts)
    except ValueError:
        return parts


scopes = st.one_of(
    st.tuples(scope_parts, scope_parts, scope_parts).map(make_scope),
    st.sampled_from([Scope("c", "a", "k"), Scope("c", "a", "k2"), Scope("c2", "a", "k")]),
    # a subclass instance is a Scope too, keyed by its three strings
    st.sampled_from([ScopeSub("c", "a", "k"), ScopeSub("c", "a", "k3")]),
    st.sampled_from([None, "c/a/k", ("c", "a", "k")]),
)

store_ops = st.one_of(
    st.tuples(st.just("put"), scopes, store_values),
    st.tuples(st.just("put"), scopes, store_values),
    st.tuples(st.just("put"), scopes, store_values),
    st.tuples(st.just("get"), scopes),
    st.tuples(st.just("contains"), st.one_of(scopes, junk)),
    st.tuples(st.just("len")),
    st.tuples(st.just("stats")),
)


def normalize(result: tuple[object, ...]) -> tuple[object, ...]:
    """Outcome with the type of a returned value made explicit."""
    if result[0] != "ok":
        return result
    value = result[1]
    inner = getattr(value, "value", None)
    return ("ok", value, type(value), type(inner))


def apply_store(store: object, op: str, args: list[object]) -> tuple[object, ...]:
    if op == "contains":
        return outcome(lambda obj: obj in store, *args)
    if op == "len":
        return outcome(len, store)
    result = outcome(getattr(store, op), *args)
    if op == "put" and result[0] == "ok" and result[1].inserted:
        # an insert returns the very object passed in
        assert result[1].value is args[1]
    return result


@given(st.lists(store_ops, max_size=30))
def test_stores_agree(ops):
    stores = {"rust": rust.IdempotencyStore(), "python": ref.IdempotencyStore()}
    seen = []
    for op, *args in ops:
        results = {name: normalize(apply_store(s, op, args)) for name, s in stores.items()}
        assert results["rust"] == results["python"], (op, args, results)
        assert stores["rust"].stats() == stores["python"].stats()
        assert len(stores["rust"]) == len(stores["python"])
        if op == "put" and isinstance(args[0], Scope):
            seen.append(args[0])
    for scope in seen:
        left, right = stores["rust"].get(scope), stores["python"].get(scope)
        assert left == right
        assert type(left) is type(right)
        assert (scope in stores["rust"]) == (scope in stores["python"])
    stats = stores["python"].stats()
    assert stats.entries == len(stores["python"])
    assert stats.inserts == stats.entries
