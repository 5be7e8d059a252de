-- Embeddings of live entities for semantic search, kept by the embedding
-- consumer of the change feed: one row per entity, the vector of the
-- version named, made by `model` (f32 little-endian, L2-normalised, so a
-- dot product is the cosine). Searched by an exact scan of the project;
-- pgvector's HNSW index, where the extension exists, is the next step.
CREATE TABLE entity_vectors (
    org_id      text NOT NULL,
    project_id  text NOT NULL,
    entity_id   text NOT NULL,
    type        text NOT NULL,
    version     bigint NOT NULL,
    model       text NOT NULL,
    vector      bytea NOT NULL,
    PRIMARY KEY (org_id, project_id, entity_id)
);
