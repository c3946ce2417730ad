//! One error type for the whole crate, classified by [`ErrorKind`].

use std::error::Error as StdError;
use std::fmt;

/// What went wrong, in terms a caller can branch on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No connection became free within `pool_timeout`.
    PoolTimeout,
    /// `max_waiting` requests were already queued: rejected at once.
    PoolOverloaded,
    /// The pool or engine was closed.
    PoolClosed,
    /// A new connection could not be opened; the message carries the server's reason.
    Connect,
    /// An open connection was lost (server restart, killed backend, broken socket).
    Disconnected,
    /// The database rejected a statement. `code` is a SQLSTATE (mapped for SQLite).
    Database {
        /// SQLSTATE, e.g. `23505` for a unique violation.
        code: String,
        /// The server's message.
        message: String,
    },
    /// Bad statement parameters: a missing or unused name, a wrong count, an unbindable value.
    Param,
    /// A value could not be converted to the requested Rust type.
    Decode,
    /// A malformed database URL or connect option.
    Url,
    /// Implicit execution with no engine bound to the metadata.
    Unbound,
    /// The statement was interrupted (cancel request, close with interrupt).
    Interrupted,
    /// The statement ran longer than `statement_timeout` and was cancelled.
    Timeout,
    /// An invalid setting.
    Config,
    /// `fetch_one` found no row.
    NoRows,
    /// A misuse of the API that the types could not rule out (e.g. a closed transaction).
    Usage,
    /// The transaction was rolled back instead of committed (it failed at
    /// an earlier statement, or the server ended it): none of its work was kept.
    RolledBack,
    /// The connection was lost after COMMIT was sent and before its answer:
    /// the transaction may or may not have been kept. Never retry it
    /// blindly (that can apply it twice); check on a new connection.
    InDoubt,
}

/// The error type of every fallible Reservoir call.
pub struct Error {
    kind: ErrorKind,
    message: String,
    /// The server answered with this error (rather than the client
    /// failing before or after it): inside a PostgreSQL transaction, such
    /// an answer means the transaction has failed.
    from_server: bool,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with a human-readable message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            from_server: false,
            source: None,
        }
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// A database error with a SQLSTATE code.
    pub fn database(code: impl Into<String>, message: impl Into<String>) -> Self {
        let message = message.into();
        Error::new(
            ErrorKind::Database {
                code: code.into(),
                message: message.clone(),
            },
            message,
        )
    }

    /// Marks the error as the server's own answer.
    pub(crate) fn answered_by_server(mut self) -> Self {
        self.from_server = true;
        self
    }

    /// Whether the server answered with this error.
    pub(crate) fn is_server_answer(&self) -> bool {
        self.from_server
    }

    /// The classification of this error.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The message, without the kind prefix.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The SQLSTATE code of a database error.
    pub fn code(&self) -> Option<&str> {
        match &self.kind {
            ErrorKind::Database { code, .. } => Some(code),
            _ => None,
        }
    }

    /// A unique or primary-key constraint was violated (SQLSTATE 23505).
    pub fn is_unique_violation(&self) -> bool {
        self.code() == Some("23505")
    }

    /// The connection was lost while the statement ran. The statement may
    /// still have taken effect (a write sent outside a transaction may be
    /// kept): repeat only what is safe to repeat. A COMMIT lost this way is
    /// [`ErrorKind::InDoubt`] instead, for which this is `false`, so that
    /// code retrying on disconnects never applies a transaction twice.
    pub fn is_disconnect(&self) -> bool {
        matches!(self.kind, ErrorKind::Disconnected)
    }

    /// The connection was lost after COMMIT was sent: whether the
    /// transaction was kept is unknown ([`ErrorKind::InDoubt`]).
    pub fn is_in_doubt(&self) -> bool {
        matches!(self.kind, ErrorKind::InDoubt)
    }

    /// The statement's answer never came: the connection was lost, or the
    /// client's deadline passed (a `Timeout` the server did not send).
    pub(crate) fn is_lost_answer(&self) -> bool {
        self.is_disconnect() || (self.kind == ErrorKind::Timeout && !self.from_server)
    }

    /// A lost COMMIT: the same loss, as the in-doubt error it is.
    pub(crate) fn into_in_doubt(self) -> Self {
        let message = format!(
            "the connection was lost after COMMIT was sent; the transaction may or may not have been kept ({})",
            self.message
        );
        Error::new(ErrorKind::InDoubt, message).with_source(self)
    }

    /// A time limit ran out: waiting for a connection or running a statement.
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, ErrorKind::PoolTimeout | ErrorKind::Timeout)
    }

    pub(crate) fn pool_timeout(waited: std::time::Duration) -> Self {
        Error::new(
            ErrorKind::PoolTimeout,
            format!("no connection became free within {waited:?}"),
        )
    }

    pub(crate) fn pool_closed() -> Self {
        Error::new(ErrorKind::PoolClosed, "the pool is closed")
    }

    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Usage, message)
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Config, message)
    }
}

fn kind_name(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::PoolTimeout => "pool timeout",
        ErrorKind::PoolOverloaded => "pool overloaded",
        ErrorKind::PoolClosed => "pool closed",
        ErrorKind::Connect => "connect error",
        ErrorKind::Disconnected => "disconnected",
        ErrorKind::Database { .. } => "database error",
        ErrorKind::Param => "parameter error",
        ErrorKind::Decode => "decode error",
        ErrorKind::Url => "invalid URL",
        ErrorKind::Unbound => "unbound metadata",
        ErrorKind::Interrupted => "interrupted",
        ErrorKind::Timeout => "statement timeout",
        ErrorKind::Config => "invalid configuration",
        ErrorKind::NoRows => "no rows",
        ErrorKind::Usage => "usage error",
        ErrorKind::RolledBack => "transaction rolled back",
        ErrorKind::InDoubt => "commit in doubt",
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", kind_name(&self.kind))?;
        if let Some(code) = self.code() {
            write!(f, " [{code}]")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(source) = &self.source {
            d.field("source", &source.to_string());
        }
        d.finish()
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_kind_and_code() {
        let e = Error::database("23505", "duplicate key");
        assert_eq!(e.to_string(), "database error [23505]: duplicate key");
        assert!(e.is_unique_violation());
        assert!(!e.is_disconnect());
        assert!(Error::pool_timeout(std::time::Duration::from_secs(1)).is_timeout());
    }
}
