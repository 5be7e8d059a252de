-- Nothing on PostgreSQL: only the SQLite store defers indexes during bulk
-- loads (its 0012 makes the table that records them). The file keeps the
-- two backends' migration lists alike.
SELECT 1;
