//! mysql_async errors mapped to reservoir's kinds.

use crate::error::{Error, ErrorKind};

/// Server errors keep their SQLSTATE; a killed statement is `Interrupted`,
/// MariaDB's `max_statement_time` is `Timeout`, and anything that breaks the
/// connection is `Disconnected`.
pub(super) fn map_error(e: mysql_async::Error) -> Error {
    match e {
        mysql_async::Error::Server(server) => {
            let message = format!("{} (MySQL error {})", server.message, server.code);
            match server.code {
                // ER_STATEMENT_TIMEOUT (MariaDB), ER_QUERY_TIMEOUT (MySQL).
                // The server's own word (not the client's deadline).
                1969 | 3024 => Error::new(ErrorKind::Timeout, message).answered_by_server(),
                // ER_QUERY_INTERRUPTED: KILL QUERY.
                1317 => Error::new(ErrorKind::Interrupted, format!("statement cancelled: {message}")),
                // Killed connection, server shutdown.
                1927 | 1053 | 2006 | 2013 => Error::new(ErrorKind::Disconnected, message),
                _ => Error::database(sqlstate(server.code, &server.state), message),
            }
        }
        mysql_async::Error::Driver(mysql_async::DriverError::StmtParamsMismatch { required, supplied }) => {
            crate::driver::param_count_error(required, supplied)
        }
        other if breaks_connection(&other) => {
            Error::new(ErrorKind::Disconnected, format!("connection lost: {other}"))
        }
        other => Error::database("HY000", other.to_string()),
    }
}

/// The SQLSTATE reservoir reports, the same on every dialect (MySQL's own
/// states are coarse: every constraint violation is 23000).
fn sqlstate(code: u16, state: &str) -> &str {
    match code {
        1062 | 1586 => "23505",               // ER_DUP_ENTRY
        1048 | 1364 => "23502",               // ER_BAD_NULL_ERROR, ER_NO_DEFAULT_FOR_FIELD
        1451 | 1452 | 1216 | 1217 => "23503", // foreign keys
        1064 | 1149 => "42601",               // ER_PARSE_ERROR, ER_SYNTAX_ERROR
        1146 => "42P01",                      // ER_NO_SUCH_TABLE
        1054 => "42703",                      // ER_BAD_FIELD_ERROR
        1213 => "40P01",                      // ER_LOCK_DEADLOCK
        _ => state,
    }
}

/// Whether the connection is unusable after `e` (mysql_async counts a
/// parameter-count mismatch as fatal; it is caught before anything is sent).
pub(super) fn breaks_connection(e: &mysql_async::Error) -> bool {
    match e {
        mysql_async::Error::Driver(mysql_async::DriverError::StmtParamsMismatch { .. }) => false,
        other => other.is_fatal(),
    }
}
