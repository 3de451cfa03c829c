"""The outbox (SPEC section 10) in one SQLite file, shared by threads and
processes on one machine.

>>> import tempfile, pathlib
>>> from replaycore.outbox import OutboxDraft
>>> with SqliteOutbox(pathlib.Path(tempfile.mkdtemp()) / "outbox.db") as box:
...     box.enqueue(OutboxDraft("l", "t", {"n": 1}), now=5).payload
{'n': 1}
"""

from __future__ import annotations

import builtins
import heapq
import os
import sqlite3
from collections.abc import Iterable
from typing import Any

import msgspec

from replaycore.outbox import (
    _DECODER,
    LEASE_EXPIRED,
    NackOutcome,
    OutboxDraft,
    OutboxMessage,
    _any_text,
    _check_claim,
    _check_claims,
    _check_draft,
    _check_drafts,
    _check_list,
    _check_nack,
    _encode_payload,
    _integer,
    _new_id,
    _token,
    first_acks,
)
from replaycore.sqlite._engine import SqliteFile

__all__ = ["SqliteOutbox"]

_COLUMNS = (
    "seq, outbox_id, lane, target, payload, dedupe_key, status, available_at, attempt_count, "
    "max_attempts, claimed_by, claim_token, lease_expires_at, last_error, created_at, updated_at"
)
_SELECT = f"SELECT {_COLUMNS} FROM outbox_messages"

_INSERT = (
    "INSERT INTO outbox_messages (outbox_id, lane, target, payload, dedupe_key, status, "
    "available_at, attempt_count, max_attempts, created_at, updated_at) "
    "VALUES (?, ?, ?, ?, ?, 'pending', ?, 0, ?, ?, ?)"
)

_SWEEP = (
    "UPDATE outbox_messages SET status = 'dead_letter', last_error = ?, claimed_by = NULL, "
    "claim_token = NULL, lease_expires_at = NULL, updated_at = ? "
    "WHERE lane = ? AND target = ? AND status = 'claimed' AND lease_expires_at <= ? "
    "AND attempt_count >= max_attempts"
)
_DUE_PENDING = (
    f"{_SELECT} WHERE lane = ? AND target = ? AND status = 'pending' AND available_at <= ? "
    "ORDER BY created_at, seq LIMIT ?"
)
# Through the partial index of leases: only expired claims are visited, however many
# messages are in flight, and the few found are then sorted.
_DUE_EXPIRED = (
    f"{_SELECT} INDEXED BY outbox_messages_leases "
    "WHERE lane = ? AND target = ? AND status = 'claimed' AND lease_expires_at <= ? "
    "ORDER BY created_at, seq LIMIT ?"
)
_TAKE = (
    "UPDATE outbox_messages SET status = 'claimed', claimed_by = ?, claim_token = ?, "
    "lease_expires_at = ?, attempt_count = attempt_count + 1, updated_at = ? WHERE seq = ?"
)
_ACK = (
    "UPDATE outbox_messages SET status = 'delivered', claim_token = NULL, "
    "lease_expires_at = NULL, updated_at = ? "
    "WHERE outbox_id = ? AND status = 'claimed' AND claim_token = ?"
)
_ACK_IN_LANES = f"{_ACK} AND substr(lane, 1, ?) = ?"
_HOLDER = (
    "SELECT attempt_count, max_attempts FROM outbox_messages "
    "WHERE outbox_id = ? AND status = 'claimed' AND claim_token = ?"
)
_REQUEUE = (
    "UPDATE outbox_messages SET status = 'pending', available_at = ?, last_error = ?, "
    "claimed_by = NULL, claim_token = NULL, lease_expires_at = NULL, updated_at = ? "
    "WHERE outbox_id = ?"
)
_BURY = (
    "UPDATE outbox_messages SET status = 'dead_letter', last_error = ?, "
    "claimed_by = NULL, claim_token = NULL, lease_expires_at = NULL, updated_at = ? "
    "WHERE outbox_id = ?"
)

_Row = tuple[Any, ...]


def _from_row(row: _Row) -> OutboxMessage:
    return OutboxMessage(
        outbox_id=row[1],
        lane=row[2],
        target=row[3],
        payload=_DECODER.decode(row[4]),
        dedupe_key=row[5],
        status=row[6],
        available_at=row[7],
        attempt_count=row[8],
        max_attempts=row[9],
        claimed_by=row[10],
        claim_token=row[11],
        lease_expires_at=row[12],
        last_error=row[13],
        created_at=row[14],
        updated_at=row[15],
    )


def _row_order(row: _Row) -> tuple[int, int]:
    return (row[14], row[0])


class SqliteOutbox(SqliteFile):
    """An outbox in a SQLite file, shared by threads and processes on one machine.

    The file is opened through :class:`replaycore.sqlite._engine.Database` (WAL,
    ``synchronous=FULL``): a committed change survives a crash of the process
    or the machine. Every change runs in one ``BEGIN IMMEDIATE`` transaction,
    which serializes writers across processes, so a message is never claimed
    by two workers at once and a crash mid-operation leaves either all or none
    of it. Thread-safe; open one ``SqliteOutbox`` per process (do not carry
    one across ``fork``).

    Raises:
        StoreUnavailable: the file cannot be opened, read or written.

    >>> import tempfile, pathlib
    >>> with SqliteOutbox(pathlib.Path(tempfile.mkdtemp()) / "outbox.db") as box:
    ...     box.enqueue(OutboxDraft("l", "t", {"n": 1}), now=5).payload
    {'n': 1}
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(path)

    @staticmethod
    def _add(
        connection: sqlite3.Connection, draft: OutboxDraft, payload: bytes, now: int
    ) -> OutboxMessage:
        if draft.dedupe_key is not None:
            row = connection.execute(
                f"{_SELECT} WHERE dedupe_key = ?", (draft.dedupe_key,)
            ).fetchone()
            if row is not None:
                return _from_row(row)
        outbox_id = _new_id()
        connection.execute(
            _INSERT,
            (
                outbox_id,
                draft.lane,
                draft.target,
                payload,
                draft.dedupe_key,
                draft.available_at,
                draft.max_attempts,
                now,
                now,
            ),
        )
        return OutboxMessage(
            outbox_id=outbox_id,
            lane=draft.lane,
            target=draft.target,
            payload=_DECODER.decode(payload),
            dedupe_key=draft.dedupe_key,
            status="pending",
            available_at=draft.available_at,
            attempt_count=0,
            max_attempts=draft.max_attempts,
            claimed_by=None,
            claim_token=None,
            lease_expires_at=None,
            last_error=None,
            created_at=now,
            updated_at=now,
        )

    def enqueue(self, draft: OutboxDraft, now: int) -> OutboxMessage:
        """Store ``draft`` as a pending message; see :meth:`OutboxStore.enqueue`."""
        draft = _check_draft(draft)
        payload = _encode_payload(draft.payload)
        now = _integer(now, "now", 0)
        with self._db.write() as connection:
            return self._add(connection, draft, payload, now)

    def enqueue_many(self, drafts: Iterable[OutboxDraft], now: int) -> list[OutboxMessage]:
        """Enqueue every draft in order in one transaction (all or nothing)."""
        checked = _check_drafts(drafts)
        payloads = [_encode_payload(d.payload) for d in checked]
        now = _integer(now, "now", 0)
        with self._db.write() as connection:
            return [
                self._add(connection, d, p, now) for d, p in zip(checked, payloads, strict=True)
            ]

    def claim(
        self, lane: str, target: str, limit: int, lease_ms: int, consumer_id: str, now: int
    ) -> list[OutboxMessage]:
        """Claim due messages in one ``BEGIN IMMEDIATE`` transaction; see
        :meth:`OutboxStore.claim`."""
        lane, target, limit, lease_ms, consumer_id, now = _check_claim(
            lane, target, limit, lease_ms, consumer_id, now
        )
        lease_expires_at = now + lease_ms
        with self._db.write() as connection:
            connection.execute(_SWEEP, (LEASE_EXPIRED, now, lane, target, now))
            if limit == 0:
                return []
            pending = connection.execute(_DUE_PENDING, (lane, target, now, limit)).fetchall()
            expired = connection.execute(_DUE_EXPIRED, (lane, target, now, limit)).fetchall()
            rows = heapq.nsmallest(limit, pending + expired, key=_row_order)
            tokens = [_new_id() for _ in rows]
            connection.executemany(
                _TAKE,
                [
                    (consumer_id, token, lease_expires_at, now, row[0])
                    for row, token in zip(rows, tokens, strict=True)
                ],
            )
        return [
            msgspec.structs.replace(
                _from_row(row),
                status="claimed",
                claimed_by=consumer_id,
                claim_token=token,
                lease_expires_at=lease_expires_at,
                attempt_count=row[8] + 1,
                updated_at=now,
            )
            for row, token in zip(rows, tokens, strict=True)
        ]

    def ack(self, outbox_id: str, claim_token: str | None, now: int) -> bool:
        """Mark a claimed message delivered; see :meth:`OutboxStore.ack`."""
        outbox_id = _any_text(outbox_id, "outbox_id")
        claim_token = _token(claim_token)
        now = _integer(now, "now", 0)
        if claim_token is None:
            return False
        with self._db.write() as connection:
            return connection.execute(_ACK, (now, outbox_id, claim_token)).rowcount == 1

    def ack_many(
        self,
        claims: Iterable[tuple[str, str | None]],
        now: int,
        *,
        lane_prefix: str | None = None,
    ) -> builtins.list[bool]:
        """Ack each ``(outbox_id, claim_token)`` in one transaction; see
        :meth:`OutboxStore.ack_many`."""
        checked = _check_claims(claims)
        now = _integer(now, "now", 0)
        prefix = "" if lane_prefix is None else _any_text(lane_prefix, "lane_prefix")
        acked: set[tuple[str, str]] = set()
        with self._db.write() as connection:
            for outbox_id, claim_token in checked:
                if claim_token is None or (outbox_id, claim_token) in acked:
                    continue
                done = connection.execute(
                    _ACK_IN_LANES, (now, outbox_id, claim_token, len(prefix), prefix)
                )
                if done.rowcount == 1:
                    acked.add((outbox_id, claim_token))
        return first_acks(checked, acked)

    def nack(
        self, outbox_id: str, claim_token: str | None, error: str, retry_at: int, now: int
    ) -> NackOutcome:
        """Requeue or dead-letter a claimed message; see :meth:`OutboxStore.nack`."""
        outbox_id, claim_token, error, retry_at, now = _check_nack(
            outbox_id, claim_token, error, retry_at, now
        )
        if claim_token is None:
            return "lost_claim"
        with self._db.write() as connection:
            row = connection.execute(_HOLDER, (outbox_id, claim_token)).fetchone()
            if row is None:
                return "lost_claim"
            attempt_count, max_attempts = row
            if attempt_count >= max_attempts:
                connection.execute(_BURY, (error, now, outbox_id))
                return "dead_lettered"
            connection.execute(_REQUEUE, (retry_at, error, now, outbox_id))
            return "requeued"

    def get(self, outbox_id: str) -> OutboxMessage | None:
        """The message with this id, or None."""
        outbox_id = _any_text(outbox_id, "outbox_id")
        with self._db.read() as connection:
            row = connection.execute(f"{_SELECT} WHERE outbox_id = ?", (outbox_id,)).fetchone()
        return None if row is None else _from_row(row)

    def list(
        self, status: str | None = None, limit: int = 100, *, lane_prefix: str | None = None
    ) -> builtins.list[OutboxMessage]:
        """Up to ``limit`` messages, oldest first, read from one snapshot; see
        :meth:`OutboxStore.list`."""
        status, limit, prefix = _check_list(status, limit, lane_prefix)
        clauses: builtins.list[str] = []
        params: builtins.list[Any] = []
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        if prefix:
            clauses.append("substr(lane, 1, ?) = ?")
            params += [len(prefix), prefix]
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._db.read() as connection:
            rows = connection.execute(
                f"{_SELECT}{where} ORDER BY created_at, seq LIMIT ?", (*params, limit)
            ).fetchall()
        return [_from_row(row) for row in rows]
