//! MySQL and MariaDB through mysql_async: prepared statements cached by
//! mysql_async per connection, `KILL QUERY` for `close_with(interrupt)`,
//! streams read by a task that holds the connection while they last.

mod error;
mod rows;
mod types;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::Duration;

use mysql_async::consts::StatusFlags;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Params};

use super::{AnyConnection, Driver, DriverOptions, InFlight, RawConnection, RowSource};
use crate::error::{Error, ErrorKind, Result};
use crate::pool::{BoxFuture, Interrupt};
use crate::row::Row;
use crate::sql::Placeholder;
use crate::transaction::TxOptions;
use crate::url::{DatabaseUrl, Dialect};
use crate::value::Value;
use error::{breaks_connection, map_error};
use rows::{MyRows, Statement};
use types::{Shape, to_mysql};

/// "This command is not supported in the prepared statement protocol yet".
const ER_UNSUPPORTED_PS: u16 = 1295;

/// The URL parameters this driver understands (besides the engine's).
const DRIVER_KEYS: &[&str] = &["connect_timeout"];

/// Opens MySQL/MariaDB connections.
pub struct MysqlDriver {
    opts: Opts,
    connect_timeout: Option<Duration>,
}

impl MysqlDriver {
    /// A driver for the server `url` names.
    pub fn new(url: &DatabaseUrl, options: &DriverOptions) -> Result<Self> {
        let mut connect_timeout = None;
        for (key, value) in url.query() {
            match key.as_str() {
                "connect_timeout" => connect_timeout = Some(super::seconds(key, value)?),
                k if crate::engine::ENGINE_KEYS.contains(&k) => {}
                k => {
                    return Err(Error::new(
                        ErrorKind::Url,
                        format!(
                            "unknown MySQL URL parameter '{k}' (known: {})",
                            DRIVER_KEYS.join(", ")
                        ),
                    ));
                }
            }
        }
        if url.hosts().len() > 1 {
            return Err(Error::new(ErrorKind::Url, "a MySQL URL names one host"));
        }
        let (host, port) = url
            .hosts()
            .first()
            .map_or(("localhost", None), |(h, p)| (h.as_str(), *p));
        let mut init = Vec::new();
        if let Some(timeout) = options.statement_timeout {
            // MariaDB's per-session limit, in seconds.
            init.push(format!(
                "SET SESSION max_statement_time = {}",
                timeout.as_secs_f64().max(0.001)
            ));
        }
        let opts = OptsBuilder::default()
            .ip_or_hostname(host)
            .tcp_port(port.unwrap_or(3306))
            .user(Some(url.user().unwrap_or("root")))
            .pass(url.password())
            .db_name(url.database())
            .stmt_cache_size(options.statement_cache_size)
            // Rows matched, not only rows changed, as the other dialects count.
            .client_found_rows(true)
            .prefer_socket(false)
            .init(init);
        Ok(MysqlDriver {
            opts: opts.into(),
            connect_timeout,
        })
    }
}

impl Driver for MysqlDriver {
    fn dialect(&self) -> Dialect {
        Dialect::Mysql
    }

    fn placeholder(&self) -> Placeholder {
        Placeholder::QuestionBackslash
    }

    fn identifier_quote(&self) -> char {
        '`'
    }

    fn begin_sql(&self, options: &TxOptions) -> Result<String> {
        // The isolation level applies to the next transaction only.
        let mut sql = String::new();
        if let Some(level) = options.isolation_level() {
            sql.push_str("SET TRANSACTION ISOLATION LEVEL ");
            sql.push_str(level.sql());
            sql.push_str("; ");
        }
        sql.push_str("START TRANSACTION");
        if options.is_read_only() {
            sql.push_str(" READ ONLY");
        }
        Ok(sql)
    }

    fn connect(&self) -> BoxFuture<'_, Result<AnyConnection>> {
        Box::pin(async move {
            let connecting = Conn::new(self.opts.clone());
            let conn = match self.connect_timeout {
                Some(limit) => tokio::time::timeout(limit, connecting).await.map_err(|_| {
                    Error::new(
                        ErrorKind::Connect,
                        format!("cannot connect to MySQL: no answer within {limit:?}"),
                    )
                })?,
                None => connecting.await,
            }
            .map_err(|e| Error::new(ErrorKind::Connect, format!("cannot connect to MySQL: {e}")))?;
            let killer = Arc::new(Killer {
                opts: self.opts.clone(),
                id: conn.id(),
            });
            Ok(AnyConnection::Mysql(Box::new(MysqlConnection {
                conn: Arc::new(tokio::sync::Mutex::new(conn)),
                in_tx: false,
                queued: Vec::new(),
                dirty: Arc::new(AtomicBool::new(false)),
                broken: Arc::new(AtomicBool::new(false)),
                killer,
            })))
        })
    }
}

/// `KILL QUERY` for one connection, sent over a connection of its own.
struct Killer {
    opts: Opts,
    id: u32,
}

impl Interrupt for Killer {
    fn interrupt(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let killed = async {
                let mut conn = Conn::new(self.opts.clone()).await?;
                conn.query_drop(format!("KILL QUERY {}", self.id)).await?;
                conn.disconnect().await
            };
            if let Err(error) = killed.await {
                tracing::debug!(%error, "KILL QUERY failed");
            }
        })
    }
}

pub(super) type Shared = Arc<tokio::sync::Mutex<Conn>>;

/// An open MySQL or MariaDB connection (held by the pool as an [`AnyConnection`]).
pub struct MysqlConnection {
    /// Shared with a stream while it is read.
    conn: Shared,
    in_tx: bool,
    /// Statements queued by `enqueue` (a dropped transaction's rollback).
    queued: Vec<String>,
    /// An operation was dropped mid-flight. The protocol cannot be resumed
    /// from an unknown point, so such a connection is not reused.
    dirty: Arc<AtomicBool>,
    broken: Arc<AtomicBool>,
    killer: Arc<Killer>,
}

fn params_of(values: &[Value]) -> Params {
    if values.is_empty() {
        Params::Empty
    } else {
        Params::Positional(values.iter().map(to_mysql).collect())
    }
}

/// Prepares `sql` (from mysql_async's per-connection cache) and checks its
/// parameter count first: mysql_async closes the connection when a
/// statement is run with the wrong number of parameters.
pub(super) async fn prepare(
    conn: &mut Conn,
    sql: &str,
    given: usize,
) -> std::result::Result<mysql_async::Statement, mysql_async::Error> {
    let stmt = conn.prep(sql).await?;
    check_count(&stmt, given)?;
    Ok(stmt)
}

/// A parameter-count mismatch, as the error mysql_async would raise (mapped
/// to `ErrorKind::Param`), but before anything is executed.
fn check_count(stmt: &mysql_async::Statement, given: usize) -> std::result::Result<(), mysql_async::Error> {
    if usize::from(stmt.num_params()) != given {
        return Err(mysql_async::Error::Driver(
            mysql_async::DriverError::StmtParamsMismatch {
                required: stmt.num_params(),
                supplied: given,
            },
        ));
    }
    Ok(())
}

/// Whether the server says a transaction is open (from the last OK packet).
fn server_in_transaction(conn: &Conn) -> Option<bool> {
    conn.last_ok_packet()
        .map(|ok| ok.status_flags().contains(StatusFlags::SERVER_STATUS_IN_TRANS))
}

impl MysqlConnection {
    /// Locks the connection for one operation and runs the queued
    /// statements first.
    async fn lock(&mut self) -> Result<(InFlight, tokio::sync::OwnedMutexGuard<Conn>)> {
        // Waiting for the lock (a stream may hold it) sends nothing: a
        // future dropped there leaves the connection clean.
        let mut conn = Arc::clone(&self.conn).lock_owned().await;
        let op = InFlight::new(&self.dirty);
        for sql in std::mem::take(&mut self.queued) {
            if let Err(error) = conn.query_drop(&sql).await {
                if breaks_connection(&error) {
                    self.broken.store(true, SeqCst);
                    return Err(map_error(error));
                }
                tracing::debug!(%error, "queued statement failed");
            }
        }
        Ok((op, conn))
    }

    /// Ends an operation: records the transaction state the server reports
    /// and whether the connection broke.
    fn finish<T>(
        &mut self,
        conn: &Conn,
        mut op: InFlight,
        result: std::result::Result<T, mysql_async::Error>,
    ) -> Result<T> {
        if let Some(open) = server_in_transaction(conn) {
            self.in_tx = open;
        }
        if conn.is_disconnected() {
            self.broken.store(true, SeqCst);
        }
        op.finished = true;
        result.map_err(|e| {
            if breaks_connection(&e) {
                self.broken.store(true, SeqCst);
            }
            map_error(e)
        })
    }

    /// [`RawConnection::execute`], as a future of its own type.
    pub(crate) async fn run_execute(&mut self, sql: &str, params: Vec<Value>) -> Result<u64> {
        let (op, mut conn) = self.lock().await?;
        let result = async {
            match prepare(&mut conn, sql, params.len()).await {
                Ok(stmt) => conn.exec_drop(&stmt, params_of(&params)).await?,
                // Not every statement can be prepared: those without
                // parameters go through the text protocol instead.
                Err(mysql_async::Error::Server(e)) if e.code == ER_UNSUPPORTED_PS && params.is_empty() => {
                    conn.query_drop(sql).await?
                }
                Err(e) => return Err(e),
            }
            Ok(conn.affected_rows())
        }
        .await;
        self.finish(&conn, op, result)
    }

    /// [`RawConnection::query`], as a future of its own type.
    pub(crate) async fn run_query(
        &mut self,
        sql: &str,
        params: Vec<Value>,
        limit: Option<usize>,
    ) -> Result<Vec<Row>> {
        let (op, mut conn) = self.lock().await?;
        let result = async {
            let stmt = prepare(&mut conn, sql, params.len()).await?;
            let mut result = conn.exec_iter(&stmt, params_of(&params)).await?;
            let shape = result.columns().map(|c| Shape::of(&c));
            let rows: Vec<mysql_async::Row> = result.collect().await?;
            Ok((shape, rows))
        }
        .await;
        let (shape, rows) = self.finish(&conn, op, result)?;
        let Some(shape) = shape else {
            return Ok(Vec::new());
        };
        rows.into_iter()
            .take(limit.unwrap_or(usize::MAX))
            .map(|r| shape.read(r))
            .collect()
    }
}

impl RawConnection for MysqlConnection {
    fn execute<'a>(&'a mut self, sql: &'a str, params: Vec<Value>) -> BoxFuture<'a, Result<u64>> {
        Box::pin(self.run_execute(sql, params))
    }

    fn execute_many<'a>(&'a mut self, sql: &'a str, sets: Vec<Vec<Value>>) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let own = !self.in_tx;
            let (op, mut conn) = self.lock().await?;
            let result = async {
                if own {
                    conn.query_drop("START TRANSACTION").await?;
                }
                let mut total = 0;
                // Prepared once for every set (with the cache off, once per
                // set would cost a round trip each).
                let outcome = match conn.prep(sql).await {
                    Err(e) => Err(e),
                    Ok(stmt) => {
                        let mut outcome = Ok(());
                        for params in &sets {
                            let done = match check_count(&stmt, params.len()) {
                                Ok(()) => conn.exec_drop(&stmt, params_of(params)).await,
                                Err(e) => Err(e),
                            };
                            if let Err(e) = done {
                                outcome = Err(e);
                                break;
                            }
                            total += conn.affected_rows();
                        }
                        outcome
                    }
                };
                if own {
                    let end = if outcome.is_ok() { "COMMIT" } else { "ROLLBACK" };
                    conn.query_drop(end).await?;
                }
                outcome.map(|()| total)
            }
            .await;
            self.finish(&conn, op, result)
        })
    }

    fn query<'a>(
        &'a mut self,
        sql: &'a str,
        params: Vec<Value>,
        limit: Option<usize>,
    ) -> BoxFuture<'a, Result<Vec<Row>>> {
        Box::pin(self.run_query(sql, params, limit))
    }

    fn open_rows(&mut self, sql: &str, params: Vec<Value>) -> Box<dyn RowSource> {
        let statement = Statement {
            sql: sql.to_string(),
            params: params_of(&params),
            queued: std::mem::take(&mut self.queued),
        };
        Box::new(MyRows::start(
            Arc::clone(&self.conn),
            statement,
            Arc::clone(&self.broken),
        ))
    }

    fn simple<'a>(&'a mut self, sql: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let (op, mut conn) = self.lock().await?;
            let result = conn.query_drop(sql).await;
            self.finish(&conn, op, result)
        })
    }

    fn ping(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let (op, mut conn) = self.lock().await?;
            let result = conn.ping().await;
            self.finish(&conn, op, result)
        })
    }

    fn enqueue(&mut self, sql: &str) {
        self.queued.push(sql.to_string());
    }

    fn reset(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if self.dirty.load(SeqCst) {
                // Stop what the abandoned statement left running; the
                // connection itself is not reused (see `dirty`).
                self.killer.interrupt().await;
                self.broken.store(true, SeqCst);
                return Err(Error::new(
                    ErrorKind::Disconnected,
                    "a statement on this MySQL connection was abandoned mid-flight",
                ));
            }
            self.queued.clear();
            let (op, mut conn) = self.lock().await?;
            let result = conn.query_drop("ROLLBACK").await;
            self.finish(&conn, op, result)?;
            self.in_tx = false;
            Ok(())
        })
    }

    fn in_transaction(&self) -> bool {
        self.in_tx || !self.queued.is_empty() || self.dirty.load(SeqCst)
    }

    fn is_broken(&self) -> bool {
        self.broken.load(SeqCst)
    }

    fn interrupt_handle(&self) -> Option<Arc<dyn Interrupt>> {
        Some(Arc::clone(&self.killer) as Arc<dyn Interrupt>)
    }
}
