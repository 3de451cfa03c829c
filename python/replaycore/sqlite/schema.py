"""The SQLite schema of every durable store, as ordered migrations.

``MIGRATIONS[i]`` takes a database file from ``PRAGMA user_version`` ``i`` to
``i + 1`` (:class:`replaycore.sqlite._engine.Database` applies them). One list
serves every store, so a single file may hold the idempotency store, the
result cache and the outbox together, and its version is one number. A
migration is never edited once released: a change to the schema is a new
script appended here.

Version 1 is the schema of replaycore 0.1. It uses ``IF NOT EXISTS``
throughout, so files written before schema versions existed (version 0 with
the tables already present) are adopted as they are.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS"]

_V1 = """
CREATE TABLE IF NOT EXISTS idempotency_entries (
    client_id TEXT NOT NULL,
    adapter_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    value_type TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (client_id, adapter_id, idempotency_key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idempotency_counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO idempotency_counters (name, value)
    VALUES ('inserts', 0), ('replays', 0), ('conflicts', 0);

CREATE TABLE IF NOT EXISTS cache_results (
    key TEXT PRIMARY KEY,
    intent_id TEXT NOT NULL,
    outcome BLOB NOT NULL,
    ttl_s REAL NOT NULL,
    stored_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    access_count INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS cache_results_expiry ON cache_results (expires_at);
CREATE TABLE IF NOT EXISTS cache_leases (
    key TEXT PRIMARY KEY,
    token TEXT NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS outbox_messages (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    outbox_id        TEXT    NOT NULL UNIQUE,
    lane             TEXT    NOT NULL,
    target           TEXT    NOT NULL,
    payload          BLOB    NOT NULL,
    dedupe_key       TEXT    UNIQUE,
    status           TEXT    NOT NULL
                     CHECK (status IN ('pending', 'claimed', 'delivered', 'dead_letter')),
    available_at     INTEGER NOT NULL,
    attempt_count    INTEGER NOT NULL,
    max_attempts     INTEGER NOT NULL,
    claimed_by       TEXT,
    claim_token      TEXT,
    lease_expires_at INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_messages_due
    ON outbox_messages (lane, target, status, created_at, seq);
CREATE INDEX IF NOT EXISTS outbox_messages_leases
    ON outbox_messages (lane, target, lease_expires_at) WHERE status = 'claimed';
CREATE INDEX IF NOT EXISTS outbox_messages_by_status
    ON outbox_messages (status, created_at, seq);
CREATE INDEX IF NOT EXISTS outbox_messages_by_age
    ON outbox_messages (created_at, seq)
"""

#: The migrations, oldest first; ``len(MIGRATIONS)`` is the current version.
MIGRATIONS: tuple[str, ...] = (_V1,)
