-- Consumers of the change feed (derived indexes) read every project's
-- changes in change-sequence order, keep a durable cursor each, and the
-- outbox is pruned once all of them have passed a change. The horizon is
-- the newest sequence pruned: a feed reader whose cursor is older has
-- missed changes (410 gone) and a consumer behind it rebuilds from the data.
CREATE TABLE feed_cursors (
    consumer    TEXT PRIMARY KEY,
    position    INTEGER NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE TABLE feed_horizon (
    only_row    INTEGER PRIMARY KEY CHECK (only_row = 1),
    position    INTEGER NOT NULL
);
INSERT INTO feed_horizon (only_row, position) VALUES (1, 0);
