"""Idempotency keys (SPEC section 2) on both backends, against hashlib."""

from __future__ import annotations

import array
import collections
import enum
import hashlib
import string

import pytest
from replaycore import records
from replaycore.errors import InvalidArgument, InvalidKeyFormat
from support import BytesSub, StrSub

HEX = set(string.hexdigits.lower())


def expected_legacy(run_id: str, episode: str, step_idx: int) -> str:
    material = f"{run_id}::{episode}::{step_idx}".encode()
    return "idem_" + hashlib.sha256(material).hexdigest()[:16]


def int_bytes(value: int) -> bytes:
    """Two's complement, big-endian, in bit_length // 8 + 1 bytes, written out by hand."""
    length = value.bit_length() // 8 + 1
    modulus = 1 << (8 * length)
    unsigned = value % modulus
    return bytes((unsigned >> (8 * (length - 1 - i))) & 0xFF for i in range(length))


def derive_material(*parts: str | bytes | int) -> bytes:
    out = bytearray(b"replaycore/derive_key/v1\n")
    out += len(parts).to_bytes(4, "big")
    for part in parts:
        if isinstance(part, str):
            tag, data = 1, part.encode("utf-8")
        elif isinstance(part, bytes):
            tag, data = 2, bytes(part)
        else:
            tag, data = 3, int_bytes(part)
        out.append(tag)
        out += len(data).to_bytes(8, "big")
        out += data
    return bytes(out)


def expected_derive(*parts: str | bytes | int, prefix: str = "idem_", hex_len: int = 32) -> str:
    return prefix + hashlib.sha256(derive_material(*parts)).hexdigest()[:hex_len]


LEGACY_VECTORS = [
    ("run-1", "ep", 3),
    ("run-1", "episode-a", 3),
    ("", "", 0),
    ("a::b", "c", 1),
    ("\u03c1un", "épisode-日本", 42),
    ("emoji😀", "\x00nul", 2**32 - 1),
    ("x" * 1000, "y", 7),
]


@pytest.mark.parametrize(("run_id", "episode", "step_idx"), LEGACY_VECTORS)
def test_legacy_key_matches_hashlib(impl, run_id, episode, step_idx):
    key = impl.legacy_key(run_id, episode, step_idx)
    assert key == expected_legacy(run_id, episode, step_idx)
    assert type(key) is str
    assert len(key) == 21
    assert set(key[5:]) <= HEX


def test_legacy_key_known_vector(impl):
    # Written out independently of the helper above.
    digest = hashlib.sha256(b"run-1::ep::3").hexdigest()
    assert impl.legacy_key("run-1", "ep", 3) == "idem_" + digest[:16]


def test_legacy_key_keywords_and_subclasses(impl):
    class Step(enum.IntEnum):
        THREE = 3

    expected = expected_legacy("run", "ep", 3)
    assert impl.legacy_key(run_id="run", episode="ep", step_idx=3) == expected
    assert impl.legacy_key(StrSub("run"), StrSub("ep"), Step.THREE) == expected


@pytest.mark.parametrize(
    ("intent", "actor", "episode", "step"),
    [("i-1", "bot", "ep", 5), ("i", "a:b", "", 0), ("日本", "😀", "ep", 2**32 - 1)],
)
def test_key_from_intent_is_legacy_of_joined_id(impl, intent, actor, episode, step):
    key = impl.key_from_intent(intent, actor, episode, step)
    assert key == impl.legacy_key(intent + ":" + actor, episode, step)
    assert key == expected_legacy(intent + ":" + actor, episode, step)


def test_key_from_intent_default_step_is_zero(impl):
    expected = expected_legacy("i-1:bot", "ep", 0)
    assert impl.key_from_intent("i-1", "bot", "ep") == expected
    assert impl.key_from_intent("i-1", "bot", "ep", None) == expected
    assert impl.key_from_intent("i-1", "bot", "ep", step_idx=None) == expected
    assert impl.key_from_intent("i-1", "bot", "ep", 1) != expected


def test_legacy_keys_are_ambiguous_derive_keys_are_not(impl):
    assert impl.legacy_key("a::b", "c", 1) == impl.legacy_key("a", "b::c", 1)
    assert impl.key_from_intent("a:b", "c", "e") == impl.key_from_intent("a", "b:c", "e")
    assert impl.derive_key("a::b", "c", 1) != impl.derive_key("a", "b::c", 1)
    distinct = {
        impl.derive_key("ab"),
        impl.derive_key("a", "b"),
        impl.derive_key("1"),
        impl.derive_key(1),
        impl.derive_key(b"1"),
        impl.derive_key(b"ab"),
        impl.derive_key(b"a", b"b"),
        impl.derive_key(""),
        impl.derive_key(b""),
        impl.derive_key(0),
        impl.derive_key("", ""),
        impl.derive_key(-1),
        impl.derive_key(255),
    }
    assert len(distinct) == 13


INT_LAYOUT = [
    (0, "00"),
    (127, "7f"),
    (128, "0080"),
    (255, "00ff"),
    (256, "0100"),
    (-1, "ff"),
    (-128, "ff80"),
    (-129, "ff7f"),
]


@pytest.mark.parametrize(("value", "hexbytes"), INT_LAYOUT)
def test_int_part_encoding_matches_spec_table(value, hexbytes):
    # The test's own encoder, checked against the table in api.md.
    assert int_bytes(value).hex() == hexbytes


@pytest.mark.parametrize(
    "parts",
    [
        ("run-1", "charge", 3),
        ("a",),
        ("",),
        (b"",),
        (b"\x00\xff raw",),
        ("日本語", "😀", "\x00"),
        (0,),
        (127,),
        (128,),
        (-1,),
        (-128,),
        (-129,),
        (2**200,),
        (-(2**200),),
        (2**63, -(2**63), 2**64 - 1),
        ("mixed", b"bytes", 0, -5, "::"),
        tuple(range(300)),
    ],
    ids=repr,
)
def test_derive_key_byte_layout(impl, parts):
    assert impl.derive_key(*parts) == expected_derive(*parts)


def test_derive_key_header_and_count(impl):
    material = (
        b"replaycore/derive_key/v1\n"
        + b"\x00\x00\x00\x02"
        + b"\x01"
        + b"\x00" * 7
        + b"\x03abc"
        + b"\x03"
        + b"\x00" * 7
        + b"\x02"
        + b"\x00\x80"
    )
    assert impl.derive_key("abc", 128) == "idem_" + hashlib.sha256(material).hexdigest()[:32]


def test_derive_key_subclasses_take_their_base_tag(impl):
    class Num(enum.IntEnum):
        SEVEN = 7

    assert impl.derive_key(StrSub("a"), BytesSub(b"b"), Num.SEVEN) == expected_derive("a", b"b", 7)


@pytest.mark.parametrize("hex_len", [16, 17, 31, 32, 40, 63, 64])
def test_derive_key_hex_len(impl, hex_len):
    key = impl.derive_key("x", 1, hex_len=hex_len)
    assert key == expected_derive("x", 1, hex_len=hex_len)
    assert len(key) == 5 + hex_len


def test_derive_key_full_digest_at_64(impl):
    full = hashlib.sha256(derive_material("x")).hexdigest()
    assert impl.derive_key("x", hex_len=64) == "idem_" + full


@pytest.mark.parametrize("hex_len", [15, 65, 0, -1, 2**64])
def test_derive_key_hex_len_out_of_range(impl, hex_len):
    with pytest.raises(InvalidArgument, match=None) as info:
        impl.derive_key("x", hex_len=hex_len)
    assert type(info.value) is InvalidArgument
    assert info.value.argument == "hex_len"


@pytest.mark.parametrize("prefix", ["", "key-", "ключ_", "idem_", "😀:"])
def test_derive_key_prefix_is_not_hashed(impl, prefix):
    key = impl.derive_key("a", b"b", 3, prefix=prefix, hex_len=20)
    assert key == expected_derive("a", b"b", 3, prefix=prefix, hex_len=20)
    assert key.startswith(prefix)
    assert key[len(prefix) :] == impl.derive_key("a", b"b", 3, hex_len=20)[5:]


@pytest.mark.parametrize(
    "text",
    [
        "idem_0123456789abcdef",
        "idem_0123456789ABCDEF",
        "idem_aBcDeF0123456789",
        "idem_ffffffffffffffff",
        "idem_0000000000000000",
    ],
)
def test_parse_key_accepts(impl, text):
    result = impl.parse_key(text)
    assert result == text
    assert type(result) is str


def test_parse_key_returns_plain_str_for_subclass(impl):
    result = impl.parse_key(StrSub("idem_0123456789abcdef"))
    assert result == "idem_0123456789abcdef"
    assert type(result) is str


def test_parse_key_accepts_every_generated_key(impl):
    for step in range(50):
        key = impl.legacy_key("run", "ep", step)
        assert impl.parse_key(key) == key
        assert impl.parse_key(key.upper().replace("IDEM_", "idem_")) == key.upper().replace(
            "IDEM_", "idem_"
        )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "idem_",
        "idem_0123456789abcde",
        "idem_0123456789abcdef0",
        "IDEM_0123456789abcdef",
        "Idem_0123456789abcdef",
        "idem-0123456789abcdef",
        "key__0123456789abcdef",
        "idem_0123456789abcdeg",
        "idem_0123456789abcde ",
        " idem_0123456789abcdef",
        "idem_0123456789abcdef\n",
        "idem_0x23456789abcdef",
        "idem_" + "٣" * 16,
        "idem_" + "\uff11" * 16,
        "idem_" + "é" * 8,
        "idem_" + "\ud800" * 16,
        "idem_012345678\x00abcdef",
        "idem_" + "0" * 32,
    ],
    ids=repr,
)
def test_parse_key_rejects(impl, text):
    with pytest.raises(InvalidKeyFormat, match=None) as info:
        impl.parse_key(text)
    assert type(info.value) is InvalidKeyFormat
    assert info.value.argument == "text"
    assert info.value.value == text
    assert isinstance(info.value, ValueError)


def test_legacy_keys_equal_single_forms(impl):
    rows = [*LEGACY_VECTORS, ["list-row", "ep", 9]]
    assert impl.legacy_keys(rows) == [impl.legacy_key(*row) for row in rows]
    assert impl.legacy_keys(rows) == [expected_legacy(*row) for row in rows]
    assert impl.legacy_keys(tuple(rows)) == impl.legacy_keys(iter(rows))
    assert impl.legacy_keys(row for row in rows) == impl.legacy_keys(rows)
    assert impl.legacy_keys([]) == []


Row = collections.namedtuple("Row", "run_id episode step_idx")


class RowList(list):
    pass


def test_batch_rows_may_be_tuple_or_list_subclasses(impl):
    rows = [Row("r", "e", 1), RowList(["r", "e", 2])]
    assert impl.legacy_keys(rows) == [expected_legacy("r", "e", 1), expected_legacy("r", "e", 2)]
    assert impl.derive_keys(rows) == [expected_derive("r", "e", 1), expected_derive("r", "e", 2)]


def test_legacy_keys_large_batch(impl):
    rows = [(f"run-{i % 7}", f"ep-{i % 3}", i) for i in range(5000)]
    assert impl.legacy_keys(rows) == [expected_legacy(*row) for row in rows]


DERIVE_ROWS = [
    ("run-1", "charge", 3),
    ["list", b"row", -1],
    (2**200,),
    ("日本", b"\x00", 0, -(2**70)),
    ("",),
]


@pytest.mark.parametrize(("prefix", "hex_len"), [("idem_", 32), ("k:", 16), ("", 64)])
def test_derive_keys_equal_single_forms(impl, prefix, hex_len):
    expected = [impl.derive_key(*row, prefix=prefix, hex_len=hex_len) for row in DERIVE_ROWS]
    assert impl.derive_keys(DERIVE_ROWS, prefix=prefix, hex_len=hex_len) == expected
    assert impl.derive_keys(DERIVE_ROWS, prefix, hex_len) == expected
    assert expected == [expected_derive(*r, prefix=prefix, hex_len=hex_len) for r in DERIVE_ROWS]
    assert impl.derive_keys(iter(DERIVE_ROWS), prefix=prefix, hex_len=hex_len) == expected
    assert impl.derive_keys([], prefix=prefix, hex_len=hex_len) == []


def test_derive_keys_defaults(impl):
    assert impl.derive_keys([("a", 1), (b"b",)]) == [
        expected_derive("a", 1),
        expected_derive(b"b"),
    ]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"abc",
        bytes(range(256)) * 5,
        bytearray(b"mutable"),
        memoryview(b"view of bytes"),
        memoryview(bytearray(b"view of bytearray")),
        BytesSub(b"sub"),
    ],
    ids=repr,
)
def test_content_digest_of_bytes_like(impl, data):
    assert impl.content_digest(data) == "sha256:" + hashlib.sha256(bytes(data)).hexdigest()


def test_content_digest_of_wide_memoryview(impl):
    view = memoryview(array.array("H", [1, 2, 3, 65535]))
    raw = view.tobytes()
    assert impl.content_digest(view) == "sha256:" + hashlib.sha256(raw).hexdigest()


RECORDS = [
    records.JournalRecord(
        record_id="r1",
        journal_seq=1,
        run_id="run-7",
        payload=records.EffectIntent(effect_id="pay-1", effect_kind="payment"),
    ),
    records.EffectResult(effect_id="e", status="ok"),
    records.Custom(name="c", data={"b": [1, 2.5, None], "a": {"z": b"\x00", "y": True}}),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_content_digest_of_record(impl, record):
    digest = impl.content_digest(record)
    assert digest == "sha256:" + hashlib.sha256(records.encode_canonical(record)).hexdigest()
    assert len(digest) == 7 + 64
    assert set(digest[7:]) <= HEX


@pytest.mark.parametrize("value", [{"b": 1, "a": 2}, [1, "x", None], "text", 12, None])
def test_content_digest_of_other_encodable_values(impl, value):
    expected = "sha256:" + hashlib.sha256(records.encode_canonical(value)).hexdigest()
    assert impl.content_digest(value) == expected


def test_content_digest_bytes_differs_from_encoded_bytes(impl):
    # A bytes value is hashed raw, not msgpack-encoded.
    raw = "sha256:" + hashlib.sha256(b"abc").hexdigest()
    assert impl.content_digest(b"abc") == raw
    assert impl.content_digest(b"abc") != impl.content_digest("abc")
