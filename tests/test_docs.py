"""The documentation in docs/ stays honest: every error class, repair kind,
retry class and exit code is documented, the worked byte examples of
docs/format.md are recomputed from the installed package, and no page
points users at a file they do not have."""

from __future__ import annotations

import ast
import hashlib
import importlib
import re
import struct
import zlib
from pathlib import Path
from typing import Any, get_args

import pytest
import replaycore
import replaycore.errors
import replaycore.reference as reference
import replaycore.results
from replaycore import JournalWriter, content_digest, derive_key, legacy_key
from replaycore.cli import _parser
from replaycore.records import JournalRecord, encode_canonical

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
PAGES = ("format.md", "replay.md", "errors.md", "reliability.md")
REF_REPLAY = importlib.import_module("replaycore.reference.replay")
REF_JOURNAL = importlib.import_module("replaycore.reference.journal")
REF_KEYS = importlib.import_module("replaycore.reference.keys")
CHECK = re.compile(r"<!-- check:([\w-]+) -->\s*```[a-z]*\n(.*?)```", re.S)


def page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def checks() -> dict[str, str]:
    """The blocks of docs/format.md marked ``<!-- check:NAME -->``, by name."""
    found: dict[str, str] = {}
    for name, body in CHECK.findall(page("format.md")):
        assert name not in found, f"two blocks named {name}"
        found[name] = body
    return found


def hex_block(text: str) -> bytes:
    """The bytes of a hex dump: lines of ``0000: 52 43 ...`` or bare hex."""
    digits = "".join(re.sub(r"^[0-9a-f]{4}:", "", line.strip()) for line in text.splitlines())
    return bytes.fromhex(digits)


def run_block(text: str, name: str) -> Any:
    """The value a documented Python block assigns to ``name``."""
    namespace: dict[str, Any] = {}
    exec(compile(text, "docs/format.md", "exec"), vars(replaycore.records).copy(), namespace)
    return namespace[name]


def documented_record() -> JournalRecord:
    record = run_block(checks()["record"], "record")
    assert isinstance(record, JournalRecord)
    return record


def test_every_page_exists_and_is_linked_from_the_others() -> None:
    for name in PAGES:
        assert page(name).strip(), name
    assert "(format.md" in page("replay.md")
    assert "(errors.md" in page("replay.md")
    assert "(replay.md" in page("errors.md")


@pytest.mark.parametrize("name", PAGES)
def test_no_page_mentions_the_internal_specification(name: str) -> None:
    text = page(name)
    assert "SPEC" not in text
    assert "/work/shared" not in text
    assert not re.search(r"\bsection \d+\.\d+", text, re.I), "refers to a section number"


# -- errors ---------------------------------------------------------------------------


def error_classes() -> list[type[BaseException]]:
    classes = [getattr(replaycore.errors, name) for name in replaycore.errors.__all__]
    assert len(classes) >= 19
    return classes


def table_row(text: str, name: str) -> str:
    rows = [line for line in text.splitlines() if line.startswith(f"| `{name}` |")]
    assert len(rows) == 1, f"{name} needs exactly one row in the table of docs/errors.md"
    return rows[0]


@pytest.mark.parametrize("cls", error_classes(), ids=lambda cls: cls.__name__)
def test_every_error_class_has_a_row_with_its_bases(cls: type[BaseException]) -> None:
    text = page("errors.md")
    bases = table_row(text, cls.__name__).split("|")[2]
    for base in cls.__bases__:
        assert f"`{base.__name__}`" in bases, (cls.__name__, base.__name__)
    assert re.search(rf"\b{cls.__name__}\b", text.split("## The table")[0]), "not in the tree"


@pytest.mark.parametrize("cls", error_classes(), ids=lambda cls: cls.__name__)
def test_every_error_attribute_is_documented(cls: type[BaseException]) -> None:
    """The attributes an instance sets in ``__init__`` are named in its row."""
    attributes: set[str] = set()
    for klass in cls.__mro__:
        if klass.__module__ != "replaycore.errors" or "__init__" not in vars(klass):
            continue
        source = ast.parse("\n".join(line[4:] for line in _source(klass.__init__).splitlines()))
        for node in ast.walk(source):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "self"
                and isinstance(node.ctx, ast.Store)
            ):
                attributes.add(node.attr)
    if isinstance(getattr(cls, "kind", None), str):
        attributes.add("kind")
    row = table_row(page("errors.md"), cls.__name__)
    # InvalidArgument's subclasses document their attributes "as InvalidArgument".
    if "as `InvalidArgument`" in row:
        attributes -= {"argument", "value", "message"}
    for attribute in attributes:
        assert f"`{attribute}`" in row, (cls.__name__, attribute)


def _source(function: Any) -> str:
    import inspect

    return inspect.getsource(function)


def test_value_and_type_errors_are_documented_as_such() -> None:
    text = page("errors.md")
    for cls in error_classes():
        bases = table_row(text, cls.__name__).split("|")[2]
        if issubclass(cls, ValueError) and ValueError in cls.__bases__:
            assert "`ValueError`" in bases, cls.__name__
        if TypeError in cls.__bases__:
            assert "`TypeError`" in bases, cls.__name__


def cli_exit_codes() -> set[int]:
    """Every exit code named in ``replaycore --help`` and the EXIT_* constants."""
    help_text = _parser(out=None).format_help()  # type: ignore[arg-type]
    epilog = help_text[help_text.index("Exit codes:") :]
    codes = {int(code) for code in re.findall(r"\b(\d{1,3})\b", epilog)}
    import replaycore.cli as cli

    codes |= {value for name, value in vars(cli).items() if name.startswith("EXIT_")}
    assert {0, 1, 2, 130} <= codes
    return codes


def test_every_cli_exit_code_is_in_the_exit_code_table() -> None:
    text = page("errors.md")
    table = text[text.index("## Command line exit codes") :]
    documented = {int(code) for code in re.findall(r"^\| `(\d+)` \|", table, re.M)}
    assert documented == cli_exit_codes()


# -- replay ---------------------------------------------------------------------------


def string_constants(path: Path) -> set[str]:
    return {
        node.value
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }


def test_every_repair_kind_retry_class_and_policy_is_in_replay_md() -> None:
    text = page("replay.md")
    results = replaycore.results
    names = [
        *get_args(results.RepairKind),
        *get_args(results.RetryClass),
        *get_args(results.MissingContentPolicy),
        *get_args(results.ReplayMode),
        *get_args(results.ReplayStatus),
        *get_args(results.ViolationKind),
    ]
    for name in names:
        assert f"`{name}`" in text, name
    # and every repair kind the reference reducer actually uses
    used = string_constants(REPO / "python/replaycore/reference/replay.py")
    for kind in set(get_args(results.RepairKind)) & used:
        assert f"| `{kind}` |" in text, f"{kind} has no row in the repair table"


def test_every_reason_the_reducer_writes_is_quoted() -> None:
    text = " ".join(page("replay.md").split())
    for reason in (
        REF_REPLAY.PENDING_REASON,
        REF_REPLAY.DEDUPE_PROOF_REASON,
        REF_REPLAY.UNSAFE_OUTPUT_REASON,
        "duplicate non-idempotent journal record",
        "journal records must be strictly increasing",
        "record after sealed terminal state",
    ):
        assert f'"{reason}"' in text, reason
    assert all(f"`{status}`" in text for status in REF_REPLAY.TERMINAL_LIFECYCLE)


def test_every_replay_result_field_is_in_the_result_table() -> None:
    text = page("replay.md")
    for field in replaycore.ReplayResult.__struct_fields__:
        assert f"| `{field}` |" in text, field
    for shape in (replaycore.RepairNeeded, replaycore.PendingEffect):
        for field in shape.__struct_fields__:
            assert f"`{field}`" in text, (shape.__name__, field)


# -- format ---------------------------------------------------------------------------


def test_every_record_field_and_payload_kind_is_in_format_md() -> None:
    text = page("format.md")
    for field in JournalRecord.__struct_fields__:
        assert f"| `{field}` |" in text, field
    payloads = get_args(replaycore.records.Payload)
    assert len(payloads) == 12
    for payload in payloads:
        kind = payload.__struct_config__.tag
        row = [line for line in text.splitlines() if line.startswith(f"| `{kind}` |")]
        assert len(row) == 1, kind
        for field in payload.__struct_fields__:
            assert re.search(rf"`{field}\??`", row[0]), (kind, field)
    for field in replaycore.records.PendingSideEffect.__struct_fields__:
        assert f"`{field}`" in text, field


def test_documented_limits_are_the_package_defaults() -> None:
    text = page("format.md")
    assert REF_JOURNAL.MAX_DEPTH == 256
    assert "256 containers" in text
    assert REF_JOURNAL.DEFAULT_MAX_FRAME_BYTES == 64 * 1024 * 1024 == 67108864
    assert REF_JOURNAL.DEFAULT_MAX_LINE_BYTES == 64 * 1024 * 1024
    assert "67,108,864" in text
    assert REF_KEYS.DERIVE_KEY_HEADER == b"replaycore/derive_key/v1\n"
    assert "`replaycore/derive_key/v1\\n`" in text


def test_every_worked_example_block_is_checked() -> None:
    assert set(checks()) == {
        "record",
        "canonical-body",
        "rcj-file",
        "rcj-header",
        "jsonl-line",
        "content-digest",
        "derive-parts-1",
        "derive-input-1",
        "derive-key-1",
        "derive-parts-2",
        "derive-input-2",
        "derive-key-2",
        "legacy-key",
    }


def test_canonical_body_example() -> None:
    body = hex_block(checks()["canonical-body"])
    record = documented_record()
    assert body == encode_canonical(record)
    assert f"is {len(body)} bytes (`{len(body):x}` hex)" in page("format.md")


def test_rcj_file_example_is_what_both_writers_write(tmp_path: Path) -> None:
    record = documented_record()
    expected = hex_block(checks()["rcj-file"])
    for writer in (JournalWriter, reference.JournalWriter):
        path = tmp_path / f"{writer.__module__}.rcj"
        with writer(path) as journal:
            journal.append(record)
        assert path.read_bytes() == expected, writer.__module__
    assert f"{len(expected)}-byte file" in page("format.md")
    assert list(replaycore.read_journal(path)) == [record]


def test_rcj_header_example_follows_the_documented_layout() -> None:
    body = encode_canonical(documented_record())
    header = hex_block(checks()["rcj-header"])
    head = struct.pack("<II", len(body), zlib.crc32(body))
    assert header == head + struct.pack("<I", zlib.crc32(head))
    assert hex_block(checks()["rcj-file"])[:16] == b"RCJ1" + header
    text = page("format.md")
    assert f"`0x{zlib.crc32(body):08x}`" in text
    assert f"`0x{zlib.crc32(head):08x}`" in text


def test_jsonl_example_is_what_both_writers_write(tmp_path: Path) -> None:
    record = documented_record()
    line = checks()["jsonl-line"].strip().encode() + b"\n"
    for writer in (JournalWriter, reference.JournalWriter):
        path = tmp_path / f"{writer.__module__}.jsonl"
        with writer(path) as journal:
            journal.append(record)
        assert path.read_bytes() == line, writer.__module__


def test_content_digest_example() -> None:
    record = documented_record()
    expected = checks()["content-digest"].strip()
    assert content_digest(record) == expected
    assert reference.content_digest(record) == expected
    assert expected == "sha256:" + hashlib.sha256(encode_canonical(record)).hexdigest()


def documented_derive_input(parts: tuple[Any, ...]) -> bytes:
    """The hash input of derive_key, built from the layout format.md describes."""
    out = bytearray(b"replaycore/derive_key/v1\n")
    out += len(parts).to_bytes(4, "big")
    for part in parts:
        if isinstance(part, str):
            tag, data = 1, part.encode()
        elif isinstance(part, bytes):
            tag, data = 2, part
        else:
            tag, data = 3, part.to_bytes(abs(part).bit_length() // 8 + 1, "big", signed=True)
        out += bytes([tag]) + len(data).to_bytes(8, "big") + data
    return bytes(out)


@pytest.mark.parametrize("n", ["1", "2"])
def test_derive_key_examples(n: str) -> None:
    found = checks()
    parts = run_block(found[f"derive-parts-{n}"], "parts")
    material = hex_block(found[f"derive-input-{n}"])
    assert material == documented_derive_input(parts)
    key = found[f"derive-key-{n}"].strip()
    assert key == "idem_" + hashlib.sha256(material).hexdigest()[:32]
    assert derive_key(*parts) == key
    assert reference.derive_key(*parts) == key


def test_documented_integer_encodings_and_prefix_example() -> None:
    text = page("format.md")
    for value, encoded in ((0, "00"), (127, "7f"), (128, "00 80"), (-1, "ff")):
        assert f"`{value}` → `{encoded}`" in text
        assert documented_derive_input((value,))[-len(bytes.fromhex(encoded)) :] == bytes.fromhex(
            encoded
        )
    for value, encoded in ((-128, "ff 80"), (-129, "ff 7f")):
        assert f"`{value}` → `{encoded}`" in text
        assert documented_derive_input((value,))[-2:] == bytes.fromhex(encoded)
    short = derive_key("run-1", "charge", 3, prefix="k_", hex_len=16)
    assert f"`{short}`" in text


def test_legacy_key_examples() -> None:
    text = page("format.md")
    key = checks()["legacy-key"].strip()
    assert key == legacy_key("run-1", "episode-a", 3)
    assert key == "idem_" + hashlib.sha256(b"run-1::episode-a::3").hexdigest()[:16]
    ambiguous = legacy_key("a::b", "c", 1)
    assert ambiguous == legacy_key("a", "b::c", 1)
    assert f"`{ambiguous}`" in text


# -- reliability ----------------------------------------------------------------------


def test_reliability_gives_the_measured_peak_memory() -> None:
    """The memory promise comes with the figures of benches/memory.py, one
    row per case it measures, and with the test that asserts the bound."""
    text = page("reliability.md")
    assert "python benches/memory.py" in text
    assert "tests/test_journal_memory.py" in text
    for case in ("1M-record `.rcj`, replay", "1M-record `.rcj`, inspect", "200 MB JSON line"):
        row = next(line for line in text.splitlines() if case in line)
        assert re.search(r"\d", row.split("|", 2)[2]), row


def test_reliability_names_only_tests_that_exist() -> None:
    """Every ``tests/test_x.py::test_name`` and bare ``test_name`` the page
    names is a test function of the suite."""
    text = page("reliability.md")
    defined: dict[str, set[str]] = {}
    for path in (REPO / "tests").glob("test_*.py"):
        defined[path.name] = {
            node.name
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
        }
    every = set().union(*defined.values())
    for file, name in re.findall(r"tests/(test_\w+\.py)::(test_\w+)\b(?!\*)", text):
        assert name in defined[file], f"{file}::{name}"
    for file in re.findall(r"tests/(test_\w+\.py)", text):
        assert file in defined, file
    for name in re.findall(r"`(test_\w+)(?:\*)?`", text):
        if not name.endswith("_"):
            assert name in every, name
    for prefix in re.findall(r"`(test_\w+_)\*`", text):
        assert any(name.startswith(prefix) for name in every), prefix
