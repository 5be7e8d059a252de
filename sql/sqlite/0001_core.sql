-- Core schema of the embedded backend: tenancy, versioned entities,
-- relationships, the outbox and the global change sequence.

CREATE TABLE orgs (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE projects (
    pk          INTEGER PRIMARY KEY,      -- short scope token for the FTS index
    org_id      TEXT NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    id          TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    UNIQUE (org_id, id)
);

-- One row: the last change sequence handed out. Every write takes the next.
CREATE TABLE change_seq (
    one    INTEGER PRIMARY KEY CHECK (one = 1),
    value  INTEGER NOT NULL
);
INSERT INTO change_seq (one, value) VALUES (1, 0);

CREATE TABLE entities (
    rowid       INTEGER PRIMARY KEY,      -- also the FTS row id
    org_id      TEXT NOT NULL,
    project_id  TEXT NOT NULL,
    id          TEXT NOT NULL,
    type        TEXT NOT NULL,
    properties  TEXT NOT NULL,            -- JSON object
    version     INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    updated_by  TEXT NOT NULL,
    deleted_at  TEXT,
    seq         INTEGER NOT NULL,         -- change sequence of the last write
    UNIQUE (org_id, project_id, id)
);
CREATE INDEX entities_by_type ON entities (org_id, project_id, type, id);

-- Every version of every entity. `patch` is the merge patch from the parent;
-- `snapshot` holds the full properties every K versions along a parent
-- chain (`chain` counts the deltas since the last snapshot), so any version
-- is rebuilt from at most K deltas.
CREATE TABLE entity_versions (
    org_id          TEXT NOT NULL,
    project_id      TEXT NOT NULL,
    entity_id       TEXT NOT NULL,
    version         INTEGER NOT NULL,
    parent_version  INTEGER,
    op              TEXT NOT NULL,
    type            TEXT NOT NULL,
    deleted         INTEGER NOT NULL,
    actor           TEXT NOT NULL,
    at              TEXT NOT NULL,
    patch           TEXT NOT NULL,
    snapshot        TEXT,
    chain           INTEGER NOT NULL,
    seq             INTEGER NOT NULL,
    PRIMARY KEY (org_id, project_id, entity_id, version)
) WITHOUT ROWID;

-- `live` is 1 while the relationship and both its ends are not deleted;
-- graph indexes cover live edges only.
CREATE TABLE relationships (
    rowid       INTEGER PRIMARY KEY,
    org_id      TEXT NOT NULL,
    project_id  TEXT NOT NULL,
    id          TEXT NOT NULL,
    type        TEXT NOT NULL,
    from_id     TEXT NOT NULL,
    to_id       TEXT NOT NULL,
    properties  TEXT NOT NULL,
    version     INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    updated_by  TEXT NOT NULL,
    deleted_at  TEXT,
    live        INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    UNIQUE (org_id, project_id, id)
);
CREATE INDEX relationships_out ON relationships (org_id, project_id, from_id, type, to_id) WHERE live = 1;
CREATE INDEX relationships_in ON relationships (org_id, project_id, to_id, type, from_id) WHERE live = 1;
-- Ends of any state, for purges and entity delete/restore.
CREATE INDEX relationships_from_any ON relationships (org_id, project_id, from_id);
CREATE INDEX relationships_to_any ON relationships (org_id, project_id, to_id);

-- Changes waiting for derived indexes (search, embeddings), written in the
-- transaction of the change they describe.
CREATE TABLE outbox (
    seq         INTEGER PRIMARY KEY,
    org_id      TEXT NOT NULL,
    project_id  TEXT NOT NULL,
    kind        TEXT NOT NULL,            -- entity | relationship
    target_id   TEXT NOT NULL,
    op          TEXT NOT NULL,
    at          TEXT NOT NULL
);

-- Full-text index of live entities: `scope` holds the project token
-- ("p<projects.pk>"), `body` every string value of the properties.
CREATE VIRTUAL TABLE entity_fts USING fts5 (
    scope, body,
    content = '',
    contentless_delete = 1,
    tokenize = 'porter unicode61 remove_diacritics 2',
    prefix = '2 3'
);
