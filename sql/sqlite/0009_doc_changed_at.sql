-- When a document last changed in any way (an update, a link, a snapshot, a
-- prune), so an incremental backup ships only the documents changed since
-- its parent. NULL (documents older than this column) counts as changed.
ALTER TABLE crdt_docs ADD COLUMN changed_at TEXT;
