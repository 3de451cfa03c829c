"""The outbox (SPEC sections 10 and 12) in PostgreSQL: many workers on many
machines drain one outbox, and no two of them ever hold the same message."""

from __future__ import annotations

import builtins
import operator
import re
import secrets
from collections.abc import Iterable
from typing import Any

import psycopg_pool

from replaycore.errors import InvalidArgument, OutboxValidationError
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
    _check_now,
    _encode_payload,
    _new_id,
    _token,
    first_acks,
)
from replaycore.postgres._engine import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_SCHEMA,
    DEFAULT_TIMEOUT_S,
    Engine,
    PostgresStore,
)

__all__ = ["PostgresOutbox"]

# The time a statement works with, in ms: the caller's ``now`` when given,
# else the database's clock at the start of the statement.
_NOW = "COALESCE(%(now)s::bigint, floor(extract(epoch FROM statement_timestamp()) * 1000)::bigint)"

_COLUMNS = (
    "outbox_id, lane, target, payload, dedupe_key, status, available_at, attempt_count, "
    "max_attempts, claimed_by, claim_token, lease_expires_at, last_error, created_at, updated_at"
)


# Ids and claim tokens this store makes: 32 lowercase hex digits.
_HEX = re.compile("[0-9a-f]{32}")
_HEX_LIST = re.compile("[0-9a-f]{32}(?:,[0-9a-f]{32})*")


def _utf8(raw: bytes | None) -> str | None:
    return None if raw is None else bytes(raw).decode()


def _message(row: tuple[Any, ...]) -> OutboxMessage:
    return OutboxMessage(
        outbox_id=row[0],
        lane=bytes(row[1]).decode(),
        target=bytes(row[2]).decode(),
        payload=_DECODER.decode(row[3]),
        dedupe_key=_utf8(row[4]),
        status=row[5],
        available_at=row[6],
        attempt_count=row[7],
        max_attempts=row[8],
        claimed_by=_utf8(row[9]),
        # a row delivered by an earlier release may still hold its last token
        claim_token=row[10] if row[5] == "claimed" else None,
        lease_expires_at=row[11],
        last_error=_utf8(row[12]),
        created_at=row[13],
        updated_at=row[14],
    )


# created_at, then seq, of a row the claim returns
_CLAIM_ORDER = operator.itemgetter(9, 11)


def _now(now: Any) -> int | None:
    return _check_now(now, database_clock=True)


class PostgresOutbox(PostgresStore):
    """The outbox of SPEC section 10 in PostgreSQL.

    Same operations, rules and answers as :class:`~replaycore.outbox.MemoryOutbox`
    and :class:`~replaycore.sqlite.SqliteOutbox` (one behaviour suite runs
    over all of them; :class:`~replaycore.outbox.ScopedOutbox` wraps it like
    any store), plus what many machines need:

    * **Claims** are one statement: ``SELECT ... FOR UPDATE SKIP LOCKED`` picks
      the oldest due messages of the lane that no concurrent claimer holds
      locked, and the same statement marks them claimed, after dead-lettering
      the lane's exhausted expired leases. Concurrent workers never wait on
      each other's rows and never get the same message.
    * **Clock.** Every ``now`` defaults to None: the database server's clock
      (epoch milliseconds), so leases mean the same to every worker whatever
      its own clock says. A message's ``updated_at`` after a claim is that
      clock's time, so ``retry_at = message.updated_at + delay`` schedules a
      retry on it. An explicit ``now`` (tests) works as in the other stores;
      do not mix the two on one outbox unless your clock is the server's.
    * **Round trips.** ``enqueue``, ``claim``, ``ack``, ``ack_many`` and
      ``nack`` are one statement each; ``enqueue_many`` is one transaction in
      one round trip. What returned survives a server crash.

    ``dsn_or_pool``, ``schema``, ``timeout_s`` and ``max_connections`` are
    those of :class:`~replaycore.postgres.PostgresIdempotencyStore`.

    Raises:
        OutboxValidationError: any bad argument (``field`` names it), before
            anything is sent.
        StoreUnavailable: the server is unreachable or the connection broke,
            with the driver's error as ``__cause__``. The operation may or may
            not have committed, and each is safe to retry: a retried enqueue
            with a dedupe key returns the stored message (without one it may
            store a second copy, so give messages dedupe keys), a retried ack
            of a committed ack is False while the message is delivered, a
            retried claim may leave the first claim's messages to lapse and be
            claimed again (at-least-once delivery).
    """

    def __init__(
        self,
        dsn_or_pool: str | psycopg_pool.ConnectionPool[Any],
        *,
        schema: str = DEFAULT_SCHEMA,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        try:
            self._engine = engine = Engine(
                dsn_or_pool,
                schema=schema,
                timeout_s=timeout_s,
                max_connections=max_connections,
                owner="outbox",
            )
        except InvalidArgument as exc:
            raise OutboxValidationError(exc.message, exc.argument or "dsn") from None
        table = engine.table("outbox_messages")
        select = f"SELECT {_COLUMNS} FROM {table}"
        self._select = select
        keys = engine.table("outbox_dedupe_keys")
        # A new message, or the one already holding its dedupe key. The key is
        # inserted first (into its own table, which claims and acks never
        # touch) and the message only if the key was free. The fallback SELECT
        # sees rows committed before this statement began; a key committed by
        # a concurrent enqueue after that is found by the retry in
        # _enqueue_all. Within enqueue_many, an earlier draft's key is seen.
        self._enqueue_sql = (
            f"WITH t AS (SELECT {_NOW} AS now), "
            f"k AS (INSERT INTO {keys} (dedupe_key, outbox_id) "
            "SELECT %(dedupe_key)s, %(id)s WHERE %(dedupe_key)s::bytea IS NOT NULL "
            "ON CONFLICT DO NOTHING RETURNING outbox_id), "
            f"ins AS (INSERT INTO {table} (outbox_id, lane, target, payload, dedupe_key, status, "
            "available_at, attempt_count, max_attempts, created_at, updated_at) "
            "SELECT %(id)s, %(lane)s, %(target)s, %(payload)s, %(dedupe_key)s, 'pending', "
            "%(available_at)s, 0, %(max_attempts)s, t.now, t.now FROM t "
            "WHERE %(dedupe_key)s::bytea IS NULL OR EXISTS (SELECT FROM k) "
            f"RETURNING {_COLUMNS}) "
            "SELECT * FROM ins UNION ALL "
            f"{select} WHERE outbox_id = (SELECT outbox_id FROM {keys} "
            "WHERE dedupe_key = %(dedupe_key)s) AND NOT EXISTS (SELECT FROM ins)"
        )
        self._by_dedupe = (
            f"{select} WHERE outbox_id = (SELECT outbox_id FROM {keys} WHERE dedupe_key = %s)"
        )
        # The claim, in one statement:
        # * swept: exhausted expired leases of the lane become dead letters,
        #   through the partial index of claimed rows; SKIP LOCKED leaves rows
        #   another transaction is acking or claiming to that transaction.
        # * pending / expired: the oldest due messages of each kind, each
        #   through its own partial index (pending ones in claim order;
        #   expired claims by expiry, then ordered), FOR UPDATE SKIP LOCKED so
        #   that concurrent claimers take disjoint rows without waiting for
        #   each other. The sets are disjoint, so all updates fit one statement.
        # * picked: the oldest ``limit`` of both; the extra rows locked but not
        #   picked are free again when the statement commits.
        # * tokens: the claim's 16 random hex digits (64 bits, made by the
        #   client) followed by the message's seq in 16 hex digits, so each
        #   message of a claim gets its own token, a new claim of it a new one,
        #   and nobody else can guess it. A random uuid made and formatted per
        #   row cost the server about a tenth of the claim.
        # ``{limit}`` is written into the text (a checked int, one prepared
        # statement per batch size): with ``LIMIT $n`` the server's generic
        # plan is costed for a tenth of the table, never beats the custom
        # plans, and every claim was planned again -- about as long as
        # running it. With the literal, the generic plan is chosen.
        lane_is = "lane = %(lane)s AND target = %(target)s"
        self._claim_sql = (
            f"WITH t AS (SELECT {_NOW} AS now), "
            f"swept AS (UPDATE {table} m SET status = 'dead_letter', last_error = %(expired)s, "
            "claimed_by = NULL, claim_token = NULL, lease_expires_at = NULL, updated_at = t.now "
            "FROM t WHERE m.ctid IN ("
            f"SELECT ctid FROM {table} WHERE {lane_is} "
            "AND status = 'claimed' AND lease_expires_at <= (SELECT now FROM t) "
            "AND attempt_count >= max_attempts FOR UPDATE OF outbox_messages SKIP LOCKED)), "
            f"pending AS (SELECT ctid, created_at, seq FROM {table} WHERE {lane_is} "
            "AND status = 'pending' AND available_at <= (SELECT now FROM t) "
            "ORDER BY created_at, seq LIMIT {limit} FOR UPDATE OF outbox_messages SKIP LOCKED), "
            f"expired AS (SELECT ctid, created_at, seq FROM {table} WHERE {lane_is} "
            "AND status = 'claimed' AND lease_expires_at <= (SELECT now FROM t) "
            "AND attempt_count < max_attempts "
            "ORDER BY created_at, seq LIMIT {limit} FOR UPDATE OF outbox_messages SKIP LOCKED), "
            "picked AS (SELECT ctid FROM (SELECT * FROM pending UNION ALL SELECT * FROM expired) u "
            "ORDER BY created_at, seq LIMIT {limit}) "
            f"UPDATE {table} m SET status = 'claimed', claimed_by = %(consumer)s, "
            "claim_token = %(token)s || lpad(to_hex(m.seq), 16, '0'), "
            "lease_expires_at = t.now + %(lease_ms)s, attempt_count = m.attempt_count + 1, "
            "updated_at = t.now FROM t, picked WHERE m.ctid = picked.ctid "
            # What the caller knows already (lane, target, consumer, status) is
            # not sent back.
            "RETURNING m.outbox_id, m.payload, m.dedupe_key, m.available_at, "
            "m.attempt_count, m.max_attempts, m.claim_token, m.lease_expires_at, "
            "m.last_error, m.created_at, m.updated_at, m.seq"
        )
        # Acks: delivered while the token holds the claim, within the lanes
        # that start with the prefix (ScopedOutbox). Each (id, token) pair is
        # probed through the key's index (a join with the pairs unnested)
        # instead of walking the partial index of claimed rows. The UPDATE
        # returns the position of each pair it delivered: a few bytes a row,
        # where the pairs themselves were two texts to parse. The rows are not
        # locked first: a ``SELECT ... FOR UPDATE`` before it wrote a lock
        # record to the WAL for every message. A concurrent ack of the same
        # claim waits for the row, then finds it no longer claimed. "Claimed"
        # is tested as "has a lease" (only a claimed row has one: every other
        # status clears it) because with ``status = 'claimed'`` the planner
        # may walk the partial index of claimed rows, dead entries included,
        # instead of the key.
        ack_sql = (
            f"WITH t AS (SELECT {_NOW} AS now) "
            f"UPDATE {table} m SET status = 'delivered', claim_token = NULL, "
            "lease_expires_at = NULL, updated_at = t.now FROM t{pairs} "
            "WHERE {match} AND m.lease_expires_at IS NOT NULL "
            "AND substring(m.lane FROM 1 FOR %(prefix_len)s) = %(prefix)s "
            "RETURNING {returning}"
        )
        self._ack_sql = ack_sql.format(
            pairs=", unnest(string_to_array(%(ids)s::text, ','), "
            "string_to_array(%(tokens)s::text, ',')) WITH ORDINALITY AS a(id, token, n)",
            match="m.outbox_id = a.id AND m.claim_token = a.token",
            returning="a.n",
        )
        # One claim has its own statement: the server's generic plan for
        # arrays is costed for ten elements, dearer than a custom plan for
        # one, so acks of one message were planned again on every call.
        self._ack_one_sql = ack_sql.format(
            pairs="", match="m.outbox_id = %(id)s AND m.claim_token = %(token)s", returning="1"
        )
        self._nack_sql = (
            f"WITH t AS (SELECT {_NOW} AS now) "
            f"UPDATE {table} m SET "
            "status = CASE WHEN m.attempt_count >= m.max_attempts "
            "THEN 'dead_letter' ELSE 'pending' END, "
            "available_at = CASE WHEN m.attempt_count >= m.max_attempts "
            "THEN m.available_at ELSE %(retry_at)s END, "
            "last_error = %(error)s, claimed_by = NULL, claim_token = NULL, "
            "lease_expires_at = NULL, updated_at = t.now FROM t "
            "WHERE m.outbox_id = %(id)s AND m.status = 'claimed' AND m.claim_token = %(token)s "
            "RETURNING m.status"
        )
        self._get_sql = f"{select} WHERE outbox_id = %s"
        self._clock_sql = f"SELECT {_NOW}"

    def __repr__(self) -> str:
        return f"PostgresOutbox({self._engine.where!r}, schema={self.schema!r})"

    # -- enqueue -----------------------------------------------------------------

    @staticmethod
    def _draft_params(draft: OutboxDraft, payload: bytes, now: int | None) -> dict[str, Any]:
        return {
            "id": _new_id(),
            "lane": draft.lane.encode(),
            "target": draft.target.encode(),
            "payload": payload,
            "dedupe_key": None if draft.dedupe_key is None else draft.dedupe_key.encode(),
            "available_at": draft.available_at,
            "max_attempts": draft.max_attempts,
            "now": now,
        }

    def enqueue(self, draft: OutboxDraft, now: int | None = None) -> OutboxMessage:
        """Store ``draft`` as a pending message, or return the one holding its
        dedupe key; see :meth:`~replaycore.outbox.OutboxStore.enqueue`."""
        draft = _check_draft(draft)
        payload = _encode_payload(draft.payload)
        params = self._draft_params(draft, payload, _now(now))
        (message,) = self._enqueue_all([params])
        return message

    def enqueue_many(
        self, drafts: Iterable[OutboxDraft], now: int | None = None
    ) -> builtins.list[OutboxMessage]:
        """Enqueue every draft in order in one transaction (all or nothing); a
        later draft whose dedupe key an earlier one holds returns that message."""
        checked = _check_drafts(drafts)
        payloads = [_encode_payload(d.payload) for d in checked]
        at = _now(now)
        if not checked:
            return []
        return self._enqueue_all(
            [self._draft_params(d, p, at) for d, p in zip(checked, payloads, strict=True)]
        )

    def _enqueue_all(self, batch: builtins.list[dict[str, Any]]) -> builtins.list[OutboxMessage]:
        results = self._engine.statements([(self._enqueue_sql, p) for p in batch])
        messages: builtins.list[OutboxMessage | None] = [
            _message(rows[0]) if rows else None for rows in results
        ]
        missing = [i for i, m in enumerate(messages) if m is None]
        if missing:
            # A concurrent enqueue committed one of these dedupe keys after the
            # statement's snapshot: the insert yielded to it, so read it now.
            found = self._engine.statements(
                [(self._by_dedupe, (batch[i]["dedupe_key"],)) for i in missing]
            )
            for i, rows in zip(missing, found, strict=True):
                messages[i] = _message(rows[0])
        return [m for m in messages if m is not None]

    # -- claims ------------------------------------------------------------------

    def claim(
        self,
        lane: str,
        target: str,
        limit: int,
        lease_ms: int,
        consumer_id: str,
        now: int | None = None,
    ) -> builtins.list[OutboxMessage]:
        """Claim up to ``limit`` due messages of ``lane`` and ``target``, oldest
        first, in one statement; see :meth:`~replaycore.outbox.OutboxStore.claim`."""
        lane, target, limit, lease_ms, consumer_id, at = _check_claim(
            lane, target, limit, lease_ms, consumer_id, now, database_clock=True
        )
        # Binary results: a claimed row's dozen values cost the client about
        # half as much to parse as in text (hex bytea, decimal integers).
        rows = self._engine.rows(
            self._claim_sql.replace("{limit}", str(limit)),
            {
                "now": at,
                "expired": LEASE_EXPIRED.encode(),
                "lane": lane.encode(),
                "target": target.encode(),
                "consumer": consumer_id.encode(),
                "lease_ms": lease_ms,
                "token": secrets.token_hex(8),
            },
            binary=True,
        )
        rows.sort(key=_CLAIM_ORDER)
        return [
            OutboxMessage(
                outbox_id=row[0],
                lane=lane,
                target=target,
                payload=_DECODER.decode(row[1]),
                dedupe_key=_utf8(row[2]),
                status="claimed",
                available_at=row[3],
                attempt_count=row[4],
                max_attempts=row[5],
                claimed_by=consumer_id,
                claim_token=row[6],
                lease_expires_at=row[7],
                last_error=_utf8(row[8]),
                created_at=row[9],
                updated_at=row[10],
            )
            for row in rows
        ]

    def ack(self, outbox_id: str, claim_token: str | None, now: int | None = None) -> bool:
        """Mark a claimed message delivered; see :meth:`~replaycore.outbox.OutboxStore.ack`."""
        outbox_id = _any_text(outbox_id, "outbox_id")
        claim_token = _token(claim_token)
        (acked,) = self._ack([(outbox_id, claim_token)], _now(now), "")
        return acked

    def ack_many(
        self,
        claims: Iterable[tuple[str, str | None]],
        now: int | None = None,
        *,
        lane_prefix: str | None = None,
    ) -> builtins.list[bool]:
        """Ack every ``(outbox_id, claim_token)`` in one statement; see
        :meth:`~replaycore.outbox.OutboxStore.ack_many`."""
        checked = _check_claims(claims)
        at = _now(now)
        prefix = "" if lane_prefix is None else _any_text(lane_prefix, "lane_prefix")
        return self._ack(checked, at, prefix)

    def _ack(
        self, claims: builtins.list[tuple[str, str | None]], now: int | None, prefix: str
    ) -> builtins.list[bool]:
        # Sorted, so concurrent acks of overlapping claims lock rows in one order.
        wanted = sorted({(i, t) for i, t in claims if t is not None})
        ids, tokens = ",".join(i for i, _ in wanted), ",".join(t for _, t in wanted)
        if len(wanted) > 1 and not (_HEX_LIST.fullmatch(ids) and _HEX_LIST.fullmatch(tokens)):
            # An id or token this store never made holds no claim.
            wanted = [(i, t) for i, t in wanted if _HEX.fullmatch(i) and _HEX.fullmatch(t)]
            ids, tokens = ",".join(i for i, _ in wanted), ",".join(t for _, t in wanted)
        if not wanted:
            return [False] * len(claims)
        raw_prefix = prefix.encode()
        params: dict[str, Any] = {"now": now, "prefix_len": len(raw_prefix), "prefix": raw_prefix}
        if len(wanted) == 1:
            ((params["id"], params["token"]),) = wanted
            acked = set(wanted) if self._engine.rows(self._ack_one_sql, params) else set()
        else:
            # The pairs travel as two comma-separated strings, split by the
            # server: psycopg's array dumper cost more than the ack's SQL.
            params["ids"], params["tokens"] = ids, tokens
            rows = self._engine.rows(self._ack_sql, params, binary=True)
            if len(rows) == len(wanted) == len(claims):
                return [True] * len(claims)  # distinct claims, every one delivered
            acked = {wanted[n - 1] for (n,) in rows}
        return first_acks(claims, acked)

    def nack(
        self,
        outbox_id: str,
        claim_token: str | None,
        error: str,
        retry_at: int,
        now: int | None = None,
    ) -> NackOutcome:
        """Requeue or dead-letter a claimed message in one statement; see
        :meth:`~replaycore.outbox.OutboxStore.nack`."""
        outbox_id, claim_token, error, retry_at, at = _check_nack(
            outbox_id, claim_token, error, retry_at, now, database_clock=True
        )
        if claim_token is None:
            return "lost_claim"
        rows = self._engine.rows(
            self._nack_sql,
            {
                "now": at,
                "id": outbox_id,
                "token": claim_token,
                "error": error.encode(),
                "retry_at": retry_at,
            },
        )
        if not rows:
            return "lost_claim"
        return "dead_lettered" if rows[0][0] == "dead_letter" else "requeued"

    # -- reading -----------------------------------------------------------------

    def get(self, outbox_id: str) -> OutboxMessage | None:
        """The message with this id, or None."""
        outbox_id = _any_text(outbox_id, "outbox_id")
        rows = self._engine.rows(self._get_sql, (outbox_id,), binary=True)
        return _message(rows[0]) if rows else None

    def list(
        self, status: str | None = None, limit: int = 100, *, lane_prefix: str | None = None
    ) -> builtins.list[OutboxMessage]:
        """Up to ``limit`` messages, oldest first, read from one snapshot; see
        :meth:`~replaycore.outbox.OutboxStore.list`."""
        status, limit, prefix = _check_list(status, limit, lane_prefix)
        clauses: builtins.list[str] = []
        params: dict[str, Any] = {"limit": limit}
        if status is not None:
            clauses.append("status = %(status)s")
            params["status"] = status
        if prefix:
            raw = prefix.encode()
            clauses.append("substring(lane FROM 1 FOR %(prefix_len)s) = %(prefix)s")
            params |= {"prefix_len": len(raw), "prefix": raw}
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._engine.rows(
            f"{self._select}{where} ORDER BY created_at, seq LIMIT %(limit)s", params, binary=True
        )
        return [_message(row) for row in rows]

    def database_time_ms(self) -> int:
        """The database server's clock in epoch milliseconds: the ``now`` that
        ``now=None`` stands for (to compute ``available_at`` or ``retry_at``)."""
        ((value,),) = self._engine.rows(self._clock_sql, {"now": None})
        return int(value)
