-- Per-org API keys and the audit trail (as sql/sqlite/0002_keys_audit.sql).

CREATE TABLE api_keys (
    id          text PRIMARY KEY,
    org_id      text NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    name        text NOT NULL,
    scopes      jsonb NOT NULL,
    secret_hash text NOT NULL,
    created_at  timestamptz NOT NULL,
    created_by  text NOT NULL,
    revoked_at  timestamptz
);
CREATE INDEX api_keys_by_org ON api_keys (org_id, id);

CREATE TABLE audit_events (
    id          bigserial PRIMARY KEY,
    org_id      text NOT NULL,
    project_id  text,
    at          timestamptz NOT NULL,
    actor       text NOT NULL,
    action      text NOT NULL,
    target      text NOT NULL,
    ip          text,
    user_agent  text,
    details     jsonb NOT NULL
);
CREATE INDEX audit_by_org ON audit_events (org_id, id);
CREATE INDEX audit_by_action ON audit_events (org_id, action, id);
CREATE INDEX audit_by_target ON audit_events (org_id, target, id);
