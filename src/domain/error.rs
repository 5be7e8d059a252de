use serde_json::Value;

/// Every failure a store, graph or search call can report. The HTTP layer maps
/// each variant to one status and one stable error code.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("version mismatch: expected {expected}, current is {current}")]
    PreconditionFailed { expected: i64, current: i64 },
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    NotImplemented(String),
    #[error("{0}")]
    Unavailable(String),
    /// Concurrent writers collided (a deadlock, a lock wait that gave up, a
    /// serialisation failure): nothing was written and the same request may
    /// succeed if sent again. Stores retry these before reporting them.
    #[error("{0}")]
    Contended(String),
    /// The disk holding the database has no space left: nothing was
    /// written, reads go on, and writes succeed again once space is freed.
    #[error("the disk holding the database is full: nothing was written; writes go on once space is freed")]
    DiskFull,
    /// One operation of a batch failed; `index` is its position.
    #[error("operation {index} failed: {source}")]
    InBatch {
        index: usize,
        #[source]
        source: Box<DomainError>,
    },
    /// One line of an imported file is bad; `line` counts from 1.
    #[error("line {line}: {source}")]
    AtLine {
        line: usize,
        #[source]
        source: Box<DomainError>,
    },
    /// A fault of ours: logged in full, sent to clients only as "internal".
    #[error("internal error: {0}")]
    Internal(String),
    /// A fault the storage engine reported, kept whole for the log (its
    /// code, detail and position); clients see only "internal".
    #[error("storage error: {0}")]
    Storage(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl DomainError {
    pub fn details(&self) -> Option<Value> {
        match self {
            DomainError::PreconditionFailed { expected, current } => {
                Some(serde_json::json!({ "expected": expected, "current": current }))
            }
            DomainError::InBatch { index, source } => {
                let mut d = serde_json::json!({ "index": index, "code": source.code() });
                if let Some(Value::Object(inner)) = source.details() {
                    d.as_object_mut().unwrap().extend(inner);
                }
                Some(d)
            }
            DomainError::AtLine { line, source } => {
                let mut d = serde_json::json!({ "line": line });
                if let Some(Value::Object(inner)) = source.details() {
                    d.as_object_mut().unwrap().extend(inner);
                }
                Some(d)
            }
            _ => None,
        }
    }

    /// The one table from failure to answer: HTTP status and the stable
    /// error code of the public contract (API.md).
    pub fn status_and_code(&self) -> (u16, &'static str) {
        match self {
            DomainError::BadRequest(_) => (400, "bad_request"),
            DomainError::NotFound(_) => (404, "not_found"),
            DomainError::Conflict(_) => (409, "conflict"),
            DomainError::PreconditionFailed { .. } => (412, "precondition_failed"),
            DomainError::Unprocessable(_) => (422, "unprocessable"),
            DomainError::Gone(_) => (410, "gone"),
            DomainError::NotImplemented(_) => (501, "not_implemented"),
            DomainError::Unavailable(_) | DomainError::Contended(_) | DomainError::DiskFull => {
                (503, "unavailable")
            }
            DomainError::InBatch { source, .. } | DomainError::AtLine { source, .. } => {
                source.status_and_code()
            }
            DomainError::Internal(_) | DomainError::Storage(_) => (500, "internal"),
        }
    }

    /// Stable error code of the public contract.
    pub fn code(&self) -> &'static str {
        self.status_and_code().1
    }

    /// A collision with concurrent writers, also inside a batch.
    pub fn is_contended(&self) -> bool {
        match self {
            DomainError::Contended(_) => true,
            DomainError::InBatch { source, .. } => source.is_contended(),
            _ => false,
        }
    }

    /// No space left for a write, also inside a batch.
    pub fn is_disk_full(&self) -> bool {
        match self {
            DomainError::DiskFull => true,
            DomainError::InBatch { source, .. } => source.is_disk_full(),
            _ => false,
        }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        DomainError::NotFound(what.into())
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        DomainError::Internal(e.to_string())
    }
}

pub type DomainResult<T> = Result<T, DomainError>;
