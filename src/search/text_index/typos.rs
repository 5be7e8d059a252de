//! Typo tolerance for the text index: a query word the project has never
//! seen is read as the closest term the project holds, nearest first
//! (Levenshtein distance 1, 2 from eight characters, a swap of two letters
//! counting one), then in most of its documents. Words of three characters
//! or fewer are taken as typed. The replacement is one term, so the query
//! keeps its plain term clauses (and block-max WAND).

use super::stats::ProjectStats;
use levenshtein_automata::{Distance, LevenshteinAutomatonBuilder, DFA, SINK_STATE};
use std::cmp::Reverse;
use std::collections::HashMap;
use std::sync::OnceLock;
use tantivy::schema::Field;
use tantivy::{Searcher, Term};

/// Candidates of one distance counted in the project: counting is an
/// intersection per candidate when the index holds other projects, and a
/// short word in a large vocabulary can have hundreds of neighbours. In an
/// index of one project they go most frequent first; in one of several, in
/// the order of the words themselves (how often other projects hold a word
/// must not choose).
const MOST_CANDIDATES: usize = 128;

/// The term of the project `word` is taken for, when the project does not
/// hold it itself.
pub fn correct(
    searcher: &Searcher,
    stats: &ProjectStats,
    field: Field,
    word: &str,
) -> tantivy::Result<Option<String>> {
    let Some(builder) = builder_for(word.chars().count()) else {
        return Ok(None);
    };
    let dfa = builder.build_dfa(word);
    // Documents in the index of each (distance, term), over every segment.
    let mut found: HashMap<(u8, String), u64> = HashMap::new();
    for segment in searcher.segment_readers() {
        let index = segment.inverted_index(field)?;
        let mut terms = index.terms().search(Automaton(&dfa)).into_stream()?;
        while terms.advance() {
            let (Distance::Exact(distance), Ok(term)) =
                (dfa.eval(terms.key()), std::str::from_utf8(terms.key()))
            else {
                continue;
            };
            *found.entry((distance, term.to_owned())).or_default() +=
                u64::from(terms.value().doc_freq);
        }
    }
    let mut candidates: Vec<(u8, Reverse<u64>, String)> = found
        .into_iter()
        .map(|((distance, term), documents)| (distance, Reverse(documents), term))
        .collect();
    candidates.sort_unstable();
    for nearest in candidates.chunk_by(|a, b| a.0 == b.0) {
        let mut nearest: Vec<&str> = nearest.iter().map(|(_, _, term)| term.as_str()).collect();
        if !stats.is_whole() {
            nearest.sort_unstable();
        }
        // (documents in the project, term): the most wins.
        let mut best: Option<(u64, &str)> = None;
        for term in nearest.into_iter().take(MOST_CANDIDATES) {
            let documents = stats.doc_freq(&Term::from_field_text(field, term))?;
            if documents > 0 && best.is_none_or(|(d, _)| documents > d) {
                best = Some((documents, term));
            }
        }
        if let Some((_, term)) = best {
            return Ok(Some(term.to_owned()));
        }
    }
    Ok(None)
}

/// The automaton builder for a word of `chars` characters.
fn builder_for(chars: usize) -> Option<&'static LevenshteinAutomatonBuilder> {
    static ONE: OnceLock<LevenshteinAutomatonBuilder> = OnceLock::new();
    static TWO: OnceLock<LevenshteinAutomatonBuilder> = OnceLock::new();
    match chars {
        0..=3 => None,
        4..=7 => Some(ONE.get_or_init(|| LevenshteinAutomatonBuilder::new(1, true))),
        _ => Some(TWO.get_or_init(|| LevenshteinAutomatonBuilder::new(2, true))),
    }
}

/// A Levenshtein DFA as the term dictionary walks it.
struct Automaton<'a>(&'a DFA);

impl tantivy_fst::Automaton for Automaton<'_> {
    type State = u32;

    fn start(&self) -> u32 {
        self.0.initial_state()
    }

    fn is_match(&self, state: &u32) -> bool {
        matches!(self.0.distance(*state), Distance::Exact(_))
    }

    fn can_match(&self, state: &u32) -> bool {
        *state != SINK_STATE
    }

    fn accept(&self, state: &u32, byte: u8) -> u32 {
        self.0.transition(*state, byte)
    }
}
