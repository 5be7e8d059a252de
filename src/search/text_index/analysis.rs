//! How text becomes terms of the derived text index. A word is indexed as
//! every prefix of its lower-cased, accent-folded form and of its English
//! stem; a query word becomes its stem. So "every query word is a prefix"
//! (the database indexes' rule: FTS5 `"w"*`, tsquery `w:*`) is one term
//! lookup, one posting list, which block-max WAND can skip through, rather
//! than a union of every word that starts with it.
//!
//! Scoring follows from it: a document's term frequency for a query word
//! is how many of its words start with it, and its length is the number of
//! distinct prefixes of its words (about its length in letters, not in
//! words).

use tantivy::tokenizer::{
    AsciiFoldingFilter, Language, LowerCaser, SimpleTokenizer, Stemmer, TextAnalyzer, Token,
};

/// Longest prefix indexed, in characters; longer query words are cut to it.
pub const MAX_PREFIX: usize = 24;

/// Most words of one entity indexed (the rest is not searchable).
pub const MAX_WORDS: usize = 20_000;

/// Splits, folds and stems words the same way for documents and queries.
pub struct Analyzer {
    folded: TextAnalyzer,
    stemmed: TextAnalyzer,
}

impl Default for Analyzer {
    fn default() -> Self {
        // Words are runs of letters and digits, as in `search::query_terms`.
        let folded = || {
            TextAnalyzer::builder(SimpleTokenizer::default())
                .filter(LowerCaser)
                .filter(AsciiFoldingFilter)
        };
        Analyzer {
            folded: folded().build(),
            stemmed: folded().filter(Stemmer::new(Language::English)).build(),
        }
    }
}

impl Analyzer {
    /// The index tokens of a text: each distinct prefix of each word's
    /// folded form and stem, once per word.
    pub fn index_tokens(&mut self, text: &str) -> Vec<Token> {
        let folded = words(&mut self.folded, text);
        let stems = words(&mut self.stemmed, text);
        let mut tokens = Vec::new();
        // The stemmer maps one word to one stem, so both lists line up.
        for (position, (word, stem)) in folded.iter().zip(&stems).enumerate() {
            let start = tokens.len();
            for form in [word, stem] {
                for prefix in prefixes(form) {
                    if !tokens[start..].iter().any(|t: &Token| t.text == prefix) {
                        tokens.push(Token {
                            position,
                            text: prefix.to_owned(),
                            ..Token::default()
                        });
                    }
                }
            }
        }
        tokens
    }

    /// The index term a query word looks up: its stem, cut to `MAX_PREFIX`.
    pub fn query_term(&mut self, word: &str) -> Option<String> {
        let stem = words(&mut self.stemmed, word).into_iter().next()?;
        Some(cut(&stem).to_owned())
    }
}

/// The words of a text through an analyzer, at most `MAX_WORDS`.
fn words(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
    let mut stream = analyzer.token_stream(text);
    let mut out = Vec::new();
    while out.len() < MAX_WORDS && stream.advance() {
        out.push(stream.token().text.clone());
    }
    out
}

/// Every prefix of a word up to `MAX_PREFIX` characters, shortest first.
fn prefixes(word: &str) -> impl Iterator<Item = &str> {
    word.char_indices()
        .skip(1)
        .map(|(i, _)| i)
        .chain([word.len()])
        .take(MAX_PREFIX)
        .map(move |end| &word[..end])
}

fn cut(word: &str) -> &str {
    match word.char_indices().nth(MAX_PREFIX) {
        Some((i, _)) => &word[..i],
        None => word,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(tokens: &[Token]) -> Vec<&str> {
        tokens.iter().map(|t| t.text.as_str()).collect()
    }

    #[test]
    fn a_word_is_indexed_as_the_prefixes_of_its_form_and_stem() {
        let mut a = Analyzer::default();
        assert_eq!(
            texts(&a.index_tokens("Cars")),
            ["c", "ca", "car", "cars"],
            "the stem's prefixes are the word's, counted once"
        );
        assert_eq!(
            texts(&a.index_tokens("happy")),
            ["h", "ha", "hap", "happ", "happy", "happi"]
        );
        assert_eq!(texts(&a.index_tokens("Café")), ["c", "ca", "caf", "cafe"]);
        let two = a.index_tokens("a car");
        assert_eq!(two.iter().map(|t| t.position).max(), Some(1));
    }

    #[test]
    fn a_query_word_is_its_stem() {
        let mut a = Analyzer::default();
        assert_eq!(a.query_term("Vehicles").as_deref(), Some("vehicl"));
        assert_eq!(a.query_term("veh").as_deref(), Some("veh"));
        assert_eq!(a.query_term("").as_deref(), None);
        let long = "x".repeat(40);
        assert_eq!(a.query_term(&long).unwrap().len(), MAX_PREFIX);
        assert_eq!(prefixes(&long).count(), MAX_PREFIX);
        assert_eq!(prefixes("né").collect::<Vec<_>>(), ["n", "né"]);
    }
}
