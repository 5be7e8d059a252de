-- Per connection: load AGE and put ag_catalog on the search path AFTER
-- strata, Strata's own schema (its tables resolve there first; migrations
-- set search_path = strata themselves). AGE needs ag_catalog on the path,
-- although Strata qualifies every AGE name it writes (ag_catalog.cypher,
-- ag_catalog.agtype, ag_catalog.create_vlabel ...): on PostgreSQL 15 with
-- AGE 1.6, without it any MATCH fails with "operator does not exist:
-- ag_catalog.agtype @> ag_catalog.agtype" (or "ag_catalog.graphid =
-- ag_catalog.graphid") because the SQL that AGE generates names its
-- operators unqualified; on PGlite (AGE 1.7, PostgreSQL 18) create_graph
-- itself fails with "operator class graphid_ops does not exist for access
-- method btree".
LOAD 'age';
SET search_path = strata, ag_catalog;
