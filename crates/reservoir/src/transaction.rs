//! Transactions and savepoints: handles on the levels of a connection's
//! [`Session`](crate::driver::session::Session), which owns the depth and
//! status. A level ended (by its own handle, by an outer level, or by the
//! server) stays ended: its handle's later drop does nothing. A
//! `Transaction` dropped while open rolls back (a savepoint rolls back to
//! itself) before its connection runs anything else.

use std::ops::{Deref, DerefMut};

use crate::connection::Connection;
use crate::driver::session::{self, EndPlan, ended_error, failed_error, savepoint_name};
use crate::error::Result;

pub use crate::driver::session::{Isolation, TxOptions};

enum TxConn<'c> {
    Borrowed(&'c mut Connection),
    Owned(Box<Connection>),
}

/// An open transaction (depth 1) or savepoint (depth 2 and more). Derefs to
/// the [`Connection`], so every statement method works on it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> reservoir::Result<()> {
/// let engine = reservoir::Engine::connect("sqlite::memory:").await?;
/// let mut conn = engine.acquire().await?;
/// conn.execute("CREATE TABLE t (x INTEGER)", ()).await?;
/// let mut tx = conn.begin().await?;
/// tx.execute("INSERT INTO t VALUES (1)", ()).await?;
/// let mut sp = tx.begin().await?;               // SAVEPOINT
/// sp.execute("INSERT INTO t VALUES (2)", ()).await?;
/// sp.rollback().await?;                         // only the savepoint's work is undone
/// tx.commit().await?;
/// assert_eq!(conn.fetch_scalar::<i64>("SELECT count(*) FROM t", ()).await?, 1);
/// # Ok(()) }
/// ```
pub struct Transaction<'c> {
    conn: TxConn<'c>,
    depth: usize,
    /// This level's id in the session: it is open while the session still
    /// has this id at `depth`.
    level: u64,
    /// The level the borrowed connection ran in before this one, given
    /// back when this transaction goes.
    outer: Option<(usize, u64)>,
}

impl<'c> Transaction<'c> {
    pub(crate) fn borrowed(conn: &'c mut Connection, (depth, level): (usize, u64)) -> Self {
        let outer = conn.level.replace((depth, level));
        Transaction {
            conn: TxConn::Borrowed(conn),
            depth,
            level,
            outer,
        }
    }

    /// A transaction that owns its connection handle (`engine.begin()`).
    pub(crate) fn owned(mut conn: Connection, (depth, level): (usize, u64)) -> Transaction<'static> {
        conn.level = Some((depth, level));
        Transaction {
            conn: TxConn::Owned(Box::new(conn)),
            depth,
            level,
            outer: None,
        }
    }

    /// 1 for a transaction, 2 and more for nested savepoints.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Whether this level is still open: not committed or rolled back by
    /// itself, by an outer level, or by the server.
    pub fn is_active(&self) -> bool {
        self.link_session()
            .is_some_and(|s| s.is_live(self.depth, self.level))
    }

    fn link_session(&self) -> Option<std::sync::Arc<session::Session>> {
        self.link().session()
    }

    /// Begins a nested transaction: a savepoint.
    pub async fn begin(&mut self) -> Result<Transaction<'_>> {
        self.begin_with(TxOptions::new()).await
    }

    /// Begins a savepoint; asking for another isolation level than the
    /// outer transaction's is an error.
    pub async fn begin_with(&mut self, options: TxOptions) -> Result<Transaction<'_>> {
        self.check_open()?;
        let level = self.begin_at(options).await?;
        Ok(Transaction::borrowed(self, level))
    }

    /// Refuses work on a level that has ended (by an outer level or the server).
    fn check_open(&self) -> Result<()> {
        match self.plan(false) {
            EndPlan::AlreadyEnded => Err(already_ended()),
            EndPlan::EndedByServer(why) => Err(ended_error(why)),
            _ => Ok(()),
        }
    }

    fn plan(&self, commit: bool) -> EndPlan {
        match self.link_session() {
            Some(s) => s.plan_end(self.depth, self.level, commit),
            None => EndPlan::AlreadyEnded,
        }
    }

    /// Commits (a savepoint is released into its outer transaction), and
    /// ends every level inside this one. An error of kind
    /// [`ErrorKind::RolledBack`](crate::ErrorKind::RolledBack) if the
    /// transaction had failed or the server had rolled it back: then
    /// nothing of it was kept (a savepoint's failed work is rolled back to
    /// the savepoint, and the outer transaction goes on).
    pub async fn commit(mut self) -> Result<()> {
        let result = match self.plan(true) {
            EndPlan::AlreadyEnded => Err(already_ended()),
            EndPlan::EndedByServer(why) => Err(ended_error(why)),
            EndPlan::RollBackFailed => self.end(false).await.and(Err(failed_error())),
            EndPlan::Send => self.end(true).await,
        };
        self.forget();
        result
    }

    /// Rolls back (a savepoint rolls back to itself; outer work is kept),
    /// and ends every level inside this one. Rolling back a level the
    /// server already rolled back is `Ok`.
    pub async fn rollback(mut self) -> Result<()> {
        let result = match self.plan(false) {
            EndPlan::AlreadyEnded => Err(already_ended()),
            EndPlan::EndedByServer(session::EndedBy::RolledBack) => Ok(()),
            EndPlan::EndedByServer(why) => Err(ended_error(why)),
            EndPlan::RollBackFailed | EndPlan::Send => self.end(false).await,
        };
        self.forget();
        result
    }

    /// Sends this level's end and records it (whatever the answer: after a
    /// failed COMMIT or ROLLBACK the server has ended the transaction too,
    /// and a failed RELEASE leaves the pool's reset to clean up).
    async fn end(&mut self, commit: bool) -> Result<()> {
        let sql = match (commit, self.depth) {
            (true, 1) => "COMMIT".to_string(),
            (true, d) => format!("RELEASE SAVEPOINT {}", savepoint_name(d)),
            (false, 1) => "ROLLBACK".to_string(),
            (false, d) => session::rollback_to(d),
        };
        let result = match self.simple(&sql).await {
            // The COMMIT may have reached the server and been applied: the
            // connection was lost, or no answer came by the client's deadline.
            Err(e) if commit && self.depth == 1 && e.is_lost_answer() => Err(e.into_in_doubt()),
            other => other,
        };
        if let Some(s) = self.link_session() {
            s.end_levels(self.depth);
        }
        result
    }

    /// Nothing left for `Drop` to do.
    fn forget(&mut self) {
        self.level = 0;
    }
}

fn already_ended() -> crate::Error {
    crate::Error::usage("this transaction has already ended: an outer level (or the server) ended it")
}

impl std::fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("depth", &self.depth)
            .field("connection", &**self)
            .finish()
    }
}

impl Deref for Transaction<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        match &self.conn {
            TxConn::Borrowed(c) => c,
            TxConn::Owned(c) => c,
        }
    }
}

impl DerefMut for Transaction<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        match &mut self.conn {
            TxConn::Borrowed(c) => c,
            TxConn::Owned(c) => c,
        }
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if self.level != 0 {
            if let Some(s) = self.link_session() {
                s.drop_level(self.depth, self.level);
            }
        }
        if let TxConn::Borrowed(conn) = &mut self.conn {
            conn.level = self.outer;
        }
    }
}
