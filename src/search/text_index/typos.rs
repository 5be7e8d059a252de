//! Typo tolerance for the text index: a query word the index has never
//! seen is read as the closest indexed term, nearest first (Levenshtein
//! distance 1, 2 from eight characters, a swap of two letters counting
//! one), then most frequent. Words of three characters or fewer are taken
//! as typed. The replacement is one term, so the query keeps its plain
//! term clauses (and block-max WAND).

use levenshtein_automata::{Distance, LevenshteinAutomatonBuilder, DFA, SINK_STATE};
use std::sync::OnceLock;
use tantivy::schema::Field;
use tantivy::Searcher;

/// The indexed term `word` is taken for, when it is not indexed itself.
pub fn correct(searcher: &Searcher, field: Field, word: &str) -> tantivy::Result<Option<String>> {
    let Some(builder) = builder_for(word.chars().count()) else {
        return Ok(None);
    };
    let dfa = builder.build_dfa(word);
    // (distance, -documents, term): the smallest is the best.
    let mut best: Option<(u8, i64, Vec<u8>)> = None;
    for segment in searcher.segment_readers() {
        let index = segment.inverted_index(field)?;
        let mut terms = index.terms().search(Automaton(&dfa)).into_stream()?;
        while terms.advance() {
            let Distance::Exact(distance) = dfa.eval(terms.key()) else {
                continue;
            };
            let candidate = (
                distance,
                -i64::from(terms.value().doc_freq),
                terms.key().to_vec(),
            );
            // Document counts of one term in several segments are not
            // summed: segments are few and the nearest term wins anyway.
            if best.as_ref().is_none_or(|b| candidate < *b) {
                best = Some(candidate);
            }
        }
    }
    Ok(best.and_then(|(_, _, term)| String::from_utf8(term).ok()))
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
