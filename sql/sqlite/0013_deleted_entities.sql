-- The deleted entities, by id: with the unique (org_id, project_id, id)
-- index it tells whether an entity exists and is live from two index
-- lookups, without reading its row (a bulk load's relationship ends).
-- Only deleted rows are in it, so live writes do not maintain it;
-- `deleted_at` is in the key so that a lookup needs nothing else.
CREATE INDEX entities_deleted ON entities (org_id, project_id, id, deleted_at)
    WHERE deleted_at IS NOT NULL;
