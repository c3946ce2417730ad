//! Placeholder scanning: `:name` parameters rewritten to the database's own
//! style, skipping string literals, quoted identifiers, comments, `::` casts,
//! array slices and dollar-quoted bodies, each as its dialect reads them.
//! `\:` stands for a literal colon. One pass, linear in the SQL's length.

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

/// Bytes that continue a word: ASCII letters, digits, `_`, and every byte
/// of a non-ASCII character (PostgreSQL and SQLite identifiers may hold
/// any letter).
fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// Rewrites `:name` placeholders in `sql` into `style`.
///
/// A `:name` is a placeholder where SQLAlchemy's `text()` takes one: not
/// inside a string, quoted identifier, comment or dollar-quoted body, not
/// part of a `::` cast, and not right after a word (`arr[lo:hi]` is an
/// array slice). Names are ASCII words. Quoting follows the dialect:
/// PostgreSQL's `E'..'` strings take backslash escapes and `$tag$` bodies
/// quote; MySQL's strings take backslash escapes and `#` starts a comment;
/// SQLite's `[..]` quotes an identifier. One pass over the bytes: linear in
/// the length of the SQL.
///
/// ```
/// use reservoir::sql::{rewrite_named, Placeholder};
/// let r = rewrite_named("SELECT ':x', a::int FROM t WHERE id = :id OR p = :id", Placeholder::Dollar)?;
/// assert_eq!(r.sql, "SELECT ':x', a::int FROM t WHERE id = $1 OR p = $1");
/// assert_eq!(r.names, ["id"]);
/// # Ok::<(), reservoir::Error>(())
/// ```
pub fn rewrite_named(sql: &str, style: Placeholder) -> Result<Rewritten> {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + 8);
    let mut names = Names::default();
    // `sql[copied..i]` is still to be copied to `out`: every skip below
    // only moves `i`, and text is copied where a placeholder replaces it.
    // Both only ever stop at ASCII bytes, so the slices are on char bounds.
    let mut copied = 0;
    let mut i = 0;
    let after_word = |i: usize| i > 0 && is_word_byte(b[i - 1]);
    while i < b.len() {
        let next = b.get(i + 1).copied();
        i = match b[i] {
            b'\'' => {
                let escapes = match style {
                    Placeholder::QuestionBackslash => true,
                    // E'..': an escape string, unless the E ends a word.
                    Placeholder::Dollar => {
                        i > 0 && matches!(b[i - 1], b'E' | b'e') && !(i > 1 && is_word_byte(b[i - 2]))
                    }
                    Placeholder::Question => false,
                };
                closing_quote(b, i, b'\'', escapes)
            }
            // MySQL reads backslash escapes in "strings", not in `identifiers`.
            b'"' => closing_quote(b, i, b'"', style == Placeholder::QuestionBackslash),
            b'`' => closing_quote(b, i, b'`', false),
            b'[' if style == Placeholder::Question => find_from(b, i + 1, b']').map_or(b.len(), |j| j + 1),
            b'#' if style == Placeholder::QuestionBackslash => line_end(b, i),
            b'-' if next == Some(b'-') => line_end(b, i),
            b'/' if next == Some(b'*') => block_comment_end(b, i)?,
            // Dollar quoting is PostgreSQL's; elsewhere `$` is plain text,
            // and after a word it is part of an identifier (`a$b$`).
            b'$' if style == Placeholder::Dollar && !after_word(i) => {
                dollar_quote_end(sql, i).unwrap_or(i + 1)
            }
            b'\\' if next == Some(b':') => {
                out.push_str(&sql[copied..i]);
                out.push(':');
                copied = i + 2;
                i + 2
            }
            b':' if next == Some(b':') => i + 2,
            b':' if next.is_some_and(|c| c.is_ascii_alphabetic() || c == b'_') && !after_word(i) => {
                let end = (i + 1..b.len())
                    .find(|&j| !(b[j].is_ascii_alphanumeric() || b[j] == b'_'))
                    .unwrap_or(b.len());
                out.push_str(&sql[copied..i]);
                names.place(&sql[i + 1..end], style, &mut out);
                copied = end;
                end
            }
            _ => i + 1,
        };
    }
    out.push_str(&sql[copied..]);
    Ok(Rewritten {
        sql: out,
        names: names.order,
    })
}

/// The names bound, in order of position, and where each already is
/// (PostgreSQL binds a name used twice once).
#[derive(Default)]
struct Names {
    order: Vec<String>,
    /// By name, once there are enough that a scan would cost: a statement
    /// may bind thousands.
    index: Option<std::collections::HashMap<String, usize>>,
}

impl Names {
    /// Writes the placeholder for `name` and records it.
    fn place(&mut self, name: &str, style: Placeholder, out: &mut String) {
        if style != Placeholder::Dollar {
            out.push('?');
            self.order.push(name.to_string());
            return;
        }
        let found = match &self.index {
            Some(index) => index.get(name).copied(),
            None => self.order.iter().position(|n| n == name),
        };
        let pos = found.unwrap_or_else(|| {
            self.order.push(name.to_string());
            let pos = self.order.len() - 1;
            if let Some(index) = &mut self.index {
                index.insert(name.to_string(), pos);
            } else if self.order.len() > 32 {
                self.index = Some(self.order.iter().cloned().zip(0..).collect());
            }
            pos
        });
        out.push('$');
        out.push_str(&(pos + 1).to_string());
    }
}

fn find_from(b: &[u8], from: usize, byte: u8) -> Option<usize> {
    b.get(from..)?.iter().position(|&c| c == byte).map(|p| from + p)
}

/// Index of the newline ending the line comment at `i` (or the end).
fn line_end(b: &[u8], i: usize) -> usize {
    find_from(b, i, b'\n').unwrap_or(b.len())
}

/// Index just past the quote closing the one at `i`; a doubled quote (and,
/// with `backslash`, a backslash) escapes. An unclosed quote runs to the end
/// (the database reports it).
fn closing_quote(b: &[u8], i: usize, q: u8, backslash: bool) -> usize {
    let mut j = i + 1;
    while j < b.len() {
        if backslash && b[j] == b'\\' {
            j += 2;
            continue;
        }
        if b[j] == q {
            if b.get(j + 1) == Some(&q) {
                j += 2;
                continue;
            }
            return j + 1;
        }
        j += 1;
    }
    b.len()
}

/// Index just past a (nested) block comment starting at `i`.
fn block_comment_end(b: &[u8], i: usize) -> Result<usize> {
    let mut depth = 0;
    let mut j = i;
    while j + 1 < b.len() {
        match (b[j], b[j + 1]) {
            (b'/', b'*') => {
                depth += 1;
                j += 2;
            }
            (b'*', b'/') => {
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

/// If a dollar-quote tag (`$$`, `$tag$`, `$é$`) starts at `i`, the index
/// just past its closing tag; an unclosed body runs to the end (the server
/// reports it), so that no opener is searched for twice.
fn dollar_quote_end(sql: &str, i: usize) -> Option<usize> {
    let b = sql.as_bytes();
    if b.get(i + 1).is_some_and(u8::is_ascii_digit) {
        return None; // $1: a positional parameter
    }
    let close = (i + 1..b.len()).find(|&j| !is_word_byte(b[j]))?;
    if b[close] != b'$' {
        return None;
    }
    let tag = &sql[i..=close];
    Some(
        sql[close + 1..]
            .find(tag)
            .map_or(sql.len(), |at| close + 1 + at + tag.len()),
    )
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
            // PostgreSQL escape strings take backslash escapes; others do not.
            (
                r"SELECT E'it\'s :no', :yes",
                Dollar,
                r"SELECT E'it\'s :no', $1",
                &["yes"],
            ),
            (r"SELECT e'\\', :yes", Dollar, r"SELECT e'\\', $1", &["yes"]),
            (r"SELECT 'a\', :yes", Dollar, r"SELECT 'a\', $1", &["yes"]),
            (r"SELECT NAMEE'x', :yes", Dollar, r"SELECT NAMEE'x', $1", &["yes"]),
            // Array slices: a colon right after a word is not a placeholder.
            (
                "SELECT arr[lo:hi], arr[1:2], arr[:i]",
                Dollar,
                "SELECT arr[lo:hi], arr[1:2], arr[$1]",
                &["i"],
            ),
            // MySQL's # comments; in PostgreSQL # is an operator.
            (
                "SELECT 1 # :a\n, :b",
                Placeholder::QuestionBackslash,
                "SELECT 1 # :a\n, ?",
                &["b"],
            ),
            ("SELECT 5 # :a", Dollar, "SELECT 5 # $1", &["a"]),
            // Dollar tags may hold any letter; `$` after a word is part of it.
            ("SELECT $é$ :b $é$, :c", Dollar, "SELECT $é$ :b $é$, $1", &["c"]),
            ("SELECT a$b$c, :x", Dollar, "SELECT a$b$c, $1", &["x"]),
            ("SELECT $q$ :a", Dollar, "SELECT $q$ :a", &[]),
            ("SELECT $2::int", Dollar, "SELECT $2::int", &[]),
            // SQLite's [bracketed] identifiers.
            (
                "SELECT [a:b] FROM t WHERE x = :x",
                Question,
                "SELECT [a:b] FROM t WHERE x = ?",
                &["x"],
            ),
        ];
        for (sql, style, want, names) in cases {
            let r = rewrite_named(sql, *style).unwrap();
            assert_eq!(r.sql, *want, "{sql}");
            assert_eq!(r.names, *names, "{sql}");
        }
    }

    /// Many dollar-quoted bodies and placeholders in one statement: the
    /// scan is one pass (it was quadratic in the number of bodies).
    #[test]
    fn a_long_statement_is_rewritten_whole() {
        let piece = "$f$ body :not $f$, :p, 'it''s', $$ x $$ -- :c\n";
        let sql = piece.repeat(20_000);
        let r = rewrite_named(&sql, Dollar).unwrap();
        assert_eq!(r.names, ["p"]);
        assert_eq!(r.sql.matches("$1").count(), 20_000);
        assert_eq!(r.sql.matches(":not").count(), 20_000);
        let many: String = (0..5_000).map(|n| format!(":p{n},")).collect();
        let r = rewrite_named(&many, Dollar).unwrap();
        assert_eq!(r.names.len(), 5_000);
        assert!(r.sql.ends_with("$5000,"));
        let r = rewrite_named(&format!("{many}:p17"), Dollar).unwrap();
        assert!(r.sql.ends_with("$18"), "a name seen before keeps its position");
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
