// create_vertex
CREATE (n:{label} {map}) RETURN 0
// update_vertex
MATCH (n:{label} {id: $id}) SET n = {map} RETURN 0
// delete_vertex_edges
MATCH (n {id: $id})-[e]-() DELETE e RETURN 0
// detach_delete_vertex
MATCH (n {id: $id}) DETACH DELETE n RETURN 0
// create_edge
MATCH (a:{from_label} {id: $from}), (b:{to_label} {id: $to}) CREATE (a)-[e:{label} {map}]->(b) RETURN 0
// delete_edge
MATCH ()-[e {id: $id}]->() DELETE e RETURN 0
// count_vertices
MATCH (n) RETURN count(n)
// count_edges
MATCH ()-[e]->() RETURN count(e)
// vertex_ids
MATCH (n) RETURN n.id
// edge_ends
MATCH (a)-[e]->(b) RETURN e.id, a.id, b.id
