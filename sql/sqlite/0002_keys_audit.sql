-- Per-org API keys (only a hash of the secret is kept) and the audit trail.

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,         -- public part of the key
    org_id      TEXT NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    scopes      TEXT NOT NULL,            -- JSON array: read | write | admin
    secret_hash TEXT NOT NULL,            -- hex SHA-256 of the secret part
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    revoked_at  TEXT
);
CREATE INDEX api_keys_by_org ON api_keys (org_id, id);

-- One row per write, in the write's own transaction. Purged content is never
-- copied here: only ids and actions.
CREATE TABLE audit_events (
    id          INTEGER PRIMARY KEY,
    org_id      TEXT NOT NULL,
    project_id  TEXT,
    at          TEXT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    ip          TEXT,
    user_agent  TEXT,
    details     TEXT NOT NULL             -- JSON object
);
CREATE INDEX audit_by_org ON audit_events (org_id, id);
CREATE INDEX audit_by_action ON audit_events (org_id, action, id);
CREATE INDEX audit_by_target ON audit_events (org_id, target, id);
