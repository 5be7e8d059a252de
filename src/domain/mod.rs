//! Plain domain types: entities, relationships, versions, tenancy, and the
//! typed errors every layer speaks. No I/O lives here.

pub mod cypher;
mod error;
pub mod export;
pub mod json;
mod model;
pub mod patch;
pub mod rules;
pub mod validate;

pub use error::{DomainError, DomainResult};
pub use model::*;
