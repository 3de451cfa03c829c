"""Journals in PostgreSQL with run leases (SPEC section 12): any machine can
resume any crashed run, and only one does.

A :class:`PostgresJournal` keeps many runs' journals in one table. Workers
take a :class:`RunLease` on a run (:meth:`~PostgresJournal.acquire`), append
under it (:meth:`~PostgresJournal.append` with ``lease=``), renew it while
they work and release it when done. When a worker dies, its lease runs out;
another worker takes the run over with :meth:`~PostgresJournal.claim_abandoned`,
replays its journal (:meth:`~PostgresJournal.replay`: which effects are
unsafe to retry, what needs repair) and carries on. The dead worker, if it
was only paused or cut off, gets :class:`~replaycore.errors.StaleLease` on
its next append and writes nothing: the append checks the lease in the
transaction that writes (fencing).

>>> import os
>>> from replaycore.records import JournalRecord, EffectIntent
>>> with PostgresJournal(os.environ["REPLAYCORE_DSN"]) as journal:  # doctest: +SKIP
...     lease = journal.acquire("run-42", "worker-a", lease_ms=30_000)
...     journal.append("run-42", [JournalRecord(record_id="r1", journal_seq=0,
...         run_id="run-42", payload=EffectIntent(effect_id="pay-1", effect_kind="payment"))],
...         lease=lease)[0].journal_seq
1
"""

from __future__ import annotations

import builtins
import struct
import uuid
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import msgspec
import psycopg
import psycopg_pool
from psycopg import pq

from replaycore.errors import InvalidArgument, InvalidArgumentType, StaleLease
from replaycore.postgres._engine import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_SCHEMA,
    DEFAULT_TIMEOUT_S,
    Engine,
    PostgresStore,
)
from replaycore.records import JournalRecord, RunLifecycle, TerminalResult, encode_canonical
from replaycore.reference.replay import TERMINAL_LIFECYCLE
from replaycore.replay import ReplayReducer
from replaycore.replay import replay_many as _replay_many
from replaycore.results import ReplayResult

__all__ = ["PostgresJournal", "RunLease"]

_INT64_MAX = 2**63 - 1
# With the database's clock, now + lease_ms must fit in a bigint.
_MAX_LEASE_MS = 2**62
# Records per round trip when reading or replaying a run. A page is one
# value the server builds and both ends copy several times, so pages of a
# few megabytes cost more per record than smaller ones: replaying 100,000
# records took 86 ms in pages of 20,000 and 52 ms in pages of 5,000.
DEFAULT_FETCH_RECORDS = 5_000

_NOW = "COALESCE(%(now)s::bigint, floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint)"
_MAGIC = b"RCJ1"
# Enough for the small runs' frames to be ordered in memory.
_PAGE_MEMORY = "SET LOCAL work_mem = '256MB'"
# A page of one run is read in key order straight from the primary key: an
# index scan feeds the frames to the aggregate already in seq order, where
# a bitmap scan would need them sorted first (measured: 14 ms -> 6 ms of
# server time per page of 20,000 frames). The settings only steer the
# planner; the page's order is the subquery's ORDER BY whatever it picks.
_PAGE_PLAN = "SET LOCAL enable_sort = off; SET LOCAL enable_bitmapscan = off"
_DECODER = msgspec.msgpack.Decoder(JournalRecord)
# Parameter types of the page statements, as libpq takes them.
_BYTEA_OID, _INT8_OID = 17, 20


class RunLease(msgspec.Struct, frozen=True):
    """Who owns a run, until when: ``RunLease(run_id, owner_id, token, expires_at_ms)``.

    ``token`` is the fencing token: an append with this lease commits only
    while it is the run's current token. ``expires_at_ms`` is epoch
    milliseconds on the clock the lease was taken with (the database's by
    default).
    """

    run_id: str
    owner_id: str
    token: str
    expires_at_ms: int


def _text(value: Any, argument: str) -> str:
    """A non-blank ``str`` that encodes as UTF-8, else a typed error naming it."""
    if not isinstance(value, str):
        raise InvalidArgumentType(
            f"{argument} must be a str, not {type(value).__name__}", argument, value
        )
    if not value.strip():
        raise InvalidArgument(f"{argument} must not be blank, got {value!r}", argument, value)
    try:
        value.encode()
    except UnicodeEncodeError:
        raise InvalidArgument(f"{argument} holds a lone surrogate", argument, value) from None
    return value


def _count(value: Any, argument: str, minimum: int, maximum: int = _INT64_MAX) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentType(
            f"{argument} must be an int, not {type(value).__name__}", argument, value
        )
    if not minimum <= value <= maximum:
        raise InvalidArgument(
            f"{argument} must be between {minimum} and {maximum}, got {value}", argument, value
        )
    return int(value)


def _now(now: Any, lease_ms: int | None = None) -> int | None:
    if now is None:
        return None
    at = _count(now, "now", 0)
    if lease_ms is not None and at + lease_ms > _INT64_MAX:
        raise InvalidArgument(
            f"now + lease_ms must not exceed 2**63 - 1, got {at} + {lease_ms}", "lease_ms", lease_ms
        )
    return at


def _lease(value: Any) -> RunLease:
    if not isinstance(value, RunLease):
        raise InvalidArgumentType(
            f"lease must be a RunLease, not {type(value).__name__}", "lease", value
        )
    return value


def _numbered(sql: str) -> bytes:
    """``sql`` with its ``%s`` placeholders numbered ``$1``, ``$2``, ... (libpq's)."""
    first, *rest = sql.split("%s")
    return (first + "".join(f"${i}{part}" for i, part in enumerate(rest, 1))).encode()


def _header(body: bytes) -> bytes:
    """The 12-byte ``.rcj`` frame header of ``body`` (SPEC 6.2)."""
    head = struct.pack("<II", len(body), zlib.crc32(body))
    return head + struct.pack("<I", zlib.crc32(head))


def _readable(record: JournalRecord, index: int) -> bytes:
    """The canonical body of ``record``, checked to decode back as what it is.

    A msgspec Struct does not check its fields when built, so a record with
    a field of the wrong type would encode, commit, and then make the run
    unreadable; it is refused here instead, naming it, before anything is
    written.
    """
    argument = f"records[{index}]"
    try:
        body = encode_canonical(record)
    except InvalidArgument as exc:
        raise type(exc)(f"{argument}: {exc.message}", argument, record) from None
    try:
        _DECODER.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise InvalidArgument(
            f"{argument} would not read back as a JournalRecord: {exc}", argument, record
        ) from None
    return body


def _terminal(record: JournalRecord) -> bool:
    """Whether the record seals its run (SPEC 7.2 rule 7)."""
    payload = record.payload
    return isinstance(payload, TerminalResult) or (
        isinstance(payload, RunLifecycle) and payload.status in TERMINAL_LIFECYCLE
    )


class PostgresJournal(PostgresStore):
    """Many runs' journals in one PostgreSQL table, with run leases (SPEC 12).

    * :meth:`append` writes records of one run in one transaction, all or
      nothing. ``journal_seq`` 0 is numbered after the run's last record; an
      explicit seq must be above it (and above the batch's previous one). A
      record whose ``run_id`` is not ``run_id`` is refused. Appends to one run
      from any number of processes serialize on the run's row: no two records
      of a run share a seq and none is skipped.
    * :meth:`read`, :meth:`last_seq`, :meth:`runs` read it back;
      :meth:`replay` / :meth:`replay_many` return exactly what
      :func:`replaycore.replay` returns for the same records in a file. The
      canonical bodies go to the Rust reducer in bulk: one round trip brings
      ``fetch_records`` records as one framed buffer.
    * Run leases: :meth:`acquire`, :meth:`renew`, :meth:`release`,
      :meth:`claim_abandoned`, and ``append(..., lease=...)`` fenced by the
      lease's token. A run is sealed once a record carrying a terminal status
      is appended; sealed runs are never handed out by :meth:`claim_abandoned`.
      Every ``now`` defaults to None: the database's clock (epoch ms).

    Decisions where the SPEC is silent:

    * An append without ``lease`` is not fenced (a harness that does not use
      leases writes freely); with one, it is refused with StaleLease unless
      the lease's token is the run's current one -- even past its expiry, as
      long as nobody acquired or claimed the run meanwhile.
    * ``acquire`` also works on a sealed run (a worker may still append a
      checkpoint or a recovery record); only ``claim_abandoned`` skips them.
    * ``runs()`` lists the runs that have at least one record, sorted.
    * Records are kept canonical (msgspec msgpack, SPEC 6.3) with their
      ``.rcj`` frame header, so a replay is the concatenation of frames.

    ``dsn_or_pool``, ``schema``, ``timeout_s`` and ``max_connections`` are
    those of :class:`~replaycore.postgres.PostgresIdempotencyStore`.

    Raises:
        InvalidArgument / InvalidArgumentType: a bad argument, naming it;
            nothing is written.
        StaleLease: the lease lost its run; nothing is written.
        StoreUnavailable: the server is unreachable or the connection broke
            (the driver's error as ``__cause__``). An append that raised it may
            or may not have committed: retry it with the records' explicit seqs
            (``append`` returns them numbered) and a committed first attempt
            makes the retry an InvalidArgument instead of a second copy.
    """

    def __init__(
        self,
        dsn_or_pool: str | psycopg_pool.ConnectionPool[Any],
        *,
        schema: str = DEFAULT_SCHEMA,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        fetch_records: int = DEFAULT_FETCH_RECORDS,
    ) -> None:
        self._fetch = _count(fetch_records, "fetch_records", 1)
        self._engine = engine = Engine(
            dsn_or_pool,
            schema=schema,
            timeout_s=timeout_s,
            max_connections=max_connections,
            owner="journal",
        )
        runs = engine.table("journal_runs")
        records = engine.table("journal_records")
        # Creates the run's row if needed and locks it until the append commits.
        self._lock_run = (
            f"INSERT INTO {runs} AS r (run_id) VALUES (%s) "
            "ON CONFLICT (run_id) DO UPDATE SET run_id = r.run_id "
            "RETURNING r.last_seq, r.lease_token"
        )
        self._write = (
            f"WITH ins AS (INSERT INTO {records} "
            "(run_id, journal_seq, record_id, kind, header, body) "
            "SELECT %(run)s, s, i, k, h, b FROM unnest("
            "%(seqs)s::bigint[], %(ids)s::bytea[], %(kinds)s::text[], "
            "%(headers)s::bytea[], %(bodies)s::bytea[]) AS x(s, i, k, h, b)) "
            f"UPDATE {runs} SET last_seq = %(last)s, records = records + %(count)s, "
            "sealed = sealed OR %(sealed)s "
            "WHERE run_id = %(run)s"
        )
        self._last_seq = f"SELECT last_seq FROM {runs} WHERE run_id = %s"
        self._extent = f"SELECT run_id, last_seq, records FROM {runs} WHERE run_id = ANY(%s)"
        self._runs = f"SELECT run_id FROM {runs} WHERE last_seq > 0 ORDER BY run_id"
        self._bodies = (
            f"SELECT body FROM {records} WHERE run_id = %s AND journal_seq > %s "
            "ORDER BY journal_seq LIMIT %s"
        )
        # A run's frames as one buffer per round trip: by seq range (a run
        # whose seqs are dense, so pages can be fetched in parallel), or the
        # next fetch_records after a seq (sparse seqs: one page after another).
        # The aggregate takes the frames in the order of the subquery (see
        # _PAGE_PLAN).
        page = (
            "SELECT string_agg(frame, ''::bytea), max(journal_seq) FROM ("
            f"SELECT journal_seq, header || body AS frame FROM {records} "
            "WHERE run_id = %s AND journal_seq > %s AND journal_seq <= %s "
            "ORDER BY journal_seq{limit}) AS page"
        )
        self._range = _numbered(page.format(limit=""))
        self._after = _numbered(page.format(limit=" LIMIT %s"))
        # Several small runs' frames in one round trip.
        self._runs_frames = (
            "SELECT run_id, string_agg(header || body, ''::bytea ORDER BY journal_seq) "
            f"FROM {records} WHERE run_id = ANY(%s) GROUP BY run_id"
        )
        # A new token for the owner when the run is free: never leased,
        # released, expired -- or already the same owner's.
        self._acquire = (
            f"WITH t AS (SELECT {_NOW} AS now) "
            f"INSERT INTO {runs} AS r (run_id, lease_owner, lease_token, lease_expires_at) "
            "SELECT %(run)s, %(owner)s, %(token)s, t.now + %(lease_ms)s FROM t "
            "ON CONFLICT (run_id) DO UPDATE SET lease_owner = EXCLUDED.lease_owner, "
            "lease_token = EXCLUDED.lease_token, lease_expires_at = EXCLUDED.lease_expires_at "
            "WHERE r.lease_token IS NULL OR r.lease_owner = EXCLUDED.lease_owner "
            "OR r.lease_expires_at <= (SELECT now FROM t) "
            "RETURNING r.lease_expires_at"
        )
        self._renew = (
            f"WITH t AS (SELECT {_NOW} AS now) "
            f"UPDATE {runs} r SET lease_expires_at = t.now + %(lease_ms)s FROM t "
            "WHERE r.run_id = %(run)s AND r.lease_token = %(token)s "
            "RETURNING r.lease_expires_at"
        )
        self._release = (
            f"UPDATE {runs} SET lease_owner = NULL, lease_token = NULL, "
            "lease_expires_at = NULL WHERE run_id = %s AND lease_token = %s RETURNING 1"
        )
        # Expired leases of unsealed runs, oldest expiry first, through the
        # partial index; SKIP LOCKED gives concurrent claimers disjoint runs
        # (and skips a run whose row an append holds right now).
        self._claim = (
            f"WITH t AS (SELECT {_NOW} AS now), "
            f"picked AS (SELECT run_id, lease_expires_at AS lapsed FROM {runs} "
            "WHERE lease_token IS NOT NULL AND NOT sealed "
            "AND lease_expires_at <= (SELECT now FROM t) "
            "ORDER BY lease_expires_at, run_id LIMIT %(limit)s "
            "FOR UPDATE OF journal_runs SKIP LOCKED) "
            f"UPDATE {runs} r SET lease_owner = %(owner)s, "
            "lease_token = replace(gen_random_uuid()::text, '-', ''), "
            "lease_expires_at = t.now + %(lease_ms)s FROM t, picked "
            "WHERE r.run_id = picked.run_id "
            "RETURNING r.run_id, r.lease_token, r.lease_expires_at, picked.lapsed"
        )

    def __repr__(self) -> str:
        return f"PostgresJournal({self._engine.where!r}, schema={self.schema!r})"

    # -- writing -------------------------------------------------------------------

    def append(
        self,
        run_id: str,
        records: Iterable[JournalRecord],
        *,
        lease: RunLease | None = None,
    ) -> builtins.list[JournalRecord]:
        """Append ``records`` to ``run_id``'s journal in one transaction; return
        them as stored (every ``journal_seq`` assigned).

        Raises:
            InvalidArgument / InvalidArgumentType: a blank run id, a record
                that is not a JournalRecord, of another run, or with an explicit
                seq at or below the last one (``argument`` names it, e.g.
                ``records[2].journal_seq``), or a lease of another run.
            StaleLease: ``lease`` is no longer the run's current lease.
            StoreUnavailable: see the class docstring.
        """
        run_id = _text(run_id, "run_id")
        if isinstance(records, (str, bytes)) or not isinstance(records, Iterable):
            raise InvalidArgumentType(
                f"records must be an iterable of JournalRecord, not {type(records).__name__}",
                "records",
                records,
            )
        batch = builtins.list(records)
        for i, record in enumerate(batch):
            if not isinstance(record, JournalRecord):
                raise InvalidArgumentType(
                    f"records[{i}] must be a JournalRecord, not {type(record).__name__}",
                    f"records[{i}]",
                    record,
                )
            if record.run_id != run_id:
                raise InvalidArgument(
                    f"records[{i}] belongs to run {record.run_id!r}, not {run_id!r}",
                    f"records[{i}].run_id",
                    record.run_id,
                )
            _count(record.journal_seq, f"records[{i}].journal_seq", 0)
        if lease is not None and _lease(lease).run_id != run_id:
            raise InvalidArgument(
                f"lease is for run {lease.run_id!r}, not {run_id!r}", "lease", lease
            )
        if not batch:
            return []
        raw_run = run_id.encode()

        def work(connection: psycopg.Connection[Any]) -> builtins.list[JournalRecord]:
            row = connection.execute(self._lock_run, (raw_run,)).fetchone()
            assert row is not None
            last, token = int(row[0]), row[1]
            if lease is not None and token != lease.token:
                raise StaleLease(
                    f"the lease {lease.token} of run {run_id!r} was lost: another owner "
                    "acquired or claimed the run, or it was released; nothing was written",
                    run_id,
                    lease.token,
                )
            stored = []
            for i, record in enumerate(batch):
                if record.journal_seq == 0:
                    if last == _INT64_MAX:
                        raise InvalidArgument(
                            f"records[{i}] cannot be numbered: the run's last seq is "
                            "2**63 - 1, the largest there is; nothing was written",
                            f"records[{i}].journal_seq",
                            0,
                        )
                    record = msgspec.structs.replace(record, journal_seq=last + 1)
                elif record.journal_seq <= last:
                    raise InvalidArgument(
                        f"records[{i}].journal_seq {record.journal_seq} is not above the "
                        f"run's last seq {last}; nothing was written",
                        f"records[{i}].journal_seq",
                        record.journal_seq,
                    )
                last = record.journal_seq
                stored.append(record)
            bodies = [_readable(record, i) for i, record in enumerate(stored)]
            connection.execute(
                self._write,
                {
                    "run": raw_run,
                    "seqs": [record.journal_seq for record in stored],
                    "ids": [record.record_id.encode() for record in stored],
                    "kinds": [record.payload.kind for record in stored],
                    "headers": [_header(body) for body in bodies],
                    "bodies": bodies,
                    "last": last,
                    "count": len(stored),
                    "sealed": any(_terminal(record) for record in stored),
                },
            )
            return stored

        return self._engine.run(work)

    # -- reading -------------------------------------------------------------------

    def last_seq(self, run_id: str) -> int:
        """The seq of the run's last record; 0 for a run with none."""
        rows = self._engine.rows(self._last_seq, (_text(run_id, "run_id").encode(),))
        return int(rows[0][0]) if rows else 0

    def runs(self) -> builtins.list[str]:
        """The ids of every run with at least one record, sorted."""
        return [bytes(run).decode() for (run,) in self._engine.rows(self._runs)]

    def read(self, run_id: str, after_seq: int = 0) -> Iterator[JournalRecord]:
        """The run's records with ``journal_seq > after_seq``, in seq order,
        fetched ``fetch_records`` at a time (no connection is held between
        pages)."""
        raw = _text(run_id, "run_id").encode()
        after = _count(after_seq, "after_seq", 0)
        return self._read(raw, after)

    def _read(self, raw: bytes, after: int) -> Iterator[JournalRecord]:
        while True:
            rows = self._engine.rows(self._bodies, (raw, after, self._fetch), binary=True)
            for (body,) in rows:
                yield _DECODER.decode(body)
            if len(rows) < self._fetch:
                return
            after = _DECODER.decode(rows[-1][0]).journal_seq

    def _page(self, sql: bytes, params: tuple[Any, ...]) -> tuple[bytes | None, int]:
        """One page of frames (its own read transaction, planned to read the
        primary key in order: ``_PAGE_PLAN``).

        The page is one value of several megabytes, fetched with one blocking
        libpq call (``psycopg.pq``), which releases the GIL while it waits and
        reads: the driver's own loop would take a Python-level turn per
        socket read, about as long again as the server's work on the page.
        ``sql`` numbers its parameters (``$1``): a run id, then int8s.
        """
        run, *numbers = params
        values = [run, *(str(int(n)).encode() for n in numbers)]
        types = [_BYTEA_OID] + [_INT8_OID] * len(numbers)
        formats = [1] + [0] * len(numbers)

        def work(connection: psycopg.Connection[Any]) -> tuple[bytes | None, int]:
            connection.execute(_PAGE_PLAN)
            result = connection.pgconn.exec_params(sql, values, types, formats, result_format=1)
            if result.status != pq.ExecStatus.TUPLES_OK:
                raise psycopg.errors.error_from_result(result)
            frames = result.get_value(0, 0)
            top = result.get_value(0, 1)
            return frames, 0 if top is None else int.from_bytes(top, "big", signed=True)

        return self._engine.run(work)

    def _extents(self, raws: builtins.list[bytes]) -> dict[bytes, tuple[int, int]]:
        """Each known run's (last seq, record count)."""
        rows = self._engine.rows(self._extent, (raws,))
        return {bytes(run): (int(last), int(count)) for run, last, count in rows}

    def _pages(self, raw: bytes, last: int, count: int) -> Iterator[bytes]:
        """The run's frames up to seq ``last`` as ``RCJ1`` buffers of about
        ``fetch_records`` records, in seq order.

        Records are never changed once committed, and an append commits its
        records with the run's last seq, so every record up to ``last`` is
        there and reading them in several transactions is consistent. When
        the seqs are dense (``last <= 2 * count``) the pages are seq ranges
        fetched two at a time on two connections, a page ahead of the caller,
        who reduces while the server works (the Rust reducer releases the
        GIL); otherwise each page starts after the previous one's last seq.
        """
        if count == 0:
            return
        width = self._fetch
        if last > 2 * count:
            after = 0
            while after < last:
                frames, top = self._page(self._after, (raw, after, last, width))
                if frames is None:
                    return
                yield _MAGIC + frames
                after = top
            return
        ranges = iter([(low, min(low + width, last)) for low in range(0, last, width)])
        with ThreadPoolExecutor(2, thread_name_prefix="replaycore-fetch") as fetchers:
            ahead: deque[Future[tuple[bytes | None, int]]] = deque()

            def submit() -> None:
                bounds = next(ranges, None)
                if bounds is not None:
                    ahead.append(fetchers.submit(self._page, self._range, (raw, *bounds)))

            for _ in range(3):
                submit()
            while ahead:
                frames, _ = ahead.popleft().result()
                submit()
                if frames is not None:
                    yield _MAGIC + frames

    def replay(self, run_id: str, **options: Any) -> ReplayResult:
        """Replay one run's journal: exactly what :func:`replaycore.replay`
        returns for the same records in a file (``torn_tail_bytes`` 0).

        ``options`` are those of :func:`replaycore.replay` (``mode``,
        ``available_content_refs``, ``missing_content_policy``, ``strict``).
        An unknown run replays as an empty journal. The run's frames reach the
        Rust reducer a page (``fetch_records`` records) per round trip, as one
        buffer each, never as one Python object per record; records appended
        while the replay runs are not in it.
        """
        raw = _text(run_id, "run_id").encode()
        reducer = ReplayReducer(**options)  # bad options fail before any round trip
        last, count = self._extents([raw]).get(raw, (0, 0))
        for buffer in self._pages(raw, last, count):
            reducer.apply_many(buffer)
        return reducer.finish()

    def replay_many(
        self,
        run_ids: Iterable[str],
        threads: int | None = None,
        return_exceptions: bool = False,
        **options: Any,
    ) -> builtins.list[Any]:
        """Replay many runs, the reductions in parallel with the GIL released,
        as :func:`replaycore.replay_many` does for files; results in order.

        Small runs' frames come several runs per round trip; every run's
        buffer is held in memory until the replays are done.
        """
        if isinstance(run_ids, (str, bytes)) or not isinstance(run_ids, Iterable):
            raise InvalidArgumentType(
                f"run_ids must be an iterable of str, not {type(run_ids).__name__}",
                "run_ids",
                run_ids,
            )
        raws = [_text(run_id, f"run_ids[{i}]").encode() for i, run_id in enumerate(run_ids)]
        extents = self._extents(sorted(set(raws)))
        frames: dict[bytes, bytes] = {}
        batches: builtins.list[builtins.list[bytes]] = [[]]
        batched = 0
        for raw, (last, count) in extents.items():
            if count > self._fetch:  # a large run: its own pages
                frames[raw] = b"".join(p[len(_MAGIC) :] for p in self._pages(raw, last, count))
                continue
            if batched + count > self._fetch and batches[-1]:
                batches.append([])
                batched = 0
            batches[-1].append(raw)
            batched += count
        # Batches of small runs, two at a time on two connections.
        with ThreadPoolExecutor(2, thread_name_prefix="replaycore-fetch") as fetchers:
            for found in fetchers.map(self._small_runs, [b for b in batches if b]):
                frames.update(found)
        sources = [_MAGIC + frames.get(raw, b"") for raw in raws]
        return _replay_many(sources, threads, return_exceptions, **options)

    def _small_runs(self, raws: builtins.list[bytes]) -> dict[bytes, bytes]:
        """Several runs' frames in one statement (one snapshot)."""

        def work(connection: psycopg.Connection[Any]) -> dict[bytes, bytes]:
            connection.execute(_PAGE_MEMORY)
            rows = connection.execute(self._runs_frames, (raws,), binary=True).fetchall()
            return {bytes(run): bytes(data) for run, data in rows}

        return self._engine.run(work)

    # -- run leases ----------------------------------------------------------------

    def acquire(
        self, run_id: str, owner_id: str, lease_ms: int, now: int | None = None
    ) -> RunLease | None:
        """A lease on ``run_id`` for ``lease_ms`` ms, or None while another
        owner's lease holds the run.

        Immediate when the run is free (never leased, released, or expired);
        the same owner acquiring again gets a new token (its old one is stale).
        """
        run_id = _text(run_id, "run_id")
        owner_id = _text(owner_id, "owner_id")
        lease_ms = _count(lease_ms, "lease_ms", 1, _MAX_LEASE_MS)
        token = uuid.uuid4().hex
        rows = self._engine.rows(
            self._acquire,
            {
                "now": _now(now, lease_ms),
                "run": run_id.encode(),
                "owner": owner_id.encode(),
                "token": token,
                "lease_ms": lease_ms,
            },
        )
        if not rows:
            return None
        return RunLease(run_id, owner_id, token, int(rows[0][0]))

    def renew(self, lease: RunLease, lease_ms: int, now: int | None = None) -> RunLease:
        """The lease extended to ``now + lease_ms``; StaleLease when it was lost."""
        lease = _lease(lease)
        lease_ms = _count(lease_ms, "lease_ms", 1, _MAX_LEASE_MS)
        rows = self._engine.rows(
            self._renew,
            {
                "now": _now(now, lease_ms),
                "run": lease.run_id.encode(),
                "token": lease.token,
                "lease_ms": lease_ms,
            },
        )
        if not rows:
            raise self._stale(lease, "renewed")
        return msgspec.structs.replace(lease, expires_at_ms=int(rows[0][0]))

    def release(self, lease: RunLease) -> None:
        """Free the run at once (another owner may acquire it); StaleLease when
        the lease was already lost."""
        lease = _lease(lease)
        if not self._engine.rows(self._release, (lease.run_id.encode(), lease.token)):
            raise self._stale(lease, "released")

    @staticmethod
    def _stale(lease: RunLease, what: str) -> StaleLease:
        return StaleLease(
            f"the lease {lease.token} of run {lease.run_id!r} cannot be {what}: another "
            "owner acquired or claimed the run, or it was released",
            lease.run_id,
            lease.token,
        )

    def claim_abandoned(
        self, owner_id: str, lease_ms: int, limit: int, now: int | None = None
    ) -> builtins.list[RunLease]:
        """Take over up to ``limit`` runs whose lease expired and that are not
        sealed, oldest expiry first; two claimers never get the same run."""
        owner_id = _text(owner_id, "owner_id")
        lease_ms = _count(lease_ms, "lease_ms", 1, _MAX_LEASE_MS)
        limit = _count(limit, "limit", 0)
        rows = self._engine.rows(
            self._claim,
            {
                "now": _now(now, lease_ms),
                "owner": owner_id.encode(),
                "lease_ms": lease_ms,
                "limit": limit,
            },
        )
        rows.sort(key=lambda row: (row[3], row[0]))
        return [
            RunLease(bytes(run).decode(), owner_id, token, int(expires))
            for run, token, expires, _ in rows
        ]
