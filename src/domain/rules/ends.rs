//! What an entity's change does to the relationships touching it (its own
//! module: the entity rules and the import rules both decide it).

/// What happens to the relationships touching the entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ends {
    Unchanged,
    /// The entity was deleted: its relationships leave the live graph.
    Hide,
    /// The entity was restored: those whose other end is live come back.
    Revive,
}
