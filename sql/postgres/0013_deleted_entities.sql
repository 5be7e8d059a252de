-- Nothing on PostgreSQL: the SQLite store's 0013 adds the index of deleted
-- entities its bulk load reads relationship ends from (here the load
-- locks the ends' rows, so it reads them anyway). The file keeps the two
-- backends' migration lists alike.
SELECT 1;
