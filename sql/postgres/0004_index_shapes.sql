-- Index shapes for prepared (generic) plans and index-only graph steps.

-- The type index led with (org_id, project_id) and ended in id, so before
-- ANALYZE had run the planner costed it the same as the primary key for a
-- lookup by id, and prepared plans could pick it: every write then scanned
-- the whole project. Leading with type keeps it out of id lookups and still
-- serves "entities of a type, in id order".
DROP INDEX entities_by_type;
CREATE INDEX entities_by_type ON entities (type, org_id, project_id, id);

-- The live-edge indexes carry the edge id, so a search step (ids and ends
-- of the edges around a frontier) is an index-only scan.
DROP INDEX relationships_out;
CREATE INDEX relationships_out ON relationships (org_id, project_id, from_id, type, to_id)
    INCLUDE (id) WHERE live;
DROP INDEX relationships_in;
CREATE INDEX relationships_in ON relationships (org_id, project_id, to_id, type, from_id)
    INCLUDE (id) WHERE live;
