//! Checks on user Cypher before it reaches AGE: it must be read-only, call
//! no qualified (SQL) functions, and name its result columns. The checks run
//! on tokens, so keywords inside string literals or comments never count.

use super::{DomainError, DomainResult};

pub const MAX_QUERY_LEN: usize = 16 * 1024;

/// Clauses that write, load or call procedures.
const FORBIDDEN: &[&str] = &[
    "CREATE", "MERGE", "SET", "DELETE", "DETACH", "REMOVE", "CALL", "LOAD", "FOREACH",
];

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Str,
    Punct(char),
}

fn tokens(q: &str) -> DomainResult<Vec<Token>> {
    let chars: Vec<char> = q.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if c == '\'' || c == '"' || c == '`' {
            let quote = c;
            i += 1;
            while i < chars.len() && chars[i] != quote {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            if i >= chars.len() {
                return Err(DomainError::BadRequest(
                    "unterminated string in the query".into(),
                ));
            }
            i += 1;
            // A back-quoted name is an identifier, not data.
            out.push(if quote == '`' {
                Token::Word("`".into())
            } else {
                Token::Str
            });
        } else if c.is_alphanumeric() || c == '_' || c == '$' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
            {
                i += 1;
            }
            out.push(Token::Word(chars[start..i].iter().collect()));
        } else {
            out.push(Token::Punct(c));
            i += 1;
        }
    }
    Ok(out)
}

fn is_kw(t: &Token, kw: &str) -> bool {
    matches!(t, Token::Word(w) if w.eq_ignore_ascii_case(kw))
}

/// Accepts a read-only query and returns the names of its result columns.
pub fn check_read_only(query: &str) -> DomainResult<Vec<String>> {
    if query.trim().is_empty() {
        return Err(DomainError::BadRequest("query must not be empty".into()));
    }
    if query.len() > MAX_QUERY_LEN {
        return Err(DomainError::BadRequest(format!(
            "query is longer than {MAX_QUERY_LEN} bytes"
        )));
    }
    if query.contains('$') && query.contains("$$") {
        return Err(DomainError::BadRequest("query must not contain $$".into()));
    }
    let toks = tokens(query)?;
    for (i, t) in toks.iter().enumerate() {
        if let Some(kw) = FORBIDDEN.iter().find(|kw| is_kw(t, kw)) {
            // `n.set` or `{create: 1}` are property names, not clauses.
            let is_property = i > 0 && toks[i - 1] == Token::Punct('.');
            let is_key = toks.get(i + 1) == Some(&Token::Punct(':'));
            if !is_property && !is_key {
                return Err(DomainError::BadRequest(format!(
                    "the query is read-only: {kw} is not allowed"
                )));
            }
        }
        // schema.function( — a way out to SQL functions.
        if let (
            Token::Word(_),
            Some(Token::Punct('.')),
            Some(Token::Word(_)),
            Some(Token::Punct('(')),
        ) = (t, toks.get(i + 1), toks.get(i + 2), toks.get(i + 3))
        {
            return Err(DomainError::BadRequest(
                "qualified function calls are not allowed".into(),
            ));
        }
        if *t == Token::Punct(';') {
            return Err(DomainError::BadRequest(
                "one statement only: ';' is not allowed".into(),
            ));
        }
    }
    return_columns(&toks)
}

/// Column names of the last RETURN: aliases where given, else the expression text.
fn return_columns(toks: &[Token]) -> DomainResult<Vec<String>> {
    let start = toks
        .iter()
        .rposition(|t| is_kw(t, "RETURN"))
        .ok_or_else(|| DomainError::BadRequest("the query must end with a RETURN clause".into()))?;
    let mut columns = Vec::new();
    let mut depth = 0i32;
    let mut current: Vec<&Token> = Vec::new();
    let mut i = start + 1;
    if toks.get(i).is_some_and(|t| is_kw(t, "DISTINCT")) {
        i += 1;
    }
    while i < toks.len() {
        let t = &toks[i];
        match t {
            Token::Punct('(' | '[' | '{') => depth += 1,
            Token::Punct(')' | ']' | '}') => depth -= 1,
            _ => {}
        }
        let ends = depth == 0
            && (is_kw(t, "ORDER") || is_kw(t, "SKIP") || is_kw(t, "LIMIT") || is_kw(t, "UNION"));
        if ends {
            break;
        }
        if depth == 0 && *t == Token::Punct(',') {
            columns.push(column_name(&current, columns.len()));
            current.clear();
        } else {
            current.push(t);
        }
        i += 1;
    }
    if current.is_empty() {
        return Err(DomainError::BadRequest("RETURN names no column".into()));
    }
    columns.push(column_name(&current, columns.len()));
    if columns.iter().any(|c| c == "*") {
        return Err(DomainError::BadRequest(
            "RETURN * is not supported: name the columns".into(),
        ));
    }
    Ok(columns)
}

fn column_name(expr: &[&Token], index: usize) -> String {
    if let [.., as_kw, Token::Word(alias)] = expr {
        if is_kw(as_kw, "AS") {
            return alias.clone();
        }
    }
    let text: String = expr
        .iter()
        .map(|t| match t {
            Token::Word(w) => w.clone(),
            Token::Punct(c) => c.to_string(),
            Token::Str => "'…'".into(),
        })
        .collect();
    if text.is_empty() {
        format!("col{index}")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_queries_pass_and_name_their_columns() {
        let cols = check_read_only("MATCH (a:task)-[r:DEPENDS_ON]->(b) WHERE a.title = 'CREATE x' RETURN a, b.id AS target, count(r) ORDER BY target LIMIT 5").unwrap();
        assert_eq!(cols, ["a", "target", "count(r)"]);
        assert_eq!(
            check_read_only("MATCH (n) RETURN DISTINCT n.set").unwrap(),
            ["n.set"]
        );
        assert_eq!(
            check_read_only("MATCH (n {create: 1}) RETURN n").unwrap(),
            ["n"]
        );
    }

    #[test]
    fn writes_and_escapes_are_refused() {
        for q in [
            "CREATE (n:x) RETURN n",
            "MATCH (n) SET n.a = 1 RETURN n",
            "MATCH (n) DETACH DELETE n RETURN 1",
            "MATCH (n) merge (m) RETURN m",
            "MATCH (n) RETURN n; DROP TABLE entities",
            "MATCH (n) RETURN pg_catalog.pg_read_file('/etc/passwd')",
            "RETURN 1 $$) AS (a agtype); DROP TABLE entities; --",
            "MATCH (n) RETURN *",
            "MATCH (n)",
            "MATCH (n) RETURN 'unterminated",
            "",
        ] {
            assert!(check_read_only(q).is_err(), "accepted: {q}");
        }
    }
}
