"""The record mixes of the speed benchmarks: deterministic journals of clean runs.

Each mix is one run's journal that replays ``complete`` on both backends —
a ``running`` lifecycle record first, ``completed`` last, unique
``record_id`` values, ``journal_seq`` 1..n without gaps, every intent
followed by its result (or, for an output delivery, by a dedupe proof) — but
each leans on a different path of the reducer (SPEC 7.2, 7.3):

* ``a`` synthetic: :func:`replaycore.synthetic.synthetic_records` (the
  mix of ``bench_replay.py``), about 250 bytes a record;
* ``b`` custom-heavy: four records in five are ``custom`` with nested
  ``data`` (dicts and lists three levels deep of strings, ints and floats),
  the rest effect intents and results; about 400 bytes a record;
* ``c`` content refs: every effect and output intent carries content refs
  (and every result one), all of which resolve: replay it with
  :meth:`Mix.replay_options`, which gives ``available_content_refs``;
* ``d`` output deliveries: output intents (with record-level dedupe keys)
  followed by progress events and a ``delivered`` result, or, for one in
  three, only by an ``output_dedupe`` proof, which the reducer turns into a
  ``completed_by_dedupe_proof`` reconciliation at finish without a repair;
* ``e`` checkpoint-heavy: a ``checkpoint`` every fourth record with an
  8-ref manifest (checked against ``available_content_refs``, given by
  :meth:`Mix.replay_options`), between effect intents and results; about
  330 bytes a record;
* ``f`` many small runs: :func:`many_runs` — ``n // 100`` separate runs of
  100 synthetic records each, for ``replay_many``.

The same mix and ``n`` always give the same records (a seeded
``random.Random``). :func:`write_mix` and :func:`write_many_runs` write them
with replaycore's own :class:`~replaycore.journal.JournalWriter` (``fsync``
``"never"``) and remember what they wrote, so the benchmarks of one session
write each file once.

>>> records = list(MIXES["d"].records(40))
>>> records[0].payload, records[-1].payload
(RunLifecycle(status='running'), RunLifecycle(status='completed'))
"""

from __future__ import annotations

import functools
import random
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from replaycore.journal import JournalWriter
from replaycore.records import (
    Checkpoint,
    Custom,
    EffectIntent,
    EffectResult,
    JournalRecord,
    OutputDedupe,
    OutputEvent,
    OutputIntent,
    OutputResult,
    Payload,
    RunLifecycle,
)
from replaycore.synthetic import synthetic_records

__all__ = [
    "MIXES",
    "RUN_RECORDS",
    "WRITE_BATCH",
    "Format",
    "Mix",
    "content_ref",
    "many_runs",
    "write_many_runs",
    "write_mix",
]

Format = Literal["rcj", "jsonl"]

#: Records per run of mix ``f``.
RUN_RECORDS = 100
#: Records per ``append_many`` call when a journal is written.
WRITE_BATCH = 10_000

_BASE_MS = 1_767_225_600_000
_TOOLS = ("web.search", "code.exec", "files.read", "http.post", "db.query", "email.send")
_SINKS = ("slack://ops-alerts", "email://oncall", "webhook://billing/v2", "s3://exports/daily")
_MODELS = ("planner-large", "coder-medium", "summarizer-small")


def content_ref(index: int) -> str:
    """The ``index``-th blob of a mix's content store, e.g. ``"blob:9e3779b97f4a7c15"``.

    Multiplying by an odd constant spreads the refs over 64 bits (they look
    like digests) while staying a function of the index, so the set of
    available refs can be listed without generating the journal.
    """
    return f"blob:{index * 0x9E3779B97F4A7C15 % 2**64:016x}"


def _store_size(n: int) -> int:
    """How many blobs the content store of an ``n``-record mix holds (refs repeat)."""
    return n // 8 + 64


@dataclass(frozen=True, slots=True)
class _Draft:
    """A record before the driver gives it its id, ``journal_seq`` and clock."""

    payload: Payload
    content_refs: list[str] = field(default_factory=list)
    idempotency_key: str | None = None
    dedupe_key: str | None = None


#: An episode: a few records that leave nothing open once all are applied
#: (an intent and its result, a delivery and its proof ...).
Episode = Callable[[random.Random, int], list[_Draft]]


@dataclass(frozen=True, slots=True)
class _Shape:
    """How the driver builds one run: its episodes, filler and checkpoints."""

    episode: Episode
    filler: Callable[[random.Random, int], Payload]
    checkpoint_every: int = 500
    manifest_refs: int = 1
    open_episodes: int = 3


def _driven(shape: _Shape, n: int, seed: int, run_id: str) -> Iterator[JournalRecord]:
    """The ``n`` records (``n >= 2``) of one clean run built from ``shape``.

    Up to ``shape.open_episodes`` episodes are interleaved, each started only
    when all open ones still fit before the final ``completed`` record, so
    every intent meets its result; slots no episode fits in get a filler
    record (which leaves nothing open), and every ``checkpoint_every``-th
    record is a checkpoint covering the records before it.
    """
    if n < 2:
        raise ValueError("a journal of a mix needs at least 2 records")
    rng = random.Random(seed)
    store = _store_size(n)
    open_: list[deque[_Draft]] = []
    owed = 0  # records still to come from the open episodes
    checkpoints = 0
    for seq in range(1, n + 1):
        at_ms = _BASE_MS + seq * 37
        draft: _Draft
        if seq == 1:
            draft = _Draft(RunLifecycle(status="running"))
        elif seq == n:
            draft = _Draft(RunLifecycle(status="completed"))
        elif seq % shape.checkpoint_every == 0:
            checkpoints += 1
            manifest = [content_ref(rng.randrange(store)) for _ in range(shape.manifest_refs)]
            draft = _Draft(
                Checkpoint(
                    checkpoint_seq=checkpoints,
                    covers_journal_seq=seq - 1,
                    loop_state=f"loop:{checkpoints}:planner:{rng.getrandbits(32):08x}",
                    created_at_ms=at_ms,
                    content_ref_manifest=manifest,
                )
            )
        else:
            # Slots left before `completed`, checkpoint slots (not usable by
            # episodes) taken out.
            left = n - seq - ((n - 1) // shape.checkpoint_every - seq // shape.checkpoint_every)
            if len(open_) < shape.open_episodes:
                episode = shape.episode(rng, store)
                if owed + len(episode) <= left:
                    open_.append(deque(episode))
                    owed += len(episode)
            if open_:
                index = rng.randrange(len(open_))
                draft = open_[index].popleft()
                owed -= 1
                if not open_[index]:
                    del open_[index]
            else:
                draft = _Draft(shape.filler(rng, seq))
        yield JournalRecord(
            record_id=f"rec-{seq:09d}",
            journal_seq=seq,
            run_id=run_id,
            at_ms=at_ms,
            idempotency_key=draft.idempotency_key,
            dedupe_key=draft.dedupe_key,
            content_refs=draft.content_refs,
            payload=draft.payload,
        )


def _hex(rng: random.Random, bits: int = 64) -> str:
    return f"{rng.getrandbits(bits):0{bits // 4}x}"


def _refs(rng: random.Random, store: int, most: int) -> list[str]:
    """1..``most`` refs drawn from the content store (none when ``most`` is 0)."""
    return [content_ref(rng.randrange(store)) for _ in range(rng.randint(1, most))] if most else []


def _effect(rng: random.Random, store: int, refs: int = 0) -> list[_Draft]:
    """An effect intent (with an idempotency key) and its ``succeeded`` result.

    With ``refs``, the intent needs 1..``refs`` blobs and the result one (its output).
    """
    effect_id = f"eff-{_hex(rng, 48)}"
    output = content_ref(rng.randrange(store))
    intent = _Draft(
        EffectIntent(
            effect_id=effect_id,
            effect_kind=rng.choice(_TOOLS),
            idempotency_key=f"idem_{_hex(rng)}",
        ),
        content_refs=_refs(rng, store, refs),
    )
    result = _Draft(
        EffectResult(effect_id=effect_id, status="succeeded", output_ref=output),
        content_refs=[output] if refs else [],
    )
    return [intent, result]


def _delivery(rng: random.Random, store: int, refs: int = 0, dedupe: float = 0.0) -> list[_Draft]:
    """An output intent, then a ``delivered`` result, or (with chance ``dedupe``) a proof.

    A proven delivery has no ``output_result``: the ``output_dedupe`` for its
    dedupe key completes it at finish (SPEC 7.3, 2). With ``refs`` the intent
    needs 1..``refs`` blobs.
    """
    delivery_id = f"dlv-{_hex(rng, 48)}"
    dedupe_key = f"dd-{_hex(rng)}"
    operation = f"op-{_hex(rng, 48)}"
    intent = _Draft(
        OutputIntent(
            delivery_id=delivery_id,
            sink_ref=rng.choice(_SINKS),
            dedupe_key=dedupe_key,
            idempotency_key=f"idem_{_hex(rng)}",
        ),
        content_refs=_refs(rng, store, refs),
        dedupe_key=dedupe_key if dedupe else None,
    )
    if rng.random() < dedupe:
        proof = OutputDedupe(
            dedupe_key=dedupe_key,
            prior_external_operation_id=operation,
            prior_terminal_status="delivered",
        )
        return [intent, _Draft(proof, dedupe_key=dedupe_key)]
    events = [
        _Draft(OutputEvent(delivery_id=delivery_id, event=rng.choice(("queued", "sending"))))
        for _ in range(rng.randrange(3) if dedupe else 0)
    ]
    result = OutputResult(
        delivery_id=delivery_id, status="delivered", external_operation_id=operation
    )
    return [intent, *events, _Draft(result, dedupe_key=dedupe_key if dedupe else None)]


def _nested(rng: random.Random, seq: int) -> dict[str, Any]:
    """Harness data three levels deep: a model call's usage, messages and trace."""
    return {
        "step": seq,
        "model": rng.choice(_MODELS),
        "usage": {
            "prompt": rng.randrange(8000),
            "completion": rng.randrange(2000),
            "cost_usd": round(rng.random() / 50, 6),
        },
        "messages": [
            {
                "role": rng.choice(("assistant", "tool")),
                "tokens": rng.randrange(1500),
                "tags": rng.sample(("plan", "retry", "cache-hit", "tool-use", "final"), 2),
            }
            for _ in range(rng.randint(1, 2))
        ],
        "trace": {"span": _hex(rng), "parent": _hex(rng), "ms": round(rng.random() * 900, 3)},
    }


def _custom(rng: random.Random, seq: int) -> Payload:
    return Custom(
        name=rng.choice(("llm_call", "tool_trace", "planner_state")), data=_nested(rng, seq)
    )


def _progress(rng: random.Random, seq: int) -> Payload:
    return OutputEvent(delivery_id=f"dlv-{seq:08d}", event="progress")


def _custom_heavy(rng: random.Random, store: int) -> list[_Draft]:
    if rng.random() < 0.1:
        return _effect(rng, store)
    return [_Draft(_custom(rng, rng.randrange(1_000_000)))]


def _with_refs(rng: random.Random, store: int) -> list[_Draft]:
    if rng.random() < 0.6:
        return _effect(rng, store, refs=3)
    return _delivery(rng, store, refs=2)


def _deliveries(rng: random.Random, store: int) -> list[_Draft]:
    if rng.random() < 0.1:
        return _effect(rng, store)
    return _delivery(rng, store, dedupe=1 / 3)


@dataclass(frozen=True, slots=True)
class Mix:
    """One mix of records: its letter, a title for tables, and how to build it.

    ``checks_refs`` says whether the mix is meant to be replayed with
    ``available_content_refs`` (:meth:`replay_options`).
    """

    key: str
    title: str
    shape: _Shape | None = None  # None: replaycore.synthetic's run
    checks_refs: bool = False

    def records(
        self, n: int, *, seed: int = 0, run_id: str = "run-8f14e45f"
    ) -> Iterator[JournalRecord]:
        """The ``n`` records (``n >= 2``) of one clean run of this mix, numbered 1..n."""
        if self.shape is None:
            return synthetic_records(n, seed=seed, run_id=run_id)
        return _driven(self.shape, n, seed, run_id)

    def replay_options(self, n: int) -> dict[str, Any]:
        """Keyword options of ``replay`` for this mix's ``n``-record journal.

        For a mix that checks refs: ``available_content_refs``, every blob of
        its content store (a frozenset, built once per ``n``), so every ref
        and manifest entry resolves and the replay stays ``complete``.
        """
        if not self.checks_refs:
            return {}
        return {"available_content_refs": _available(n)}


@functools.lru_cache(maxsize=4)
def _available(n: int) -> frozenset[str]:
    return frozenset(content_ref(index) for index in range(_store_size(n)))


MIXES: dict[str, Mix] = {
    mix.key: mix
    for mix in (
        Mix("a", "synthetic"),
        Mix("b", "custom-heavy", _Shape(_custom_heavy, _custom)),
        Mix("c", "content refs", _Shape(_with_refs, _progress), checks_refs=True),
        Mix("d", "output deliveries", _Shape(_deliveries, _progress, open_episodes=4)),
        Mix(
            "e",
            "checkpoint-heavy",
            _Shape(_effect, _progress, checkpoint_every=4, manifest_refs=8),
            checks_refs=True,
        ),
    )
}


def many_runs(n: int) -> list[Iterator[JournalRecord]]:
    """Mix ``f``: ``max(1, n // RUN_RECORDS)`` runs of :data:`RUN_RECORDS` synthetic records.

    Run ``i`` has seed ``i`` and run id ``run-<i>``, so the runs differ.
    """
    return [
        synthetic_records(RUN_RECORDS, seed=i, run_id=f"run-{i:06d}")
        for i in range(max(1, n // RUN_RECORDS))
    ]


@functools.lru_cache(maxsize=2)
def many_runs_refs(n: int) -> frozenset[str]:
    """``available_content_refs`` for mix ``f``'s runs: every ref they name,
    and the content store of an ``n``-record mix, so the set is as large as
    a host's and every run still replays ``complete``."""
    named = {r for run in many_runs(n) for record in run for r in record.content_refs}
    return _available(n) | named


# What write_mix and write_many_runs wrote in this process: path -> (mix, n).
_WRITTEN: dict[Path, tuple[str, int]] = {}


def _write(path: Path, records: Iterator[JournalRecord]) -> None:
    path.unlink(missing_ok=True)
    with JournalWriter(path, fsync="never") as writer:
        batch: list[JournalRecord] = []
        for record in records:
            batch.append(record)
            if len(batch) == WRITE_BATCH:
                writer.append_many(batch)
                batch.clear()
        writer.append_many(batch)


def write_mix(folder: Path, key: str, n: int, fmt: Format = "rcj") -> Path:
    """The journal of mix ``key`` (``"a"``..``"e"``) with ``n`` records in ``folder``.

    Written once per process: a second call for the same file returns its
    path without writing (the file is ``mix-<key>-<n>.<fmt>``).
    """
    path = folder / f"mix-{key}-{n}.{fmt}"
    if _WRITTEN.get(path) != (key, n) or not path.exists():
        _write(path, MIXES[key].records(n))
        _WRITTEN[path] = (key, n)
    return path


def write_many_runs(folder: Path, n: int) -> list[Path]:
    """Mix ``f``'s runs for ``n`` records, one ``.rcj`` file each, under ``folder/runs-<n>``.

    Written once per process, like :func:`write_mix`.
    """
    where = folder / f"runs-{n}"
    where.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, records in enumerate(many_runs(n)):
        path = where / f"run-{index:06d}.rcj"
        if _WRITTEN.get(path) != ("f", n) or not path.exists():
            _write(path, records)
            _WRITTEN[path] = ("f", n)
        paths.append(path)
    return paths
