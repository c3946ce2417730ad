//! The pool's view of a database connection: opens through the engine's
//! driver, rolls back on return, discards when broken.

use std::sync::Arc;

use crate::driver::{AnyConnection, Driver};
use crate::error::Result;
use crate::pool::{Interrupt, Manager};

pub(crate) struct DriverManager {
    pub driver: Arc<dyn Driver>,
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
        conn.in_transaction()
    }

    async fn reset(&self, conn: &mut Self::Connection) -> Result<()> {
        conn.reset().await
    }

    fn interrupt_handle(&self, conn: &Self::Connection) -> Option<Arc<dyn Interrupt>> {
        conn.interrupt_handle()
    }
}
