//! The tantivy index itself: its schema, the documents of entities, the
//! feed position it holds (the commit's payload, so the two never part),
//! and the ranked query.

use super::analysis::Analyzer;
use super::stats::{Counts, ProjectStats};
use crate::domain::{Entity, Scope};
use std::path::Path;
use tantivy::collector::TopDocs;
use tantivy::directory::MmapDirectory;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, STORED, STRING,
};
use tantivy::tokenizer::{PreTokenizedString, Token};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, TantivyDocument, Term};

/// The layout of the documents, before the position in the commit's
/// payload: an index of another is rebuilt. `2:` scope terms carry the
/// project's creation time.
const FORMAT: &str = "2:";

/// Memory the writer buffers before it writes a segment.
const WRITER_BUDGET: usize = 48 << 20;

/// The fields of an entity's document.
#[derive(Clone, Copy)]
struct Fields {
    /// `org \x1f project \x1f id`: what a change deletes by.
    key: Field,
    /// The project's term and the project-and-type term (a filter: every
    /// document scores the same on it).
    scope: Field,
    /// The prefixes of the entity's words (`search::text_of`).
    words: Field,
    /// The entity id, stored: what a search returns.
    id: Field,
}

pub struct TextIndexFiles {
    index: Index,
    fields: Fields,
    reader: IndexReader,
    /// Projects' term counts, shared by searches of one searcher generation.
    counts: Counts,
}

impl TextIndexFiles {
    /// Opens the index in `dir`, creating it when empty.
    pub fn open(dir: &Path) -> tantivy::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let (schema, fields) = schema();
        let index = Index::open_or_create(MmapDirectory::open(dir)?, schema)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(TextIndexFiles {
            index,
            fields,
            reader,
            counts: Counts::default(),
        })
    }

    /// The index's one writer (tantivy's lock file keeps a second daemon
    /// on the same directory out).
    pub fn writer(&self) -> tantivy::Result<IndexWriter> {
        self.index.writer_with_num_threads(1, WRITER_BUDGET)
    }

    /// The feed position of the last commit (0: none yet).
    /// -1 for an index of another layout (`FORMAT`): it is built again.
    pub fn committed_position(&self) -> tantivy::Result<i64> {
        let metas = self.index.load_metas()?;
        Ok(match metas.payload {
            None => 0,
            Some(p) => p
                .strip_prefix(FORMAT)
                .and_then(|p| p.parse().ok())
                .unwrap_or(-1),
        })
    }

    /// Replaces what the index holds of an entity of the project `made` at
    /// that time: `None` removes it.
    pub fn put(
        &self,
        writer: &IndexWriter,
        analyzer: &mut Analyzer,
        (scope, made): (&Scope, &str),
        id: &str,
        entity: Option<&Entity>,
    ) -> tantivy::Result<()> {
        let f = self.fields;
        writer.delete_term(Term::from_field_text(f.key, &key(scope, id)));
        let Some(entity) = entity else { return Ok(()) };
        let tokens = analyzer.index_tokens(&crate::search::text_of(&entity.properties));
        if tokens.is_empty() {
            return Ok(()); // no word: no query can find it
        }
        let mut doc = TantivyDocument::default();
        doc.add_text(f.key, key(scope, id));
        doc.add_pre_tokenized_text(
            f.scope,
            pretokenized(vec![
                scope_term(scope, made, None),
                scope_term(scope, made, Some(&entity.entity_type)),
            ]),
        );
        doc.add_pre_tokenized_text(
            f.words,
            PreTokenizedString {
                text: String::new(),
                tokens,
            },
        );
        doc.add_text(f.id, id);
        writer.add_document(doc)?;
        Ok(())
    }

    /// Makes what `writer` holds durable with the feed position it reached,
    /// and visible to searches.
    pub fn commit(&self, writer: &mut IndexWriter, position: i64) -> tantivy::Result<()> {
        let mut prepared = writer.prepare_commit()?;
        prepared.set_payload(&format!("{FORMAT}{position}"));
        prepared.commit()?;
        self.reader.reload()
    }

    /// The best `limit` entity ids of the project (the one `made` at that
    /// time) with every word (each a prefix), by BM25, best first.
    pub fn search(
        &self,
        (scope, made): (&Scope, &str),
        words: &[String],
        entity_type: Option<&str>,
        limit: usize,
    ) -> tantivy::Result<Vec<(String, f64)>> {
        let searcher = self.reader.searcher();
        let project = Term::from_field_text(self.fields.scope, &scope_term(scope, made, None));
        let stats = ProjectStats::new(&searcher, project, &self.counts)?;
        let scope_term = scope_term(scope, made, entity_type);
        let Some(query) = self.query(&searcher, &stats, &scope_term, words)? else {
            return Ok(Vec::new());
        };
        let top = searcher.search_with_statistics_provider(
            &query,
            &TopDocs::with_limit(limit).order_by_score(),
            &stats,
        )?;
        let mut hits = Vec::with_capacity(top.len());
        for (score, address) in top {
            let doc: TantivyDocument = searcher.doc(address)?;
            if let Some(id) = doc.get_first(self.fields.id).and_then(|v| v.as_str()) {
                hits.push((id.to_owned(), f64::from(score)));
            }
        }
        Ok(hits)
    }

    /// Every word required (typos corrected), within the project (and
    /// type); `None` when no word is left.
    fn query(
        &self,
        searcher: &Searcher,
        stats: &ProjectStats,
        scope_term: &str,
        words: &[String],
    ) -> tantivy::Result<Option<BooleanQuery>> {
        let f = self.fields;
        let mut analyzer = Analyzer::default();
        let mut terms: Vec<String> = words
            .iter()
            .filter_map(|w| analyzer.query_term(w))
            .collect();
        for term in &mut terms {
            if stats.doc_freq(&Term::from_field_text(f.words, term))? == 0 {
                if let Some(closest) = super::typos::correct(searcher, stats, f.words, term)? {
                    *term = closest;
                }
            }
        }
        terms.sort();
        terms.dedup();
        if terms.is_empty() {
            return Ok(None);
        }
        // Every clause a plain term query that reads frequencies: tantivy
        // then runs the intersection with block-max WAND.
        let term_query = |field: Field, text: &str| -> (Occur, Box<dyn Query>) {
            let term = Term::from_field_text(field, text);
            let query = TermQuery::new(term, IndexRecordOption::WithFreqs);
            (Occur::Must, Box::new(query))
        };
        let mut clauses = vec![term_query(f.scope, scope_term)];
        clauses.extend(terms.iter().map(|t| term_query(f.words, t)));
        Ok(Some(BooleanQuery::new(clauses)))
    }

    /// Documents in the index (all projects).
    pub fn len(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// The project terms (`project_term`) the index holds live documents of.
    pub fn project_terms(&self) -> tantivy::Result<Vec<String>> {
        let searcher = self.reader.searcher();
        let mut held = std::collections::BTreeSet::new();
        for segment in searcher.segment_readers() {
            let index = segment.inverted_index(self.fields.scope)?;
            // Project terms start "p\x1f"; "p\x20" is the first key after them.
            let mut terms = index
                .terms()
                .range()
                .ge(b"p\x1f")
                .lt(b"p\x20")
                .into_stream()?;
            while terms.advance() {
                if let Ok(term) = std::str::from_utf8(terms.key()) {
                    held.insert(term.to_owned());
                }
            }
        }
        // A term stays in a segment's dictionary until a merge drops its
        // deleted documents.
        let mut live = Vec::new();
        for term in held {
            let query = TermQuery::new(
                Term::from_field_text(self.fields.scope, &term),
                IndexRecordOption::Basic,
            );
            if query.count(&searcher)? > 0 {
                live.push(term);
            }
        }
        Ok(live)
    }

    /// Removes every document of a project (by its `project_term`).
    pub fn remove_project(&self, writer: &IndexWriter, term: &str) {
        writer.delete_term(Term::from_field_text(self.fields.scope, term));
    }
}

/// The term every document of the project `made` at that time holds.
pub fn project_term(scope: &Scope, made: &str) -> String {
    scope_term(scope, made, None)
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let counted = |tokenizer: &str| {
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(tokenizer)
                .set_index_option(IndexRecordOption::WithFreqs),
        )
    };
    let fields = Fields {
        key: b.add_text_field("key", STRING),
        scope: b.add_text_field("scope", counted("raw")),
        words: b.add_text_field("words", counted("raw")),
        id: b.add_text_field("id", STORED),
    };
    (b.build(), fields)
}

fn key(scope: &Scope, id: &str) -> String {
    format!("{}\x1f{}\x1f{}", scope.org, scope.project, id)
}

/// The project's term (or its type's): with the project's creation time,
/// so a project deleted and made again under its id (or its org's) never
/// finds what the index still holds of the one before.
fn scope_term(scope: &Scope, made: &str, entity_type: Option<&str>) -> String {
    match entity_type {
        None => format!("p\x1f{}\x1f{}\x1f{made}", scope.org, scope.project),
        Some(t) => format!("t\x1f{}\x1f{}\x1f{made}\x1f{t}", scope.org, scope.project),
    }
}

fn pretokenized(texts: Vec<String>) -> PreTokenizedString {
    PreTokenizedString {
        text: String::new(),
        tokens: texts
            .into_iter()
            .enumerate()
            .map(|(position, text)| Token {
                position,
                text,
                ..Token::default()
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tantivy::query::EnableScoring;

    const MADE: &str = "2026-12-05T00:00:00.000000Z";

    fn entity(id: &str, text: &str) -> Entity {
        serde_json::from_value(serde_json::json!({
            "id": id, "type": "doc", "properties": {"text": text}, "version": 1,
            "created_at": "", "updated_at": "", "created_by": "", "updated_by": "",
        }))
        .unwrap()
    }

    /// Block-max WAND prunes, it does not approximate: the top 10 are those
    /// of scoring every match, on words as common as the corpus has.
    #[test]
    fn the_pruned_top_ten_is_the_exhaustive_top_ten() {
        let dir = tempfile::tempdir().unwrap();
        let files = TextIndexFiles::open(dir.path()).unwrap();
        let mut writer = files.writer().unwrap();
        let mut analyzer = Analyzer::default();
        let scope = Scope::new("o", "p");
        let words = ["ant", "bee", "cat", "dog", "eel", "fox", "gnu", "hen"];
        let mut state = 7u64;
        for i in 0..20_000 {
            // Skewed word choice and lengths, from a small LCG.
            let text: Vec<&str> = (0..3 + i % 17)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let r = (state >> 33) % 64;
                    words[(r as f64).sqrt() as usize % words.len()]
                })
                .collect();
            let e = entity(&format!("e{i}"), &text.join(" "));
            files
                .put(&writer, &mut analyzer, (&scope, MADE), &e.id, Some(&e))
                .unwrap();
            if i % 5000 == 4999 {
                files.commit(&mut writer, i).unwrap(); // several segments
            }
        }
        files.commit(&mut writer, 20_000).unwrap();
        let searcher = files.reader.searcher();
        for q in [
            &["ant"][..],
            &["fox"],
            &["ant", "bee"],
            &["a", "c"],
            &["hen", "gnu", "ant"],
        ] {
            let q: Vec<String> = q.iter().map(|w| w.to_string()).collect();
            let pruned: Vec<f64> = files
                .search((&scope, MADE), &q, None, 10)
                .unwrap()
                .iter()
                .map(|h| h.1)
                .collect();
            let term = scope_term(&scope, MADE, None);
            let project = Term::from_field_text(files.fields.scope, &term);
            let stats = ProjectStats::new(&searcher, project, &files.counts).unwrap();
            let query = files.query(&searcher, &stats, &term, &q).unwrap().unwrap();
            let weight = query
                .weight(EnableScoring::enabled_from_searcher(&searcher))
                .unwrap();
            let mut all = Vec::new();
            for segment in searcher.segment_readers() {
                weight
                    .for_each(segment, &mut |_, score| all.push(f64::from(score)))
                    .unwrap();
            }
            all.sort_by(|a, b| b.total_cmp(a));
            assert!(
                all.len() > 1000,
                "{q:?} is a common query ({} matches)",
                all.len()
            );
            all.truncate(10);
            assert_eq!(pruned, all, "{q:?}");
        }
    }

    /// Stores `texts` as documents of `scope` and commits.
    fn fill(files: &TextIndexFiles, scope: &Scope, texts: &[&str]) {
        let mut writer = files.writer().unwrap();
        let mut analyzer = Analyzer::default();
        for (i, text) in texts.iter().enumerate() {
            let e = entity(&format!("{}-{i}", scope.project), text);
            files
                .put(&writer, &mut analyzer, (scope, MADE), &e.id, Some(&e))
                .unwrap();
        }
        files.commit(&mut writer, 1).unwrap();
    }

    fn search(files: &TextIndexFiles, scope: &Scope, q: &str) -> Vec<(String, f64)> {
        files
            .search((scope, MADE), &[q.to_owned()], None, 10)
            .unwrap()
    }

    /// Scores are the API's: one tenant's must not tell how many documents
    /// of another hold a word.
    #[test]
    fn scores_do_not_depend_on_other_projects() {
        let ours = Scope::new("o", "ours");
        let theirs = Scope::new("o2", "theirs");
        // Words of one length: every document has as many tokens, so the
        // index-wide mean length is the same with or without theirs.
        let our_texts = ["alpha bravo", "delta bravo", "alpha delta"];
        let alone = tempfile::tempdir().unwrap();
        let alone = TextIndexFiles::open(alone.path()).unwrap();
        fill(&alone, &ours, &our_texts);
        let shared = tempfile::tempdir().unwrap();
        let shared = TextIndexFiles::open(shared.path()).unwrap();
        fill(&shared, &ours, &our_texts);
        fill(&shared, &theirs, &["alpha gamma"; 50]);
        for q in ["alpha", "bravo", "delta"] {
            let a = search(&alone, &ours, q);
            assert_eq!(a.len(), 2, "{q}");
            assert_eq!(a, search(&shared, &ours, q), "{q}");
        }
        assert_eq!(search(&shared, &theirs, "alpha").len(), 10);
    }

    /// A misspelling only another project holds is still corrected to the
    /// word this project holds, and a word only another project holds is
    /// never the correction.
    #[test]
    fn typos_are_corrected_within_the_project() {
        let ours = Scope::new("o", "ours");
        let theirs = Scope::new("o2", "theirs");
        let dir = tempfile::tempdir().unwrap();
        let files = TextIndexFiles::open(dir.path()).unwrap();
        fill(&files, &ours, &["we receive parcels", "a quiet garden"]);
        fill(&files, &theirs, &["they recieve parcels"; 5]);
        fill(&files, &theirs, &["a quilt market"; 5]);
        let hits = search(&files, &ours, "recieve");
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].0, "ours-0");
        // "quilt" is theirs only (and more frequent): ours reads "quiet".
        let hits = search(&files, &ours, "quielt");
        assert_eq!(hits.len(), 1, "{hits:?}");
        assert_eq!(hits[0].0, "ours-1");
    }
}
