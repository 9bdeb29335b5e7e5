-- Gap safety by commit order instead of the transaction-id horizon (see src/postgres.rs).
--
-- Every statement that inserts into `events` first takes this store's append lock, a
-- transaction-scoped advisory lock keyed by the table's oid. A statement-level BEFORE
-- trigger runs before any row of the statement is formed, so before `nextval` hands out
-- its positions: the lock is held from the first position a transaction draws until it
-- commits or aborts. Appends therefore commit in position order, whoever writes them
-- (this code, psql, a migration), and a reader can never see position n + 1 before n.
CREATE FUNCTION events_take_append_lock() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- 0x4f50 ('OP') in the high half keeps clear of other users of advisory locks.
    PERFORM pg_advisory_xact_lock((x'4f50'::bigint << 32) | TG_RELID::bigint);
    RETURN NULL;
END $$;
CREATE TRIGGER events_take_append_lock BEFORE INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_take_append_lock();

-- Positions alone are the delivery order now; they survive pg_dump and restore (the
-- sequence is dumped with its value), where transaction ids do not.
DROP INDEX events_log_order;
ALTER TABLE events DROP COLUMN transaction_id;

-- The store's identity, created with it and carried by dumps: checkpoints and
-- consistency tokens name it, so nothing ever mixes two stores' events.
CREATE TABLE store_identity (
    singleton  BOOLEAN     PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    store_id   UUID        NOT NULL DEFAULT gen_random_uuid(),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO store_identity DEFAULT VALUES;
