//! PostgreSQL through tokio-postgres: prepared statements cached per
//! connection (LRU), pipelined `execute_many`, portal streaming, server-side
//! cursors, cancel requests for `close_with(interrupt)` and dropped futures.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::Duration;

use futures_util::StreamExt;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

mod cache;
mod cancel;
mod config;
mod error;
mod io;
mod numeric;
mod rows;
mod tls;
mod types;
#[cfg(feature = "fuzzing")]
pub(crate) use types::fuzz_read;

use cache::StatementCache;
use cancel::PgCancel;
use error::{describe, map_error};
use io::{Io, driven};
use rows::{PgCursor, PgRows};
pub(crate) use types::PgRow;
use types::{PgBind, Prepared, Shape, bound, read_row, typed};

use super::session::TxOptions;
use super::session::{Session, TxStatus};
use super::wire::within;
use super::{AnyConnection, Driver, DriverOptions, InFlight, RawConnection, RowSource};
use crate::error::{Error, ErrorKind, Result};
use crate::pool::{BoxFuture, Interrupt};
use crate::row::Row;
use crate::sql::Placeholder;
use crate::url::{DatabaseUrl, Dialect};
use crate::value::Value;

/// Rows fetched per executed `execute_many` chunk kept in flight at once.
const PIPELINE_DEPTH: usize = 256;

/// Opens PostgreSQL connections.
pub struct PostgresDriver {
    config: tokio_postgres::Config,
    tls: Option<MakeRustlsConnect>,
    wire: crate::driver::wire::Wire,
    /// The client's limit on a statement's answer (see `wire.rs`).
    deadline: Option<Duration>,
    cache_size: usize,
}

impl PostgresDriver {
    /// A driver for the server `url` names.
    pub fn new(url: &DatabaseUrl, options: &DriverOptions) -> Result<Self> {
        let config::Settings { config, tls, wire } = config::settings(url, options)?;
        Ok(PostgresDriver {
            config,
            tls,
            wire,
            deadline: crate::driver::wire::statement_deadline(options.statement_timeout),
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

    fn isolation_query(&self) -> Option<&'static str> {
        Some("SELECT current_setting('transaction_isolation')")
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

    fn connect(&self) -> BoxFuture<'_, Result<AnyConnection>> {
        Box::pin(async move {
            let connect_error = |e: tokio_postgres::Error| {
                Error::new(
                    ErrorKind::Connect,
                    format!("cannot connect to PostgreSQL: {}", describe(&e)),
                )
            };
            // TCP, TLS, startup and authentication, within connect_timeout.
            let connecting = async {
                Ok(match &self.tls {
                    Some(tls) => {
                        let (client, connection) =
                            self.config.connect(tls.clone()).await.map_err(connect_error)?;
                        (client, Io::start(connection))
                    }
                    None => {
                        let (client, connection) = self.config.connect(NoTls).await.map_err(connect_error)?;
                        (client, Io::start(connection))
                    }
                })
            };
            let (client, io) = self.wire.bounded("PostgreSQL", connecting).await?;
            let cancel = client.cancel_token();
            Ok(AnyConnection::Postgres(Box::new(PgConnection {
                client: Arc::new(client),
                cache: StatementCache::new(self.cache_size),
                io,
                dirty: Arc::new(AtomicBool::new(false)),
                deadline: self.deadline,
                unanswered: false,
                session: Arc::default(),
                cancel: Arc::new(PgCancel {
                    token: cancel,
                    tls: self.tls.clone(),
                    address: PgCancel::address_of(&self.config),
                }),
                cursors: 0,
            })))
        })
    }
}

/// An open PostgreSQL connection (held by the pool as an [`AnyConnection`]).
pub struct PgConnection {
    client: Arc<Client>,
    /// Prepared statements with their result columns; `None`: caching off.
    cache: Option<Arc<StatementCache>>,
    /// The socket I/O: polled by its own task, or by an operation that
    /// receives many messages while it runs.
    io: Arc<Io>,
    /// An operation was dropped mid-flight: cancel and resync before reuse.
    dirty: Arc<AtomicBool>,
    deadline: Option<Duration>,
    /// A statement got no answer within `deadline`: the connection is
    /// given up (the pool discards it), with no cancel or settle tried on
    /// a server that does not answer.
    unanswered: bool,
    /// Transaction status and levels, queued SQL (see `Session`).
    session: Arc<Session>,
    cancel: Arc<PgCancel>,
    cursors: u64,
}

/// Whether a statement opens (`true`) or ends (`false`) a transaction, from
/// its first word: tokio-postgres does not expose ReadyForQuery's status
/// (the wire client of our own will read it instead).
fn transaction_effect(sql: &str) -> Option<bool> {
    // Runs on every statement: branch on the first letter (nearly every
    // statement is ruled out there), then compare one keyword, without
    // allocating.
    let bytes = sql.as_bytes();
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace())?;
    let rest = &bytes[start..];
    let is = |word: &str| {
        rest.len() >= word.len()
            && rest[..word.len()].eq_ignore_ascii_case(word.as_bytes())
            && rest.get(word.len()).is_none_or(|b| !b.is_ascii_alphabetic())
    };
    match rest[0].to_ascii_uppercase() {
        b'B' if is("BEGIN") => Some(true),
        b'S' if is("START") => Some(true),
        b'C' if is("COMMIT") => Some(false),
        b'E' if is("END") => Some(false),
        b'A' if is("ABORT") => Some(false),
        b'R' if is("ROLLBACK") && !sql.to_ascii_uppercase().contains(" TO ") => Some(false),
        _ => None,
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
        tracing::debug!(target: "reservoir::sql", "settling a statement abandoned mid-flight: cancel, then a sentinel");
        self.cancel.interrupt().await;
        for _ in 0..3 {
            let sentinel = "SELECT pg_sleep(0.05)";
            let result = self.client.batch_execute(sentinel).await.map_err(map_error);
            // Inside a transaction, the cancelled statement failed it: the
            // sentinel's answer tells.
            observe(&self.session, sentinel, &result);
            match result {
                Err(e) if e.kind() == &ErrorKind::Interrupted => continue,
                _ => break,
            }
        }
    }

    /// Before the next operation: cancel a statement whose future was
    /// dropped (so the next one does not wait for it to finish), then run
    /// queued statements.
    async fn flush_queued(&mut self) -> Result<()> {
        if self.io.is_closed() {
            // Nothing polls the socket any more (see `io::Background`): a
            // request sent now would never be answered.
            return Err(Error::new(
                ErrorKind::Disconnected,
                "connection lost: its I/O has ended (server gone, or its runtime shut down)",
            ));
        }
        if !self.dirty.load(SeqCst) && !self.session.has_pending() {
            return Ok(());
        }
        // Boxed: the cancel request's future is large, and would otherwise
        // make every statement's future too big for the allocator's fast path.
        Box::pin(self.flush_queued_slow()).await
    }

    async fn flush_queued_slow(&mut self) -> Result<()> {
        self.settle_abandoned().await;
        for sql in self.session.take_pending() {
            let result = self.client.batch_execute(&sql).await.map_err(map_error);
            observe(&self.session, &sql, &result);
            if let Err(error) = result {
                if self.client.is_closed() {
                    return Err(error);
                }
                tracing::debug!(%error, "queued statement failed");
            }
        }
        Ok(())
    }

    /// Runs queued statements, then says how to send `sql` (see `target`).
    async fn ready<'s>(&mut self, sql: &'s str, sets: &[&[Value]]) -> Result<Target<'s>> {
        self.flush_queued().await?;
        self.target(sql, sets).await
    }

    /// How to send `sql`: prepared (from the cache when it can, with the
    /// parameter count of every set checked against it) or, with the cache
    /// off, unnamed.
    async fn target<'s>(&mut self, sql: &'s str, sets: &[&[Value]]) -> Result<Target<'s>> {
        let Some(cache) = &self.cache else {
            return Ok(Target::Unnamed(sql));
        };
        let prepared = cache.prepared(&self.client, sql).await?;
        for params in sets {
            check_count(&prepared.stmt, params)?;
        }
        Ok(Target::Prepared(prepared))
    }

    /// Binary COPY of `rows` into the target of `copy`; `probe` selects
    /// the columns, for their types.
    async fn copy_rows(&self, probe: &str, copy: &str, rows: &[Vec<Value>]) -> Result<u64> {
        // Binary COPY needs each column's type: ask the server once.
        let types: Vec<Type> = self
            .client
            .prepare(probe)
            .await
            .map_err(map_error)?
            .columns()
            .iter()
            .map(|c| c.type_().clone())
            .collect();
        let sink = self.client.copy_in(copy).await.map_err(map_error)?;
        let writer = tokio_postgres::binary_copy::BinaryCopyInWriter::new(sink, &types);
        let mut writer = std::pin::pin!(writer);
        // One vector of bindings, refilled for each row.
        let mut b: Vec<PgBind<'_>> = Vec::with_capacity(types.len());
        for row in rows {
            if row.len() != types.len() {
                return Err(Error::new(
                    ErrorKind::Param,
                    format!("a row has {} values for {} columns", row.len(), types.len()),
                ));
            }
            b.clear();
            b.extend(row.iter().map(PgBind));
            writer.as_mut().write_raw(b.iter()).await.map_err(map_error)?;
        }
        writer.finish().await.map_err(map_error)
    }

    /// Opens a transaction for one operation when `wanted` and none is open;
    /// returns whether it did (pass that to `end_own`).
    async fn begin_own(&mut self, wanted: bool) -> Result<bool> {
        if !wanted || self.session.status() != TxStatus::Idle {
            return Ok(false);
        }
        let begun = self.client.batch_execute("BEGIN").await.map_err(map_error);
        observe(&self.session, "BEGIN", &begun);
        begun.map(|()| true)
    }

    /// Commits (`ok`) or rolls back the transaction `begin_own` opened.
    async fn end_own(&mut self, own: bool, ok: bool) -> Result<()> {
        if !own {
            return Ok(());
        }
        let end = if ok { "COMMIT" } else { "ROLLBACK" };
        let ended = self.client.batch_execute(end).await.map_err(map_error);
        observe(&self.session, end, &ended);
        match ended {
            Err(e) if ok && e.is_disconnect() => Err(e.into_in_doubt()),
            other => other,
        }
    }

    /// [`RawConnection::execute`], as a future of its own type.
    pub(crate) async fn run_execute(&mut self, sql: &str, params: Vec<Value>) -> Result<u64> {
        let answer = within(self.deadline, self.execute_unbounded(sql, params)).await;
        self.answered(answer)
    }

    /// The statement's answer; with none (the deadline passed), the
    /// connection is given up.
    fn answered<T>(&mut self, answer: Result<T>) -> Result<T> {
        if answer.as_ref().is_err_and(Error::is_lost_answer) {
            self.unanswered = true;
        }
        answer
    }

    async fn execute_unbounded(&mut self, sql: &str, params: Vec<Value>) -> Result<u64> {
        let mut op = InFlight::new(&self.dirty);
        let result = match self.ready(sql, &[&params]).await {
            Ok(target) => execute_one(&self.client, &target, &params).await,
            Err(e) => Err(e),
        };
        op.finished = true;
        observe(&self.session, sql, &result);
        result
    }

    /// [`RawConnection::query`], as a future of its own type.
    pub(crate) async fn run_query(
        &mut self,
        sql: &str,
        params: Vec<Value>,
        limit: Option<usize>,
    ) -> Result<Vec<Row>> {
        let answer = within(self.deadline, self.query_unbounded(sql, params, limit)).await;
        self.answered(answer)
    }

    async fn query_unbounded(
        &mut self,
        sql: &str,
        params: Vec<Value>,
        limit: Option<usize>,
    ) -> Result<Vec<Row>> {
        let mut op = InFlight::new(&self.dirty);
        let result = match self.ready(sql, &[&params]).await {
            Ok(target) => query_rows(&self.client, &target, &params, limit).await,
            Err(e) => Err(e),
        };
        op.finished = true;
        observe(&self.session, sql, &result);
        result
    }

    /// A handle for reads that share this connection (`pipeline_reads`),
    /// after queued work has run. `None` with the statement cache off: that
    /// is the pooler setting, and a pooler in transaction mode hands the
    /// server connection on at the first answer, so reads pipelined behind
    /// it would reach another client.
    pub(crate) async fn shared_reader(&mut self) -> Result<Option<PgReader>> {
        self.flush_queued().await?;
        Ok(self.cache.clone().map(|cache| PgReader {
            client: Arc::clone(&self.client),
            cache,
        }))
    }
}

/// Feeds the session what the server's answer to `sql` says: an error
/// inside a transaction block has aborted it; a success means the block
/// is usable (in an aborted block only ROLLBACK [TO SAVEPOINT] succeeds);
/// BEGIN, COMMIT and ROLLBACK open or end it.
fn observe<T>(session: &Session, sql: &str, result: &Result<T>) {
    let status = session.status();
    match result {
        Err(e) if e.is_server_answer() => {
            if status != TxStatus::Idle {
                session.observe(TxStatus::Failed);
            }
        }
        Err(_) => {}
        Ok(_) => match transaction_effect(sql) {
            Some(true) => session.observe(TxStatus::Active),
            Some(false) => session.observe(TxStatus::Idle),
            None if status == TxStatus::Failed => session.observe(TxStatus::Active),
            None => {}
        },
    }
}

impl PgConnection {
    async fn execute_many_unbounded(&mut self, sql: &str, sets: Vec<Vec<Value>>) -> Result<u64> {
        let mut op = InFlight::new(&self.dirty);
        let all: Vec<&[Value]> = sets.iter().map(Vec::as_slice).collect();
        let result = async {
            let target = self.ready(sql, &all).await?;
            let own = self.begin_own(true).await?;
            let result = pipelined(&self.client, &target, &sets).await;
            observe(&self.session, sql, &result);
            self.end_own(own, result.is_ok()).await?;
            result
        }
        .await;
        op.finished = true;
        result
    }

    async fn simple_unbounded(&mut self, sql: &str) -> Result<()> {
        let mut op = InFlight::new(&self.dirty);
        let result = match self.flush_queued().await {
            Ok(()) => self.client.batch_execute(sql).await.map_err(map_error),
            Err(e) => Err(e),
        };
        op.finished = true;
        observe(&self.session, sql, &result);
        result
    }
}

impl RawConnection for PgConnection {
    fn execute<'a>(&'a mut self, sql: &'a str, params: Vec<Value>) -> BoxFuture<'a, Result<u64>> {
        Box::pin(self.run_execute(sql, params))
    }

    fn execute_many<'a>(&'a mut self, sql: &'a str, sets: Vec<Vec<Value>>) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let answer = within(self.deadline, self.execute_many_unbounded(sql, sets)).await;
            self.answered(answer)
        })
    }

    fn simple<'a>(&'a mut self, sql: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let answer = within(self.deadline, self.simple_unbounded(sql)).await;
            self.answered(answer)
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
        Box::new(PgRows::new(
            Arc::clone(&self.client),
            &self.io,
            sql.to_string(),
            params,
            Arc::clone(&self.session),
            Arc::clone(&self.dirty),
            self.cache.clone(),
        ))
    }

    fn open_cursor<'a>(
        &'a mut self,
        sql: &'a str,
        params: Vec<Value>,
    ) -> BoxFuture<'a, Result<Box<dyn RowSource>>> {
        let sql = sql.to_string();
        Box::pin(async move {
            let mut op = InFlight::new(&self.dirty);
            self.cursors += 1;
            let name = format!("reservoir_cursor_{}", self.cursors);
            let declare = format!("DECLARE {name} NO SCROLL CURSOR FOR {sql}");
            let declared = async {
                self.flush_queued().await?;
                let target = match self.cache {
                    // Each cursor's DECLARE is new: prepared, but not cached.
                    Some(_) => {
                        let stmt = self.client.prepare(&declare).await.map_err(map_error)?;
                        check_count(&stmt, &params)?;
                        Target::Prepared(Prepared::new(stmt))
                    }
                    None => Target::Unnamed(&declare),
                };
                execute_one(&self.client, &target, &params).await
            }
            .await;
            op.finished = true;
            observe(&self.session, &declare, &declared);
            declared?;
            let cursor = PgCursor::new(Arc::clone(&self.client), &self.io, name, &self.session);
            Ok(Box::new(cursor) as Box<dyn RowSource>)
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
        driven(Arc::clone(&self.io), async move {
            let mut op = InFlight::new(&self.dirty);
            let copied = async {
                self.flush_queued().await?;
                // Asking for the column types prepares a named statement: behind
                // a transaction-mode pooler it must share a server session with
                // its Close, so it gets a transaction of its own.
                let own = self.begin_own(self.cache.is_none()).await?;
                let copied = self.copy_rows(&probe, &copy, &rows).await;
                observe(&self.session, &copy, &copied);
                self.end_own(own, copied.is_ok()).await?;
                copied
            }
            .await;
            op.finished = true;
            copied
        })
    }

    fn ping(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { self.client.simple_query("").await.map(drop).map_err(map_error) })
    }

    fn session(&self) -> &Arc<Session> {
        &self.session
    }

    fn reset(&mut self, full: bool) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.settle_abandoned().await;
            self.session.take_pending();
            self.client.batch_execute("ROLLBACK").await.map_err(map_error)?;
            if full {
                // DISCARD ALL deallocates our prepared statements too: the
                // cache forgets them (their Close, sent on drop, is harmless).
                self.client
                    .batch_execute("DISCARD ALL")
                    .await
                    .map_err(map_error)?;
                if let Some(cache) = &self.cache {
                    cache.clear();
                }
            }
            self.session.reset_done(full);
            Ok(())
        })
    }

    fn needs_reset(&self) -> bool {
        self.session.status() != TxStatus::Idle || self.session.has_pending() || self.dirty.load(SeqCst)
    }

    fn is_broken(&self) -> bool {
        self.unanswered || self.io.is_closed() || self.client.is_closed()
    }

    fn interrupt_handle(&self) -> Option<Arc<dyn Interrupt>> {
        Some(Arc::clone(&self.cancel) as Arc<dyn Interrupt>)
    }
}

/// Reads on a connection shared by concurrent readers: tokio-postgres
/// pipelines requests sent together on one client, each with its own Sync,
/// so a failing read fails alone. Reads only, outside any transaction: the
/// connection's transaction state is not touched. A dropped read is not
/// cancelled; tokio-postgres discards the rest of its answer.
pub(crate) struct PgReader {
    client: Arc<Client>,
    cache: Arc<StatementCache>,
}

impl PgReader {
    pub(crate) async fn query(&self, sql: &str, params: &[Value], limit: Option<usize>) -> Result<Vec<Row>> {
        let prepared = self.cache.prepared(&self.client, sql).await?;
        check_count(&prepared.stmt, params)?;
        query_rows(&self.client, &Target::Prepared(prepared), params, limit).await
    }
}

/// How a statement is sent.
enum Target<'a> {
    /// Prepared on this connection: the server's parameter types.
    Prepared(Prepared),
    /// Parsed anew in the same round trip as its execution, as the unnamed
    /// statement, with parameters typed by their values (see
    /// `types::typed`). Nothing outlives the round trip, so it works behind
    /// PgBouncer in transaction mode.
    Unnamed(&'a str),
}

/// Runs the statement once per parameter set with up to `PIPELINE_DEPTH`
/// executions in flight: tokio-postgres pipelines requests issued together on
/// one connection, so this costs one round trip per window, not per row.
async fn pipelined(client: &Client, target: &Target<'_>, sets: &[Vec<Value>]) -> Result<u64> {
    let mut in_flight = futures_util::stream::FuturesOrdered::new();
    let mut total = 0;
    for params in sets {
        in_flight.push_back(execute_one(client, target, params));
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

/// Runs a query and keeps at most `limit` rows, converting each as it
/// arrives. The whole answer is read even when fewer rows are wanted (or a
/// row cannot be read), which keeps the protocol in step without a cancel.
async fn query_rows(
    client: &Client,
    target: &Target<'_>,
    params: &[Value],
    limit: Option<usize>,
) -> Result<Vec<Row>> {
    let (rows, mut shape) = match target {
        Target::Prepared(p) => (
            client.query_raw(&p.stmt, bound(params)).await,
            Some(p.shape.clone()),
        ),
        Target::Unnamed(sql) => (client.query_typed_raw(sql, typed(params)).await, None),
    };
    let mut rows = std::pin::pin!(rows.map_err(map_error)?);
    let limit = limit.unwrap_or(usize::MAX);
    // A small limit (fetch_one, fetch_optional) is the exact size wanted.
    let mut out = Vec::with_capacity(if limit <= 16 { limit } else { 0 });
    let mut failed = None;
    while let Some(row) = rows.next().await {
        let row = row.map_err(map_error)?;
        if out.len() < limit && failed.is_none() {
            let shape = shape.get_or_insert_with(|| Shape::of(row.columns()));
            match read_row(row, shape) {
                Ok(row) => out.push(row),
                Err(e) => failed = Some(e),
            }
        }
    }
    failed.map_or(Ok(out), Err)
}

async fn execute_one(client: &Client, target: &Target<'_>, params: &[Value]) -> Result<u64> {
    match target {
        Target::Prepared(p) => client
            .execute_raw(&p.stmt, bound(params))
            .await
            .map_err(map_error),
        Target::Unnamed(sql) => {
            // The unnamed form of `execute_raw`: run it, count from its CommandComplete.
            let rows = client
                .query_typed_raw(sql, typed(params))
                .await
                .map_err(map_error)?;
            let mut rows = std::pin::pin!(rows);
            while let Some(row) = rows.next().await {
                row.map_err(map_error)?;
            }
            Ok(rows.rows_affected().unwrap_or(0))
        }
    }
}

pub(super) fn check_count(stmt: &Statement, params: &[Value]) -> Result<()> {
    let expected = stmt.params().len();
    if expected != params.len() {
        return Err(super::param_count_error(expected, params.len()));
    }
    Ok(())
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
        assert_eq!(transaction_effect("end"), Some(false));
        assert_eq!(transaction_effect("Abort;"), Some(false));
        assert_eq!(transaction_effect(" \n COMMIT"), Some(false));
        assert_eq!(transaction_effect("SET search_path TO x"), None);
        assert_eq!(transaction_effect("SAVEPOINT sp_1"), None);
        assert_eq!(transaction_effect("SELECT 1"), None);
        assert_eq!(transaction_effect("STARTLE"), None);
        assert_eq!(transaction_effect("   "), None);
        assert_eq!(transaction_effect("begin"), Some(true));
        assert_eq!(transaction_effect("BEGIN_x"), Some(true));
    }
}
