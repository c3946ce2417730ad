//! tokio-postgres errors mapped to reservoir's kinds.

use crate::error::{Error, ErrorKind};

/// The error with its causes: tokio-postgres's own text is often only "db error".
pub(super) fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} ({})", db.message(), db.code().code());
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Maps tokio-postgres errors: SQLSTATE for server errors, `Interrupted` for
/// a cancelled statement, `Disconnected` for a lost connection.
pub(super) fn map_error(e: tokio_postgres::Error) -> Error {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        let mut message = db.message().to_string();
        if let Some(detail) = db.detail() {
            message.push_str(": ");
            message.push_str(detail);
        }
        let mapped = match code {
            "57014" if message.contains("statement timeout") => Error::new(ErrorKind::Timeout, message),
            "57014" => Error::new(ErrorKind::Interrupted, format!("statement cancelled: {message}")),
            "57P01" | "57P02" | "57P03" => Error::new(ErrorKind::Disconnected, message),
            // An unnamed statement's parameter count is checked by the server.
            "08P01" if message.starts_with("bind message supplies") => Error::new(ErrorKind::Param, message),
            _ => Error::database(code, message),
        };
        return mapped.answered_by_server();
    }
    let text = describe(&e);
    if e.is_closed() || std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>()) {
        return Error::new(ErrorKind::Disconnected, format!("connection lost: {text}"));
    }
    if text.contains("serializing parameter") {
        let cause = std::error::Error::source(&e)
            .map(|s| s.to_string())
            .unwrap_or_default();
        return Error::new(ErrorKind::Param, format!("{text}: {cause}"));
    }
    Error::database("HY000", text)
}
