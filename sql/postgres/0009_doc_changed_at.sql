-- As sql/sqlite/0009_doc_changed_at.sql.
ALTER TABLE crdt_docs ADD COLUMN changed_at timestamptz;
