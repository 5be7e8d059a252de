-- Stored Yjs updates that no longer pass the update check (written before
-- it existed) are moved here: kept for inspection, never merged again.
-- As sql/postgres/0005_crdt_quarantine.sql.
CREATE TABLE crdt_quarantine (
    org_id          TEXT NOT NULL,
    project_id      TEXT NOT NULL,
    doc_id          TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    bytes           BLOB NOT NULL,
    origin          TEXT,
    at              TEXT NOT NULL,
    reason          TEXT NOT NULL,
    quarantined_at  TEXT NOT NULL,
    PRIMARY KEY (org_id, project_id, doc_id, seq)
) WITHOUT ROWID;
