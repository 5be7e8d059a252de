//! The flat nodes-and-edges form (the shape of the old file-based storage)
//! read into the export format, so it is imported like any export: checked
//! whole first, stored idempotently.
//!
//! The mapping:
//! - the input is one JSON object `{"nodes": [...], "edges": [...]}`
//!   (either list may be missing), read as a stream: one node or edge in
//!   memory at a time;
//! - a node `{"id", "type", "properties"?, ...}` is an entity at version 1:
//!   its properties are `properties` (an object) and every other key but
//!   `id` and `type`;
//! - an edge `{"from", "to", "type", "id"?, "properties"?, ...}` is a
//!   relationship at version 1, its properties gathered the same way; an
//!   edge without an id gets `edge-` and the first 32 hex digits of the
//!   SHA-256 of its from, type and to, so importing the file again finds it;
//! - both are made now by the importing caller.
//!
//! A node is two export lines (the entity and its version) and an edge one,
//! so a failure at export line L is node (L - 1) / 2 up to 2 × nodes lines,
//! and edge L - 2 × nodes - 1 after (`Flat::place`).

use crate::domain::export::{ExportRecord, RelationshipRecord, VersionRecord};
use crate::domain::{DomainError, DomainResult, Entity, Properties, Relationship, VersionOp};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;
use std::io::Write;

/// What a conversion wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flat {
    pub nodes: usize,
    pub edges: usize,
}

impl Flat {
    /// The node or edge an export line came from.
    pub fn place(&self, line: usize) -> String {
        let node_lines = 2 * self.nodes;
        if line <= node_lines {
            format!("nodes[{}]", line.saturating_sub(1) / 2)
        } else {
            format!("edges[{}]", line - node_lines - 1)
        }
    }
}

/// Reads the flat document from `input` and writes its export lines to
/// `out`: the nodes first, then the edges (an edge's ends must exist when
/// it is stored). Edges are held in a second file meanwhile.
pub fn convert(
    input: impl std::io::Read,
    out: &mut impl Write,
    actor: &str,
    at: &str,
) -> DomainResult<Flat> {
    let edges_file = tempfile::tempfile().map_err(DomainError::internal)?;
    let mut edges_out = std::io::BufWriter::new(edges_file);
    let mut flat = Flat::default();
    let mut writer = Lines {
        nodes: out,
        edges: &mut edges_out,
        actor,
        at,
        flat: &mut flat,
    };
    let mut de = serde_json::Deserializer::from_reader(std::io::BufReader::new(input));
    Document(&mut writer)
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(|e| {
            DomainError::BadRequest(format!("not a flat nodes-and-edges document: {e}"))
        })?;
    let mut edges_file = edges_out.into_inner().map_err(DomainError::internal)?;
    use std::io::Seek;
    edges_file
        .seek(std::io::SeekFrom::Start(0))
        .map_err(DomainError::internal)?;
    std::io::copy(&mut edges_file, out).map_err(DomainError::internal)?;
    Ok(flat)
}

struct Lines<'a, N, E> {
    nodes: &'a mut N,
    edges: &'a mut E,
    actor: &'a str,
    at: &'a str,
    flat: &'a mut Flat,
}

impl<N: Write, E: Write> Lines<'_, N, E> {
    fn node(&mut self, mut node: Map<String, Value>) -> Result<(), String> {
        let id = text(&mut node, "id")?;
        let entity_type = text(&mut node, "type")?;
        let properties = properties(node)?;
        let entity = Entity {
            id: id.clone(),
            entity_type: entity_type.clone(),
            properties: properties.clone(),
            version: 1,
            created_at: self.at.to_owned(),
            updated_at: self.at.to_owned(),
            created_by: self.actor.to_owned(),
            updated_by: self.actor.to_owned(),
            deleted_at: None,
            change_seq: 0,
        };
        let version = VersionRecord {
            entity: id,
            version: 1,
            parent: None,
            op: VersionOp::Create,
            entity_type,
            deleted: false,
            actor: self.actor.to_owned(),
            at: self.at.to_owned(),
            patch: Value::Object(properties.clone()),
            snapshot: Some(Value::Object(properties)),
            chain: 0,
        };
        let mut lines = Vec::new();
        crate::export::line(&mut lines, &ExportRecord::Entity(entity));
        crate::export::line(&mut lines, &ExportRecord::Version(version));
        self.nodes.write_all(&lines).map_err(|e| e.to_string())?;
        self.flat.nodes += 1;
        Ok(())
    }

    fn edge(&mut self, mut edge: Map<String, Value>) -> Result<(), String> {
        let from = text(&mut edge, "from")?;
        let to = text(&mut edge, "to")?;
        let rel_type = text(&mut edge, "type")?;
        let id = match edge.remove("id") {
            None | Some(Value::Null) => edge_id(&from, &rel_type, &to),
            Some(Value::String(id)) => id,
            Some(_) => return Err("`id` must be a string".into()),
        };
        let record = RelationshipRecord {
            relationship: Relationship {
                id,
                rel_type,
                from,
                to,
                properties: properties(edge)?,
                version: 1,
                created_at: self.at.to_owned(),
                updated_at: self.at.to_owned(),
                created_by: self.actor.to_owned(),
                updated_by: self.actor.to_owned(),
            },
            deleted_at: None,
        };
        let mut line = Vec::new();
        crate::export::line(&mut line, &ExportRecord::Relationship(record));
        self.edges.write_all(&line).map_err(|e| e.to_string())?;
        self.flat.edges += 1;
        Ok(())
    }
}

/// The id of an edge given none: the same for the same ends and type.
fn edge_id(from: &str, rel_type: &str, to: &str) -> String {
    let key = serde_json::to_vec(&[from, rel_type, to]).expect("strings serialise");
    format!("edge-{}", &crate::digest::sha256_hex(&key)[..32])
}

fn text(object: &mut Map<String, Value>, key: &str) -> Result<String, String> {
    match object.remove(key) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(format!("`{key}` must be a string")),
        None => Err(format!("`{key}` is missing")),
    }
}

/// `properties` (an object) and every other key left.
fn properties(mut object: Map<String, Value>) -> Result<Properties, String> {
    let mut out = match object.remove("properties") {
        None | Some(Value::Null) => Properties::new(),
        Some(Value::Object(p)) => p,
        Some(_) => return Err("`properties` must be an object".into()),
    };
    for (key, value) in object {
        if out.contains_key(&key) {
            return Err(format!("`{key}` is both a key and a property"));
        }
        out.insert(key, value);
    }
    Ok(out)
}

/// The top-level object: `nodes` and `edges`, each streamed.
struct Document<'w, 'a, N, E>(&'w mut Lines<'a, N, E>);

impl<'de, N: Write, E: Write> DeserializeSeed<'de> for Document<'_, '_, N, E> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, N: Write, E: Write> Visitor<'de> for Document<'_, '_, N, E> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(r#"an object {"nodes": [...], "edges": [...]}"#)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (mut nodes, mut edges) = (false, false);
        while let Some(key) = map.next_key::<String>()? {
            let (list, seen) = match key.as_str() {
                "nodes" => (List::Nodes, &mut nodes),
                "edges" => (List::Edges, &mut edges),
                other => {
                    return Err(serde::de::Error::custom(format!(
                        "unknown key `{other}` (a flat document has `nodes` and `edges`)"
                    )))
                }
            };
            if std::mem::replace(seen, true) {
                return Err(serde::de::Error::custom(format!("`{key}` twice")));
            }
            map.next_value_seed(Items {
                lines: &mut *self.0,
                list,
            })?;
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum List {
    Nodes,
    Edges,
}

/// One list, each item written as it is read.
struct Items<'w, 'a, N, E> {
    lines: &'w mut Lines<'a, N, E>,
    list: List,
}

impl<'de, N: Write, E: Write> DeserializeSeed<'de> for Items<'_, '_, N, E> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, N: Write, E: Write> Visitor<'de> for Items<'_, '_, N, E> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        while let Some(item) = seq.next_element::<Map<String, Value>>()? {
            let (name, done) = match self.list {
                List::Nodes => ("nodes", self.lines.node(item)),
                List::Edges => ("edges", self.lines.edge(item)),
            };
            done.map_err(|e| serde::de::Error::custom(format!("{name}[{index}]: {e}")))?;
            index += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn convert_str(doc: &str) -> DomainResult<(Flat, Vec<Value>)> {
        let mut out = Vec::new();
        let flat = convert(
            doc.as_bytes(),
            &mut out,
            "k1",
            "2026-12-04T10:00:00.000000Z",
        )?;
        let lines = out
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        Ok((flat, lines))
    }

    #[test]
    fn nodes_and_edges_become_export_lines_nodes_first() {
        let doc = json!({
            "edges": [{"from": "a", "to": "b", "type": "LINKS", "weight": 2}],
            "nodes": [
                {"id": "a", "type": "Person", "name": "Ada"},
                {"id": "b", "type": "Person", "properties": {"name": "Bob"}, "age": 3}
            ]
        });
        let (flat, lines) = convert_str(&doc.to_string()).unwrap();
        assert_eq!(flat, Flat { nodes: 2, edges: 1 });
        let kinds: Vec<&str> = lines.iter().map(|l| l["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            ["entity", "version", "entity", "version", "relationship"]
        );
        assert_eq!(lines[0]["properties"], json!({"name": "Ada"}));
        assert_eq!(lines[2]["properties"], json!({"name": "Bob", "age": 3}));
        assert_eq!(lines[1]["snapshot"], json!({"name": "Ada"}));
        let edge = &lines[4];
        assert_eq!(
            (edge["from"].as_str(), edge["properties"].clone()),
            (Some("a"), json!({"weight": 2}))
        );
        // The same edge always gets the same id.
        let (_, again) = convert_str(&doc.to_string()).unwrap();
        assert_eq!(again[4]["id"], edge["id"]);
        assert!(edge["id"].as_str().unwrap().starts_with("edge-"));
        assert_eq!(flat.place(1), "nodes[0]");
        assert_eq!(flat.place(4), "nodes[1]");
        assert_eq!(flat.place(5), "edges[0]");
    }

    #[test]
    fn a_bad_node_or_document_is_named() {
        for (doc, says) in [
            (
                r#"{"nodes": [{"id": "a", "type": "T"}, {"type": "T"}]}"#,
                "nodes[1]: `id` is missing",
            ),
            (
                r#"{"nodes": [], "edges": [{"from": "a", "type": "T"}]}"#,
                "edges[0]: `to` is missing",
            ),
            (
                r#"{"nodes": [{"id": "a", "type": "T", "properties": 3}]}"#,
                "must be an object",
            ),
            (
                r#"{"nodes": [{"id": "a", "type": "T", "properties": {"x": 1}, "x": 2}]}"#,
                "both",
            ),
            (r#"{"vertices": []}"#, "unknown key"),
            (r#"{"nodes": []} trailing"#, "trailing"),
            (r#"[1, 2]"#, "object"),
        ] {
            let e = convert_str(doc).unwrap_err().to_string();
            assert!(e.contains(says), "{doc}: {e}");
        }
    }
}
