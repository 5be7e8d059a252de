//! Time in the one stored form: RFC 3339, UTC, microseconds, `Z` suffix.
//! Fixed width, so stored times compare correctly as strings.

use chrono::{DateTime, SecondsFormat, Utc};

pub fn now() -> String {
    format(Utc::now())
}

pub fn format(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}
