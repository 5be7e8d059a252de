//! Fuzzes what an import reads (`src/domain/export.rs` records, checked by
//! `src/domain/rules/import.rs`): any line parses or is refused, and an
//! entity whose versions pass the check has exactly its version count of
//! rows, rebuilds to its properties and carries times in the stored form;
//! nothing panics or allocates past the version bound. The lines are
//! grouped as the import's first pass groups them (an entity with the
//! version lines after it). A checked entity cut back to a past time
//! (`rules::as_of`, a point-in-time restore) keeps the versions made by
//! then and passes the check again unless an earlier state's properties are
//! invalid; a relationship's past form never panics.
#![no_main]

// The daemon's modules, included whole; this target uses part of them.
#[allow(dead_code)]
#[path = "../../src/clock.rs"]
mod clock;

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

use domain::export::{EntityExport, ExportRecord};
use domain::rules::as_of;
use domain::rules::import::{check_entity, check_relationship, MAX_VERSIONS};
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

fuzz_target!(|data: &[u8]| {
    let mut pending: Option<EntityExport> = None;
    for line in data.split(|b| *b == b'\n') {
        let Ok(record) = serde_json::from_slice::<ExportRecord>(line) else {
            continue;
        };
        match record {
            ExportRecord::Entity(entity) => {
                finish(pending.take());
                pending = Some(EntityExport {
                    entity,
                    versions: Vec::new(),
                });
            }
            ExportRecord::Version(v) => {
                if let Some(p) = pending.as_mut().filter(|p| p.versions.len() < MAX_VERSIONS) {
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
        }
    }
    finish(pending);
});
