"""Differential tests of replay (SPEC 6.2, 7): generated journals, as records,
as framed bytes, as damaged bytes and as JSON lines, in every mode.

The backend under test must give the same ``ReplayResult`` as its oracles,
or raise the same exception type with the same details (kind, record id, seq
and message of a ReplayViolation; offset and reason of a JournalCorruption).
The oracles are the independent model of ``journals.py`` (SPEC 7 written
from the text) and, for the Rust core, the pure-Python reference as well.
About 2,100 journals are generated per backend, each replayed in all three
modes.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from journals import (
    DEFAULT_LIMIT,
    MODES,
    ModelReducer,
    canonical,
    damaged,
    error_details,
    framed,
    journals,
    json_lines,
    model_replay,
    model_replay_json_lines,
    outcome,
    replay_options,
)
from replaycore import reference

stricts = st.sampled_from([None, None, True, False])
limits = st.sampled_from([DEFAULT_LIMIT, DEFAULT_LIMIT, 2**32 - 1, 150, 60])


def oracles(impl: Any) -> list[Any]:
    """``replay`` functions the backend must agree with."""
    found = [model_replay]
    if impl is not reference:
        found.append(reference.replay)
    return found


def agree(impl: Any, source_of: Any, **options: Any) -> None:
    """Every mode: the backend's outcome equals each oracle's, for a fresh source."""
    for mode in MODES:
        got = outcome(impl.replay, source_of(), mode=mode, **options)
        for oracle in oracles(impl):
            expected = outcome(oracle, source_of(), mode=mode, **options)
            assert got == expected, (mode, oracle.__module__)


@settings(max_examples=700)
@given(records=journals(), options=replay_options(), strict=stricts)
def test_generated_journals_as_records(impl, records, options, strict):
    agree(impl, lambda: iter(records), strict=strict, **options)


@settings(max_examples=500)
@given(records=journals(), options=replay_options(), strict=stricts, limit=limits)
def test_generated_journals_as_framed_bytes(impl, records, options, strict, limit):
    data = framed(records)
    agree(impl, lambda: data, strict=strict, max_frame_bytes=limit, **options)
    bodies = [canonical(r) for r in records]
    agree(impl, lambda: bodies, strict=strict, **options)


@settings(max_examples=700)
@given(
    records=journals(),
    options=replay_options(),
    strict=stricts,
    limit=limits,
    data=st.data(),
)
def test_generated_journals_as_damaged_bytes(impl, records, options, strict, limit, data):
    bad = data.draw(damaged(framed(records)))
    agree(impl, lambda: bad, strict=strict, max_frame_bytes=limit, **options)


junk_lines = st.sampled_from([b"", b"  ", b"{", b"null", b'{"kind": "x"}', b"\xff\xfe"])


@settings(max_examples=200)
@given(
    records=journals(),
    options=replay_options(),
    strict=stricts,
    junk=st.lists(st.tuples(st.integers(0, 50), junk_lines), max_size=3),
    newline=st.booleans(),
)
def test_generated_journals_as_json_lines(
    impl, tmp_path_factory, records, options, strict, junk, newline
):
    lines = json_lines(records).splitlines()
    for at, line in junk:
        lines.insert(at % (len(lines) + 1), line)
    text = b"\n".join(lines) + (b"\n" if newline and lines else b"")
    path = tmp_path_factory.mktemp("jsonl") / "run.jsonl"
    path.write_bytes(text)
    for mode in MODES:
        got = outcome(impl.replay, path, mode=mode, strict=strict, **options)
        expected = outcome(model_replay_json_lines, text, mode=mode, strict=strict, **options)
        assert got == expected, mode
        if impl is not reference:
            assert got == outcome(reference.replay, path, mode=mode, strict=strict, **options)


def step_by_step(reducer: Any, records: list[Any]) -> tuple[list[Any], Any]:
    """Feed records one at a time, going on after each error; then finish."""
    steps = []
    for record in records:
        try:
            reducer.apply(record)
        except Exception as exc:
            steps.append((type(exc), error_details(exc)))
        else:
            steps.append(None)
    return steps, outcome(reducer.finish)


@settings(max_examples=300)
@given(records=journals(), options=replay_options(), strict=stricts)
def test_reducer_goes_on_after_each_violation(impl, records, options, strict):
    for mode in MODES:
        got = step_by_step(impl.ReplayReducer(mode, strict=strict, **options), records)
        expected = step_by_step(ModelReducer(mode, strict=strict, **options), records)
        assert got == expected, mode
        if impl is not reference:
            ref = step_by_step(reference.ReplayReducer(mode, strict=strict, **options), records)
            assert got == ref, mode
