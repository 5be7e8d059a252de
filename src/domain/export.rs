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
    /// Parses one line: its `kind` first, then the line as that kind's
    /// record (which ignores keys it does not know, `kind` among them).
    ///
    /// Not through the internally tagged enum: serde buffers a copy of the
    /// whole line to find its tag (a third of an import's parsing), and the
    /// buffered copy reads some values differently from a direct parse. A
    /// line as Strata writes it starts with its `kind` and names it once,
    /// so its kind is read off the start; any other line has its kind read
    /// by a pass over the whole line, which refuses a missing, unknown or
    /// repeated `kind` (however its key is spelled). `from_line_read_kind`
    /// always takes that pass; the `import_records` fuzz target checks both
    /// answer alike.
    pub fn from_line(line: &[u8]) -> serde_json::Result<Self> {
        let text = utf8(line)?;
        let kind = match Kind::at_start(text) {
            Some(kind) => kind,
            None => Kind::of(text)?,
        };
        Self::parse_as(kind, text)
    }

    /// `from_line` without the shortcut.
    pub fn from_line_read_kind(line: &[u8]) -> serde_json::Result<Self> {
        let text = utf8(line)?;
        Self::parse_as(Kind::of(text)?, text)
    }

    fn parse_as(kind: Kind, text: &str) -> serde_json::Result<Self> {
        use serde_json::from_str;
        match kind {
            Kind::Org => from_str(text).map(Self::Org),
            Kind::Project => from_str(text).map(Self::Project),
            Kind::Entity => from_str(text).map(Self::Entity),
            Kind::Version => from_str(text).map(Self::Version),
            Kind::Relationship => from_str(text).map(Self::Relationship),
            Kind::Doc => from_str(text).map(Self::Doc),
            Kind::DocSnapshot => from_str(text).map(Self::DocSnapshot),
            Kind::DocUpdate => from_str(text).map(Self::DocUpdate),
        }
    }
}

/// A line is text: an unknown key's value is skipped without being
/// decoded, so the check comes first.
fn utf8(line: &[u8]) -> serde_json::Result<&str> {
    std::str::from_utf8(line).map_err(|e| {
        serde::de::Error::custom(format_args!(
            "the line is not UTF-8 (byte {})",
            e.valid_up_to() + 1
        ))
    })
}

/// The `kind` of a record line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Org,
    Project,
    Entity,
    Version,
    Relationship,
    Doc,
    DocSnapshot,
    DocUpdate,
}

/// A line read for its `kind` alone; every other value is skipped.
#[derive(Deserialize)]
struct Tag {
    kind: Kind,
}

impl Kind {
    /// The kind of a line that starts `{"kind":"…",` and has no other key
    /// that could be `kind`: no `"kind"` further on, and no `\u` escape
    /// (the only way to spell `kind` differently).
    fn at_start(text: &str) -> Option<Kind> {
        let rest = text.strip_prefix(r#"{"kind":""#)?;
        let (kind, after) = rest.split_once('"')?;
        let body = after.strip_prefix(',')?.as_bytes();
        if memchr::memmem::find(body, br#""kind""#).is_some()
            || memchr::memmem::find(body, br"\u").is_some()
        {
            return None;
        }
        Some(match kind {
            "org" => Kind::Org,
            "project" => Kind::Project,
            "entity" => Kind::Entity,
            "version" => Kind::Version,
            "relationship" => Kind::Relationship,
            "doc" => Kind::Doc,
            "doc_snapshot" => Kind::DocSnapshot,
            "doc_update" => Kind::DocUpdate,
            _ => return None,
        })
    }

    /// The kind, read by a pass over the whole line.
    fn of(text: &str) -> serde_json::Result<Kind> {
        serde_json::from_str::<Tag>(text).map(|t| t.kind)
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
    /// pass that reads the kind, for good lines and bad ones; and a good
    /// line as Strata writes it gives the record the tagged enum gives.
    #[test]
    fn a_line_parses_alike_with_or_without_the_shortcut() {
        let entity = r#""id":"e1","type":"t","properties":{"kind":"x"},"version":1,"created_at":"a","updated_at":"a","created_by":"a","updated_by":"a""#;
        let version = r#""entity":"e1","version":1,"parent":null,"op":"create","type":"t","deleted":false,"actor":"a","at":"a","patch":{},"chain":0"#;
        let relationship = r#""id":"r1","type":"T","from":"a","to":"b","properties":{},"version":1,"created_at":"a","updated_at":"a","created_by":"a","updated_by":"a""#;
        let good = [
            format!(r#"{{"kind":"entity",{entity}}}"#),
            format!(r#"{{{entity},"kind":"entity"}}"#),
            format!(r#"{{"kind":"version",{version}}}"#),
            format!(r#"{{"kind":"relationship",{relationship}}}"#),
            format!(r#"{{"kind":"relationship",{relationship},"deleted_at":"b"}}"#),
            format!(r#"{{"kind":"entity",{entity},"note":"caf\u00e9"}}"#),
            r#"{"kind":"org","id":"o","name":"O","created_at":"a"}"#.to_owned(),
        ];
        let bad = [
            format!(r#"{{"kind":"entity",{entity},"kind":"version"}}"#),
            // The same key, spelled with an escape.
            format!(r#"{{"kind":"entity",{entity},"k\u0069nd":"version"}}"#),
            format!(r#"{{"kind":"entity",{version}}}"#),
            format!(r#"{{{entity}}}"#),
            r#"{"kind":"version"}"#.to_owned(),
            r#"{"kind":"entity""#.to_owned(),
            r#"{"kind":"nothing","id":1}"#.to_owned(),
        ];
        for line in &good {
            let direct = ExportRecord::from_line(line.as_bytes());
            let read = ExportRecord::from_line_read_kind(line.as_bytes());
            let tagged = serde_json::from_slice::<ExportRecord>(line.as_bytes());
            assert_eq!(direct.as_ref().ok(), read.as_ref().ok(), "{line}");
            assert_eq!(direct.as_ref().ok(), tagged.as_ref().ok(), "{line}");
            assert!(direct.is_ok(), "{line}");
        }
        for line in &bad {
            assert!(ExportRecord::from_line(line.as_bytes()).is_err(), "{line}");
            assert!(
                ExportRecord::from_line_read_kind(line.as_bytes()).is_err(),
                "{line}"
            );
        }
        // A line that is not UTF-8 is refused, even where the bytes are in
        // a value that would be skipped.
        let mut not_utf8 = format!(r#"{{"kind":"entity",{entity},"note":"xyz"}}"#).into_bytes();
        let at = not_utf8.len() - 5;
        not_utf8[at..at + 3].copy_from_slice(&[0xff, 0xfe, 0xfd]);
        assert!(ExportRecord::from_line(&not_utf8).is_err());
        assert!(ExportRecord::from_line_read_kind(&not_utf8).is_err());
    }
}
