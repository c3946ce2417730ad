//! Entry points for the fuzz targets in `fuzz/` (the `fuzzing` feature):
//! every reader of bytes that come from a user or a server, each of which
//! must return an error, never panic, on any input. Not an API.

/// A database URL.
pub fn url(input: &str) {
    let _ = crate::url::DatabaseUrl::parse(input);
}

/// SQL with named placeholders, in every dialect's style.
pub fn rewrite(sql: &str) {
    use crate::sql::{Placeholder, rewrite_named};
    for style in [
        Placeholder::Question,
        Placeholder::QuestionBackslash,
        Placeholder::Dollar,
    ] {
        let _ = rewrite_named(sql, style);
    }
}

/// A PostgreSQL value in binary form, of the type `oid` names.
#[cfg(feature = "postgres")]
pub fn pg_value(oid: u32, raw: &[u8]) {
    crate::driver::postgres::fuzz_read(oid, raw);
}

/// A MySQL text-protocol value of column type `ty`.
#[cfg(feature = "mysql")]
pub fn mysql_value(ty: u8, raw: &[u8]) {
    crate::driver::mysql::fuzz_read(ty, raw);
}
