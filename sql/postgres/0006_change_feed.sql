-- The outbox becomes the public change feed (GET .../changes). Change
-- sequences are taken before commit, so concurrent writers commit them out
-- of order; the feed therefore pages by `position`, given to committed rows
-- after the fact, in order, by one daemon at a time before each feed read
-- (store/postgres/outbox.rs): a reader never passes a change that commits
-- later. Rows already committed keep their order (position = seq).
ALTER TABLE outbox ADD COLUMN version bigint;
ALTER TABLE outbox ADD COLUMN position bigint;
UPDATE outbox SET position = seq;
CREATE SEQUENCE feed_position;
SELECT setval('feed_position', COALESCE((SELECT max(seq) FROM outbox), 0) + 1, false);
CREATE UNIQUE INDEX outbox_by_position ON outbox (org_id, project_id, position)
    WHERE position IS NOT NULL;
CREATE INDEX outbox_unpositioned ON outbox (seq) WHERE position IS NULL;
