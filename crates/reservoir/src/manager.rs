//! The pool's view of a database connection: opens through the engine's
//! driver, resets on return as `reset_on_return` says (within a deadline:
//! a reset that cannot finish discards the connection), discards when broken.

use std::sync::Arc;
use std::time::Duration;

use crate::driver::session::ResetOnReturn;
use crate::driver::{AnyConnection, Driver};
use crate::error::{Error, ErrorKind, Result};
use crate::pool::{Interrupt, Manager};

/// The longest a reset on return may take (a silent server never answers
/// it): past it the connection is discarded and its slot freed. Generous:
/// a reset settles an abandoned statement, which may take a cancel round
/// trip and the server's own time to stop it.
const RESET_DEADLINE: Duration = Duration::from_secs(10);

pub(crate) struct DriverManager {
    pub driver: Arc<dyn Driver>,
    pub reset_on_return: ResetOnReturn,
}

impl DriverManager {
    /// Whether this return resets the whole session.
    fn full_reset(&self, conn: &AnyConnection) -> bool {
        match self.reset_on_return {
            ResetOnReturn::Discard => true,
            ResetOnReturn::Auto => conn.session().state_changed(),
            ResetOnReturn::Rollback | ResetOnReturn::None => false,
        }
    }
}

impl Manager for DriverManager {
    type Connection = AnyConnection;

    async fn connect(&self) -> Result<Self::Connection> {
        self.driver.connect().await
    }

    async fn ping(&self, conn: &mut Self::Connection) -> Result<()> {
        conn.ping().await
    }

    fn is_broken(&self, conn: &Self::Connection) -> bool {
        conn.is_broken()
    }

    /// Sockets are (PostgreSQL, MySQL); SQLite's connections run on threads of their own.
    fn runtime_bound(&self) -> bool {
        !matches!(self.driver.dialect(), crate::Dialect::Sqlite)
    }

    fn needs_reset(&self, conn: &Self::Connection) -> bool {
        conn.needs_reset() || self.full_reset(conn)
    }

    async fn reset(&self, conn: &mut Self::Connection) -> Result<()> {
        let full = self.full_reset(conn);
        match tokio::time::timeout(RESET_DEADLINE, conn.reset(full)).await {
            Ok(reset) => reset,
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!("the reset on return did not finish within {RESET_DEADLINE:?}"),
            )),
        }
    }

    fn interrupt_handle(&self, conn: &Self::Connection) -> Option<Arc<dyn Interrupt>> {
        conn.interrupt_handle()
    }
}
