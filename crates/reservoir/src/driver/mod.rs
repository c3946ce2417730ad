//! The seam between the engine and a database: a [`Driver`] opens
//! connections, each a [`RawConnection`]. The pool holds them as an
//! [`AnyConnection`], an enum of the built-in drivers' connection types, so
//! that the statements run most often are awaited in place rather than
//! boxed; everything else goes through the object-safe trait. Each driver
//! lives behind its cargo feature.

#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "postgres")]
pub mod postgres;
mod prefetch;
pub mod session;
#[cfg(feature = "sqlite")]
pub mod sqlite;
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) mod wire;

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::error::{Error, ErrorKind, Result};
use crate::pool::{BoxFuture, Interrupt};
use crate::row::Row;
use crate::sql::Placeholder;
use crate::url::{DatabaseUrl, Dialect};
use crate::value::Value;

pub use prefetch::{BATCH, Prefetch};

/// A driver's row whose values are decoded on first access (PostgreSQL:
/// rows streamed but never read cost no decoding). An enum of the drivers
/// that make such rows rather than a trait object, so that a row is not a
/// second allocation.
pub(crate) enum LazyRow {
    #[cfg(feature = "postgres")]
    Postgres(postgres::PgRow),
}

impl LazyRow {
    /// Column `i` as a `Value`. Infallible: a driver checks at the start of
    /// a result that it can decode every column's type.
    #[cfg_attr(not(feature = "postgres"), allow(unused_variables))]
    pub(crate) fn value(&self, i: usize) -> Value {
        match *self {
            #[cfg(feature = "postgres")]
            LazyRow::Postgres(ref row) => row.value(i),
        }
    }
}

/// An open connection of one of the built-in drivers.
///
/// An enum rather than a `Box<dyn RawConnection>` so that `query` and
/// `execute`, which every point select and write goes through, are awaited
/// in place ([`query_in_place`](Self::query_in_place)): through the trait,
/// each statement's future is boxed, and a PostgreSQL one is 1.2 KB, past
/// glibc's per-thread cache, which cost 0.5-1 µs per statement. Every
/// other operation derefs to the [`RawConnection`] trait object. Each
/// connection is boxed (once, when opened) so that the pool moves 16 bytes,
/// not the largest driver's state, and acquire futures stay small.
pub enum AnyConnection {
    /// An SQLite connection.
    #[cfg(feature = "sqlite")]
    Sqlite(Box<sqlite::SqliteConnection>),
    /// A PostgreSQL connection.
    #[cfg(feature = "postgres")]
    Postgres(Box<postgres::PgConnection>),
    /// A MySQL or MariaDB connection.
    #[cfg(feature = "mysql")]
    Mysql(Box<mysql::MysqlConnection>),
}

impl AnyConnection {
    /// [`RawConnection::query`], without boxing its future.
    pub async fn query_in_place(
        &mut self,
        sql: &str,
        params: Vec<Value>,
        limit: Option<usize>,
    ) -> Result<Vec<Row>> {
        match self {
            #[cfg(feature = "sqlite")]
            AnyConnection::Sqlite(c) => c.run_query(sql, params, limit).await,
            #[cfg(feature = "postgres")]
            AnyConnection::Postgres(c) => c.run_query(sql, params, limit).await,
            #[cfg(feature = "mysql")]
            AnyConnection::Mysql(c) => c.run_query(sql, params, limit).await,
        }
    }

    /// [`RawConnection::execute`], without boxing its future.
    pub async fn execute_in_place(&mut self, sql: &str, params: Vec<Value>) -> Result<u64> {
        match self {
            #[cfg(feature = "sqlite")]
            AnyConnection::Sqlite(c) => c.run_execute(sql, params).await,
            #[cfg(feature = "postgres")]
            AnyConnection::Postgres(c) => c.run_execute(sql, params).await,
            #[cfg(feature = "mysql")]
            AnyConnection::Mysql(c) => c.run_execute(sql, params).await,
        }
    }

    /// A handle for reads that share this connection with other readers
    /// (`pipeline_reads`), where the driver can run them side by side:
    /// PostgreSQL pipelines them (unless the statement cache is off, the
    /// pooler setting), SQLite queues them on its worker thread. `None`:
    /// the readers take turns on the connection (MySQL).
    pub(crate) async fn shared_reader(&mut self) -> Result<Option<SharedReader>> {
        match self {
            #[cfg(feature = "sqlite")]
            AnyConnection::Sqlite(c) => Ok(Some(SharedReader::Sqlite(c.shared_reader()))),
            #[cfg(feature = "postgres")]
            AnyConnection::Postgres(c) => Ok(c.shared_reader().await?.map(SharedReader::Postgres)),
            #[cfg(feature = "mysql")]
            AnyConnection::Mysql(_) => Ok(None),
        }
    }
}

/// Runs reads on a connection that several readers share at once (see
/// [`AnyConnection::shared_reader`]); reads only, outside any transaction.
pub(crate) enum SharedReader {
    #[cfg(feature = "sqlite")]
    Sqlite(sqlite::Worker),
    #[cfg(feature = "postgres")]
    Postgres(postgres::PgReader),
}

impl SharedReader {
    #[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(unused_variables))]
    pub(crate) async fn query(
        &self,
        sql: &str,
        params: Vec<Value>,
        limit: Option<usize>,
    ) -> Result<Vec<Row>> {
        match *self {
            #[cfg(feature = "sqlite")]
            SharedReader::Sqlite(ref worker) => worker.query(sql, params, limit).await,
            #[cfg(feature = "postgres")]
            SharedReader::Postgres(ref reader) => reader.query(sql, &params, limit).await,
        }
    }
}

impl Deref for AnyConnection {
    type Target = dyn RawConnection;

    fn deref(&self) -> &Self::Target {
        match self {
            #[cfg(feature = "sqlite")]
            AnyConnection::Sqlite(c) => &**c,
            #[cfg(feature = "postgres")]
            AnyConnection::Postgres(c) => &**c,
            #[cfg(feature = "mysql")]
            AnyConnection::Mysql(c) => &**c,
        }
    }
}

impl DerefMut for AnyConnection {
    fn deref_mut(&mut self) -> &mut Self::Target {
        match self {
            #[cfg(feature = "sqlite")]
            AnyConnection::Sqlite(c) => &mut **c,
            #[cfg(feature = "postgres")]
            AnyConnection::Postgres(c) => &mut **c,
            #[cfg(feature = "mysql")]
            AnyConnection::Mysql(c) => &mut **c,
        }
    }
}

/// Opens connections to one database.
pub trait Driver: Send + Sync + 'static {
    /// The database family.
    fn dialect(&self) -> Dialect;
    /// How the database writes positional placeholders.
    fn placeholder(&self) -> Placeholder;
    /// Opens a new connection.
    fn connect(&self) -> BoxFuture<'_, Result<AnyConnection>>;
    /// The statement that begins a transaction with `options`.
    fn begin_sql(&self, options: &session::TxOptions) -> Result<String>;
    /// The query that reads the open transaction's isolation level (one
    /// text column, e.g. `read committed` or `REPEATABLE-READ`); `None`:
    /// every transaction is serializable (SQLite).
    fn isolation_query(&self) -> Option<&'static str> {
        None
    }
    /// How the dialect quotes identifiers (MySQL: a backtick).
    fn identifier_quote(&self) -> char {
        '"'
    }
}

/// One open connection. One operation at a time: every method takes `&mut self`.
pub trait RawConnection: Send + 'static {
    /// Runs a statement; returns the rows affected.
    fn execute<'a>(&'a mut self, sql: &'a str, params: Vec<Value>) -> BoxFuture<'a, Result<u64>>;
    /// Runs one prepared statement once per parameter set, atomically.
    fn execute_many<'a>(&'a mut self, sql: &'a str, params: Vec<Vec<Value>>) -> BoxFuture<'a, Result<u64>>;
    /// Runs a query and returns at most `limit` rows (all if `None`).
    fn query<'a>(
        &'a mut self,
        sql: &'a str,
        params: Vec<Value>,
        limit: Option<usize>,
    ) -> BoxFuture<'a, Result<Vec<Row>>>;
    /// Starts a query whose rows are pulled on demand (streams, cursors).
    /// Errors surface on the first pull.
    fn open_rows(&mut self, sql: &str, params: Vec<Value>) -> Box<dyn RowSource>;
    /// Bulk-loads rows into `table` (quoted identifiers, values in `columns`
    /// order). By default an `INSERT ... VALUES (?, ...)` run through
    /// [`execute_many`](Self::execute_many); PostgreSQL uses binary COPY.
    fn copy_in(
        &mut self,
        table: &str,
        columns: &[String],
        rows: Vec<Vec<Value>>,
    ) -> BoxFuture<'_, Result<u64>> {
        let marks = vec!["?"; columns.len()].join(", ");
        let sql = format!("INSERT INTO {table} ({}) VALUES ({marks})", columns.join(", "));
        Box::pin(async move { self.execute_many(&sql, rows).await })
    }
    /// Opens a cursor over a query (server-side where the database has
    /// them); by default the same as [`open_rows`](Self::open_rows).
    fn open_cursor<'a>(
        &'a mut self,
        sql: &'a str,
        params: Vec<Value>,
    ) -> BoxFuture<'a, Result<Box<dyn RowSource>>> {
        let rows = self.open_rows(sql, params);
        Box::pin(async move { Ok(rows) })
    }
    /// Runs SQL without parameters or results (transaction control).
    fn simple<'a>(&'a mut self, sql: &'a str) -> BoxFuture<'a, Result<()>>;
    /// Checks the connection works.
    fn ping(&mut self) -> BoxFuture<'_, Result<()>>;
    /// The session's state: transaction status and levels, SQL queued by
    /// `Drop` impls (run before the next operation).
    fn session(&self) -> &Arc<session::Session>;
    /// Settles abandoned work and rolls back any open transaction; with
    /// `full`, resets the whole session too (settings, temp tables, listens,
    /// prepared statements) where the dialect can.
    fn reset(&mut self, full: bool) -> BoxFuture<'_, Result<()>>;
    /// Whether the connection must be reset before reuse: a transaction is
    /// open, SQL is queued, or an operation was abandoned mid-flight.
    fn needs_reset(&self) -> bool;
    /// Whether the connection is unusable.
    fn is_broken(&self) -> bool;
    /// A handle that interrupts the running statement from elsewhere.
    fn interrupt_handle(&self) -> Option<Arc<dyn Interrupt>>;
}

/// The rows of a query, pulled on demand.
pub trait RowSource: Send {
    /// The next row of a stream (`None` at the end). A source whose rows
    /// arrive one at a time (a PostgreSQL portal) hands them over one at a
    /// time: a batch of live rows would defeat the allocator's per-thread
    /// cache. Batched sources read ahead with [`Prefetch`].
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Row>>>;
    /// Up to `n` more rows (fewer at the end).
    fn fetch(&mut self, n: usize) -> BoxFuture<'_, Result<Vec<Row>>>;
    /// Skips up to `n` rows without sending them; returns how many were skipped.
    fn forward(&mut self, n: u64) -> BoxFuture<'_, Result<u64>>;
}

/// Marks a connection dirty if an operation's future is dropped before it
/// finished (set `finished` at the end); the driver then cleans up before
/// the connection is reused. (The server dialects' tool: SQLite's
/// statements cannot be abandoned half way.)
#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
pub(crate) struct InFlight {
    dirty: Arc<std::sync::atomic::AtomicBool>,
    pub(crate) finished: bool,
}

#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
impl InFlight {
    pub(crate) fn new(dirty: &Arc<std::sync::atomic::AtomicBool>) -> Self {
        InFlight {
            dirty: Arc::clone(dirty),
            finished: false,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.finished {
            self.dirty.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// A statement run with the wrong number of values: the same words on every dialect.
#[cfg_attr(
    not(any(feature = "postgres", feature = "mysql", feature = "sqlite")),
    allow(dead_code)
)]
pub(crate) fn param_count_error(expected: impl std::fmt::Display, given: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Param,
        format!("the statement has {expected} placeholders but {given} values were given"),
    )
}

/// A URL parameter given in seconds (`connect_timeout=2.5`).
#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
pub(crate) fn seconds(key: &str, value: &str) -> Result<std::time::Duration> {
    let secs: f64 = value.parse().map_err(|_| {
        Error::new(
            ErrorKind::Url,
            format!("{key}={value:?} is not a number of seconds"),
        )
    })?;
    Ok(std::time::Duration::from_secs_f64(secs.max(0.0)))
}

/// Settings a driver takes from the engine builder.
#[derive(Clone, Debug)]
pub struct DriverOptions {
    /// Prepared statements cached per connection.
    pub statement_cache_size: usize,
    /// A statement running longer is cancelled and fails with `ErrorKind::Timeout`.
    pub statement_timeout: Option<std::time::Duration>,
}

impl Default for DriverOptions {
    fn default() -> Self {
        DriverOptions {
            statement_cache_size: 128,
            statement_timeout: None,
        }
    }
}

/// The driver for `url`'s dialect, if this build has it.
pub fn for_url(url: &DatabaseUrl, options: &DriverOptions) -> Result<Arc<dyn Driver>> {
    match url.dialect() {
        #[cfg(feature = "sqlite")]
        Dialect::Sqlite => Ok(Arc::new(sqlite::SqliteDriver::new(url, options)?)),
        #[cfg(feature = "postgres")]
        Dialect::Postgres => Ok(Arc::new(postgres::PostgresDriver::new(url, options)?)),
        #[cfg(feature = "mysql")]
        Dialect::Mysql => Ok(Arc::new(mysql::MysqlDriver::new(url, options)?)),
        // Reachable only in builds without every dialect.
        #[allow(unreachable_patterns)]
        other => Err(Error::new(
            ErrorKind::Config,
            format!(
                "the {} dialect is not available in this build of reservoir (URL {url})",
                other.name()
            ),
        )),
    }
}
