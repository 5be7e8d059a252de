-- Yjs documents (as sql/sqlite/0003_crdt.sql).

CREATE TABLE crdt_docs (
    org_id          text NOT NULL,
    project_id      text NOT NULL,
    id              text NOT NULL,
    entity_id       text,
    created_at      timestamptz NOT NULL,
    last_seq        bigint NOT NULL,
    pruned_through  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (org_id, project_id, id)
);
CREATE INDEX crdt_docs_by_entity ON crdt_docs (org_id, project_id, entity_id);

CREATE TABLE crdt_updates (
    org_id      text NOT NULL,
    project_id  text NOT NULL,
    doc_id      text NOT NULL,
    seq         bigint NOT NULL,
    bytes       bytea NOT NULL,
    origin      text,
    at          timestamptz NOT NULL,
    PRIMARY KEY (org_id, project_id, doc_id, seq)
);

CREATE TABLE crdt_snapshots (
    org_id      text NOT NULL,
    project_id  text NOT NULL,
    doc_id      text NOT NULL,
    covers_seq  bigint NOT NULL,
    covers_at   timestamptz NOT NULL,
    created_at  timestamptz NOT NULL,
    size        bigint NOT NULL,
    sha256      text NOT NULL,
    inline      bytea,
    blob_key    text,
    PRIMARY KEY (org_id, project_id, doc_id, covers_seq)
);
