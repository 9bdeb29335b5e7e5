-- The append-only log. transaction_id records the writing transaction so that
-- readers can stay behind every transaction that may still commit (see
-- src/postgres.rs). (stream_id, version) enforces optimistic concurrency.
CREATE TABLE events (
    global_position BIGSERIAL   PRIMARY KEY,
    transaction_id  XID8        NOT NULL DEFAULT pg_current_xact_id(),
    event_id        UUID        NOT NULL UNIQUE,
    stream_id       UUID        NOT NULL,
    version         BIGINT      NOT NULL CHECK (version > 0),
    event_type      TEXT        NOT NULL,
    schema_version  INTEGER     NOT NULL,
    data            JSONB       NOT NULL,
    occurred_at     TIMESTAMPTZ NOT NULL,
    actor           TEXT        NOT NULL,
    correlation_id  TEXT        NOT NULL,
    causation_id    UUID        NOT NULL,
    traceparent     TEXT,
    idempotency_key TEXT,
    UNIQUE (stream_id, version)
);

-- The delivery order of the global log.
CREATE INDEX events_log_order ON events (transaction_id, global_position);

CREATE TABLE idempotency (
    key          TEXT        PRIMARY KEY,
    request_hash TEXT        NOT NULL,
    status       INTEGER     NOT NULL,
    response     JSONB       NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE snapshots (
    stream_id UUID   PRIMARY KEY,
    version   BIGINT NOT NULL,
    schema    TEXT   NOT NULL,
    state     JSONB  NOT NULL
);

CREATE FUNCTION events_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are immutable';
END $$;
CREATE TRIGGER events_are_immutable BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_are_immutable();
