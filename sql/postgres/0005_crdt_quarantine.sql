-- Stored Yjs updates that no longer pass the update check (written before
-- it existed) are moved here: kept for inspection, never merged again.
-- As sql/sqlite/0005_crdt_quarantine.sql.
CREATE TABLE crdt_quarantine (
    org_id          text NOT NULL,
    project_id      text NOT NULL,
    doc_id          text NOT NULL,
    seq             bigint NOT NULL,
    bytes           bytea NOT NULL,
    origin          text,
    at              timestamptz NOT NULL,
    reason          text NOT NULL,
    quarantined_at  timestamptz NOT NULL,
    PRIMARY KEY (org_id, project_id, doc_id, seq)
);
