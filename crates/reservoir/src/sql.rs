//! Placeholder scanning: `:name` parameters rewritten to the database's own
//! style, skipping string literals, quoted identifiers, comments, `::` casts
//! and dollar-quoted bodies. `\:` stands for a literal colon. In MySQL's
//! strings a backslash escapes the next character, as MySQL reads them.

use crate::error::{Error, ErrorKind, Result};

/// How a database writes positional placeholders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placeholder {
    /// `?` (SQLite): one per occurrence.
    Question,
    /// `?` with MySQL's string syntax, where `\'` does not end a string.
    QuestionBackslash,
    /// `$1`, `$2` (PostgreSQL): one per distinct name.
    Dollar,
}

/// A statement with named parameters rewritten to positional ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rewritten {
    /// The SQL in the database's placeholder style.
    pub sql: String,
    /// The parameter name bound at each position.
    pub names: Vec<String>,
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Rewrites `:name` placeholders in `sql` into `style`.
///
/// ```
/// use reservoir::sql::{rewrite_named, Placeholder};
/// let r = rewrite_named("SELECT ':x', a::int FROM t WHERE id = :id OR p = :id", Placeholder::Dollar)?;
/// assert_eq!(r.sql, "SELECT ':x', a::int FROM t WHERE id = $1 OR p = $1");
/// assert_eq!(r.names, ["id"]);
/// # Ok::<(), reservoir::Error>(())
/// ```
pub fn rewrite_named(sql: &str, style: Placeholder) -> Result<Rewritten> {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut names: Vec<String> = Vec::new();
    let chars: Vec<(usize, char)> = sql.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (at, c) = chars[i];
        let next = chars.get(i + 1).map(|&(_, c)| c);
        match c {
            '\'' | '"' | '`' => {
                // MySQL reads backslash escapes in strings, not in `identifiers`.
                let backslash = style == Placeholder::QuestionBackslash && c != '`';
                let end = closing_quote(&chars, i, c, backslash);
                out.push_str(&sql[at..byte_at(sql, &chars, end)]);
                i = end;
            }
            '-' if next == Some('-') => {
                let end = chars[i..]
                    .iter()
                    .position(|&(_, c)| c == '\n')
                    .map_or(chars.len(), |p| i + p);
                out.push_str(&sql[at..byte_at(sql, &chars, end)]);
                i = end;
            }
            '/' if next == Some('*') => {
                let end = block_comment_end(&chars, i)?;
                out.push_str(&sql[at..byte_at(sql, &chars, end)]);
                i = end;
            }
            // Dollar quoting is PostgreSQL's; elsewhere `$` is plain text.
            '$' if style == Placeholder::Dollar => match dollar_quote_end(sql, &chars, i) {
                Some(end) => {
                    out.push_str(&sql[at..byte_at(sql, &chars, end)]);
                    i = end;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            },
            '\\' if next == Some(':') => {
                out.push(':');
                i += 2;
            }
            ':' if next == Some(':') => {
                out.push_str("::");
                i += 2;
            }
            ':' if next.is_some_and(is_ident_start) => {
                let start = i + 1;
                let end = chars[start..]
                    .iter()
                    .position(|&(_, c)| !is_ident(c))
                    .map_or(chars.len(), |p| start + p);
                let name = &sql[chars[start].0..byte_at(sql, &chars, end)];
                match style {
                    Placeholder::Question | Placeholder::QuestionBackslash => {
                        out.push('?');
                        names.push(name.to_string());
                    }
                    Placeholder::Dollar => {
                        let pos = match names.iter().position(|n| n == name) {
                            Some(p) => p,
                            None => {
                                names.push(name.to_string());
                                names.len() - 1
                            }
                        };
                        out.push('$');
                        out.push_str(&(pos + 1).to_string());
                    }
                }
                i = end;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(Rewritten { sql: out, names })
}

fn byte_at(sql: &str, chars: &[(usize, char)], i: usize) -> usize {
    chars.get(i).map_or(sql.len(), |&(b, _)| b)
}

/// Index just past the quote closing the one at `i`; a doubled quote (and,
/// with `backslash`, a backslash) escapes. An unclosed quote runs to the end
/// (the database reports it).
fn closing_quote(chars: &[(usize, char)], i: usize, q: char, backslash: bool) -> usize {
    let mut j = i + 1;
    while j < chars.len() {
        if backslash && chars[j].1 == '\\' {
            j += 2;
            continue;
        }
        if chars[j].1 == q {
            if chars.get(j + 1).is_some_and(|&(_, c)| c == q) {
                j += 2;
                continue;
            }
            return j + 1;
        }
        j += 1;
    }
    chars.len()
}

/// Index just past a (nested) block comment starting at `i`.
fn block_comment_end(chars: &[(usize, char)], i: usize) -> Result<usize> {
    let mut depth = 0;
    let mut j = i;
    while j + 1 < chars.len() {
        match (chars[j].1, chars[j + 1].1) {
            ('/', '*') => {
                depth += 1;
                j += 2;
            }
            ('*', '/') => {
                depth -= 1;
                j += 2;
                if depth == 0 {
                    return Ok(j);
                }
            }
            _ => j += 1,
        }
    }
    Err(Error::new(ErrorKind::Param, "unterminated /* comment in SQL"))
}

/// If a dollar-quote tag (`$$` or `$tag$`) starts at `i`, the index just past
/// its closing tag.
fn dollar_quote_end(sql: &str, chars: &[(usize, char)], i: usize) -> Option<usize> {
    let mut j = i + 1;
    while j < chars.len() && is_ident(chars[j].1) {
        j += 1;
    }
    if chars.get(j).map(|&(_, c)| c) != Some('$')
        || chars.get(i + 1).is_some_and(|&(_, c)| c.is_ascii_digit())
    {
        return None;
    }
    let tag = &sql[chars[i].0..=chars[j].0];
    let body_start = chars[j].0 + 1;
    let close = sql[body_start..].find(tag)? + body_start + tag.len();
    Some(chars.iter().position(|&(b, _)| b >= close).unwrap_or(chars.len()))
}

/// Whether `sql` is a plain query (its first word SELECT, WITH, VALUES or
/// TABLE): one that cannot open a transaction or change the session's, so
/// it may share a connection with other such queries. Runs on every
/// connectionless read with `pipeline_reads`: bytes only, and one keyword
/// compared at most (by the word's length).
pub(crate) fn is_plain_read(sql: &str) -> bool {
    let bytes = sql.as_bytes();
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace() && *b != b'(')
        .unwrap_or(bytes.len());
    let rest = &bytes[start..];
    let word = &rest[..rest
        .iter()
        .position(|b| !b.is_ascii_alphabetic())
        .unwrap_or(rest.len())];
    match word.len() {
        4 => word.eq_ignore_ascii_case(b"WITH"),
        5 => word.eq_ignore_ascii_case(b"TABLE"),
        6 => word.eq_ignore_ascii_case(b"SELECT") || word.eq_ignore_ascii_case(b"VALUES"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Placeholder::{Dollar, Question};

    #[test]
    fn mysql_strings_take_backslash_escapes() {
        let sql = r"SELECT 'it\'s :not', `a\`, :yes, 'x'':no'";
        let mysql = rewrite_named(sql, Placeholder::QuestionBackslash).unwrap();
        assert_eq!(mysql.sql, r"SELECT 'it\'s :not', `a\`, ?, 'x'':no'");
        assert_eq!(mysql.names, ["yes"]);
        // Standard SQL: the backslash is a plain character, so the string
        // ends at the quote after it.
        let standard = rewrite_named(r"SELECT 'a\', :yes", Placeholder::Question).unwrap();
        assert_eq!(standard.sql, r"SELECT 'a\', ?");
    }

    #[test]
    fn plain_reads_are_told_by_their_first_word() {
        for sql in [
            "SELECT 1",
            "  select 1",
            "(SELECT 1) UNION (SELECT 2)",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "values (1)",
            "TABLE t",
            "\n\t( (select 1))",
            "With1",
        ] {
            assert!(is_plain_read(sql), "{sql}");
        }
        for sql in [
            "BEGIN",
            "SET x = 1",
            "INSERT INTO t VALUES (1)",
            "SELECTX",
            "",
            "   ",
            "(",
            "-- c\nSELECT 1",
            "SELEC",
            "TABLES",
            "\u{a0}SELECT 1",
        ] {
            assert!(!is_plain_read(sql), "{sql}");
        }
    }

    #[test]
    fn table() {
        let cases: &[(&str, Placeholder, &str, &[&str])] = &[
            ("SELECT :a, :b", Question, "SELECT ?, ?", &["a", "b"]),
            ("SELECT :a, :b, :a", Dollar, "SELECT $1, $2, $1", &["a", "b"]),
            ("SELECT :a, :a", Question, "SELECT ?, ?", &["a", "a"]),
            (
                "SELECT ':a', 'it''s :b', :c",
                Question,
                "SELECT ':a', 'it''s :b', ?",
                &["c"],
            ),
            (
                "SELECT \":a\" FROM t WHERE x = :x",
                Question,
                "SELECT \":a\" FROM t WHERE x = ?",
                &["x"],
            ),
            ("SELECT `:a` FROM t", Question, "SELECT `:a` FROM t", &[]),
            ("SELECT 1 -- :a\n, :b", Question, "SELECT 1 -- :a\n, ?", &["b"]),
            (
                "SELECT /* :a /* :n */ :b */ :c",
                Question,
                "SELECT /* :a /* :n */ :b */ ?",
                &["c"],
            ),
            (
                "SELECT x::int, :y::text",
                Dollar,
                "SELECT x::int, $1::text",
                &["y"],
            ),
            (
                "SELECT $$ :a $$, $t$ :b $t$, :c",
                Dollar,
                "SELECT $$ :a $$, $t$ :b $t$, $1",
                &["c"],
            ),
            (
                "SELECT '10\\:30', 'x' || \\:y",
                Question,
                "SELECT '10\\:30', 'x' || :y",
                &[],
            ),
            ("SELECT :_a1, :1", Question, "SELECT ?, :1", &["_a1"]),
            ("SELECT 'ünï:cödé', :é", Question, "SELECT 'ünï:cödé', :é", &[]),
            ("SELECT ':unclosed", Question, "SELECT ':unclosed", &[]),
        ];
        for (sql, style, want, names) in cases {
            let r = rewrite_named(sql, *style).unwrap();
            assert_eq!(r.sql, *want, "{sql}");
            assert_eq!(r.names, *names, "{sql}");
        }
    }

    #[test]
    fn unterminated_comment_is_an_error() {
        let err = rewrite_named("SELECT /* :a", Question).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Param);
    }

    proptest::proptest! {
        /// Text without a colon comes back unchanged; no input panics.
        #[test]
        fn no_colon_no_change(s in "[^:\\\\]*") {
            if let Ok(r) = rewrite_named(&s, Question) {
                proptest::prop_assert_eq!(r.sql, s);
                proptest::prop_assert!(r.names.is_empty());
            }
        }

        #[test]
        fn never_panics_and_counts_match(s in ".*") {
            for style in [Question, Dollar] {
                if let Ok(r) = rewrite_named(&s, style) {
                    if style == Question {
                        proptest::prop_assert!(r.sql.matches('?').count() >= r.names.len());
                    }
                }
            }
        }
    }
}
