//! What the audit trail records of a change. Purges keep the event, never
//! the purged content.

use crate::domain::*;
use serde_json::{json, Value};

/// One audit row, before the backend adds org, project, time and caller.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditFact {
    pub action: &'static str,
    pub target: String,
    pub details: Value,
}

/// The audit event of an applied write op.
pub fn of_write(action: WriteAction, outcome: &WriteOutcome) -> AuditFact {
    match outcome {
        WriteOutcome::Entity { entity, created } => of_entity(action, entity, *created),
        WriteOutcome::Relationship(r) => of_relationship(action, r),
        WriteOutcome::Deleted { id } | WriteOutcome::Purged { id, .. } => AuditFact {
            action: action.as_str(),
            target: id.clone(),
            details: json!({}),
        },
    }
}

/// An entity's new state; a PUT that created it is recorded as a create.
pub fn of_entity(action: WriteAction, entity: &Entity, created: bool) -> AuditFact {
    let action = if created {
        WriteAction::EntityCreate
    } else {
        action
    };
    AuditFact {
        action: action.as_str(),
        target: entity.id.clone(),
        details: json!({ "version": entity.version, "type": entity.entity_type }),
    }
}

pub fn of_relationship(action: WriteAction, r: &Relationship) -> AuditFact {
    AuditFact {
        action: action.as_str(),
        target: r.id.clone(),
        details: json!({ "version": r.version, "type": r.rel_type, "from": r.from, "to": r.to }),
    }
}

/// A tenancy or key change: `target` is the org, project or key id.
pub fn of_admin(action: &'static str, target: &str, details: Value) -> AuditFact {
    AuditFact {
        action,
        target: target.to_owned(),
        details,
    }
}
