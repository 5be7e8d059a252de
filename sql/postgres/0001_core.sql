-- Core schema of the server backend: tenancy, versioned entities,
-- relationships, the outbox and the global change sequence. Same tables and
-- meaning as sql/sqlite/0001_core.sql.

CREATE TABLE orgs (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL
);

CREATE TABLE projects (
    pk          bigserial UNIQUE,         -- names the project's AGE graph
    org_id      text NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    id          text NOT NULL,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (org_id, id)
);

-- Every write takes the next value.
CREATE SEQUENCE change_seq;

CREATE TABLE entities (
    org_id      text NOT NULL,
    project_id  text NOT NULL,
    id          text NOT NULL,
    type        text NOT NULL,
    properties  jsonb NOT NULL,
    version     bigint NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    created_by  text NOT NULL,
    updated_by  text NOT NULL,
    deleted_at  timestamptz,
    seq         bigint NOT NULL,
    -- Full-text document: every string value of the properties.
    search      tsvector GENERATED ALWAYS AS (jsonb_to_tsvector('english', properties, '["string"]')) STORED,
    PRIMARY KEY (org_id, project_id, id)
);
CREATE INDEX entities_by_type ON entities (org_id, project_id, type, id);
CREATE INDEX entities_properties ON entities USING gin (properties jsonb_path_ops);
CREATE INDEX entities_search ON entities USING gin (search) WHERE deleted_at IS NULL;

-- See sql/sqlite/0001_core.sql for the meaning of patch/snapshot/chain.
CREATE TABLE entity_versions (
    org_id          text NOT NULL,
    project_id      text NOT NULL,
    entity_id       text NOT NULL,
    version         bigint NOT NULL,
    parent_version  bigint,
    op              text NOT NULL,
    type            text NOT NULL,
    deleted         boolean NOT NULL,
    actor           text NOT NULL,
    at              timestamptz NOT NULL,
    patch           jsonb NOT NULL,
    snapshot        jsonb,
    chain           integer NOT NULL,
    seq             bigint NOT NULL,
    PRIMARY KEY (org_id, project_id, entity_id, version)
);

CREATE TABLE relationships (
    org_id      text NOT NULL,
    project_id  text NOT NULL,
    id          text NOT NULL,
    type        text NOT NULL,
    from_id     text NOT NULL,
    to_id       text NOT NULL,
    properties  jsonb NOT NULL,
    version     bigint NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    created_by  text NOT NULL,
    updated_by  text NOT NULL,
    deleted_at  timestamptz,
    live        boolean NOT NULL,
    seq         bigint NOT NULL,
    PRIMARY KEY (org_id, project_id, id)
);
CREATE INDEX relationships_out ON relationships (org_id, project_id, from_id, type, to_id) WHERE live;
CREATE INDEX relationships_in ON relationships (org_id, project_id, to_id, type, from_id) WHERE live;
CREATE INDEX relationships_from_any ON relationships (org_id, project_id, from_id);
CREATE INDEX relationships_to_any ON relationships (org_id, project_id, to_id);

CREATE TABLE outbox (
    seq         bigint PRIMARY KEY,
    org_id      text NOT NULL,
    project_id  text NOT NULL,
    kind        text NOT NULL,
    target_id   text NOT NULL,
    op          text NOT NULL,
    at          timestamptz NOT NULL
);
