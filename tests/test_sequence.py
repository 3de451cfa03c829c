"""Per-run sequence counters (SPEC section 3) on both backends."""

from __future__ import annotations

import pytest
from replaycore.errors import InvalidArgument
from support import StrSub

MAX = 2**63 - 1


def test_runs_are_independent(impl):
    seq = impl.SequenceGenerator()
    assert [seq.next("A"), seq.next("B"), seq.next("A")] == [1, 1, 2]
    assert [seq.next("A") for _ in range(5)] == [3, 4, 5, 6, 7]
    assert seq.next("C") == 1
    assert seq.snapshot() == {"A": 7, "B": 1, "C": 1}


def test_generators_are_independent(impl):
    one, two = impl.SequenceGenerator(), impl.SequenceGenerator()
    assert one.next("A") == 1
    assert one.next("A") == 2
    assert two.next("A") == 1


def test_peek_advances_nothing_and_creates_nothing(impl):
    seq = impl.SequenceGenerator()
    assert seq.peek("A") == 0
    assert seq.peek("A") == 0
    assert seq.snapshot() == {}
    assert seq.next("A") == 1
    assert seq.peek("A") == 1
    assert seq.peek("A") == 1
    assert seq.next("A") == 2
    assert seq.snapshot() == {"A": 2}


def test_next_block(impl):
    seq = impl.SequenceGenerator()
    block = seq.next_block("A", 3)
    assert type(block) is range
    assert block == range(1, 4)
    assert seq.peek("A") == 3
    assert seq.next("A") == 4
    assert seq.next_block("A", 1) == range(5, 6)
    assert seq.next_block("A", 1000) == range(6, 1006)
    assert seq.next("A") == 1006
    assert seq.next_block("B", 2) == range(1, 3)


def test_next_block_zero_changes_nothing(impl):
    seq = impl.SequenceGenerator()
    assert seq.next_block("A", 0) == range(1, 1)
    assert len(seq.next_block("A", 0)) == 0
    assert seq.snapshot() == {}
    seq.next("A")
    empty = seq.next_block("A", 0)
    assert (empty.start, empty.stop) == (2, 2)
    assert seq.next("A") == 2


def test_observe_raises_but_never_lowers(impl):
    seq = impl.SequenceGenerator()
    assert seq.observe("A", 10) is None
    assert seq.peek("A") == 10
    seq.observe("A", 3)
    assert seq.peek("A") == 10
    seq.observe("A", 10)
    assert seq.next("A") == 11
    seq.observe("A", 20)
    assert seq.next("A") == 21
    assert seq.next_block("A", 2) == range(22, 24)


def test_observe_zero_creates_the_entry(impl):
    seq = impl.SequenceGenerator()
    seq.observe("A", 0)
    assert seq.snapshot() == {"A": 0}
    assert seq.next("A") == 1


def test_snapshot_is_a_copy(impl):
    seq = impl.SequenceGenerator()
    seq.next("A")
    snap = seq.snapshot()
    assert type(snap) is dict
    snap["A"] = 100
    snap["B"] = 5
    assert seq.snapshot() == {"A": 1}
    assert seq.snapshot() is not seq.snapshot()


def test_snapshot_round_trip(impl):
    seq = impl.SequenceGenerator()
    for run in ("A", "B", "A", "日本", "A"):
        seq.next(run)
    seq.observe("big", MAX - 1)
    seq.observe("zero", 0)
    snap = seq.snapshot()
    assert snap == {"A": 3, "B": 1, "日本": 1, "big": MAX - 1, "zero": 0}
    restored = impl.SequenceGenerator.from_snapshot(snap)
    assert type(restored) is impl.SequenceGenerator
    assert restored.snapshot() == snap
    assert restored.next("A") == 4
    assert restored.next("big") == MAX
    assert restored.next("zero") == 1
    assert restored.next("new") == 1
    # the restored generator does not share state with the source
    assert seq.peek("A") == 3
    snap["A"] = 50
    assert restored.peek("A") == 4


def test_from_empty_snapshot(impl):
    seq = impl.SequenceGenerator.from_snapshot({})
    assert seq.snapshot() == {}
    assert seq.next("A") == 1


def test_overflow_at_max(impl):
    seq = impl.SequenceGenerator()
    seq.observe("A", MAX - 1)
    assert seq.next("A") == MAX
    with pytest.raises(InvalidArgument, match=None) as info:
        seq.next("A")
    assert type(info.value) is InvalidArgument
    assert info.value.argument == "run_id"
    assert info.value.value == "A"
    assert seq.peek("A") == MAX
    with pytest.raises(InvalidArgument, match=None):
        seq.next("A")
    assert seq.snapshot() == {"A": MAX}


def test_observe_max_then_next_raises(impl):
    seq = impl.SequenceGenerator()
    seq.observe("A", MAX)
    with pytest.raises(InvalidArgument, match=None) as info:
        seq.next("A")
    assert info.value.argument == "run_id"
    assert seq.peek("A") == MAX
    # other runs are unaffected
    assert seq.next("B") == 1


def test_next_block_up_to_max(impl):
    seq = impl.SequenceGenerator()
    seq.observe("A", MAX - 3)
    with pytest.raises(InvalidArgument, match=None) as info:
        seq.next_block("A", 4)
    assert type(info.value) is InvalidArgument
    assert info.value.argument == "n"
    assert seq.peek("A") == MAX - 3
    assert seq.next_block("A", 3) == range(MAX - 2, MAX + 1)
    assert seq.peek("A") == MAX
    with pytest.raises(InvalidArgument, match=None):
        seq.next_block("A", 1)
    assert seq.peek("A") == MAX


def test_next_block_zero_at_max(impl):
    seq = impl.SequenceGenerator()
    seq.observe("A", MAX)
    assert seq.next_block("A", 0) == range(MAX + 1, MAX + 1)
    assert seq.peek("A") == MAX


def test_next_block_whole_range(impl):
    seq = impl.SequenceGenerator()
    block = seq.next_block("A", MAX)
    assert block == range(1, MAX + 1)
    assert seq.peek("A") == MAX


def test_surrogate_and_subclass_run_ids_behave_like_keys(impl):
    seq = impl.SequenceGenerator()
    runs = ["\ud800", "\udfff", "a\ud800b", "\ud800\udc00", "\U00010000"]
    for i, run in enumerate(runs):
        for _ in range(i + 1):
            seq.next(run)
    assert seq.snapshot() == {run: i + 1 for i, run in enumerate(runs)}
    assert seq.peek("\ud800") == 1
    assert seq.next_block("a\ud800b", 2) == range(4, 6)
    restored = impl.SequenceGenerator.from_snapshot(seq.snapshot())
    assert restored.snapshot() == seq.snapshot()
    assert restored.next("\ud800\udc00") == 5
    # a lone-surrogate pair is not the astral character it would encode
    assert restored.peek("\U00010000") == 5
    assert seq.next(StrSub("\ud800")) == 2


def test_int_subclass_counts_by_value(impl):
    import enum

    class N(enum.IntEnum):
        FIVE = 5

    seq = impl.SequenceGenerator()
    assert seq.next_block("A", N.FIVE) == range(1, 6)
    seq.observe("A", N.FIVE)
    assert seq.peek("A") == 5
    restored = impl.SequenceGenerator.from_snapshot({"A": N.FIVE})
    assert restored.next("A") == 6
