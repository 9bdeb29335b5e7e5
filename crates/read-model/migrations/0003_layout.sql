-- Which layout of derived data this read store holds: the layout of the `doc` JSON
-- (the domain `Order`'s, `Order::SCHEMA`) and how the other columns and the search
-- terms are derived from it. The code writes it when it opens the store; a store that
-- holds another layout (or none, having been written before this table existed) is
-- emptied and rebuilt from the event log instead of being misread.
CREATE TABLE layout (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    layout TEXT NOT NULL
);
