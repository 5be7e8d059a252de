//! Row mapping: the columns each query selects and the domain value of a row.

use crate::domain::*;
use rusqlite::Row;

pub const ENTITY_COLS: &str = "rowid, id, type, properties, version, created_at, updated_at, \
                    created_by, updated_by, deleted_at, seq";

/// An entity row with its storage ids.
pub struct StoredEntity {
    pub rowid: i64,
    pub entity: Entity,
}

pub fn stored_entity(row: &Row) -> rusqlite::Result<StoredEntity> {
    let props: String = row.get(3)?;
    Ok(StoredEntity {
        rowid: row.get(0)?,
        entity: Entity {
            id: row.get(1)?,
            entity_type: row.get(2)?,
            properties: serde_json::from_str(&props).unwrap_or_default(),
            version: row.get(4)?,
            created_at: row.get(5)?,
            updated_at: row.get(6)?,
            created_by: row.get(7)?,
            updated_by: row.get(8)?,
            deleted_at: row.get(9)?,
            change_seq: row.get(10)?,
        },
    })
}

pub fn entity(row: &Row) -> rusqlite::Result<Entity> {
    stored_entity(row).map(|s| s.entity)
}

pub const REL_COLS: &str =
    "id, type, from_id, to_id, properties, version, created_at, updated_at, \
                        created_by, updated_by";

pub fn relationship(row: &Row) -> rusqlite::Result<Relationship> {
    let props: String = row.get(4)?;
    Ok(Relationship {
        id: row.get(0)?,
        rel_type: row.get(1)?,
        from: row.get(2)?,
        to: row.get(3)?,
        properties: serde_json::from_str(&props).unwrap_or_default(),
        version: row.get(5)?,
        created_at: row.get(6)?,
        updated_at: row.get(7)?,
        created_by: row.get(8)?,
        updated_by: row.get(9)?,
    })
}
