-- The outbox becomes the public change feed (GET .../changes): each change
-- names the version it made, and a project's changes are read in change
-- sequence order.
ALTER TABLE outbox ADD COLUMN version INTEGER;
CREATE INDEX outbox_by_project ON outbox (org_id, project_id, seq);
