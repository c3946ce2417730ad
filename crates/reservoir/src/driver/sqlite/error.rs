//! rusqlite errors mapped to reservoir's kinds.

use rusqlite::ffi;

use crate::error::{Error, ErrorKind};

pub(super) fn connect_error(e: rusqlite::Error) -> Error {
    Error::new(ErrorKind::Connect, format!("cannot open SQLite database: {e}"))
}

/// Maps SQLite's result codes onto SQLSTATE classes, so that
/// `is_unique_violation()` and friends work the same on every dialect.
pub(super) fn map_error(e: rusqlite::Error) -> Error {
    match e {
        rusqlite::Error::SqliteFailure(failure, message) => {
            let message = message.unwrap_or_else(|| failure.to_string());
            let code = match failure.code {
                rusqlite::ErrorCode::OperationInterrupted => {
                    return Error::new(
                        ErrorKind::Interrupted,
                        format!("statement interrupted: {message}"),
                    );
                }
                rusqlite::ErrorCode::ConstraintViolation => match failure.extended_code {
                    ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => "23505",
                    ffi::SQLITE_CONSTRAINT_NOTNULL => "23502",
                    ffi::SQLITE_CONSTRAINT_FOREIGNKEY => "23503",
                    ffi::SQLITE_CONSTRAINT_CHECK => "23514",
                    _ => "23000",
                },
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked => "55P03",
                rusqlite::ErrorCode::ReadOnly => "25006",
                _ if message.contains("syntax error") => "42601",
                _ if message.starts_with("no such table") => "42P01",
                _ if message.starts_with("no such column") => "42703",
                _ => "HY000",
            };
            Error::database(code, message)
        }
        rusqlite::Error::SqlInputError { msg, sql, offset, .. } => {
            Error::database("42601", format!("{msg} at offset {offset} of: {sql}"))
        }
        rusqlite::Error::InvalidParameterCount(given, expected) => {
            crate::driver::param_count_error(expected, given)
        }
        other => Error::database("HY000", other.to_string()),
    }
}
