-- Consumers of the change feed (derived indexes) read every project's
-- changes by feed position, keep a durable cursor each, and the outbox is
-- pruned once all of them have passed a change. The horizon is the newest
-- position pruned: a feed reader whose cursor is older has missed changes
-- (410 gone) and a consumer that is behind it rebuilds from the data.
CREATE UNIQUE INDEX outbox_feed ON outbox (position) WHERE position IS NOT NULL;
CREATE TABLE feed_cursors (
    consumer    text PRIMARY KEY,
    position    bigint NOT NULL,
    updated_at  timestamptz NOT NULL
);
CREATE TABLE feed_horizon (
    only_row    boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    position    bigint NOT NULL
);
INSERT INTO feed_horizon (position) VALUES (0);
