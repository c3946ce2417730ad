//! PostgreSQL through tokio-postgres: prepared statements cached per
//! connection (LRU), pipelined `execute_many`, portal streaming, server-side
//! cursors, cancel requests for `close_with(interrupt)` and dropped futures.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::Duration;

use futures_util::StreamExt;
use lru::LruCache;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{CancelToken, Client, NoTls, Statement};

use super::{Driver, DriverOptions, RawConnection, RowSource};
use crate::error::{Error, ErrorKind, Result};
use crate::pool::{BoxFuture, Interrupt};
use crate::row::{Column, Row};
use crate::sql::Placeholder;
use crate::transaction::TxOptions;
use crate::url::{DatabaseUrl, Dialect};
use crate::value::{FromValue, Value};

/// The URL parameters this driver understands (besides the engine's).
const DRIVER_KEYS: &[&str] = &["sslmode", "application_name", "connect_timeout", "options"];

/// Rows fetched per executed `execute_many` chunk kept in flight at once.
const PIPELINE_DEPTH: usize = 256;

/// Opens PostgreSQL connections.
pub struct PostgresDriver {
    config: tokio_postgres::Config,
    cache_size: usize,
}

impl PostgresDriver {
    /// A driver for the server `url` names.
    pub fn new(url: &DatabaseUrl, options: &DriverOptions) -> Result<Self> {
        let mut config = tokio_postgres::Config::new();
        for (key, value) in url.query() {
            match key.as_str() {
                "sslmode" => match value.as_str() {
                    "disable" | "allow" | "prefer" => {}
                    other => {
                        return Err(Error::new(
                            ErrorKind::Config,
                            format!("sslmode={other}: TLS is not available in this build of reservoir yet"),
                        ));
                    }
                },
                "application_name" => {
                    config.application_name(value);
                }
                "options" => {
                    config.options(value);
                }
                "connect_timeout" => {
                    let secs: f64 = value.parse().map_err(|_| {
                        Error::new(
                            ErrorKind::Url,
                            format!("connect_timeout={value:?} is not a number of seconds"),
                        )
                    })?;
                    config.connect_timeout(Duration::from_secs_f64(secs.max(0.0)));
                }
                k if crate::engine::ENGINE_KEYS.contains(&k) => {}
                k => {
                    return Err(Error::new(
                        ErrorKind::Url,
                        format!(
                            "unknown PostgreSQL URL parameter '{k}' (known: {})",
                            DRIVER_KEYS.join(", ")
                        ),
                    ));
                }
            }
        }
        if let Some(timeout) = options.statement_timeout {
            // Set at session start: no extra round trip, and it survives ROLLBACK.
            let setting = format!("-c statement_timeout={}", timeout.as_millis().max(1));
            let options = match config.get_options() {
                Some(existing) => format!("{existing} {setting}"),
                None => setting,
            };
            config.options(&options);
        }
        if url.hosts().is_empty() {
            config.host("localhost").port(5432);
        }
        for (host, port) in url.hosts() {
            config.host(host).port(port.unwrap_or(5432));
        }
        config.user(url.user().unwrap_or("postgres"));
        if let Some(password) = url.password() {
            config.password(password);
        }
        if let Some(db) = url.database() {
            config.dbname(db);
        }
        Ok(PostgresDriver {
            config,
            cache_size: options.statement_cache_size,
        })
    }
}

impl Driver for PostgresDriver {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn placeholder(&self) -> Placeholder {
        Placeholder::Dollar
    }

    fn begin_sql(&self, options: &TxOptions) -> Result<String> {
        let mut sql = String::from("BEGIN");
        if let Some(level) = options.isolation_level() {
            sql.push_str(" ISOLATION LEVEL ");
            sql.push_str(level.sql());
        }
        if options.is_read_only() {
            sql.push_str(" READ ONLY");
        }
        Ok(sql)
    }

    fn connect(&self) -> BoxFuture<'_, Result<Box<dyn RawConnection>>> {
        Box::pin(async move {
            let (client, connection) = self.config.connect(NoTls).await.map_err(|e| {
                Error::new(
                    ErrorKind::Connect,
                    format!("cannot connect to PostgreSQL: {}", describe(&e)),
                )
            })?;
            let closed = Arc::new(AtomicBool::new(false));
            let flag = Arc::clone(&closed);
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "PostgreSQL connection ended");
                }
                flag.store(true, SeqCst);
            });
            let cancel = client.cancel_token();
            Ok(Box::new(PgConnection {
                client: Arc::new(client),
                cache: NonZeroUsize::new(self.cache_size).map(LruCache::new),
                closed,
                dirty: Arc::new(AtomicBool::new(false)),
                in_tx: false,
                queued: Vec::new(),
                cancel: Arc::new(PgCancel(cancel)),
                cursors: 0,
            }) as Box<dyn RawConnection>)
        })
    }
}

struct PgCancel(CancelToken);

impl Interrupt for PgCancel {
    fn interrupt(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Err(error) = self.0.cancel_query(NoTls).await {
                tracing::debug!(%error, "cancel request failed");
            }
        })
    }
}

/// A prepared statement and its result columns, built once.
#[derive(Clone)]
struct Prepared {
    stmt: Statement,
    columns: Arc<[Column]>,
}

impl Prepared {
    fn new(stmt: Statement) -> Self {
        let columns = columns_of(&stmt);
        Prepared { stmt, columns }
    }
}

struct PgConnection {
    client: Arc<Client>,
    /// Prepared statements with their result columns; `None`: caching off.
    cache: Option<LruCache<String, Prepared>>,
    closed: Arc<AtomicBool>,
    /// An operation was dropped mid-flight: cancel and resync before reuse.
    dirty: Arc<AtomicBool>,
    in_tx: bool,
    /// Statements queued by `enqueue` (a dropped transaction's rollback).
    queued: Vec<String>,
    cancel: Arc<PgCancel>,
    cursors: u64,
}

/// Marks the connection dirty if an operation's future is dropped before it finished.
struct InFlight {
    dirty: Arc<AtomicBool>,
    finished: bool,
}

impl InFlight {
    fn new(dirty: &Arc<AtomicBool>) -> Self {
        InFlight {
            dirty: Arc::clone(dirty),
            finished: false,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.finished {
            self.dirty.store(true, SeqCst);
        }
    }
}

/// Tracks transaction state from the statements we send: tokio-postgres does
/// not expose the server's ReadyForQuery status.
fn transaction_effect(sql: &str) -> Option<bool> {
    // Runs on every statement: look at the first word without allocating.
    let sql = sql.trim_start();
    let end = sql.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(sql.len());
    let word = &sql[..end];
    let is = |w: &str| word.eq_ignore_ascii_case(w);
    if is("BEGIN") || is("START") {
        Some(true)
    } else if is("COMMIT")
        || is("END")
        || is("ABORT")
        || (is("ROLLBACK") && !sql.to_ascii_uppercase().contains(" TO "))
    {
        Some(false)
    } else {
        None
    }
}

impl PgConnection {
    /// If a dropped future left a statement running, cancels it. tokio-postgres
    /// returns once the cancel request is sent, before the server has
    /// signalled the backend, so a late signal could hit the caller's next
    /// statement: a short sentinel statement runs first to absorb it (tried
    /// again while it is the one cancelled). Costs ~50 ms, only on this path.
    async fn settle_abandoned(&mut self) {
        if !self.dirty.swap(false, SeqCst) {
            return;
        }
        self.cancel.interrupt().await;
        for _ in 0..3 {
            match self.client.batch_execute("SELECT pg_sleep(0.05)").await {
                Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED) => continue,
                _ => break,
            }
        }
    }

    /// Before the next operation: cancel a statement whose future was
    /// dropped (so the next one does not wait for it to finish), then run
    /// queued statements.
    async fn flush_queued(&mut self) -> Result<()> {
        self.settle_abandoned().await;
        for sql in std::mem::take(&mut self.queued) {
            if let Err(error) = self.client.batch_execute(&sql).await {
                if self.client.is_closed() {
                    return Err(map_error(error));
                }
                tracing::debug!(%error, "queued statement failed");
            }
            if let Some(open) = transaction_effect(&sql) {
                self.in_tx = open;
            }
        }
        Ok(())
    }

    /// Runs queued statements, then prepares `sql` (from the cache when it
    /// can) and checks the parameter count of every set against it.
    async fn ready(&mut self, sql: &str, sets: &[&[Value]]) -> Result<Prepared> {
        self.flush_queued().await?;
        let prepared = self.statement(sql).await?;
        for params in sets {
            check_count(&prepared.stmt, params)?;
        }
        Ok(prepared)
    }

    async fn statement(&mut self, sql: &str) -> Result<Prepared> {
        if let Some(cache) = &mut self.cache {
            if let Some(prepared) = cache.get(sql) {
                return Ok(prepared.clone());
            }
            let prepared = Prepared::new(self.client.prepare(sql).await.map_err(map_error)?);
            cache.put(sql.to_string(), prepared.clone());
            return Ok(prepared);
        }
        Ok(Prepared::new(self.client.prepare(sql).await.map_err(map_error)?))
    }

    fn note_transaction(&mut self, sql: &str) {
        if let Some(open) = transaction_effect(sql) {
            self.in_tx = open;
        }
    }
}

fn binds(params: &[Value]) -> Vec<PgBind<'_>> {
    params.iter().map(PgBind).collect()
}

fn as_refs<'a>(binds: &'a [PgBind<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    binds.iter().map(|b| b as &(dyn ToSql + Sync)).collect()
}

impl RawConnection for PgConnection {
    fn execute<'a>(&'a mut self, sql: &'a str, params: Vec<Value>) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let mut op = InFlight::new(&self.dirty);
            let prepared = self.ready(sql, &[&params]).await?;
            let b = binds(&params);
            let n = self
                .client
                .execute(&prepared.stmt, &as_refs(&b))
                .await
                .map_err(map_error)?;
            self.note_transaction(sql);
            op.finished = true;
            Ok(n)
        })
    }

    fn execute_many<'a>(&'a mut self, sql: &'a str, sets: Vec<Vec<Value>>) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let mut op = InFlight::new(&self.dirty);
            let all: Vec<&[Value]> = sets.iter().map(Vec::as_slice).collect();
            let stmt = self.ready(sql, &all).await?.stmt;
            let own_tx = !self.in_tx;
            if own_tx {
                self.client.batch_execute("BEGIN").await.map_err(map_error)?;
                self.in_tx = true;
            }
            let result = pipelined(&self.client, &stmt, &sets).await;
            if own_tx {
                let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
                let ended = self.client.batch_execute(end).await.map_err(map_error);
                self.in_tx = false;
                ended?;
            }
            op.finished = true;
            result
        })
    }

    fn query<'a>(
        &'a mut self,
        sql: &'a str,
        params: Vec<Value>,
        limit: Option<usize>,
    ) -> BoxFuture<'a, Result<Vec<Row>>> {
        Box::pin(async move {
            let mut op = InFlight::new(&self.dirty);
            let Prepared { stmt, columns } = self.ready(sql, &[&params]).await?;
            let b = binds(&params);
            // The whole answer is read even when fewer rows are wanted, which
            // keeps the protocol in step without a cancel.
            let rows = self.client.query(&stmt, &as_refs(&b)).await.map_err(map_error)?;
            let take = limit.unwrap_or(usize::MAX);
            let out = rows
                .iter()
                .take(take)
                .map(|r| read_row(r, &columns))
                .collect::<Result<Vec<_>>>()?;
            self.note_transaction(sql);
            op.finished = true;
            Ok(out)
        })
    }

    fn open_rows(&mut self, sql: &str, params: Vec<Value>) -> Box<dyn RowSource> {
        let state = PortalState::Start {
            client: Arc::clone(&self.client),
            sql: sql.to_string(),
            params,
            queued: std::mem::take(&mut self.queued),
        };
        Box::new(PgRows {
            state: Arc::new(tokio::sync::Mutex::new(state)),
            dirty: Arc::clone(&self.dirty),
        })
    }

    fn open_cursor<'a>(
        &'a mut self,
        sql: &'a str,
        params: Vec<Value>,
    ) -> BoxFuture<'a, Result<Box<dyn RowSource>>> {
        let sql = sql.to_string();
        Box::pin(async move {
            if !self.in_tx {
                return Err(Error::usage(
                    "a PostgreSQL cursor needs a transaction: call cursor() on a Transaction",
                ));
            }
            let mut op = InFlight::new(&self.dirty);
            self.flush_queued().await?;
            self.cursors += 1;
            let name = format!("reservoir_cursor_{}", self.cursors);
            let declare = format!("DECLARE {name} NO SCROLL CURSOR FOR {sql}");
            let stmt = self.client.prepare(&declare).await.map_err(map_error)?;
            check_count(&stmt, &params)?;
            let b = binds(&params);
            self.client
                .execute(&stmt, &as_refs(&b))
                .await
                .map_err(map_error)?;
            op.finished = true;
            Ok(Box::new(PgCursor {
                client: Arc::clone(&self.client),
                name,
                columns: None,
            }) as Box<dyn RowSource>)
        })
    }

    fn copy_in(
        &mut self,
        table: &str,
        columns: &[String],
        rows: Vec<Vec<Value>>,
    ) -> BoxFuture<'_, Result<u64>> {
        let cols = columns.join(", ");
        let probe = format!("SELECT {cols} FROM {table} LIMIT 0");
        let copy = format!("COPY {table} ({cols}) FROM STDIN BINARY");
        Box::pin(async move {
            let mut op = InFlight::new(&self.dirty);
            self.flush_queued().await?;
            // Binary COPY needs each column's type: ask the server once.
            let types: Vec<Type> = self
                .client
                .prepare(&probe)
                .await
                .map_err(map_error)?
                .columns()
                .iter()
                .map(|c| c.type_().clone())
                .collect();
            let sink = self.client.copy_in(copy.as_str()).await.map_err(map_error)?;
            let writer = tokio_postgres::binary_copy::BinaryCopyInWriter::new(sink, &types);
            let mut writer = std::pin::pin!(writer);
            for row in &rows {
                if row.len() != types.len() {
                    return Err(Error::new(
                        ErrorKind::Param,
                        format!("a row has {} values for {} columns", row.len(), types.len()),
                    ));
                }
                let b = binds(row);
                writer.as_mut().write(&as_refs(&b)).await.map_err(map_error)?;
            }
            let n = writer.finish().await.map_err(map_error)?;
            op.finished = true;
            Ok(n)
        })
    }

    fn simple<'a>(&'a mut self, sql: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mut op = InFlight::new(&self.dirty);
            self.flush_queued().await?;
            self.client.batch_execute(sql).await.map_err(map_error)?;
            self.note_transaction(sql);
            op.finished = true;
            Ok(())
        })
    }

    fn ping(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { self.client.simple_query("").await.map(drop).map_err(map_error) })
    }

    fn enqueue(&mut self, sql: &str) {
        self.queued.push(sql.to_string());
    }

    fn reset(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.settle_abandoned().await;
            self.queued.clear();
            self.client.batch_execute("ROLLBACK").await.map_err(map_error)?;
            self.in_tx = false;
            Ok(())
        })
    }

    fn in_transaction(&self) -> bool {
        self.in_tx || !self.queued.is_empty() || self.dirty.load(SeqCst)
    }

    fn is_broken(&self) -> bool {
        self.closed.load(SeqCst) || self.client.is_closed()
    }

    fn interrupt_handle(&self) -> Option<Arc<dyn Interrupt>> {
        Some(Arc::clone(&self.cancel) as Arc<dyn Interrupt>)
    }
}

/// Runs `stmt` once per parameter set with up to `PIPELINE_DEPTH`
/// executions in flight: tokio-postgres pipelines requests issued together on
/// one connection, so this costs one round trip per window, not per row.
async fn pipelined(client: &Client, stmt: &Statement, sets: &[Vec<Value>]) -> Result<u64> {
    let mut in_flight = futures_util::stream::FuturesOrdered::new();
    let mut total = 0;
    for params in sets {
        in_flight.push_back(execute_one(client, stmt, params));
        if in_flight.len() >= PIPELINE_DEPTH {
            if let Some(n) = in_flight.next().await {
                total += n?;
            }
        }
    }
    while let Some(n) = in_flight.next().await {
        total += n?;
    }
    Ok(total)
}

async fn execute_one(client: &Client, stmt: &Statement, params: &[Value]) -> Result<u64> {
    let b = binds(params);
    client.execute(stmt, &as_refs(&b)).await.map_err(map_error)
}

fn check_count(stmt: &Statement, params: &[Value]) -> Result<()> {
    let expected = stmt.params().len();
    if expected != params.len() {
        return Err(Error::new(
            ErrorKind::Param,
            format!(
                "the statement has {expected} placeholders but {} values were given",
                params.len()
            ),
        ));
    }
    Ok(())
}

// ---- streaming through a portal -----------------------------------------

enum PortalState {
    Start {
        client: Arc<Client>,
        sql: String,
        params: Vec<Value>,
        queued: Vec<String>,
    },
    Streaming {
        rows: std::pin::Pin<Box<tokio_postgres::RowStream>>,
        columns: Arc<[Column]>,
    },
    Done,
}

struct PgRows {
    state: Arc<tokio::sync::Mutex<PortalState>>,
    dirty: Arc<AtomicBool>,
}

impl PgRows {
    async fn start(state: &mut PortalState) -> Result<()> {
        if let PortalState::Start {
            client,
            sql,
            params,
            queued,
        } = state
        {
            for q in queued.drain(..) {
                let _ = client.batch_execute(&q).await;
            }
            let stmt = client.prepare(sql).await.map_err(map_error)?;
            check_count(&stmt, params)?;
            let columns = columns_of(&stmt);
            let b = binds(params);
            let rows = client.query_raw(&stmt, as_refs(&b)).await.map_err(map_error)?;
            *state = PortalState::Streaming {
                rows: Box::pin(rows),
                columns,
            };
        }
        Ok(())
    }

    /// Reads up to `n` rows, keeping them or (for `forward`) only counting.
    fn pull(&self, n: u64, keep: bool) -> BoxFuture<'static, Result<(Vec<Row>, u64)>> {
        let state = Arc::clone(&self.state);
        let dirty = Arc::clone(&self.dirty);
        Box::pin(async move {
            let mut op = InFlight::new(&dirty);
            let mut state = state.lock().await;
            let result = Self::advance(&mut state, n, keep).await;
            if result.is_err() {
                *state = PortalState::Done;
            }
            op.finished = true;
            result
        })
    }

    async fn advance(state: &mut PortalState, n: u64, keep: bool) -> Result<(Vec<Row>, u64)> {
        Self::start(state).await?;
        let mut out = Vec::with_capacity(if keep { n.min(1024) as usize } else { 0 });
        let mut seen = 0;
        if let PortalState::Streaming { rows, columns } = state {
            while seen < n {
                match rows.next().await {
                    Some(row) => {
                        let row = row.map_err(map_error)?;
                        seen += 1;
                        if keep {
                            out.push(read_row(&row, columns)?);
                        }
                    }
                    None => {
                        *state = PortalState::Done;
                        break;
                    }
                }
            }
        }
        Ok((out, seen))
    }
}

impl RowSource for PgRows {
    fn fetch(&mut self, n: usize) -> BoxFuture<'static, Result<Vec<Row>>> {
        let pull = self.pull(n as u64, true);
        Box::pin(async move { Ok(pull.await?.0) })
    }

    fn forward(&mut self, n: u64) -> BoxFuture<'static, Result<u64>> {
        let pull = self.pull(n, false);
        Box::pin(async move { Ok(pull.await?.1) })
    }
}

impl Drop for PgRows {
    fn drop(&mut self) {
        // A portal dropped mid-stream leaves rows in flight: the pool's reset
        // cancels and resynchronises before the connection is reused.
        if let Ok(state) = self.state.try_lock() {
            if matches!(*state, PortalState::Streaming { .. }) {
                self.dirty.store(true, SeqCst);
            }
        }
    }
}

// ---- server-side cursors -----------------------------------------------

struct PgCursor {
    client: Arc<Client>,
    name: String,
    columns: Option<Arc<[Column]>>,
}

impl RowSource for PgCursor {
    fn fetch(&mut self, n: usize) -> BoxFuture<'static, Result<Vec<Row>>> {
        let client = Arc::clone(&self.client);
        let sql = format!("FETCH FORWARD {n} FROM {}", self.name);
        let known = self.columns.clone();
        Box::pin(async move {
            let stmt = client.prepare(&sql).await.map_err(map_error)?;
            let columns = known.unwrap_or_else(|| columns_of(&stmt));
            let rows = client.query(&stmt, &[]).await.map_err(map_error)?;
            rows.iter().map(|r| read_row(r, &columns)).collect()
        })
    }

    fn forward(&mut self, n: u64) -> BoxFuture<'static, Result<u64>> {
        let client = Arc::clone(&self.client);
        let sql = format!("MOVE FORWARD {n} FROM {}", self.name);
        Box::pin(async move { client.execute(sql.as_str(), &[]).await.map_err(map_error) })
    }
}

impl Drop for PgCursor {
    fn drop(&mut self) {
        // Closed with the transaction at the latest; close it now if we can.
        let client = Arc::clone(&self.client);
        let sql = format!("CLOSE {}", self.name);
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = client.batch_execute(&sql).await;
            });
        }
    }
}

// ---- values --------------------------------------------------------------

fn columns_of(stmt: &Statement) -> Arc<[Column]> {
    stmt.columns()
        .iter()
        .map(|c| Column::new(c.name(), Some(c.type_().name().to_string())))
        .collect()
}

fn read_row(row: &tokio_postgres::Row, columns: &Arc<[Column]>) -> Result<Row> {
    let mut values = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        values.push(read_value(row, i, column.type_()).map_err(|e| {
            Error::new(
                ErrorKind::Decode,
                format!("column '{}' of type {}: {e}", column.name(), column.type_()),
            )
        })?);
    }
    Ok(Row::new(Arc::clone(columns), values))
}

fn read_value(
    row: &tokio_postgres::Row,
    i: usize,
    ty: &Type,
) -> std::result::Result<Value, tokio_postgres::Error> {
    fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
        row: &'a tokio_postgres::Row,
        i: usize,
        wrap: impl FnOnce(T) -> Value,
    ) -> std::result::Result<Value, tokio_postgres::Error> {
        Ok(row.try_get::<_, Option<T>>(i)?.map_or(Value::Null, wrap))
    }
    match *ty {
        Type::BOOL => get(row, i, Value::Bool),
        Type::INT2 => get(row, i, Value::I16),
        Type::INT4 => get(row, i, Value::I32),
        Type::INT8 => get(row, i, Value::I64),
        Type::OID => get(row, i, |v: u32| Value::I64(v.into())),
        Type::FLOAT4 => get(row, i, Value::F32),
        Type::FLOAT8 => get(row, i, Value::F64),
        Type::NUMERIC => get(row, i, Value::Decimal),
        Type::BYTEA => get(row, i, Value::Bytes),
        Type::DATE => get(row, i, Value::Date),
        Type::TIME => get(row, i, Value::Time),
        Type::TIMESTAMP => get(row, i, Value::Timestamp),
        Type::TIMESTAMPTZ => get(row, i, Value::TimestampTz),
        Type::UUID => get(row, i, Value::Uuid),
        Type::JSON | Type::JSONB => get(row, i, Value::Json),
        _ => match ty.kind() {
            tokio_postgres::types::Kind::Array(member) => read_array(row, i, member),
            _ => get(row, i, Value::Text),
        },
    }
}

/// Arrays of the scalar types, read element by element (NULL elements kept).
fn read_array(
    row: &tokio_postgres::Row,
    i: usize,
    member: &Type,
) -> std::result::Result<Value, tokio_postgres::Error> {
    fn items<'a, T: tokio_postgres::types::FromSql<'a>>(
        row: &'a tokio_postgres::Row,
        i: usize,
        wrap: impl Fn(T) -> Value,
    ) -> std::result::Result<Value, tokio_postgres::Error> {
        Ok(match row.try_get::<_, Option<Vec<Option<T>>>>(i)? {
            None => Value::Null,
            Some(v) => Value::Array(v.into_iter().map(|x| x.map_or(Value::Null, &wrap)).collect()),
        })
    }
    match *member {
        Type::BOOL => items(row, i, Value::Bool),
        Type::INT2 => items(row, i, Value::I16),
        Type::INT4 => items(row, i, Value::I32),
        Type::INT8 => items(row, i, Value::I64),
        Type::FLOAT4 => items(row, i, Value::F32),
        Type::FLOAT8 => items(row, i, Value::F64),
        Type::NUMERIC => items(row, i, Value::Decimal),
        Type::BYTEA => items(row, i, Value::Bytes),
        Type::DATE => items(row, i, Value::Date),
        Type::TIME => items(row, i, Value::Time),
        Type::TIMESTAMP => items(row, i, Value::Timestamp),
        Type::TIMESTAMPTZ => items(row, i, Value::TimestampTz),
        Type::UUID => items(row, i, Value::Uuid),
        Type::JSON | Type::JSONB => items(row, i, Value::Json),
        _ => items(row, i, Value::Text),
    }
}

/// A `Value` bound to a parameter of whatever type the server inferred:
/// converted (with range checks) to that type, or sent as text.
#[derive(Debug)]
struct PgBind<'a>(&'a Value);

type BoxError = Box<dyn std::error::Error + Sync + Send>;

fn cannot(value: &Value, ty: &Type) -> BoxError {
    format!(
        "cannot bind a {} value to a parameter of type {ty}",
        value.type_name()
    )
    .into()
}

impl ToSql for PgBind<'_> {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> std::result::Result<IsNull, BoxError> {
        let v = self.0;
        if v.is_null() {
            return Ok(IsNull::Yes);
        }
        match *ty {
            Type::BOOL => bool::from_value(v).ok_or_else(|| cannot(v, ty))?.to_sql(ty, out),
            Type::INT2 => i16::from_value(v).ok_or_else(|| cannot(v, ty))?.to_sql(ty, out),
            Type::INT4 => i32::from_value(v).ok_or_else(|| cannot(v, ty))?.to_sql(ty, out),
            Type::INT8 => i64::from_value(v).ok_or_else(|| cannot(v, ty))?.to_sql(ty, out),
            Type::OID => u32::from_value(v).ok_or_else(|| cannot(v, ty))?.to_sql(ty, out),
            Type::FLOAT4 => f32::from_value(v).ok_or_else(|| cannot(v, ty))?.to_sql(ty, out),
            Type::FLOAT8 => f64::from_value(v).ok_or_else(|| cannot(v, ty))?.to_sql(ty, out),
            Type::NUMERIC => rust_decimal::Decimal::from_value(v)
                .ok_or_else(|| cannot(v, ty))?
                .to_sql(ty, out),
            Type::BYTEA => match v {
                Value::Bytes(b) => b.as_slice().to_sql(ty, out),
                _ => Err(cannot(v, ty)),
            },
            Type::DATE => chrono::NaiveDate::from_value(v)
                .ok_or_else(|| cannot(v, ty))?
                .to_sql(ty, out),
            Type::TIME => chrono::NaiveTime::from_value(v)
                .ok_or_else(|| cannot(v, ty))?
                .to_sql(ty, out),
            Type::TIMESTAMP => chrono::NaiveDateTime::from_value(v)
                .ok_or_else(|| cannot(v, ty))?
                .to_sql(ty, out),
            Type::TIMESTAMPTZ => match v {
                Value::Timestamp(t) => t.and_utc().to_sql(ty, out),
                _ => chrono::DateTime::<chrono::Utc>::from_value(v)
                    .ok_or_else(|| cannot(v, ty))?
                    .to_sql(ty, out),
            },
            Type::UUID => uuid::Uuid::from_value(v)
                .ok_or_else(|| cannot(v, ty))?
                .to_sql(ty, out),
            Type::JSON | Type::JSONB => match v {
                Value::Json(j) => j.to_sql(ty, out),
                Value::Text(s) => serde_json::from_str::<serde_json::Value>(s)?.to_sql(ty, out),
                other => crate::value::to_json(other).to_sql(ty, out),
            },
            _ if matches!(ty.kind(), tokio_postgres::types::Kind::Array(_)) => match v {
                // Each element is bound to the array's member type.
                Value::Array(items) => items.iter().map(PgBind).collect::<Vec<_>>().to_sql(ty, out),
                _ => Err(cannot(v, ty)),
            },
            // Text and every type we do not know: the value's text form,
            // which the server parses as it would a literal.
            _ => text_form(v)
                .ok_or_else(|| cannot(v, ty))?
                .as_str()
                .to_sql(&Type::TEXT, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn text_form(v: &Value) -> Option<String> {
    Some(match v {
        Value::Null => return None,
        Value::Bool(b) => b.to_string(),
        Value::I16(x) => x.to_string(),
        Value::I32(x) => x.to_string(),
        Value::I64(x) => x.to_string(),
        Value::F32(x) => x.to_string(),
        Value::F64(x) => x.to_string(),
        Value::Text(s) => s.clone(),
        Value::Bytes(b) => {
            let mut s = String::from("\\x");
            for byte in b {
                s.push_str(&format!("{byte:02x}"));
            }
            s
        }
        Value::Decimal(d) => d.to_string(),
        Value::Date(d) => d.to_string(),
        Value::Time(t) => t.to_string(),
        Value::Timestamp(t) => t.to_string(),
        Value::TimestampTz(t) => t.to_rfc3339(),
        Value::Uuid(u) => u.to_string(),
        Value::Json(j) => j.to_string(),
        Value::Array(_) => return None,
    })
}

/// The error with its causes: tokio-postgres's own text is often only "db error".
fn describe(e: &tokio_postgres::Error) -> String {
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
fn map_error(e: tokio_postgres::Error) -> Error {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        let mut message = db.message().to_string();
        if let Some(detail) = db.detail() {
            message.push_str(": ");
            message.push_str(detail);
        }
        return match code {
            "57014" if message.contains("statement timeout") => Error::new(ErrorKind::Timeout, message),
            "57014" => Error::new(ErrorKind::Interrupted, format!("statement cancelled: {message}")),
            "57P01" | "57P02" | "57P03" => Error::new(ErrorKind::Disconnected, message),
            _ => Error::database(code, message),
        };
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

#[cfg(test)]
mod tests {
    use super::transaction_effect;

    #[test]
    fn transaction_state_follows_the_first_word() {
        assert_eq!(
            transaction_effect("  begin isolation level serializable"),
            Some(true)
        );
        assert_eq!(transaction_effect("START TRANSACTION"), Some(true));
        assert_eq!(transaction_effect("commit"), Some(false));
        assert_eq!(transaction_effect("ROLLBACK"), Some(false));
        assert_eq!(transaction_effect("rollback to savepoint sp_2"), None);
        assert_eq!(transaction_effect("SELECT 'BEGIN'"), None);
        assert_eq!(transaction_effect("BEGINNING_TABLE"), None);
        assert_eq!(transaction_effect(""), None);
    }
}
