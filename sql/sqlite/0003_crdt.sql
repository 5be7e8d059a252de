-- Yjs documents: an append-only update log per document, and snapshots that
-- cover a prefix of it (inline below a size threshold, else in the blob store).

CREATE TABLE crdt_docs (
    org_id          TEXT NOT NULL,
    project_id      TEXT NOT NULL,
    id              TEXT NOT NULL,
    entity_id       TEXT,                 -- the entity that owns the document
    created_at      TEXT NOT NULL,
    last_seq        INTEGER NOT NULL,
    pruned_through  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (org_id, project_id, id)
) WITHOUT ROWID;
CREATE INDEX crdt_docs_by_entity ON crdt_docs (org_id, project_id, entity_id);

CREATE TABLE crdt_updates (
    org_id      TEXT NOT NULL,
    project_id  TEXT NOT NULL,
    doc_id      TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    bytes       BLOB NOT NULL,
    origin      TEXT,
    at          TEXT NOT NULL,
    PRIMARY KEY (org_id, project_id, doc_id, seq)
) WITHOUT ROWID;

CREATE TABLE crdt_snapshots (
    org_id      TEXT NOT NULL,
    project_id  TEXT NOT NULL,
    doc_id      TEXT NOT NULL,
    covers_seq  INTEGER NOT NULL,
    covers_at   TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    size        INTEGER NOT NULL,
    sha256      TEXT NOT NULL,
    inline      BLOB,                     -- the state, when small
    blob_key    TEXT,                     -- else its key in the blob store
    PRIMARY KEY (org_id, project_id, doc_id, covers_seq)
) WITHOUT ROWID;
