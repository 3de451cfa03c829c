"""The PostgreSQL schema of every store, as ordered migrations.

``MIGRATIONS[i]`` (a sequence of statements) takes a schema from version
``i`` to ``i + 1``; the version
is the one row of ``<schema>.replaycore_schema``, and
:class:`replaycore.postgres._engine.Engine` applies the missing migrations
under an advisory lock. ``{schema}`` stands for the quoted schema name. One
list serves every store, so one schema holds them all and its version is one
number. A released migration is never edited: a change is a new one.

Why the columns are what they are:

* Strings a caller chooses (scope parts, cache keys, lanes, targets, dedupe
  keys, consumer ids, errors) are ``bytea`` holding their UTF-8: PostgreSQL
  ``text`` cannot hold NUL, which the in-memory and SQLite stores accept, and
  byte comparison needs no collation.
* Times are what the stores' APIs use: ``float8`` seconds for the cache,
  ``bigint`` milliseconds for the outbox.
* The store's counters are spread over 16 rows per name (a connection adds
  to the row of its backend pid modulo 16) so that concurrent puts from many
  workers do not queue on one row lock; ``stats()`` sums them.
* The outbox has as few indexes as its hot path needs, since every claim and
  ack changes a row's status and so rewrites every index entry of the row:
  ``outbox_pending`` holds only pending messages in claim order, so a claim
  walks the due head of its lane however many messages are delivered or in
  flight; ``outbox_leases`` holds only claimed ones by lease expiry, so
  expired claims (to claim again or dead-letter) are found without visiting
  live ones; ``outbox_id`` is the key. Dedupe keys are the key of their own
  table (version 2), which claims and acks never touch. ``seq`` (the enqueue
  order) needs no index: a claim updates the rows it locked by their
  ``ctid``. A claim thus adds two index entries per message and an ack one.
  ``list()`` (an operator's view) sorts what it selects instead of keeping
  two more indexes.
"""

from __future__ import annotations

__all__ = ["COUNTER_SHARDS", "MIGRATIONS"]

#: Rows per counter name of the idempotency store.
COUNTER_SHARDS = 16

_V1 = (
    """
CREATE TABLE IF NOT EXISTS {schema}.idempotency_entries (
    client_id       bytea NOT NULL,
    adapter_id      bytea NOT NULL,
    idempotency_key bytea NOT NULL,
    value_type      text  NOT NULL,
    data            bytea NOT NULL,
    PRIMARY KEY (client_id, adapter_id, idempotency_key)
)
""",
    """
CREATE TABLE IF NOT EXISTS {schema}.idempotency_counters (
    name  text     NOT NULL,
    shard smallint NOT NULL,
    value bigint   NOT NULL DEFAULT 0,
    PRIMARY KEY (name, shard)
)
""",
    f"""
INSERT INTO {{schema}}.idempotency_counters (name, shard)
    SELECT name, shard
    FROM unnest(ARRAY['inserts', 'replays', 'conflicts']) AS name,
         generate_series(0, {COUNTER_SHARDS - 1}) AS shard
    ON CONFLICT DO NOTHING
""",
    """
CREATE TABLE IF NOT EXISTS {schema}.cache_results (
    key          bytea  PRIMARY KEY,
    intent_id    bytea  NOT NULL,
    outcome      bytea  NOT NULL,
    ttl_s        float8 NOT NULL,
    stored_at    float8 NOT NULL,
    expires_at   float8 NOT NULL,
    access_count bigint NOT NULL
)
""",
    """
CREATE INDEX IF NOT EXISTS cache_results_expiry ON {schema}.cache_results (expires_at)
""",
    """
CREATE TABLE IF NOT EXISTS {schema}.cache_leases (
    key        bytea  PRIMARY KEY,
    token      text   NOT NULL,
    expires_at float8 NOT NULL
)
""",
    # The claim of a cache key, in one call (one round trip): under the key's
    # transaction advisory lock (which storing an outcome takes too), so each
    # statement after it sees every claim and outcome committed before. The
    # time is read after the lock is held. Returns one row: 'hit' with the
    # entry (its access counted), 'held' with another caller's lease expiry,
    # or 'claimed' when the caller now holds a lease of p_lease seconds.
    # A hit commits asynchronously: it wrote nothing but the access count.
    """
CREATE OR REPLACE FUNCTION {schema}.cache_claim(
    p_lock integer, p_key bytea, p_token text, p_now float8, p_lease float8
) RETURNS TABLE (
    what text, intent_id bytea, outcome bytea, ttl_s float8, stored_at float8,
    expires_at float8, access_count bigint, held_until float8
) LANGUAGE plpgsql AS $$
DECLARE
    v_now float8;
    v_held float8;
BEGIN
    -- A live entry is a hit whoever else is busy with the key: no lock needed.
    FOR attempt IN 1..2 LOOP
        v_now := COALESCE(p_now, extract(epoch FROM clock_timestamp())::float8);
        RETURN QUERY
            UPDATE {schema}.cache_results r SET access_count = r.access_count + 1
            WHERE r.key = p_key AND v_now < r.expires_at
            RETURNING 'hit'::text, r.intent_id, r.outcome, r.ttl_s, r.stored_at,
                      r.expires_at, r.access_count, NULL::float8;
        IF FOUND THEN
            -- Only the access count changed, a statistic: the hit does not
            -- wait for its commit to reach disk (see PostgresResultCache).
            PERFORM set_config('synchronous_commit', 'off', true);
            RETURN;
        END IF;
        EXIT WHEN attempt = 2;
        -- A miss: take the key's lock, then look again (an outcome may have
        -- been stored while we waited).
        PERFORM pg_advisory_xact_lock(p_lock, hashtext(encode(p_key, 'base64')));
    END LOOP;
    DELETE FROM {schema}.cache_results r WHERE r.key = p_key;
    SELECT l.expires_at INTO v_held FROM {schema}.cache_leases l
        WHERE l.key = p_key AND v_now < l.expires_at;
    IF FOUND THEN
        RETURN QUERY SELECT 'held'::text, NULL::bytea, NULL::bytea, NULL::float8,
            NULL::float8, NULL::float8, NULL::bigint, v_held;
        RETURN;
    END IF;
    INSERT INTO {schema}.cache_leases AS l (key, token, expires_at)
        VALUES (p_key, p_token, v_now + p_lease)
        ON CONFLICT (key) DO UPDATE SET token = EXCLUDED.token, expires_at = EXCLUDED.expires_at;
    RETURN QUERY SELECT 'claimed'::text, NULL::bytea, NULL::bytea, NULL::float8,
        NULL::float8, NULL::float8, NULL::bigint, NULL::float8;
END
$$
""",
    # Storing the outcome of a claimed key (p_outcome NULL: none, the lease is
    # only given up), under the same lock: kept unless a live entry appeared
    # meanwhile (the first completion wins); the caller's lease is dropped.
    """
CREATE OR REPLACE FUNCTION {schema}.cache_complete(
    p_lock integer, p_key bytea, p_token text, p_now float8,
    p_intent_id bytea, p_outcome bytea, p_ttl_s float8, p_access_count bigint
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_now float8;
BEGIN
    PERFORM pg_advisory_xact_lock(p_lock, hashtext(encode(p_key, 'base64')));
    v_now := COALESCE(p_now, extract(epoch FROM clock_timestamp())::float8);
    IF p_outcome IS NOT NULL THEN
        INSERT INTO {schema}.cache_results AS r
            (key, intent_id, outcome, ttl_s, stored_at, expires_at, access_count)
            VALUES (p_key, p_intent_id, p_outcome, p_ttl_s, v_now, v_now + p_ttl_s,
                    p_access_count)
            ON CONFLICT (key) DO UPDATE SET intent_id = EXCLUDED.intent_id,
                outcome = EXCLUDED.outcome, ttl_s = EXCLUDED.ttl_s,
                stored_at = EXCLUDED.stored_at, expires_at = EXCLUDED.expires_at,
                access_count = EXCLUDED.access_count
            WHERE r.expires_at <= v_now;
    END IF;
    DELETE FROM {schema}.cache_leases l WHERE l.key = p_key AND l.token = p_token;
END
$$
""",
    """
CREATE TABLE IF NOT EXISTS {schema}.outbox_messages (
    outbox_id        text   PRIMARY KEY,
    seq              bigint GENERATED ALWAYS AS IDENTITY,
    lane             bytea  NOT NULL,
    target           bytea  NOT NULL,
    payload          bytea  NOT NULL,
    dedupe_key       bytea,
    status           text   NOT NULL
                     CHECK (status IN ('pending', 'claimed', 'delivered', 'dead_letter')),
    available_at     bigint NOT NULL,
    attempt_count    bigint NOT NULL,
    max_attempts     bigint NOT NULL,
    claimed_by       bytea,
    claim_token      text,
    lease_expires_at bigint,
    last_error       bytea,
    created_at       bigint NOT NULL,
    updated_at       bigint NOT NULL
)
""",
    """
CREATE UNIQUE INDEX IF NOT EXISTS outbox_dedupe
    ON {schema}.outbox_messages (dedupe_key) WHERE dedupe_key IS NOT NULL
""",
    """
CREATE INDEX IF NOT EXISTS outbox_pending
    ON {schema}.outbox_messages (lane, target, created_at, seq)
    WHERE status = 'pending'
""",
    """
CREATE INDEX IF NOT EXISTS outbox_leases
    ON {schema}.outbox_messages (lane, target, lease_expires_at)
    WHERE status = 'claimed'
""",
)

_V1_JOURNALS = (
    # One row per run: the last seq (appends lock this row, so they serialize
    # per run and never share a seq), whether a terminal status was written,
    # and the run's lease. A lease token stays after expiry until someone
    # acquires or claims the run, so an expired lease nobody took still writes.
    """
CREATE TABLE IF NOT EXISTS {schema}.journal_runs (
    run_id           bytea   PRIMARY KEY,
    last_seq         bigint  NOT NULL DEFAULT 0,
    records          bigint  NOT NULL DEFAULT 0,
    sealed           boolean NOT NULL DEFAULT false,
    lease_owner      bytea,
    lease_token      text,
    lease_expires_at bigint
)
""",
    # Leases that ran out on unsealed runs, oldest first: what claim_abandoned walks.
    """
CREATE INDEX IF NOT EXISTS journal_runs_abandoned
    ON {schema}.journal_runs (lease_expires_at)
    WHERE lease_token IS NOT NULL AND NOT sealed
""",
    # A record is kept as its .rcj frame header (length and CRCs) and its
    # canonical msgpack body, so reading a run is a concatenation the Rust
    # reducer takes in bulk.
    """
CREATE TABLE IF NOT EXISTS {schema}.journal_records (
    run_id      bytea  NOT NULL,
    journal_seq bigint NOT NULL,
    record_id   bytea  NOT NULL,
    kind        text   NOT NULL,
    header      bytea  NOT NULL,
    body        bytea  NOT NULL,
    PRIMARY KEY (run_id, journal_seq)
)
""",
)

# Version 2: the outbox's dedupe keys move to a table of their own, written
# once when a message is enqueued. As a unique index on outbox_messages every
# claim and every ack (each a new row version) added an entry to it; claims
# and acks now add none. The message keeps its dedupe_key column (read, never
# indexed). Message ids compare bytewise (COLLATE "C"): the key's btree is
# probed by every ack, and a database whose default collation is a language's
# would compare the ids by that language's rules. Pages of outbox_messages
# are filled to 70% (new pages only): a claim or an ack then writes the
# message's new version on its own page, which needs less WAL than a version
# moved to a new page at the table's end (measured: 19% less WAL and 11% less
# server CPU per delivered message). Each statement can run again
# on a schema that has it (a version-0 row replays every migration).
_V2 = (
    """
CREATE TABLE IF NOT EXISTS {schema}.outbox_dedupe_keys (
    dedupe_key bytea PRIMARY KEY,
    outbox_id  text COLLATE "C" NOT NULL
)
""",
    """
INSERT INTO {schema}.outbox_dedupe_keys (dedupe_key, outbox_id)
    SELECT dedupe_key, outbox_id FROM {schema}.outbox_messages WHERE dedupe_key IS NOT NULL
    ON CONFLICT DO NOTHING
""",
    """
DROP INDEX IF EXISTS {schema}.outbox_dedupe
""",
    """
ALTER TABLE {schema}.outbox_messages ALTER COLUMN outbox_id TYPE text COLLATE "C"
""",
    """
ALTER TABLE {schema}.outbox_messages SET (fillfactor = 70)
""",
)

#: The migrations, oldest first; ``len(MIGRATIONS)`` is the current version.
MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1 + _V1_JOURNALS, _V2)
