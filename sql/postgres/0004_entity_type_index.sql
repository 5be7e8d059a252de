-- The type index led with (org_id, project_id) and ended in id, so before
-- ANALYZE had run the planner costed it the same as the primary key for a
-- lookup by id, and prepared (generic) plans could pick it: every write then
-- scanned the whole project. Leading with type keeps it out of id lookups
-- and still serves "entities of a type, in id order".
DROP INDEX entities_by_type;
CREATE INDEX entities_by_type ON entities (type, org_id, project_id, id);
