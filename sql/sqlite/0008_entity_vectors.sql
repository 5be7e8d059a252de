-- Embeddings of live entities for semantic search, kept by the embedding
-- consumer of the change feed: one row per entity, the vector of the
-- version named, made by `model` (f32 little-endian, L2-normalised, so a
-- dot product is the cosine). Searched by an exact scan of the project.
CREATE TABLE entity_vectors (
    org_id      TEXT NOT NULL,
    project_id  TEXT NOT NULL,
    entity_id   TEXT NOT NULL,
    type        TEXT NOT NULL,
    version     INTEGER NOT NULL,
    model       TEXT NOT NULL,
    vector      BLOB NOT NULL,
    PRIMARY KEY (org_id, project_id, entity_id)
) WITHOUT ROWID;
