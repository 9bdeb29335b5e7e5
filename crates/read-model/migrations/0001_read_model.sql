-- The query side of orders (embedded mode). Everything here can be rebuilt from the
-- event log: `reset` empties it and the projector replays the log from the start.

-- One row per order. `doc` is the full domain `Order` as JSON, the state the projector
-- evolves; the other columns are copies of its fields, kept for filtering and sorting.
-- Timestamps are fixed-width UTC text (`%Y-%m-%dT%H:%M:%S%.9fZ`), so text order is time order.
CREATE TABLE orders (
    order_id    TEXT    NOT NULL PRIMARY KEY,
    customer_id TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    currency    TEXT    NOT NULL,
    total_minor INTEGER NOT NULL,
    version     INTEGER NOT NULL CHECK (version > 0),
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL,
    doc         TEXT    NOT NULL
);

-- Keyset pagination walks (created_at, order_id); filters narrow it first.
CREATE INDEX orders_by_customer ON orders (customer_id, created_at, order_id);
CREATE INDEX orders_by_status   ON orders (status, created_at, order_id);
CREATE INDEX orders_by_created  ON orders (created_at, order_id);

-- Full-text search, one row per order sharing the order's rowid, rewritten whenever the
-- order changes. `terms` holds product names and SKUs, plus their parts split at '-' and
-- '_' so that `SKU-123` is found by `SKU-123`, `sku` and `123`.
CREATE VIRTUAL TABLE orders_fts USING fts5(
    order_id,
    customer_id,
    terms,
    tokenize = "unicode61 tokenchars '-_'"
);

-- Where the projector is. Written in the same transaction as the views it describes.
CREATE TABLE checkpoint (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    "commit" INTEGER NOT NULL,
    position INTEGER NOT NULL,
    covered  INTEGER NOT NULL
);
INSERT INTO checkpoint (id, "commit", position, covered) VALUES (1, 0, 0, 0);
