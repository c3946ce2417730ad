//! `Connection`: a checked-out database connection and every way to run a
//! statement on it. Dropping it returns the raw connection to the pool (an
//! open transaction is rolled back first).

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use serde::de::DeserializeOwned;

use crate::cursor::Cursor;
use crate::engine::EngineInner;
use crate::error::{Error, ErrorKind, Result};
use crate::manager::DriverManager;
use crate::params::{IntoParams, Params};
use crate::pool::Pooled;
use crate::row::Row;
use crate::stream::RowStream;
use crate::transaction::{Transaction, TxOptions};
use crate::value::{FromValue, Value};

/// A connection checked out of an [`Engine`](crate::Engine)'s pool.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> reservoir::Result<()> {
/// let engine = reservoir::Engine::connect("sqlite::memory:").await?;
/// let mut conn = engine.acquire().await?;
/// conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)", ()).await?;
/// conn.execute("INSERT INTO t VALUES (?, ?)", (1, "ann")).await?;
/// let name: String = conn.fetch_scalar("SELECT name FROM t WHERE id = :id", reservoir::params!{"id" => 1}).await?;
/// assert_eq!(name, "ann");
/// # Ok(()) }
/// ```
pub struct Connection {
    pooled: Pooled<DriverManager>,
    engine: Arc<EngineInner>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.pooled.id())
            .field("url", &self.engine.url)
            .finish()
    }
}

impl Connection {
    pub(crate) fn new(pooled: Pooled<DriverManager>, engine: Arc<EngineInner>) -> Self {
        Connection { pooled, engine }
    }

    /// The pool's number for the raw connection underneath.
    pub fn id(&self) -> u64 {
        self.pooled.id()
    }

    /// Returns the connection to the pool (the same as dropping it).
    pub async fn release(self) {
        drop(self);
    }

    /// Closes the raw connection instead of returning it to the pool.
    pub fn invalidate(self) {
        self.pooled.invalidate();
    }

    /// Binds parameters: named ones are rewritten to the dialect's placeholders.
    fn bind<'s>(&self, sql: &'s str, params: Params) -> Result<(std::borrow::Cow<'s, str>, Vec<Value>)> {
        params.bind(sql, self.engine.driver.placeholder())
    }

    /// Runs a statement; returns the number of rows affected.
    pub async fn execute(&mut self, sql: &str, params: impl IntoParams) -> Result<u64> {
        let (sql, values) = self.bind(sql, params.into_params())?;
        let started = Instant::now();
        let result = self.pooled.execute(&sql, values).await;
        self.finish(&sql, started, result)
    }

    /// Logs a finished statement (INFO with `echo`, else DEBUG; parameters
    /// are never logged) and marks a lost connection for discarding.
    fn finish<T>(&mut self, sql: &str, started: Instant, result: Result<T>) -> Result<T> {
        let elapsed = started.elapsed();
        if self.engine.echo {
            tracing::info!(target: "reservoir::sql", statement = sql, ?elapsed, ok = result.is_ok());
        } else {
            tracing::debug!(target: "reservoir::sql", statement = sql, ?elapsed, ok = result.is_ok());
        }
        if let Err(e) = &result {
            if e.is_disconnect() {
                self.pooled.mark_broken();
            }
        }
        result
    }

    /// Runs one prepared statement once per parameter set, atomically (in a
    /// transaction of its own when none is open). Returns the total rows affected.
    pub async fn execute_many<P: IntoParams>(
        &mut self,
        sql: &str,
        params: impl IntoIterator<Item = P>,
    ) -> Result<u64> {
        let style = self.engine.driver.placeholder();
        let mut rewritten: Option<String> = None;
        let mut sets = Vec::new();
        for p in params {
            let (bound_sql, values) = p.into_params().bind(sql, style)?;
            if rewritten.is_none() {
                rewritten = Some(bound_sql.into_owned());
            }
            sets.push(values);
        }
        let Some(sql) = rewritten else {
            return Ok(0);
        };
        let started = Instant::now();
        let result = self.pooled.execute_many(&sql, sets).await;
        self.finish(&sql, started, result)
    }

    async fn query(&mut self, sql: &str, params: Params, limit: Option<usize>) -> Result<Vec<Row>> {
        let (sql, values) = self.bind(sql, params)?;
        let started = Instant::now();
        let result = self.pooled.query(&sql, values, limit).await;
        self.finish(&sql, started, result)
    }

    /// The first row; an error of kind [`ErrorKind::NoRows`] if there is none.
    pub async fn fetch_one(&mut self, sql: &str, params: impl IntoParams) -> Result<Row> {
        self.fetch_optional(sql, params)
            .await?
            .ok_or_else(|| Error::new(ErrorKind::NoRows, "the query returned no rows"))
    }

    /// The first row, if any.
    pub async fn fetch_optional(&mut self, sql: &str, params: impl IntoParams) -> Result<Option<Row>> {
        Ok(self.query(sql, params.into_params(), Some(1)).await?.pop())
    }

    /// Every row, buffered. Use [`fetch`](Self::fetch) for large results.
    pub async fn fetch_all(&mut self, sql: &str, params: impl IntoParams) -> Result<Vec<Row>> {
        self.query(sql, params.into_params(), None).await
    }

    /// The first column of the first row, as `T`.
    pub async fn fetch_scalar<T: FromValue>(&mut self, sql: &str, params: impl IntoParams) -> Result<T> {
        self.fetch_one(sql, params).await?.get(0)
    }

    /// Every row deserialized into `T` by column name.
    pub async fn fetch_all_as<T: DeserializeOwned>(
        &mut self,
        sql: &str,
        params: impl IntoParams,
    ) -> Result<Vec<T>> {
        self.fetch_all(sql, params)
            .await?
            .iter()
            .map(Row::deserialize)
            .collect()
    }

    /// Streams the rows: they are read in batches as the stream is polled,
    /// so memory stays flat for any result size.
    pub fn fetch(&mut self, sql: &str, params: impl IntoParams) -> RowStream<'_> {
        match self.bind(sql, params.into_params()) {
            Ok((sql, values)) => RowStream::new(self.pooled.open_rows(&sql, values)),
            Err(e) => RowStream::failed(e),
        }
    }

    /// Opens a cursor over a query (asyncpg style: `forward`, `fetch`).
    pub async fn cursor(&mut self, sql: &str, params: impl IntoParams) -> Result<Cursor<'_>> {
        let (sql, values) = self.bind(sql, params.into_params())?;
        let source = self.pooled.open_cursor(&sql, values).await?;
        Ok(Cursor::new(source))
    }

    /// Begins a transaction.
    pub async fn begin(&mut self) -> Result<Transaction<'_>> {
        self.begin_with(TxOptions::new()).await
    }

    /// Begins a transaction with an isolation level or read-only mode.
    pub async fn begin_with(&mut self, options: TxOptions) -> Result<Transaction<'_>> {
        let sql = self.engine.driver.begin_sql(&options)?;
        self.simple(&sql).await?;
        Ok(Transaction::top(self, options))
    }

    /// Runs transaction-control SQL.
    pub(crate) async fn simple(&mut self, sql: &str) -> Result<()> {
        let started = Instant::now();
        let result = self.pooled.simple(sql).await;
        self.finish(sql, started, result)
    }

    /// Queues SQL to run before the next statement (rollback from `Drop`).
    pub(crate) fn enqueue(&mut self, sql: &str) {
        self.pooled.enqueue(sql);
    }
}
