"""The PostgreSQL schema of every store, as ordered migrations.

``MIGRATIONS[i]`` takes a schema from version ``i`` to ``i + 1``; the version
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
* The outbox's partial index ``outbox_open`` holds only pending and claimed
  messages in claim order, so a claim walks the due head of its lane however
  many delivered messages the table keeps; ``outbox_leases`` finds expired
  claims to dead-letter.
"""

from __future__ import annotations

__all__ = ["COUNTER_SHARDS", "MIGRATIONS"]

#: Rows per counter name of the idempotency store.
COUNTER_SHARDS = 16

_V1 = f"""
CREATE TABLE IF NOT EXISTS {{schema}}.idempotency_entries (
    client_id       bytea NOT NULL,
    adapter_id      bytea NOT NULL,
    idempotency_key bytea NOT NULL,
    value_type      text  NOT NULL,
    data            bytea NOT NULL,
    PRIMARY KEY (client_id, adapter_id, idempotency_key)
);
CREATE TABLE IF NOT EXISTS {{schema}}.idempotency_counters (
    name  text     NOT NULL,
    shard smallint NOT NULL,
    value bigint   NOT NULL DEFAULT 0,
    PRIMARY KEY (name, shard)
);
INSERT INTO {{schema}}.idempotency_counters (name, shard)
    SELECT name, shard
    FROM unnest(ARRAY['inserts', 'replays', 'conflicts']) AS name,
         generate_series(0, {COUNTER_SHARDS - 1}) AS shard
    ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS {{schema}}.cache_results (
    key          bytea  PRIMARY KEY,
    intent_id    bytea  NOT NULL,
    outcome      bytea  NOT NULL,
    ttl_s        float8 NOT NULL,
    stored_at    float8 NOT NULL,
    expires_at   float8 NOT NULL,
    access_count bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS cache_results_expiry ON {{schema}}.cache_results (expires_at);
CREATE TABLE IF NOT EXISTS {{schema}}.cache_leases (
    key        bytea  PRIMARY KEY,
    token      text   NOT NULL,
    expires_at float8 NOT NULL
);

CREATE TABLE IF NOT EXISTS {{schema}}.outbox_messages (
    seq              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    outbox_id        text   NOT NULL UNIQUE,
    lane             bytea  NOT NULL,
    target           bytea  NOT NULL,
    payload          bytea  NOT NULL,
    dedupe_key       bytea  UNIQUE,
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
);
CREATE INDEX IF NOT EXISTS outbox_open
    ON {{schema}}.outbox_messages (lane, target, created_at, seq)
    WHERE status IN ('pending', 'claimed');
CREATE INDEX IF NOT EXISTS outbox_leases
    ON {{schema}}.outbox_messages (lane, target, lease_expires_at)
    WHERE status = 'claimed';
CREATE INDEX IF NOT EXISTS outbox_by_status
    ON {{schema}}.outbox_messages (status, created_at, seq);
CREATE INDEX IF NOT EXISTS outbox_by_age
    ON {{schema}}.outbox_messages (created_at, seq)
"""

#: The migrations, oldest first; ``len(MIGRATIONS)`` is the current version.
MIGRATIONS: tuple[str, ...] = (_V1,)
