//! The document log's rules (what a snapshot covers, what may be pruned).
