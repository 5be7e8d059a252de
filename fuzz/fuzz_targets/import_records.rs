//! Fuzzes what an import reads (`src/domain/export.rs` records, checked by
//! `src/domain/rules/import.rs`): any line parses or is refused, and an
//! entity whose versions pass the check has exactly its version count of
//! rows, rebuilds to its properties and carries times in the stored form;
//! nothing panics or allocates past the version bound. The lines are
//! parsed as the import parses them (`ExportRecord::from_line`, whose
//! shortcut answers as reading the whole line for its kind does) and
//! grouped as the import's first pass groups them (an entity with the
//! version lines after it, `rules::wants_version` of them). A checked entity cut back to a past time
//! (`rules::as_of`, a point-in-time restore) keeps the versions made by
//! then and passes the check again unless an earlier state's properties are
//! invalid; a relationship's past form never panics. A document's lines
//! (its row, then snapshots and updates that pass their checks) cut back
//! to a time keep a log whose end covers what they hold.
#![no_main]

// The daemon's modules, included whole; this target uses part of them.
#[allow(dead_code)]
#[path = "../../src/clock.rs"]
mod clock;

#[allow(dead_code)]
#[path = "../../src/digest.rs"]
mod digest;

// An inline module's path is the directory its children are read from.
#[allow(dead_code)]
#[path = "../../src/domain"]
mod domain {
    mod error;
    pub mod export;
    mod model;
    pub mod patch;
    pub mod validate;
    pub mod rules {
        pub mod as_of;
        pub mod ends;
        pub mod history;
        pub mod import;
    }
    pub use error::{DomainError, DomainResult};
    pub use model::*;
}

use domain::export::{DocExport, EntityExport, ExportRecord};
use domain::rules::as_of;
use domain::rules::import::{
    self as rules, check_doc, check_doc_snapshot, check_doc_update, check_entity,
    check_relationship,
};
use libfuzzer_sys::fuzz_target;

fn finish(entity: Option<EntityExport>) {
    let Some(mut e) = entity else { return };
    if check_entity(&mut e).is_ok() {
        // Cut back to just before each version, and to the last one.
        let mut times: Vec<String> = e.versions.iter().map(|v| v.at.clone()).collect();
        times.push(String::new());
        for t in times {
            let made = e.versions.iter().take_while(|v| v.at <= t).count();
            match as_of::entity(e.clone(), &t) {
                Ok(Some(mut cut)) => {
                    assert_eq!(cut.versions.len(), made);
                    assert_eq!(cut.entity.version, made as i64);
                    let valid = domain::validate::properties(&cut.entity.properties).is_ok();
                    assert!(
                        check_entity(&mut cut).is_ok() || !valid,
                        "a past state fails the check"
                    );
                }
                Ok(None) => assert_eq!(made, 0),
                Err(_) => {}
            }
        }
        assert_eq!(e.versions.len() as i64, e.entity.version);
        for t in [&e.entity.created_at, &e.entity.updated_at] {
            assert!(
                t.len() == 27 && t.ends_with('Z'),
                "{t:?} is not in the stored form"
            );
        }
    }
}

/// Bounds the lines one document gathers (the import streams them).
const MAX_DOC_LINES: usize = 10_000;

fn finish_doc(doc: Option<DocExport>) {
    let Some(d) = doc else { return };
    let mut times: Vec<String> = d.updates.iter().map(|u| u.at.clone()).collect();
    times.extend(d.snapshots.iter().map(|s| s.covers_at.clone()));
    times.push(String::new());
    times.push("9999".into());
    for t in times {
        let Some(cut) = as_of::doc(d.clone(), &t) else {
            assert!(d.doc.created_at > t);
            continue;
        };
        let log = &cut.doc;
        assert!(0 <= log.pruned_through && log.pruned_through <= log.last_seq.max(0));
        assert!(cut.updates.iter().all(|u| u.seq <= log.last_seq && u.at <= t));
        assert!(cut.snapshots.iter().all(|s| s.covers_seq <= log.last_seq && s.covers_at <= t));
    }
}

fuzz_target!(|data: &[u8]| {
    let mut pending: Option<EntityExport> = None;
    let mut doc: Option<DocExport> = None;
    for line in data.split(|b| *b == b'\n') {
        // The import's parse reads the kind off the start of a line that
        // starts with it; it must answer as reading the whole line does.
        let read = ExportRecord::from_line_read_kind(line);
        let Ok(record) = ExportRecord::from_line(line) else {
            assert!(read.is_err());
            continue;
        };
        assert_eq!(read.ok().as_ref(), Some(&record));
        match record {
            ExportRecord::Entity(entity) => {
                finish(pending.take());
                pending = Some(EntityExport {
                    entity,
                    versions: Vec::new(),
                });
            }
            ExportRecord::Version(v) => {
                if let Some(p) = pending.as_mut().filter(|p| rules::wants_version(p)) {
                    p.versions.push(v);
                }
            }
            ExportRecord::Relationship(mut r) => {
                if check_relationship(&mut r).is_ok() {
                    let at = r.relationship.updated_at.clone();
                    let _ = as_of::relationship(r, &at);
                }
            }
            ExportRecord::Project(_) | ExportRecord::Org(_) => {}
            ExportRecord::Doc(mut row) => {
                finish_doc(doc.take());
                if check_doc(&mut row).is_ok() {
                    doc = Some(DocExport {
                        doc: row,
                        snapshots: Vec::new(),
                        updates: Vec::new(),
                    });
                }
            }
            ExportRecord::DocSnapshot(mut s) => {
                if let Some(d) = doc.as_mut().filter(|d| d.snapshots.len() < MAX_DOC_LINES) {
                    if check_doc_snapshot(&mut s, &d.doc).is_ok() {
                        d.snapshots.push(s);
                    }
                }
            }
            ExportRecord::DocUpdate(mut u) => {
                if let Some(d) = doc.as_mut().filter(|d| d.updates.len() < MAX_DOC_LINES) {
                    if check_doc_update(&mut u, &d.doc).is_ok() {
                        d.updates.push(u);
                    }
                }
            }
        }
    }
    finish(pending);
    finish_doc(doc);
});
