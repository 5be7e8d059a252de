-- Per connection: load AGE and put ag_catalog on the search path (create_graph
-- and the graphid operator classes resolve through it). Strata's own tables
-- live in public and keep their unqualified names.
LOAD 'age';
SET search_path = ag_catalog, "$user", public;
