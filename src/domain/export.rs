//! The export format: one JSON object per line (NDJSON), each a stored row
//! of a project as it is, history included, so a project moves between
//! stores (and backends) without losing a version. `kind` names the row.
//! An org's export starts with its `org` line. A project's lines come in
//! this order: its `project` line, then each
//! entity (by id) followed by its `version` lines (by version), then its
//! relationships (by id), then each Yjs document (by id) followed by its
//! `doc_snapshot` lines (by covered sequence) and its retained `doc_update`
//! lines (by sequence). Deleted entities and relationships are included.

use super::{AuditEvent, DocInfo, Entity, Org, Relationship, VersionOp};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ExportRecord {
    /// An org; in org exports and backups, before the org's projects.
    Org(Org),
    Project(ProjectRecord),
    Entity(Entity),
    Version(VersionRecord),
    Relationship(RelationshipRecord),
    /// A document row; its snapshots and retained updates follow it.
    Doc(DocInfo),
    #[serde(rename = "doc_snapshot")]
    DocSnapshot(DocSnapshotRecord),
    #[serde(rename = "doc_update")]
    DocUpdate(DocUpdateRecord),
}

impl ExportRecord {
    /// Parses one line. A line as Strata writes it starts with its `kind`
    /// and names it once; it is read straight into its record, skipping
    /// the copy of the whole line serde buffers to find an internally
    /// tagged enum's tag (a third of an import's parsing). Any other line
    /// goes through the tagged enum. Both give the same record or both
    /// refuse the line (`fuzz/fuzz_targets/import_records.rs` checks it);
    /// a line that is not UTF-8 is refused before the shortcut, which would
    /// skip an unknown key's value without reading its bytes as text.
    pub fn from_line(line: &[u8]) -> serde_json::Result<Self> {
        let Ok(text) = std::str::from_utf8(line) else {
            return serde_json::from_slice(line);
        };
        let direct = text.strip_prefix(r#"{"kind":""#).and_then(|rest| {
            let (kind, after) = rest.split_once('"')?;
            let body = after.strip_prefix(',')?;
            // A second `kind` key is the tagged enum's error to give.
            memchr::memmem::find(body.as_bytes(), br#""kind""#)
                .is_none()
                .then_some(kind)
        });
        use serde_json::from_str;
        match direct {
            Some("entity") => from_str(text).map(Self::Entity),
            Some("version") => from_str(text).map(Self::Version),
            Some("relationship") => from_str(text).map(Self::Relationship),
            _ => from_str(text),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ProjectRecord {
    pub org: String,
    pub id: String,
    pub name: String,
    pub created_at: String,
}

/// One stored version of an entity. `patch` is the JSON Merge Patch
/// (RFC 7386) from the `parent` version's properties (the full properties
/// when there is no parent); `snapshot`, when present, is the version's
/// full properties, and `chain` counts the patches since the nearest
/// snapshot along the parents.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct VersionRecord {
    pub entity: String,
    pub version: i64,
    #[schema(required = true)]
    pub parent: Option<i64>,
    pub op: VersionOp,
    #[serde(rename = "type")]
    pub entity_type: String,
    pub deleted: bool,
    pub actor: String,
    pub at: String,
    #[schema(value_type = Object)]
    pub patch: Value,
    #[schema(value_type = Option<Object>)]
    pub snapshot: Option<Value>,
    pub chain: i64,
}

/// A relationship row, deleted or not.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct RelationshipRecord {
    #[serde(flatten)]
    pub relationship: Relationship,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub deleted_at: Option<String>,
}

/// An entity row with every version row it has, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityExport {
    pub entity: Entity,
    pub versions: Vec<VersionRecord>,
}

/// A compacted state of the document of the `doc` line before it: every
/// update up to `covers_seq`, as one Yjs update (v1), whether the store
/// kept it inline or in the blob store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct DocSnapshotRecord {
    pub doc: String,
    pub covers_seq: i64,
    pub covers_at: String,
    pub created_at: String,
    pub sha256: String,
    /// The state, base64.
    #[serde(with = "base64_bytes")]
    #[schema(value_type = String, format = Byte)]
    pub state: Vec<u8>,
}

/// A retained update of the document of the `doc` line before it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct DocUpdateRecord {
    pub doc: String,
    pub seq: i64,
    /// The Yjs update (v1), base64.
    #[serde(with = "base64_bytes")]
    #[schema(value_type = String, format = Byte)]
    pub update: Vec<u8>,
    #[schema(required = true)]
    pub origin: Option<String>,
    pub at: String,
}

/// Bytes as standard base64 in JSON.
mod base64_bytes {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

/// An audit event with its org, as backups carry the trail (exports never
/// do). `event.id` is the event's id in the store it came from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditRecord {
    pub org: String,
    #[serde(flatten)]
    pub event: AuditEvent,
}

/// A document row with its snapshots and retained updates, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct DocExport {
    pub doc: DocInfo,
    pub snapshots: Vec<DocSnapshotRecord>,
    pub updates: Vec<DocUpdateRecord>,
}

#[cfg(test)]
mod tests {
    use super::ExportRecord;

    /// The shortcut for lines that start with their kind answers as the
    /// tagged enum does, for good lines and bad ones.
    #[test]
    fn a_line_parses_as_the_tagged_enum_parses_it() {
        let entity = r#""id":"e1","type":"t","properties":{"kind":"x"},"version":1,"created_at":"a","updated_at":"a","created_by":"a","updated_by":"a""#;
        let version = r#""entity":"e1","version":1,"parent":null,"op":"create","type":"t","deleted":false,"actor":"a","at":"a","patch":{},"chain":0"#;
        let relationship = r#""id":"r1","type":"T","from":"a","to":"b","properties":{},"version":1,"created_at":"a","updated_at":"a","created_by":"a","updated_by":"a""#;
        let lines = [
            format!(r#"{{"kind":"entity",{entity}}}"#),
            format!(r#"{{{entity},"kind":"entity"}}"#),
            format!(r#"{{"kind":"entity",{entity},"kind":"version"}}"#),
            format!(r#"{{"kind":"version",{version}}}"#),
            format!(r#"{{"kind":"relationship",{relationship}}}"#),
            format!(r#"{{"kind":"relationship",{relationship},"deleted_at":"b"}}"#),
            format!(r#"{{"kind":"entity",{version}}}"#),
            r#"{"kind":"version"}"#.to_owned(),
            r#"{"kind":"org","id":"o","name":"O","created_at":"a"}"#.to_owned(),
            r#"{"kind":"entity""#.to_owned(),
            r#"{"kind":"nothing","id":1}"#.to_owned(),
        ];
        for line in &lines {
            let tagged = serde_json::from_slice::<ExportRecord>(line.as_bytes());
            let direct = ExportRecord::from_line(line.as_bytes());
            assert_eq!(direct.as_ref().ok(), tagged.as_ref().ok(), "{line}");
            assert_eq!(direct.is_ok(), tagged.is_ok(), "{line}");
        }
        // A line that is not UTF-8 is refused (serde skips an unknown
        // key's value without decoding it; the tagged enum decodes it).
        let mut not_utf8 = lines[0].clone().into_bytes();
        not_utf8.insert(lines[0].len() - 1, 0xff);
        assert!(ExportRecord::from_line(&not_utf8).is_err());
        assert!(ExportRecord::from_line(lines[0].as_bytes()).is_ok());
        assert!(ExportRecord::from_line(lines[2].as_bytes()).is_err());
    }
}
