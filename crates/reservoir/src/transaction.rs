//! Transactions and savepoints. A `Transaction` that is dropped without
//! `commit` rolls back (a savepoint rolls back to itself) before its
//! connection runs anything else.

use std::ops::{Deref, DerefMut};

use crate::connection::Connection;
use std::sync::atomic::Ordering::SeqCst;

use crate::error::Result;

/// Isolation levels (SQL standard names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// READ UNCOMMITTED.
    ReadUncommitted,
    /// READ COMMITTED.
    ReadCommitted,
    /// REPEATABLE READ.
    RepeatableRead,
    /// SERIALIZABLE.
    Serializable,
}

impl Isolation {
    /// The level as SQL writes it.
    pub fn sql(self) -> &'static str {
        match self {
            Isolation::ReadUncommitted => "READ UNCOMMITTED",
            Isolation::ReadCommitted => "READ COMMITTED",
            Isolation::RepeatableRead => "REPEATABLE READ",
            Isolation::Serializable => "SERIALIZABLE",
        }
    }
}

/// How to begin a transaction.
///
/// ```
/// use reservoir::transaction::{Isolation, TxOptions};
/// let opts = TxOptions::new().isolation(Isolation::Serializable).read_only(true);
/// assert!(opts.is_read_only());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxOptions {
    isolation: Option<Isolation>,
    read_only: bool,
}

impl TxOptions {
    /// The database's defaults.
    pub fn new() -> Self {
        TxOptions::default()
    }
    /// Asks for an isolation level.
    pub fn isolation(mut self, level: Isolation) -> Self {
        self.isolation = Some(level);
        self
    }
    /// Asks for a read-only transaction.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }
    /// The requested isolation level.
    pub fn isolation_level(&self) -> Option<Isolation> {
        self.isolation
    }
    /// Whether read-only was requested.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }
}

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
    done: bool,
}

/// The savepoint that a transaction at `depth` (2 and more) stands for.
pub(crate) fn savepoint_name(depth: usize) -> String {
    format!("reservoir_sp_{depth}")
}

impl<'c> Transaction<'c> {
    pub(crate) fn borrowed(conn: &'c mut Connection, depth: usize) -> Self {
        Transaction {
            conn: TxConn::Borrowed(conn),
            depth,
            done: false,
        }
    }

    /// A transaction that owns its connection handle (`engine.begin()`).
    pub(crate) fn owned(conn: Connection, depth: usize) -> Transaction<'static> {
        Transaction {
            conn: TxConn::Owned(Box::new(conn)),
            depth,
            done: false,
        }
    }

    /// 1 for a transaction, 2 and more for nested savepoints.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Begins a nested transaction: a savepoint.
    pub async fn begin(&mut self) -> Result<Transaction<'_>> {
        self.begin_with(TxOptions::new()).await
    }

    /// Begins a savepoint; asking for another isolation level than the
    /// outer transaction's is an error.
    pub async fn begin_with(&mut self, options: TxOptions) -> Result<Transaction<'_>> {
        let depth = self.begin_at(options).await?;
        Ok(Transaction::borrowed(self, depth))
    }

    /// Commits (a savepoint is released into its outer transaction).
    pub async fn commit(mut self) -> Result<()> {
        let sql = if self.depth == 1 {
            "COMMIT".to_string()
        } else {
            format!("RELEASE SAVEPOINT {}", savepoint_name(self.depth))
        };
        self.simple(&sql).await?;
        self.finished();
        Ok(())
    }

    /// Rolls back (a savepoint rolls back to itself; outer work is kept).
    pub async fn rollback(mut self) -> Result<()> {
        let sql = self.rollback_sql();
        self.finished();
        self.simple(&sql).await
    }

    fn finished(&mut self) {
        self.done = true;
        self.link().tx_depth.store(self.depth - 1, SeqCst);
    }

    fn rollback_sql(&self) -> String {
        if self.depth == 1 {
            "ROLLBACK".to_string()
        } else {
            let sp = savepoint_name(self.depth);
            format!("ROLLBACK TO SAVEPOINT {sp}; RELEASE SAVEPOINT {sp}")
        }
    }
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
        if !self.done {
            let sql = self.rollback_sql();
            self.link().queue(sql);
            self.finished();
        }
    }
}
