-- Secondary indexes a bulk load into an empty store dropped, to be built
-- after it (store/sqlite/bulk.rs). Written in the drop's transaction, so an
-- interrupted load's indexes are built at the next open.
CREATE TABLE deferred_indexes (
    name  TEXT PRIMARY KEY,
    sql   TEXT NOT NULL
);
