"""The outbox (SPEC section 10): one behaviour suite over MemoryOutbox and SqliteOutbox.

Every behaviour test runs once per store through the ``box`` fixture; the
ScopedOutbox tests wrap both stores. A hypothesis test replays random
operation sequences on both stores and asserts equal results. The last part
runs real processes (the ``spawn`` context) on one SQLite outbox: four workers
deliver every message exactly once, and workers killed with SIGKILL lose
nothing. Time is always an explicit ``now``, so no test waits for a lease.
"""

from __future__ import annotations

import multiprocessing
import pickle
import random
import sqlite3
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from replaycore import errors, outbox
from replaycore.outbox import (
    MemoryOutbox,
    OutboxDraft,
    OutboxMessage,
    OutboxStore,
    OutboxValidationError,
    ScopedOutbox,
    SqliteOutbox,
    StoreUnavailable,
)
from replaycore.postgres import PostgresOutbox
from replaycore.sqlite._engine import Database
from support import POSTGRES

STORES = ["memory", "sqlite", POSTGRES]

LEASE = 30_000


@pytest.fixture(params=STORES)
def box(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OutboxStore]:
    """A fresh, empty store of each kind (PostgreSQL: in a new schema)."""
    store: Any
    if request.param == "memory":
        store = MemoryOutbox()
    elif request.param == "sqlite":
        store = SqliteOutbox(tmp_path / "outbox.db")
    else:
        schema = request.getfixturevalue("pg_schemas")()
        store = PostgresOutbox(request.getfixturevalue("pg_dsn"), schema=schema)
    yield store
    if not isinstance(store, MemoryOutbox):
        store.close()


def draft(payload: Any = None, lane: str = "email", target: str = "smtp", **kw: Any) -> OutboxDraft:
    return OutboxDraft(lane, target, {"body": "hi"} if payload is None else payload, **kw)


def claim_one(box: OutboxStore, now: int, lane: str = "email", **kw: Any) -> OutboxMessage:
    args: dict[str, Any] = {"limit": 1, "lease_ms": LEASE, "consumer_id": "w1"} | kw
    (message,) = box.claim(lane, "smtp", args["limit"], args["lease_ms"], args["consumer_id"], now)
    return message


def field_of(fn: Callable[..., Any], *args: Any, **kw: Any) -> str:
    """The ``field`` of the OutboxValidationError ``fn`` raises (fails if it does not)."""
    with pytest.raises(OutboxValidationError) as info:
        fn(*args, **kw)
    return info.value.field


# -- drafts and errors -----------------------------------------------------------------


def test_draft_defaults_and_positional_form():
    d = OutboxDraft("email", "smtp", {"to": "a"})
    assert (d.dedupe_key, d.available_at, d.max_attempts) == (None, 0, 5)
    assert OutboxDraft("l", "t", 1, "k", 7, 2) == OutboxDraft(
        "l", "t", 1, dedupe_key="k", available_at=7, max_attempts=2
    )


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"lane": ""}, "lane"),
        ({"lane": "  \t\n"}, "lane"),
        ({"lane": None}, "lane"),
        ({"lane": b"email"}, "lane"),
        ({"lane": "x\ud800"}, "lane"),
        ({"target": ""}, "target"),
        ({"target": " "}, "target"),
        ({"target": 3}, "target"),
        ({"dedupe_key": ""}, "dedupe_key"),
        ({"dedupe_key": "   "}, "dedupe_key"),
        ({"dedupe_key": 12}, "dedupe_key"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": -1}, "max_attempts"),
        ({"max_attempts": True}, "max_attempts"),
        ({"max_attempts": 2.0}, "max_attempts"),
        ({"max_attempts": 2**63}, "max_attempts"),
        ({"available_at": -1}, "available_at"),
        ({"available_at": "0"}, "available_at"),
        ({"available_at": 2**63}, "available_at"),
        ({"payload": object()}, "payload"),
        ({"payload": {"n": 2**64}}, "payload"),
        ({"payload": ["\udfff"]}, "payload"),
        ({"payload": {"f": lambda: None}}, "payload"),
    ],
)
def test_bad_draft_names_the_field(kwargs, field):
    args = {"lane": "email", "target": "smtp", "payload": {"ok": True}} | kwargs
    with pytest.raises(OutboxValidationError) as info:
        OutboxDraft(**args)
    error = info.value
    assert error.field == field
    assert isinstance(error, ValueError)
    assert isinstance(error, errors.ReplayCoreError)


def test_accepted_edges():
    OutboxDraft("l", "t", None, dedupe_key=" k ", available_at=2**63 - 1, max_attempts=1)
    OutboxDraft("l", "t", {"n": 2**64 - 1, "m": -(2**63), "b": b"\x00", "s": {1, 2}})


def test_errors_are_shared_and_picklable():
    assert outbox.OutboxValidationError is errors.OutboxValidationError
    assert outbox.StoreUnavailable is errors.StoreUnavailable
    assert issubclass(OutboxValidationError, errors.FieldError)
    error = pickle.loads(pickle.dumps(OutboxValidationError("bad lane", "lane")))
    assert (type(error), error.field, error.message) == (OutboxValidationError, "lane", "bad lane")


# -- enqueue ---------------------------------------------------------------------------


def test_enqueue_stores_a_pending_message(box):
    message = box.enqueue(draft({"to": "a"}, available_at=40, max_attempts=3), now=25)
    assert msgspec.structs.replace(message, outbox_id="?") == OutboxMessage(
        outbox_id="?",
        lane="email",
        target="smtp",
        payload={"to": "a"},
        dedupe_key=None,
        status="pending",
        available_at=40,
        attempt_count=0,
        max_attempts=3,
        claimed_by=None,
        claim_token=None,
        lease_expires_at=None,
        last_error=None,
        created_at=25,
        updated_at=25,
    )
    assert len(message.outbox_id) == 32
    int(message.outbox_id, 16)
    assert box.get(message.outbox_id) == message
    assert box.list() == [message]


def test_outbox_ids_are_unique(box):
    ids = {box.enqueue(draft(i), now=1).outbox_id for i in range(50)}
    assert len(ids) == 50


class Invoice(msgspec.Struct):
    number: int
    lines: tuple[str, ...]


def test_payload_comes_back_as_decoded_builtins(box):
    payload = {"invoice": Invoice(7, ("a", "b")), "raw": b"\x00\xff", "n": None, "f": 1.5}
    message = box.enqueue(draft(payload), now=1)
    expected = {
        "invoice": {"number": 7, "lines": ["a", "b"]},
        "raw": b"\x00\xff",
        "n": None,
        "f": 1.5,
    }
    assert message.payload == expected
    assert box.list()[0].payload == expected
    # Each read decodes afresh: changing a returned payload changes nothing stored.
    message.payload["n"] = "changed"
    assert box.get(message.outbox_id).payload == expected


def test_payload_spoiled_after_drafting_stores_nothing(box):
    payload: dict[str, Any] = {"ok": 1}
    d = draft(payload)
    payload["bad"] = object()
    assert field_of(box.enqueue, d, now=1) == "payload"
    assert box.list() == []


@pytest.mark.parametrize("status", ["pending", "claimed", "delivered", "dead_letter"])
def test_dedupe_key_returns_the_stored_message_in_any_status(box, status):
    first = box.enqueue(draft("first", dedupe_key="order-7:receipt", max_attempts=1), now=1)
    if status != "pending":
        claimed = claim_one(box, now=2)
        if status == "delivered":
            assert box.ack(claimed.outbox_id, claimed.claim_token, now=3)
        if status == "dead_letter":
            assert box.nack(claimed.outbox_id, claimed.claim_token, "boom", 9, now=3) == (
                "dead_lettered"
            )
    stored = box.get(first.outbox_id)
    assert stored.status == status
    again = box.enqueue(
        draft("second", lane="other", dedupe_key="order-7:receipt", max_attempts=9), now=50
    )
    assert again == stored
    assert box.list() == [stored]


def test_distinct_dedupe_keys_and_none_do_not_collide(box):
    box.enqueue(draft(1, dedupe_key="a"), now=1)
    box.enqueue(draft(2, dedupe_key="b"), now=1)
    box.enqueue(draft(3), now=1)
    box.enqueue(draft(4), now=1)
    assert [m.payload for m in box.list()] == [1, 2, 3, 4]


def test_enqueue_many_in_order_with_dedupe_inside_the_batch(box):
    box.enqueue(draft("old", dedupe_key="k0"), now=1)
    out = box.enqueue_many(
        [draft(1, dedupe_key="k1"), draft(2, dedupe_key="k0"), draft(3), draft(4, dedupe_key="k1")],
        now=5,
    )
    assert [m.payload for m in out] == [1, "old", 3, 1]
    assert out[0] == out[3]
    assert [m.payload for m in box.list()] == ["old", 1, 3]
    assert box.enqueue_many([], now=5) == []


def test_enqueue_many_is_all_or_nothing(box):
    spoiled: dict[str, Any] = {}
    drafts = [draft(1), draft(spoiled), draft(3)]
    spoiled["x"] = object()
    assert field_of(box.enqueue_many, drafts, now=1) == "payload"
    assert field_of(box.enqueue_many, [draft(1), "not a draft"], now=1) == "drafts[1]"
    assert field_of(box.enqueue_many, "abc", now=1) == "drafts"
    assert field_of(box.enqueue_many, [draft(1)], now=-5) == "now"
    assert box.list() == []


def test_enqueue_bad_arguments(box):
    assert field_of(box.enqueue, {"lane": "x"}, now=1) == "draft"
    assert field_of(box.enqueue, draft(), now=-1) == "now"
    assert field_of(box.enqueue, draft(), now=True) == "now"
    if isinstance(box, PostgresOutbox):  # None is the database's clock there
        assert box.enqueue(draft(), now=None).created_at > 0
        box = MemoryOutbox()
    assert field_of(box.enqueue, draft(), now=None) == "now"
    assert box.list() == []


# -- claim -----------------------------------------------------------------------------


def test_claim_sets_the_claim_fields(box):
    a = box.enqueue(draft(1), now=10)
    b = box.enqueue(draft(2), now=10)
    claimed = box.claim("email", "smtp", 10, 500, "worker-7", now=100)
    assert [m.outbox_id for m in claimed] == [a.outbox_id, b.outbox_id]
    for m in claimed:
        assert (m.status, m.claimed_by, m.lease_expires_at, m.attempt_count, m.updated_at) == (
            "claimed",
            "worker-7",
            600,
            1,
            100,
        )
        assert m.created_at == 10
        assert len(m.claim_token) == 32
        assert box.get(m.outbox_id) == m
    assert claimed[0].claim_token != claimed[1].claim_token


def test_claim_order_is_created_at_then_enqueue_order(box):
    for n, created in [(1, 30), (2, 10), (3, 20), (4, 10), (5, 0), (6, 20)]:
        box.enqueue(draft(n), now=created)
    assert [m.payload for m in box.claim("email", "smtp", 4, LEASE, "w", now=40)] == [5, 2, 4, 3]
    assert [m.payload for m in box.claim("email", "smtp", 4, LEASE, "w", now=40)] == [6, 1]
    assert box.claim("email", "smtp", 4, LEASE, "w", now=40) == []


def test_claim_respects_available_at(box):
    box.enqueue(draft("later", available_at=100), now=0)
    box.enqueue(draft("now"), now=5)
    assert [m.payload for m in box.claim("email", "smtp", 10, LEASE, "w", now=99)] == ["now"]
    assert box.claim("email", "smtp", 10, LEASE, "w", now=99) == []
    assert [m.payload for m in box.claim("email", "smtp", 10, LEASE, "w", now=100)] == ["later"]


def test_claim_only_takes_its_lane_and_target(box):
    box.enqueue(draft("a", lane="email", target="smtp"), now=1)
    box.enqueue(draft("b", lane="email", target="ses"), now=1)
    box.enqueue(draft("c", lane="sms", target="smtp"), now=1)
    assert [m.payload for m in box.claim("email", "ses", 10, LEASE, "w", now=2)] == ["b"]
    assert [m.payload for m in box.claim("sms", "smtp", 10, LEASE, "w", now=2)] == ["c"]
    assert [m.payload for m in box.claim("email", "smtp", 10, LEASE, "w", now=2)] == ["a"]
    assert box.claim("nowhere", "smtp", 10, LEASE, "w", now=2) == []


def test_claim_limit(box):
    for n in range(5):
        box.enqueue(draft(n), now=n)
    assert box.claim("email", "smtp", 0, LEASE, "w", now=9) == []
    assert [m.payload for m in box.claim("email", "smtp", 2, LEASE, "w", now=9)] == [0, 1]
    assert [m.payload for m in box.claim("email", "smtp", 1, LEASE, "w", now=9)] == [2]
    assert [m.payload for m in box.claim("email", "smtp", 100, LEASE, "w", now=9)] == [3, 4]


def test_a_held_lease_is_not_claimed_again(box):
    box.enqueue(draft(), now=0)
    first = claim_one(box, now=1_000, lease_ms=500)
    assert box.claim("email", "smtp", 10, LEASE, "w2", now=1_499) == []
    assert box.get(first.outbox_id) == first


def test_an_expired_lease_is_claimed_again(box):
    box.enqueue(draft(), now=0)
    first = claim_one(box, now=1_000, lease_ms=500, consumer_id="w1")
    second = claim_one(box, now=1_500, lease_ms=700, consumer_id="w2")  # lease_expires_at <= now
    assert second.outbox_id == first.outbox_id
    assert (second.claimed_by, second.attempt_count, second.lease_expires_at) == ("w2", 2, 2_200)
    assert second.claim_token != first.claim_token
    # The first worker's token lost the claim.
    assert box.ack(first.outbox_id, first.claim_token, now=1_600) is False
    assert box.nack(first.outbox_id, first.claim_token, "late", 0, now=1_600) == "lost_claim"
    assert box.get(first.outbox_id) == second
    assert box.ack(second.outbox_id, second.claim_token, now=1_600) is True


def test_expired_and_pending_messages_are_claimed_oldest_first(box):
    old = box.enqueue(draft("old"), now=0)
    claim_one(box, now=1, lease_ms=10)
    box.enqueue(draft("new"), now=5)
    box.enqueue(draft("future", available_at=1_000), now=2)
    claimed = box.claim("email", "smtp", 10, LEASE, "w2", now=11)
    assert [(m.payload, m.attempt_count) for m in claimed] == [("old", 2), ("new", 1)]
    assert claimed[0].outbox_id == old.outbox_id


def test_claim_dead_letters_an_exhausted_expired_lease(box):
    message = box.enqueue(draft(max_attempts=2), now=0)
    claim_one(box, now=10, lease_ms=10)
    assert claim_one(box, now=20, lease_ms=10).attempt_count == 2
    assert box.claim("email", "smtp", 10, LEASE, "w", now=29) == []
    assert box.get(message.outbox_id).status == "claimed"
    assert box.claim("email", "smtp", 10, LEASE, "w", now=30) == []
    dead = box.get(message.outbox_id)
    assert (dead.status, dead.last_error, dead.attempt_count, dead.updated_at) == (
        "dead_letter",
        "lease expired",
        2,
        30,
    )
    assert (dead.claimed_by, dead.claim_token, dead.lease_expires_at) == (None, None, None)
    assert box.claim("email", "smtp", 10, LEASE, "w", now=10**9) == []
    assert box.list(status="dead_letter") == [dead]


@pytest.mark.parametrize("limit", [0, 1])
def test_the_claim_that_finds_exhausted_leases_dead_letters_them_whatever_its_limit(box, limit):
    exhausted = [box.enqueue(draft(f"x{n}", max_attempts=1), now=n) for n in range(3)]
    assert len(box.claim("email", "smtp", 3, 10, "w1", now=5)) == 3
    box.enqueue(draft("fresh"), now=6)
    box.enqueue(draft("elsewhere", lane="sms", max_attempts=1), now=0)
    claim_one(box, now=5, lane="sms", lease_ms=10)
    claimed = box.claim("email", "smtp", limit, LEASE, "w2", now=15)
    assert [m.payload for m in claimed] == ["fresh"][:limit]
    assert [box.get(m.outbox_id).status for m in exhausted] == ["dead_letter"] * 3
    # Another lane's exhausted lease waits for a claim of that lane.
    assert [m.status for m in box.list(status="claimed") if m.lane == "sms"] == ["claimed"]
    assert box.claim("sms", "smtp", 1, LEASE, "w2", now=15) == []
    assert [m.payload for m in box.list(status="dead_letter")] == ["x0", "elsewhere", "x1", "x2"]


def test_delivered_and_dead_messages_are_never_claimed(box):
    a = box.enqueue(draft("a", max_attempts=1), now=0)
    b = box.enqueue(draft("b", max_attempts=1), now=0)
    ca, cb = box.claim("email", "smtp", 2, 10, "w", now=1)
    assert box.ack(ca.outbox_id, ca.claim_token, now=2)
    assert box.nack(cb.outbox_id, cb.claim_token, "bad", 0, now=2) == "dead_lettered"
    assert box.claim("email", "smtp", 10, 10, "w", now=10**12) == []
    assert [box.get(m.outbox_id).status for m in (a, b)] == ["delivered", "dead_letter"]


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("", "smtp", 1, 10, "w", 0), "lane"),
        ((" ", "smtp", 1, 10, "w", 0), "lane"),
        ((None, "smtp", 1, 10, "w", 0), "lane"),
        (("email", "\n", 1, 10, "w", 0), "target"),
        (("email", "smtp", -1, 10, "w", 0), "limit"),
        (("email", "smtp", True, 10, "w", 0), "limit"),
        (("email", "smtp", 1.0, 10, "w", 0), "limit"),
        (("email", "smtp", 1, 0, "w", 0), "lease_ms"),
        (("email", "smtp", 1, -10, "w", 0), "lease_ms"),
        (("email", "smtp", 1, "10", "w", 0), "lease_ms"),
        (("email", "smtp", 1, 10, "", 0), "consumer_id"),
        (("email", "smtp", 1, 10, 7, 0), "consumer_id"),
        (("email", "smtp", 1, 10, "w", -1), "now"),
        (("email", "smtp", 1, 10, "w", 1.5), "now"),
        (("email", "smtp", 1, 10, "w", 2**63), "now"),
        (("email", "smtp", 1, 2**62, "w", 2**62), "lease_ms"),
    ],
)
def test_claim_bad_arguments_change_nothing(box, args, field):
    message = box.enqueue(draft(), now=0)
    assert field_of(box.claim, *args) == field
    assert box.get(message.outbox_id) == message


# -- ack and nack ------------------------------------------------------------------------


def test_ack_delivers(box):
    box.enqueue(draft(), now=0)
    claimed = claim_one(box, now=10, consumer_id="w9")
    assert box.ack(claimed.outbox_id, claimed.claim_token, now=20) is True
    delivered = box.get(claimed.outbox_id)
    assert delivered == msgspec.structs.replace(
        claimed, status="delivered", claim_token=None, lease_expires_at=None, updated_at=20
    )
    assert delivered.claimed_by == "w9"
    assert box.ack(claimed.outbox_id, claimed.claim_token, now=30) is False  # already delivered
    assert box.get(claimed.outbox_id) == delivered


def test_ack_after_the_lease_ran_out_still_holds_if_nobody_reclaimed(box):
    box.enqueue(draft(), now=0)
    claimed = claim_one(box, now=10, lease_ms=5)
    assert box.ack(claimed.outbox_id, claimed.claim_token, now=1_000) is True
    assert box.get(claimed.outbox_id).status == "delivered"


def test_ack_refusals_change_nothing(box):
    pending = box.enqueue(draft("p"), now=0)
    box.enqueue(draft("c"), now=1)
    claimed = box.claim("email", "smtp", 1, LEASE, "w", now=5)  # takes "p"
    (held,) = claimed
    before = box.list()
    assert box.ack(held.outbox_id, "0" * 32, now=6) is False
    assert box.ack(held.outbox_id, "", now=6) is False
    assert box.ack(held.outbox_id, None, now=6) is False
    assert box.nack(held.outbox_id, None, "e", 0, now=6) == "lost_claim"
    assert box.ack("no-such-id", held.claim_token, now=6) is False
    other = box.list(status="pending")[0]
    assert box.ack(other.outbox_id, held.claim_token, now=6) is False
    assert box.list() == before
    assert pending.outbox_id == held.outbox_id


def test_ack_many_acks_each_claim_in_order(box):
    box.enqueue_many([draft(n) for n in range(4)], now=0)
    held = box.claim("email", "smtp", 3, LEASE, "w", now=5)  # payloads 0, 1, 2
    pending = box.list(status="pending")[0]  # payload 3, never claimed
    claims = [(m.outbox_id, m.claim_token) for m in held]
    results = box.ack_many(
        [
            claims[1],
            (held[0].outbox_id, "0" * 32),  # a token that never held it
            claims[0],
            claims[1],  # twice: the second finds it delivered
            (pending.outbox_id, held[2].claim_token),  # another message's token
            ("no-such-id", held[2].claim_token),
            (held[2].outbox_id, None),
        ],
        now=9,
    )
    assert results == [True, False, True, False, False, False, False]
    assert [(m.payload, m.status) for m in box.list()] == [
        (0, "delivered"),
        (1, "delivered"),
        (2, "claimed"),
        (3, "pending"),
    ]
    delivered = box.get(held[0].outbox_id)
    assert delivered == msgspec.structs.replace(
        held[0], status="delivered", claim_token=None, lease_expires_at=None, updated_at=9
    )
    assert box.ack_many([], now=10) == []
    assert box.ack_many([claims[2]], now=10) == [True]


def test_ack_many_of_a_whole_batch_and_of_a_batch_with_repeats(box):
    box.enqueue_many([draft(n) for n in range(6)], now=0)
    first = box.claim("email", "smtp", 3, LEASE, "w", now=1)
    second = box.claim("email", "smtp", 3, LEASE, "w", now=1)
    assert len({m.claim_token for m in first + second}) == 6
    assert box.ack_many([(m.outbox_id, m.claim_token) for m in first], now=2) == [True] * 3
    a, b, c = ((m.outbox_id, m.claim_token) for m in second)
    # every distinct claim is delivered, and the repeats find theirs delivered
    assert box.ack_many([a, b, a, c, b], now=3) == [True, True, False, True, False]
    assert [m.status for m in box.list()] == ["delivered"] * 6


def test_ack_many_after_a_lease_was_taken_over(box):
    box.enqueue(draft(), now=0)
    first = claim_one(box, now=0, lease_ms=5, consumer_id="w1")
    second = claim_one(box, now=10, consumer_id="w2")  # w1's lease ran out
    assert box.ack_many([(first.outbox_id, first.claim_token)], now=11) == [False]
    assert box.get(first.outbox_id).claimed_by == "w2"
    assert box.ack_many([(second.outbox_id, second.claim_token)], now=12) == [True]


class _Text(str):
    """A str subclass, checked like a str."""


@pytest.mark.parametrize(
    ("claims", "field"),
    [
        (None, "claims"),
        ("ab", "claims"),
        (b"ab", "claims"),
        (5, "claims"),
        ([("id",)], "claims"),
        ([("id", "t", "x")], "claims"),
        (["id"], "claims"),
        ([(5, "t")], "outbox_id"),
        ([("id", 5)], "claim_token"),
        ([("id", "\ud800")], "claim_token"),
        ([("\udfff", "t")], "outbox_id"),
        ([(_Text("id"), "\ud800")], "claim_token"),
    ],
)
def test_ack_many_checks_every_claim_before_acking(box, claims, field):
    box.enqueue(draft(), now=0)
    held = claim_one(box, now=1)
    good = (held.outbox_id, held.claim_token)
    batch = [good, *claims] if isinstance(claims, list) else claims
    assert field_of(box.ack_many, batch, now=2) == field
    assert box.get(held.outbox_id).status == "claimed"
    assert field_of(box.ack_many, [good], now=-1) == "now"
    assert box.get(held.outbox_id).status == "claimed"


def test_nack_requeues(box):
    box.enqueue(draft(max_attempts=3), now=0)
    claimed = claim_one(box, now=10, consumer_id="w1")
    assert box.nack(claimed.outbox_id, claimed.claim_token, "smtp 451", 500, now=20) == "requeued"
    requeued = box.get(claimed.outbox_id)
    assert requeued == msgspec.structs.replace(
        claimed,
        status="pending",
        available_at=500,
        last_error="smtp 451",
        claimed_by=None,
        claim_token=None,
        lease_expires_at=None,
        updated_at=20,
    )
    assert requeued.attempt_count == 1
    assert box.claim("email", "smtp", 10, LEASE, "w2", now=499) == []
    again = claim_one(box, now=500, consumer_id="w2")
    assert (again.attempt_count, again.last_error, again.claimed_by) == (2, "smtp 451", "w2")
    assert box.nack(again.outbox_id, again.claim_token, "", 0, now=501) == "requeued"
    assert box.get(again.outbox_id).last_error == ""


def test_nack_dead_letters_when_attempts_are_used_up(box):
    box.enqueue(draft(max_attempts=2), now=0)
    first = claim_one(box, now=1)
    assert box.nack(first.outbox_id, first.claim_token, "e1", 0, now=2) == "requeued"
    second = claim_one(box, now=3)
    assert second.attempt_count == 2
    assert box.nack(second.outbox_id, second.claim_token, "e2", 100, now=4) == "dead_lettered"
    dead = box.get(second.outbox_id)
    assert (dead.status, dead.last_error, dead.attempt_count, dead.available_at) == (
        "dead_letter",
        "e2",
        2,
        0,
    )
    assert (dead.claimed_by, dead.claim_token, dead.lease_expires_at, dead.updated_at) == (
        None,
        None,
        None,
        4,
    )
    assert box.claim("email", "smtp", 1, LEASE, "w", now=10**6) == []
    assert box.nack(second.outbox_id, second.claim_token, "e3", 0, now=5) == "lost_claim"


def test_nack_lost_claims_change_nothing(box):
    box.enqueue(draft(), now=0)
    first = claim_one(box, now=1, lease_ms=10)
    second = claim_one(box, now=11)
    before = box.list()
    assert box.nack(first.outbox_id, first.claim_token, "stale", 0, now=12) == "lost_claim"
    assert box.nack("missing", second.claim_token, "x", 0, now=12) == "lost_claim"
    assert box.nack(second.outbox_id, "nope", "x", 0, now=12) == "lost_claim"
    assert box.list() == before
    assert box.ack(second.outbox_id, second.claim_token, now=13)
    assert box.nack(second.outbox_id, second.claim_token, "after ack", 0, now=14) == "lost_claim"
    assert box.get(second.outbox_id).status == "delivered"


@pytest.mark.parametrize(
    ("method", "args", "field"),
    [
        ("ack", (None, "t", 0), "outbox_id"),
        ("ack", ("id", b"t", 0), "claim_token"),
        ("ack", ("id", "t", -3), "now"),
        ("nack", (1, "t", "e", 0, 0), "outbox_id"),
        ("nack", ("id", 5, "e", 0, 0), "claim_token"),
        ("nack", ("id", "t", None, 0, 0), "error"),
        ("nack", ("id", "t", "\ud800", 0, 0), "error"),
        ("nack", ("id", "t", "e", -1, 0), "retry_at"),
        ("nack", ("id", "t", "e", False, 0), "retry_at"),
        ("nack", ("id", "t", "e", 0, "now"), "now"),
        ("list", ("sent",), "status"),
        ("list", ("PENDING",), "status"),
        ("list", (1,), "status"),
        ("list", (None, -1), "limit"),
        ("list", (None, None), "limit"),
        ("get", (5,), "outbox_id"),
    ],
)
def test_bad_arguments(box, method, args, field):
    assert field_of(getattr(box, method), *args) == field


# -- list ------------------------------------------------------------------------------


def test_list_oldest_first_with_status_and_limit(box):
    for n, created in enumerate([5, 1, 3, 1]):
        box.enqueue(draft(n, max_attempts=1), now=created)
    a, _ = box.claim("email", "smtp", 2, LEASE, "w", now=10)  # payloads 1, 3
    assert box.ack(a.outbox_id, a.claim_token, now=11)
    assert [m.payload for m in box.list()] == [1, 3, 2, 0]
    assert [m.payload for m in box.list(limit=2)] == [1, 3]
    assert box.list(limit=0) == []
    assert [m.payload for m in box.list("pending")] == [2, 0]
    assert [m.payload for m in box.list(status="claimed")] == [3]
    assert [m.payload for m in box.list(status="delivered")] == [1]
    assert box.list(status="dead_letter") == []
    assert [m.payload for m in box.list(lane_prefix="em")] == [1, 3, 2, 0]
    assert box.list(lane_prefix="sms") == []


def test_list_default_limit_is_100(box):
    box.enqueue_many([draft(n) for n in range(105)], now=1)
    assert [m.payload for m in box.list()] == list(range(100))


def test_a_message_that_survives_reopening(tmp_path):
    path = tmp_path / "outbox.db"
    with SqliteOutbox(path) as box:
        box.enqueue(draft("a", dedupe_key="k"), now=1)
        claimed = claim_one(box, now=2)
        before = box.list()
    with SqliteOutbox(path) as box:
        assert box.list() == before
        assert box.enqueue(draft("b", dedupe_key="k"), now=3).payload == "a"
        assert box.ack(claimed.outbox_id, claimed.claim_token, now=4)


def test_database_failures_are_store_unavailable(tmp_path):
    with pytest.raises(StoreUnavailable):
        SqliteOutbox(tmp_path / "missing-dir" / "outbox.db")
    box = SqliteOutbox(tmp_path / "outbox.db")
    box.close()
    with pytest.raises(StoreUnavailable):
        box.enqueue(draft(), now=1)


def test_stores_satisfy_the_protocol(box):
    for store in (box, ScopedOutbox(box, "s")):
        assert isinstance(store, OutboxStore)


# -- scopes ----------------------------------------------------------------------------


@pytest.mark.parametrize("scope_id", ["", "  ", "a:b", ":", None, 7, "x\ud800"])
def test_bad_scope_ids(scope_id):
    assert field_of(ScopedOutbox, MemoryOutbox(), scope_id) == "scope_id"


def test_scopes_prefix_on_the_way_in_and_strip_on_the_way_out(box):
    a = ScopedOutbox(box, "tenant-a")
    b = ScopedOutbox(box, "tenant-b")
    ma = a.enqueue(draft("A", dedupe_key="welcome"), now=1)
    mb = b.enqueue(draft("B", dedupe_key="welcome"), now=2)
    assert ma.outbox_id != mb.outbox_id
    assert (ma.lane, ma.dedupe_key) == (mb.lane, mb.dedupe_key) == ("email", "welcome")
    assert [(m.lane, m.dedupe_key) for m in box.list()] == [
        ("tenant-a:email", "tenant-a:welcome"),
        ("tenant-b:email", "tenant-b:welcome"),
    ]
    # Dedupe is per scope, and a replay comes back stripped.
    assert a.enqueue(draft("again", dedupe_key="welcome"), now=3) == ma
    assert a.list() == [ma]
    assert b.list() == [mb]
    assert a.get(ma.outbox_id) == ma
    assert a.get(mb.outbox_id) is None
    assert a.get("unknown") is None


def test_a_scope_never_claims_acks_or_nacks_another_scopes_messages(box):
    a = ScopedOutbox(box, "a")
    b = ScopedOutbox(box, "b")
    a.enqueue(draft("A1"), now=1)
    a.enqueue(draft("A2"), now=1)
    assert b.claim("email", "smtp", 10, LEASE, "wb", now=5) == []
    held = a.claim("email", "smtp", 10, LEASE, "wa", now=5)
    assert [(m.payload, m.lane) for m in held] == [("A1", "email"), ("A2", "email")]
    before = box.list()
    # Even with the right token, scope b cannot touch scope a's messages.
    assert b.ack(held[0].outbox_id, held[0].claim_token, now=6) is False
    assert b.nack(held[1].outbox_id, held[1].claim_token, "x", 0, now=6) == "lost_claim"
    assert box.list() == before
    assert a.ack(held[0].outbox_id, held[0].claim_token, now=7) is True
    assert a.nack(held[1].outbox_id, held[1].claim_token, "x", 0, now=7) == "requeued"
    assert [(m.payload, m.status) for m in a.list()] == [("A1", "delivered"), ("A2", "pending")]
    assert b.list() == []


def test_a_scope_acks_many_of_its_own_messages_only(box):
    a = ScopedOutbox(box, "a")
    b = ScopedOutbox(box, "b")
    a.enqueue(draft("A"), now=1)
    b.enqueue(draft("B"), now=1)
    (mine,) = a.claim("email", "smtp", 10, LEASE, "wa", now=5)
    (theirs,) = b.claim("email", "smtp", 10, LEASE, "wb", now=5)
    claims = [(theirs.outbox_id, theirs.claim_token), (mine.outbox_id, mine.claim_token)]
    assert a.ack_many(claims, now=6) == [False, True]
    assert b.get(theirs.outbox_id).status == "claimed"
    assert a.get(mine.outbox_id).status == "delivered"
    assert b.ack_many(claims, now=7) == [True, False]
    assert a.ack_many([(mine.outbox_id, mine.claim_token)], now=8, lane_prefix="sms") == [False]


def test_scope_lists_filter_before_the_limit(box):
    a = ScopedOutbox(box, "a")
    ab = ScopedOutbox(box, "ab")  # "a:" is not a prefix of "ab:"
    a.enqueue_many([draft(n) for n in range(5)], now=1)
    ab.enqueue(draft("mine", lane="sms"), now=2)
    box.enqueue(draft("unscoped"), now=0)
    assert [m.payload for m in ab.list(limit=1)] == ["mine"]
    assert [m.payload for m in a.list(limit=2)] == [0, 1]
    assert [m.payload for m in a.list(status="pending", limit=10)] == [0, 1, 2, 3, 4]
    assert [m.payload for m in ab.list(lane_prefix="sm")] == ["mine"]
    assert ab.list(lane_prefix="email") == []
    assert field_of(a.list, "nope") == "status"


def test_a_scope_whose_id_starts_another_does_not_alias_it(box):
    a = ScopedOutbox(box, "a")
    ab = ScopedOutbox(box, "ab")
    theirs = ab.enqueue(draft("theirs", dedupe_key="k"), now=0)
    assert a.get(theirs.outbox_id) is None
    assert a.list() == []
    assert a.enqueue(draft("mine", dedupe_key="k"), now=1).payload == "mine"
    (held,) = ab.claim("email", "smtp", 5, LEASE, "w", now=2)
    assert [m.payload for m in a.claim("email", "smtp", 5, LEASE, "w", now=2)] == ["mine"]
    assert a.ack(held.outbox_id, held.claim_token, now=3) is False
    assert a.nack(held.outbox_id, held.claim_token, "x", 0, now=3) == "lost_claim"
    assert ab.get(held.outbox_id) == held
    assert ab.ack(held.outbox_id, held.claim_token, now=3) is True


def test_scope_dead_letters_and_leases_like_its_inner_store(box):
    scoped = ScopedOutbox(box, "run-1")
    message = scoped.enqueue(draft(max_attempts=1, dedupe_key="d"), now=0)
    (claimed,) = scoped.claim("email", "smtp", 1, 10, "w1", now=1)
    assert claimed.attempt_count == 1
    assert scoped.claim("email", "smtp", 1, 10, "w2", now=11) == []
    dead = scoped.get(message.outbox_id)
    assert (dead.status, dead.last_error, dead.lane, dead.dedupe_key) == (
        "dead_letter",
        "lease expired",
        "email",
        "d",
    )


def test_scope_bad_arguments(box):
    scoped = ScopedOutbox(box, "s")
    assert field_of(scoped.claim, " ", "smtp", 1, 10, "w", 0) == "lane"
    assert field_of(scoped.claim, "email", "", 1, 10, "w", 0) == "target"
    assert field_of(scoped.enqueue, "draft", 0) == "draft"
    assert field_of(scoped.enqueue_many, [draft(), 3], 0) == "drafts[1]"
    assert field_of(scoped.ack, None, "t", 0) == "outbox_id"
    assert field_of(scoped.ack, "id", "t", -1) == "now"
    assert field_of(scoped.nack, "id", "t", "e", -1, 0) == "retry_at"
    assert field_of(scoped.list, None, 10, lane_prefix=3) == "lane_prefix"
    assert box.list() == []


def test_scopes_nest(box):
    inner = ScopedOutbox(box, "org")
    outer = ScopedOutbox(inner, "team")
    message = outer.enqueue(draft(dedupe_key="k"), now=0)
    assert (message.lane, message.dedupe_key) == ("email", "k")
    assert [(m.lane, m.dedupe_key) for m in box.list()] == [("org:team:email", "org:team:k")]
    (claimed,) = outer.claim("email", "smtp", 1, 10, "w", now=0)
    assert ScopedOutbox(box, "team").ack(claimed.outbox_id, claimed.claim_token, now=1) is False
    assert outer.ack(claimed.outbox_id, claimed.claim_token, now=1) is True


# -- both stores agree ------------------------------------------------------------------

ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("enqueue"),
            st.sampled_from(["a", "b"]),
            st.integers(0, 9),
            st.sampled_from([None, "k1", "k2", "k3"]),
            st.integers(0, 40),
            st.integers(1, 3),
        ),
        st.tuples(
            st.just("claim"),
            st.sampled_from(["a", "b"]),
            st.integers(0, 3),
            st.integers(1, 30),
            st.sampled_from(["w1", "w2"]),
        ),
        st.tuples(st.just("ack"), st.integers(0, 20), st.sampled_from(["last", "first", "bogus"])),
        st.tuples(
            st.just("ack_many"),
            st.lists(
                st.tuples(st.integers(0, 20), st.sampled_from(["last", "first", "bogus"])),
                max_size=4,
            ),
        ),
        st.tuples(
            st.just("nack"),
            st.integers(0, 20),
            st.sampled_from(["last", "first", "bogus"]),
            st.integers(0, 60),
        ),
        st.tuples(st.just("list"), st.sampled_from([None, *outbox.STATUSES]), st.integers(0, 5)),
        st.tuples(st.just("tick"), st.integers(0, 25)),
    ),
    max_size=40,
)


def run_script(store: OutboxStore, script: list[tuple[Any, ...]]) -> list[Any]:
    """Apply ``script`` and return every result with ids and tokens renamed by first use."""
    now = 0
    ids: list[str] = []  # known outbox ids, in order of first appearance
    tokens: dict[str, list[str]] = {}
    names: dict[str, str] = {}

    def rename(message: OutboxMessage) -> tuple[Any, ...]:
        if message.outbox_id not in ids:
            ids.append(message.outbox_id)
        if message.claim_token is not None:
            tokens.setdefault(message.outbox_id, []).append(message.claim_token)
        for value in (message.outbox_id, message.claim_token):
            if value is not None and value not in names:
                names[value] = f"#{len(names)}"
        values = msgspec.structs.astuple(message)
        return tuple(names.get(v, v) if isinstance(v, str) else v for v in values)

    def token(index: int, which: str) -> tuple[str, str]:
        outbox_id = ids[index % len(ids)]
        held = tokens.get(outbox_id, [])
        if which == "bogus" or not held:
            return outbox_id, "f" * 32
        return outbox_id, held[-1] if which == "last" else held[0]

    results: list[Any] = []
    for op in script:
        kind = op[0]
        if kind == "tick":
            now += op[1]
        elif kind == "enqueue":
            _, lane, payload, dedupe_key, delay, attempts = op
            d = OutboxDraft(lane, "t", payload, dedupe_key, now + delay, attempts)
            results.append(rename(store.enqueue(d, now)))
        elif kind == "claim":
            _, lane, limit, lease, consumer = op
            results.append([rename(m) for m in store.claim(lane, "t", limit, lease, consumer, now)])
        elif kind == "ack_many" and ids:
            results.append(store.ack_many([token(i, which) for i, which in op[1]], now))
        elif kind in ("ack", "nack") and ids:
            outbox_id, claim_token = token(op[1], op[2])
            if kind == "ack":
                results.append(store.ack(outbox_id, claim_token, now))
            else:
                results.append(store.nack(outbox_id, claim_token, "err", now + op[3], now))
        elif kind == "list":
            results.append([rename(m) for m in store.list(op[1], op[2])])
    results.append([rename(m) for m in store.list(limit=1000)])
    return results


@settings(max_examples=max(60, settings.default.max_examples // 3))
@given(script=ops)
def test_memory_and_sqlite_outboxes_agree(script):
    with tempfile.TemporaryDirectory() as directory, SqliteOutbox(Path(directory) / "o.db") as db:
        assert run_script(MemoryOutbox(), script) == run_script(db, script)


@settings(max_examples=max(40, settings.default.max_examples // 5))
@given(script=ops)
def test_memory_and_postgres_outboxes_agree(script, pg_dsn, pg_schemas):
    with PostgresOutbox(pg_dsn, schema=pg_schemas()) as db:
        assert run_script(MemoryOutbox(), script) == run_script(db, script)


# -- threads ------------------------------------------------------------------------------


def test_threads_claim_each_message_once(box):
    threads, messages = 4, 200
    box.enqueue_many([draft(n) for n in range(messages)], now=0)
    barrier = threading.Barrier(threads)
    taken: list[list[int]] = [[] for _ in range(threads)]
    failures: list[BaseException] = []

    def work(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            while claimed := box.claim("email", "smtp", 3, LEASE, f"t{i}", now=1):
                for m in claimed:
                    assert box.ack(m.outbox_id, m.claim_token, now=2)
                    taken[i].append(m.payload)
        except BaseException as exc:
            failures.append(exc)

    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=60)
    assert failures == []
    assert sorted(n for t in taken for n in t) == list(range(messages))
    assert len(box.list(status="delivered", limit=messages + 1)) == messages


# -- processes ----------------------------------------------------------------------------

SPAWN = multiprocessing.get_context("spawn")
DELIVERIES = "CREATE TABLE IF NOT EXISTS deliveries (outbox_id TEXT, worker TEXT, n INTEGER)"
PROCESS_TIMEOUT = 60


def deliver(deliveries: Database, message: OutboxMessage, worker: str) -> None:
    """The side effect a worker performs: one row in a separate database."""
    with deliveries.write() as connection:
        connection.execute(
            "INSERT INTO deliveries VALUES (?, ?, ?)",
            (message.outbox_id, worker, message.payload["n"]),
        )


def delivery_counts(path: Path) -> Counter[str]:
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT outbox_id FROM deliveries").fetchall()
    return Counter(outbox_id for (outbox_id,) in rows)


def worker_loop(
    path: str,
    deliveries_path: str,
    worker: str,
    lane: str,
    now: int,
    barrier: Any,
    results: Any,
) -> None:
    """Claim, deliver and ack until the lane is empty; report (worker, acked, refused)."""
    box = SqliteOutbox(path)
    deliveries = Database(deliveries_path, [DELIVERIES])
    if barrier is not None:
        barrier.wait(timeout=PROCESS_TIMEOUT)
    acked: list[str] = []
    refused: list[str] = []
    while claimed := box.claim(lane, "sink", 5, 10 * 60_000, worker, now):
        for message in claimed:
            deliver(deliveries, message, worker)
            (acked if box.ack(message.outbox_id, message.claim_token, now) else refused).append(
                message.outbox_id
            )
    results.put((worker, acked, refused))


def run_workers(path: Path, deliveries_path: Path, lane: str, now: int, count: int) -> list[Any]:
    barrier = SPAWN.Barrier(count)
    results = SPAWN.Queue()
    procs = [
        SPAWN.Process(
            target=worker_loop,
            args=(str(path), str(deliveries_path), f"p{i}", lane, now, barrier, results),
        )
        for i in range(count)
    ]
    for proc in procs:
        proc.start()
    reports = [results.get(timeout=PROCESS_TIMEOUT) for _ in procs]
    for proc in procs:
        proc.join(timeout=PROCESS_TIMEOUT)
        assert proc.exitcode == 0
    return reports


def test_four_processes_deliver_every_message_exactly_once(tmp_path):
    messages = 300
    path, deliveries_path = tmp_path / "outbox.db", tmp_path / "deliveries.db"
    with SqliteOutbox(path) as box:
        enqueued = box.enqueue_many(
            [OutboxDraft("jobs", "sink", {"n": n}) for n in range(messages)], now=0
        )
    reports = run_workers(path, deliveries_path, "jobs", now=1, count=4)
    assert sorted(worker for worker, _, _ in reports) == ["p0", "p1", "p2", "p3"]
    assert [refused for _, _, refused in reports] == [[], [], [], []]
    acked = [outbox_id for _, ids, _ in reports for outbox_id in ids]
    assert sorted(acked) == sorted(m.outbox_id for m in enqueued)
    assert delivery_counts(deliveries_path) == Counter({m.outbox_id: 1 for m in enqueued})
    with sqlite3.connect(deliveries_path) as connection:
        delivered_n = dict(connection.execute("SELECT outbox_id, n FROM deliveries").fetchall())
    assert delivered_n == {m.outbox_id: m.payload["n"] for m in enqueued}
    with SqliteOutbox(path) as box:
        final = box.list(limit=messages + 1)
    assert [m.status for m in final] == ["delivered"] * messages
    assert {m.attempt_count for m in final} == {1}


def claim_then_hang(path: str, now: int, lease_ms: int, pipe: Connection) -> None:
    """Claim one message, report it once claim() returned, then wait to be killed."""
    box = SqliteOutbox(path)
    claimed = box.claim("jobs", "sink", 1, lease_ms, "doomed", now)
    pipe.send([(m.outbox_id, m.claim_token) for m in claimed])
    time.sleep(PROCESS_TIMEOUT)


def kill(proc: Any) -> None:
    proc.kill()  # SIGKILL
    proc.join(timeout=PROCESS_TIMEOUT)
    assert proc.exitcode == -9


def integrity(path: Path) -> str:
    with sqlite3.connect(path) as connection:
        (result,) = connection.execute("PRAGMA integrity_check").fetchone()
    return str(result)


def test_a_killed_workers_claim_expires_and_another_worker_delivers(tmp_path):
    path, deliveries_path = tmp_path / "outbox.db", tmp_path / "deliveries.db"
    with SqliteOutbox(path) as box:
        first, second = box.enqueue_many(
            [OutboxDraft("jobs", "sink", {"n": n}) for n in range(2)], now=0
        )
    parent, child = SPAWN.Pipe()
    proc = SPAWN.Process(target=claim_then_hang, args=(str(path), 1_000, LEASE, child))
    proc.start()
    assert parent.poll(PROCESS_TIMEOUT)
    [(outbox_id, token)] = parent.recv()
    kill(proc)
    assert outbox_id == first.outbox_id
    assert integrity(path) == "ok"
    with SqliteOutbox(path) as box:
        held = box.get(outbox_id)
        assert (held.status, held.claimed_by, held.claim_token) == ("claimed", "doomed", token)
        # While the lease holds, nobody else takes it.
        assert [
            m.outbox_id for m in box.claim("jobs", "sink", 5, LEASE, "x", now=1_000 + LEASE - 1)
        ] == [second.outbox_id]
        (rescued,) = box.claim("jobs", "sink", 5, LEASE, "rescuer", now=1_000 + LEASE)
        assert (rescued.outbox_id, rescued.attempt_count) == (outbox_id, 2)
        deliveries = Database(deliveries_path, [DELIVERIES])
        deliver(deliveries, rescued, "rescuer")
        deliveries.close()
        assert box.ack(outbox_id, token, now=1_000 + LEASE) is False  # the dead worker's token
        assert box.ack(outbox_id, rescued.claim_token, now=1_000 + LEASE) is True
        assert box.get(outbox_id).status == "delivered"
    assert delivery_counts(deliveries_path) == Counter({outbox_id: 1})


def churn(path: str, deliveries_path: str, round_: int, pipe: Connection) -> None:
    """Enqueue two, claim one, deliver, ack -- until killed; report each call after it returns."""
    box = SqliteOutbox(path)
    deliveries = Database(deliveries_path, [DELIVERIES])
    deadline = time.monotonic() + PROCESS_TIMEOUT
    now = round_ * 100_000
    while time.monotonic() < deadline:
        for _ in range(2):
            now += 1
            d = OutboxDraft("churn", "sink", {"n": now}, dedupe_key=f"churn-{now}")
            pipe.send(("enqueued", box.enqueue(d, now).outbox_id))
        for message in box.claim("churn", "sink", 1, 10**6, f"doomed-{round_}", now):
            deliver(deliveries, message, f"doomed-{round_}")
            if box.ack(message.outbox_id, message.claim_token, now):
                pipe.send(("acked", message.outbox_id))


def test_sigkill_mid_work_loses_nothing(tmp_path):
    """Three workers in turn are SIGKILLed at a random point of their work."""
    path, deliveries_path = tmp_path / "outbox.db", tmp_path / "deliveries.db"
    SqliteOutbox(path).close()
    reported: dict[str, list[str]] = {"enqueued": [], "acked": []}
    rounds = 3
    for round_ in range(rounds):
        parent, child = SPAWN.Pipe()
        proc = SPAWN.Process(target=churn, args=(str(path), str(deliveries_path), round_, child))
        proc.start()
        acked_before = len(reported["acked"])
        while len(reported["acked"]) < acked_before + 10:
            assert parent.poll(PROCESS_TIMEOUT)
            kind, outbox_id = parent.recv()
            reported[kind].append(outbox_id)
        time.sleep(random.uniform(0, 0.003))  # land the kill anywhere in the loop
        kill(proc)
        child.close()
        while parent.poll(0):  # what the child reported before it died
            try:
                kind, outbox_id = parent.recv()
            except EOFError:
                break
            reported[kind].append(outbox_id)
        assert integrity(path) == "ok"

    with SqliteOutbox(path) as box:
        for outbox_id in reported["enqueued"]:
            assert box.get(outbox_id) is not None
        for outbox_id in reported["acked"]:
            assert box.get(outbox_id).status == "delivered"
        stored = box.list(limit=10**6)
    assert len(stored) >= len(reported["enqueued"])
    assert {m.status for m in stored} <= {"pending", "claimed", "delivered"}
    assert len([m for m in stored if m.status == "claimed"]) <= rounds

    # Another worker, after the dead one's lease ran out, delivers everything left.
    [(_, rescued, refused)] = run_workers(path, deliveries_path, "churn", now=10**7, count=1)
    assert refused == []
    undelivered = {m.outbox_id for m in stored if m.status != "delivered"}
    assert set(rescued) == undelivered
    with SqliteOutbox(path) as box:
        final = {m.outbox_id: m for m in box.list(limit=10**6)}
    assert final.keys() == {m.outbox_id for m in stored}
    assert {m.status for m in final.values()} == {"delivered"}
    counts = delivery_counts(deliveries_path)
    for outbox_id, message in final.items():
        # At least once; twice only for the claim the dead worker held (attempt 2).
        assert counts[outbox_id] == 1 or (counts[outbox_id] == 2 and message.attempt_count == 2)
    assert set(counts) == set(final)


def test_ids_sort_in_the_order_they_were_made_and_never_repeat():
    # A durable store's index of ids then takes a batch enqueued together in
    # a few pages (see outbox._new_id); the random part keeps them unguessable.
    from replaycore.outbox import _new_id

    made = []
    for _ in range(20):
        made.append(_new_id())
        time.sleep(0.002)
    assert made == sorted(made)
    assert all(len(i) == 32 and set(i) <= set("0123456789abcdef") for i in made)
    assert len({_new_id() for _ in range(10_000)}) == 10_000
