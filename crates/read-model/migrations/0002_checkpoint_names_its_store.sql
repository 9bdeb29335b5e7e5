-- Checkpoints name the event store they count in, and count in global positions
-- only (the PostgreSQL store no longer orders its log by transaction id). An older
-- checkpoint cannot be translated, and everything here is derived from the event
-- log: start over, and the projector replays the log from the beginning.
DELETE FROM orders_fts;
DELETE FROM orders;
DROP TABLE checkpoint;
CREATE TABLE checkpoint (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    -- The event store this read model is fed from; NULL until the first projector binds it.
    store_id TEXT,
    position INTEGER NOT NULL,
    covered  INTEGER NOT NULL
);
INSERT INTO checkpoint (id, store_id, position, covered) VALUES (1, NULL, 0, 0);
