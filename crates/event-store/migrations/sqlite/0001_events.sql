-- The append-only log. global_position orders the whole log; (stream_id, version)
-- orders one order's history and enforces optimistic concurrency.
CREATE TABLE events (
    global_position INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        TEXT    NOT NULL UNIQUE,
    stream_id       TEXT    NOT NULL,
    version         INTEGER NOT NULL CHECK (version > 0),
    event_type      TEXT    NOT NULL,
    schema_version  INTEGER NOT NULL,
    data            TEXT    NOT NULL,
    occurred_at     TEXT    NOT NULL,
    actor           TEXT    NOT NULL,
    correlation_id  TEXT    NOT NULL,
    causation_id    TEXT    NOT NULL,
    traceparent     TEXT,
    idempotency_key TEXT,
    UNIQUE (stream_id, version)
);

-- Responses kept under idempotency keys, written in the same transaction as the events.
CREATE TABLE idempotency (
    key          TEXT    PRIMARY KEY,
    request_hash TEXT    NOT NULL,
    status       INTEGER NOT NULL,
    response     TEXT    NOT NULL,
    created_at   TEXT    NOT NULL
);

-- Cached stream states; an optimisation only, ignored when `schema` is not the current one.
CREATE TABLE snapshots (
    stream_id TEXT    PRIMARY KEY,
    version   INTEGER NOT NULL,
    schema    TEXT    NOT NULL,
    state     TEXT    NOT NULL
);

-- Append-only, enforced by the database too.
CREATE TRIGGER events_are_immutable_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are immutable'); END;
CREATE TRIGGER events_are_immutable_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are immutable'); END;
