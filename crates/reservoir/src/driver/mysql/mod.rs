//! MySQL and MariaDB through mysql_async: prepared statements cached by
//! mysql_async per connection, `KILL QUERY` for `close_with(interrupt)`,
//! streams read by a task that holds the connection while they last.

mod error;
mod rows;
mod types;
#[cfg(feature = "fuzzing")]
pub(crate) use types::fuzz_read;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::Duration;

use mysql_async::consts::StatusFlags;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Params};

use crate::driver::wire::{WIRE_KEYS, Wire, statement_deadline, within};

use super::session::TxOptions;
use super::session::{Session, TxStatus};
use super::{AnyConnection, Driver, DriverOptions, InFlight, RawConnection, RowSource};
use crate::error::{Error, ErrorKind, Result};
use crate::pool::{BoxFuture, Interrupt};
use crate::row::Row;
use crate::sql::Placeholder;
use crate::url::{DatabaseUrl, Dialect};
use crate::value::Value;
use error::{breaks_connection, map_error};
use rows::{MyRows, Statement};
use types::{Shape, to_mysql};

/// "This command is not supported in the prepared statement protocol yet".
const ER_UNSUPPORTED_PS: u16 = 1295;

/// The URL parameters this driver understands (besides the engine's).
/// Opens MySQL/MariaDB connections.
pub struct MysqlDriver {
    opts: Opts,
    wire: Wire,
    deadline: Option<Duration>,
}

impl MysqlDriver {
    /// A driver for the server `url` names.
    pub fn new(url: &DatabaseUrl, options: &DriverOptions) -> Result<Self> {
        let mut wire = Wire::default();
        for (key, value) in url.query() {
            if !wire.take(key, value)? {
                return Err(Error::new(
                    ErrorKind::Url,
                    format!(
                        "unknown MySQL URL parameter '{key}' (known: {})",
                        WIRE_KEYS.join(", ")
                    ),
                ));
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
            // mysql_async sets the idle time only: the probes' interval and
            // count are the system's, and TCP_USER_TIMEOUT is not settable.
            .tcp_keepalive(wire.keepalives.then_some(wire.keepalives_idle))
            .init(init);
        Ok(MysqlDriver {
            opts: opts.into(),
            wire,
            deadline: statement_deadline(options.statement_timeout),
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

    fn isolation_query(&self) -> Option<&'static str> {
        Some("SELECT @@tx_isolation")
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
            let connecting = async {
                Conn::new(self.opts.clone())
                    .await
                    .map_err(|e| Error::new(ErrorKind::Connect, format!("cannot connect to MySQL: {e}")))
            };
            let conn = self.wire.bounded("MySQL", connecting).await?;
            let killer = Arc::new(Killer {
                opts: self.opts.clone(),
                id: conn.id(),
            });
            Ok(AnyConnection::Mysql(Box::new(MysqlConnection {
                conn: Arc::new(tokio::sync::Mutex::new(conn)),
                session: Arc::default(),
                dirty: Arc::new(AtomicBool::new(false)),
                broken: Arc::new(AtomicBool::new(false)),
                killer,
                deadline: self.deadline,
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
            // A server that does not answer holds up nobody past the deadline.
            match tokio::time::timeout(KILL_DEADLINE, killed).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::debug!(%error, "KILL QUERY failed"),
                Err(_) => tracing::debug!("KILL QUERY unanswered within {KILL_DEADLINE:?}"),
            }
        })
    }
}

pub(super) type Shared = Arc<tokio::sync::Mutex<Conn>>;

/// An open MySQL or MariaDB connection (held by the pool as an [`AnyConnection`]).
pub struct MysqlConnection {
    /// Shared with a stream while it is read.
    conn: Shared,
    /// Transaction status and levels, queued SQL (see `Session`).
    session: Arc<Session>,
    /// An operation was dropped mid-flight. The protocol cannot be resumed
    /// from an unknown point (mysql_async would hand its answer to the next
    /// statement), so such a connection counts as broken: never reused,
    /// and its statement is killed when it closes.
    dirty: Arc<AtomicBool>,
    broken: Arc<AtomicBool>,
    killer: Arc<Killer>,
    /// The client's limit on a statement's answer (see `wire.rs`); past it
    /// the statement's future is dropped, which makes the connection dirty.
    deadline: Option<Duration>,
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

/// Feeds the session what the server reported: the transaction flag of
/// the last OK packet; a deadlock (1213) rolled the whole transaction back.
/// (The session-state-changed flag never comes: mysql_async does not ask
/// for CLIENT_SESSION_TRACK, so state changes are read from the statement.)
pub(super) fn observe<T>(
    session: &Session,
    conn: &Conn,
    result: &std::result::Result<T, mysql_async::Error>,
) {
    if let Err(mysql_async::Error::Server(e)) = result {
        if e.code == ER_LOCK_DEADLOCK {
            session.server_rolled_back();
        }
        return;
    }
    if let Some(ok) = conn.last_ok_packet() {
        let flags = ok.status_flags();
        session.observe(if flags.contains(StatusFlags::SERVER_STATUS_IN_TRANS) {
            TxStatus::Active
        } else {
            TxStatus::Idle
        });
    }
}

/// ER_LOCK_DEADLOCK: the server rolled the transaction back.
const ER_LOCK_DEADLOCK: u16 = 1213;

impl MysqlConnection {
    /// Locks the connection for one operation and runs the queued
    /// statements first.
    async fn lock(&mut self) -> Result<(InFlight, tokio::sync::OwnedMutexGuard<Conn>)> {
        // Waiting for the lock (a stream may hold it) sends nothing: a
        // future dropped there leaves the connection clean.
        let mut conn = Arc::clone(&self.conn).lock_owned().await;
        if self.dirty.load(SeqCst) {
            return Err(abandoned());
        }
        let op = InFlight::new(&self.dirty);
        for sql in self.session.take_pending() {
            let result = conn.query_drop(&sql).await;
            observe(&self.session, &conn, &result);
            if let Err(error) = result {
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
        observe(&self.session, conn, &result);
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
        within(self.deadline, self.execute_unbounded(sql, params)).await
    }

    async fn execute_unbounded(&mut self, sql: &str, params: Vec<Value>) -> Result<u64> {
        let (op, mut conn) = self.lock().await?;
        let result = async {
            match prepare(&mut conn, sql, params.len()).await {
                Ok(stmt) => {
                    // A statement that returns rows counts them, as the
                    // other dialects do (MySQL reports 0 rows affected).
                    let mut result = conn.exec_iter(&stmt, params_of(&params)).await?;
                    let produces_rows = result.columns().is_some_and(|c| !c.is_empty());
                    let mut rows = 0u64;
                    while result.next().await?.is_some() {
                        rows += 1;
                    }
                    let affected = result.affected_rows();
                    drop(result);
                    Ok(if produces_rows { rows } else { affected })
                }
                // Not every statement can be prepared: those without
                // parameters go through the text protocol instead.
                Err(mysql_async::Error::Server(e)) if e.code == ER_UNSUPPORTED_PS && params.is_empty() => {
                    conn.query_drop(sql).await?;
                    Ok(conn.affected_rows())
                }
                Err(e) => Err(e),
            }
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
        within(self.deadline, self.query_unbounded(sql, params, limit)).await
    }

    async fn query_unbounded(
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

impl MysqlConnection {
    async fn execute_many_unbounded(&mut self, sql: &str, sets: Vec<Vec<Value>>) -> Result<u64> {
        let (op, mut conn) = self.lock().await?;
        // After the queued SQL (a rollback) has run.
        let own = self.session.status() == TxStatus::Idle;
        let mut committing = false;
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
                committing = outcome.is_ok();
                conn.query_drop(end).await?;
            }
            outcome.map(|()| total)
        }
        .await;
        match self.finish(&conn, op, result) {
            // The COMMIT may have reached the server and been applied.
            Err(e) if committing && e.is_disconnect() => Err(e.into_in_doubt()),
            other => other,
        }
    }
}

impl RawConnection for MysqlConnection {
    fn execute<'a>(&'a mut self, sql: &'a str, params: Vec<Value>) -> BoxFuture<'a, Result<u64>> {
        Box::pin(self.run_execute(sql, params))
    }

    fn execute_many<'a>(&'a mut self, sql: &'a str, sets: Vec<Vec<Value>>) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move { within(self.deadline, self.execute_many_unbounded(sql, sets)).await })
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
        };
        Box::new(MyRows::start(
            Arc::clone(&self.conn),
            statement,
            Arc::clone(&self.session),
            Arc::clone(&self.broken),
            Arc::clone(&self.dirty),
        ))
    }

    fn simple<'a>(&'a mut self, sql: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let deadline = self.deadline;
            let simple = async {
                let (op, mut conn) = self.lock().await?;
                let result = conn.query_drop(sql).await;
                self.finish(&conn, op, result)
            };
            within(deadline, simple).await
        })
    }

    fn ping(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let (op, mut conn) = self.lock().await?;
            let result = conn.ping().await;
            self.finish(&conn, op, result)
        })
    }

    fn session(&self) -> &Arc<Session> {
        &self.session
    }

    fn reset(&mut self, full: bool) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.session.take_pending();
            let (op, mut conn) = self.lock().await?;
            let result = match conn.query_drop("ROLLBACK").await {
                // COM_RESET_CONNECTION (mysql_async forgets its statements
                // and reruns the session's init statements).
                Ok(()) if full => conn.reset().await.map(drop),
                other => other,
            };
            self.finish(&conn, op, result)?;
            self.session.reset_done(full);
            Ok(())
        })
    }

    fn needs_reset(&self) -> bool {
        self.session.status() != TxStatus::Idle || self.session.has_pending()
    }

    fn is_broken(&self) -> bool {
        self.broken.load(SeqCst) || self.dirty.load(SeqCst)
    }

    fn interrupt_handle(&self) -> Option<Arc<dyn Interrupt>> {
        Some(Arc::clone(&self.killer) as Arc<dyn Interrupt>)
    }
}

/// The error of a statement on a connection whose previous statement was
/// abandoned mid-flight.
fn abandoned() -> Error {
    Error::new(
        ErrorKind::Disconnected,
        "a statement on this MySQL connection was abandoned mid-flight (its future was \
         dropped), so the connection cannot be used again",
    )
}

impl Drop for MysqlConnection {
    fn drop(&mut self) {
        // An abandoned statement may still run on the server: stop it, in
        // the background and bounded (nobody waits for a drop).
        if self.dirty.load(SeqCst) {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                let killer = Arc::clone(&self.killer);
                handle.spawn(async move {
                    let _ = tokio::time::timeout(KILL_DEADLINE, killer.interrupt()).await;
                });
            }
        }
    }
}

/// The longest a `KILL QUERY` for an abandoned statement may take.
const KILL_DEADLINE: Duration = Duration::from_secs(5);
