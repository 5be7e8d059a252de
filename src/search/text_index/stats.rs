//! Term statistics of one project. The index holds every tenant's
//! documents, and tantivy's BM25 counts documents index-wide: a score (the
//! API returns it) would tell a tenant how many documents of other
//! projects hold a word, and typo correction would pick, or skip, words
//! for what other projects hold. Here both see document counts of the
//! project alone. The mean document length stays index-wide (a project's
//! own would take a pass over its documents); it says nothing of any word.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use tantivy::query::{Bm25StatisticsProvider, BooleanQuery, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{Searcher, Term};

pub struct ProjectStats<'a> {
    searcher: &'a Searcher,
    /// The project's scope term: every document of the project holds it.
    project: Term,
    /// The project's documents (counting deleted ones not yet merged away,
    /// as tantivy's own counts do).
    documents: u64,
    /// Every document of the index is the project's: the index's counts
    /// are the project's, at no cost.
    whole: bool,
    /// Counts taken (an intersection each), kept while the searcher's
    /// generation lasts: the typo check and BM25 ask for the same terms,
    /// and searches between two commits for the same words.
    counted: &'a Counts,
}

/// Most counts kept of one searcher generation.
const MOST_COUNTS: usize = 100_000;

/// (project term, term): the project's documents with the term.
type CountMap = HashMap<(Term, Term), u64>;

/// Document counts of one searcher generation (its id, the counts).
#[derive(Default)]
pub struct Counts(Mutex<(u64, CountMap)>);

impl Counts {
    fn get(&self, generation: u64, key: &(Term, Term)) -> Option<u64> {
        let held = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        (held.0 == generation).then(|| held.1.get(key).copied())?
    }

    fn put(&self, generation: u64, key: (Term, Term), n: u64) {
        let mut held = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if held.0 != generation || held.1.len() >= MOST_COUNTS {
            *held = (generation, HashMap::new());
        }
        held.1.insert(key, n);
    }
}

impl<'a> ProjectStats<'a> {
    pub fn new(
        searcher: &'a Searcher,
        project: Term,
        counted: &'a Counts,
    ) -> tantivy::Result<Self> {
        let documents = searcher.doc_freq(&project)?;
        let whole = documents == Bm25StatisticsProvider::total_num_docs(searcher)?;
        Ok(ProjectStats {
            searcher,
            project,
            documents,
            whole,
            counted,
        })
    }

    /// Whether every document of the index is the project's.
    pub fn is_whole(&self) -> bool {
        self.whole
    }

    /// Documents of the project that hold `term`.
    pub fn doc_freq(&self, term: &Term) -> tantivy::Result<u64> {
        // A scope term names its project: its count is the project's.
        if self.whole || term.field() == self.project.field() {
            return self.searcher.doc_freq(term);
        }
        let generation = self.searcher.generation().generation_id();
        let key = (self.project.clone(), term.clone());
        if let Some(n) = self.counted.get(generation, &key) {
            return Ok(n);
        }
        let clause = |t: &Term| -> Box<dyn Query> {
            Box::new(TermQuery::new(t.clone(), IndexRecordOption::Basic))
        };
        let both = BooleanQuery::intersection(vec![clause(&self.project), clause(term)]);
        // Live documents only, so never more than `documents` (BM25's idf
        // asserts it).
        let n = (both.count(self.searcher)? as u64).min(self.documents);
        self.counted.put(generation, key, n);
        Ok(n)
    }
}

impl Bm25StatisticsProvider for ProjectStats<'_> {
    fn total_num_tokens(&self, field: Field) -> tantivy::Result<u64> {
        let tokens = Bm25StatisticsProvider::total_num_tokens(self.searcher, field)?;
        if self.whole {
            return Ok(tokens);
        }
        // The index-wide mean length, over the project's documents.
        let all = Bm25StatisticsProvider::total_num_docs(self.searcher)?.max(1);
        let scaled = u128::from(tokens) * u128::from(self.documents) / u128::from(all);
        // Never 0: BM25 divides by the mean.
        Ok((scaled as u64).max(1))
    }

    fn total_num_docs(&self) -> tantivy::Result<u64> {
        Ok(self.documents)
    }

    fn doc_freq(&self, term: &Term) -> tantivy::Result<u64> {
        ProjectStats::doc_freq(self, term)
    }
}
