//! `Connection`: a handle on a pooled raw connection, and every way to run
//! a statement on it. Several handles may share one raw connection (a reuse
//! chain, GINO style): the raw connection lives in a shared [`Link`], whose
//! lock serves one operation at a time. The session's state (transaction
//! depth and status, queued SQL) is the raw connection's own
//! [`Session`]; the link only points at it.

use std::fmt;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;

use crate::context::TaskKey;
use crate::cursor::Cursor;
use crate::driver::AnyConnection;
use crate::driver::session::{Session, StreamGuard};
use crate::engine::EngineInner;
use crate::error::{Error, ErrorKind, Result};
use crate::exec::{Timing, deserialize_all, first_row, statement_span};
use crate::manager::DriverManager;
use crate::params::{IntoParams, Params};
use crate::pool::{BoxFuture, Pooled};
use crate::row::Row;
use crate::stream::RowStream;
use crate::transaction::{Transaction, TxOptions};
use crate::value::{FromValue, Value};
use tracing::Instrument;

/// The raw connection shared by a reuse chain, checked out lazily.
pub(crate) struct Link {
    /// Locked for each operation. futures-util's mutex: its uncontended
    /// lock and unlock are one atomic each (tokio's unlock takes its
    /// waiter list's lock every time), and a handle rarely waits for it.
    raw: futures_util::lock::Mutex<Option<Pooled<DriverManager>>>,
    caller: &'static Location<'static>,
    id: AtomicU64,
    /// The root handle was released: reusers get a clear error.
    released: AtomicBool,
    /// The checked-out raw connection's session (`None` before a lazy
    /// chain checks out): readable without the operation lock, for
    /// `Drop` impls and depth queries.
    session: Mutex<Option<Arc<Session>>>,
}

type RawGuard<'a> = futures_util::lock::MutexGuard<'a, Option<Pooled<DriverManager>>>;

impl Link {
    pub(crate) fn new(caller: &'static Location<'static>, pooled: Option<Pooled<DriverManager>>) -> Self {
        Link {
            id: AtomicU64::new(pooled.as_ref().map_or(0, |p| p.id())),
            session: Mutex::new(pooled.as_ref().map(|p| Arc::clone(p.session()))),
            raw: futures_util::lock::Mutex::new(pooled),
            caller,
            released: AtomicBool::new(false),
        }
    }

    /// The raw connection's session, once checked out.
    pub(crate) fn session(&self) -> Option<Arc<Session>> {
        self.session.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_session(&self, session: Option<Arc<Session>>) {
        *self.session.lock().unwrap_or_else(|e| e.into_inner()) = session;
    }

    pub(crate) fn is_released(&self) -> bool {
        self.released.load(SeqCst)
    }

    /// Locks the raw connection for one operation, checking it out first if
    /// this chain is lazy and has not yet. A raw connection found broken
    /// (lost, or a statement abandoned mid-flight where the protocol cannot
    /// resume) fails the operation at once, before anything is sent, as
    /// SQLAlchemy reports an invalidated connection: outside a
    /// transaction it is given back (and discarded), so the next operation
    /// checks out a fresh one; inside one, every operation fails until the
    /// transaction is ended.
    async fn lock(&self, engine: &EngineInner) -> Result<RawGuard<'_>> {
        let mut raw = self.raw.lock().await;
        if self.is_released() {
            return Err(Error::usage(
                "the connection this one reused has been released; acquire a new one",
            ));
        }
        if let Some(pooled) = raw.as_ref() {
            if pooled.is_broken() {
                if pooled.session().depth() > 0 {
                    return Err(Error::new(
                        ErrorKind::Disconnected,
                        "the connection of this transaction was lost (or a statement of it was \
                         abandoned mid-flight): the transaction is gone; roll it back",
                    ));
                }
                *raw = None;
                self.set_session(None);
                return Err(Error::new(
                    ErrorKind::Disconnected,
                    "this connection was lost (or a statement on it was abandoned mid-flight \
                     where the protocol cannot resume); the next statement runs on a new one",
                ));
            } else if pooled.session().stream_open() {
                return Err(Error::usage(
                    "a row stream or cursor is still open on this connection: read it to the \
                     end or drop it before running another statement on the connection",
                ));
            }
        }
        if raw.is_none() {
            let pooled = engine.core.acquire(self.caller).await?;
            self.id.store(pooled.id(), SeqCst);
            self.set_session(Some(Arc::clone(pooled.session())));
            *raw = Some(pooled);
        }
        Ok(raw)
    }

    /// Whether connectionless work may join this chain now. One whose row
    /// stream is still open is busy until the stream ends: passed over
    /// outside a transaction (`Ok(false)`: the work takes a connection of
    /// its own) and refused inside one, never waited for.
    pub(crate) fn joinable(&self) -> Result<bool> {
        match self.session() {
            Some(s) if s.stream_open() && s.depth() > 0 => Err(Error::usage(
                "a row stream or cursor is still open on this task's transaction: read it to \
                 the end or drop it before running another statement in the transaction",
            )),
            Some(s) => Ok(!s.stream_open()),
            None => Ok(true),
        }
    }

    /// Returns the raw connection to the pool now (the root handle's drop).
    fn release(self: &Arc<Self>, invalidate: bool) {
        self.released.store(true, SeqCst);
        let finish = move |pooled: Option<Pooled<DriverManager>>| {
            if let (Some(pooled), true) = (pooled, invalidate) {
                pooled.invalidate();
            }
        };
        match self.raw.try_lock() {
            Some(mut raw) => finish(raw.take()),
            // A reuser is mid-statement: release once it is done.
            None => {
                if let Ok(handle) = tokio::runtime::Handle::try_current() {
                    let link = Arc::clone(self);
                    handle.spawn(async move { finish(link.raw.lock().await.take()) });
                }
            }
        }
    }
}

/// `"name"` (or the dialect's quote), with embedded quotes doubled; a
/// dotted name quotes each part.
fn quote_identifier(name: &str, quote: char) -> Result<String> {
    if name.is_empty() || name.split('.').any(str::is_empty) {
        return Err(Error::new(
            ErrorKind::Param,
            format!("invalid identifier {name:?}"),
        ));
    }
    Ok(name
        .split('.')
        .map(|part| {
            let doubled = part.replace(quote, &format!("{quote}{quote}"));
            format!("{quote}{doubled}{quote}")
        })
        .collect::<Vec<_>>()
        .join("."))
}

fn raw_of<'g>(guard: &'g mut RawGuard<'_>) -> &'g mut AnyConnection {
    guard.as_mut().expect("Link::lock checks the connection out")
}

/// One statement on the locked raw connection. `finish` logs it (see
/// [`Timing`]) and marks a lost connection for discarding.
struct Running<'l> {
    raw: RawGuard<'l>,
    timing: Timing,
}

impl Running<'_> {
    fn raw(&mut self) -> &mut AnyConnection {
        raw_of(&mut self.raw)
    }

    fn finish<T>(mut self, sql: &str, result: Result<T>) -> Result<T> {
        match self.raw.as_mut() {
            Some(pooled) => self.timing.finish(pooled, sql, result),
            None => result,
        }
    }
}

/// A connection of an [`Engine`](crate::Engine)'s pool. Dropping it returns
/// the raw connection (rolled back if a transaction is open); a reusing
/// connection leaves the raw connection with its root.
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
    engine: Arc<EngineInner>,
    link: Arc<Link>,
    /// This handle owns the raw connection (it is not reusing another's).
    root: bool,
    /// The task stack a reusable root sits on.
    stacked: Option<TaskKey>,
    /// The transaction level (depth, id) this handle runs in while a
    /// `Transaction` holds it: once that level has ended (by an outer
    /// level, or the server), its statements fail instead of running
    /// outside any transaction.
    pub(crate) level: Option<(usize, u64)>,
}

/// Refuses a statement of a transaction level that has ended.
fn check_level(level: Option<(usize, u64)>, raw: &AnyConnection) -> Result<()> {
    match level {
        Some((depth, id)) if !raw.session().is_live(depth, id) => Err(Error::usage(
            "this transaction has ended (an outer level or the server ended it): its \
             statements would run outside any transaction",
        )),
        _ => Ok(()),
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id())
            .field("root", &self.root)
            .field("url", &self.engine.core.url)
            .finish()
    }
}

impl Connection {
    /// A root handle on `link`; a reusable one is pushed on the current
    /// task's stack (a connectionless statement's private one is not: it
    /// lives for one statement, so nothing could reuse it).
    pub(crate) fn root(engine: Arc<EngineInner>, link: Arc<Link>, reusable: bool) -> Self {
        let stacked = reusable.then(|| engine.contexts.push(&link));
        Connection {
            engine,
            link,
            root: true,
            stacked,
            level: None,
        }
    }

    /// A handle reusing another connection's raw connection.
    pub(crate) fn reusing(engine: Arc<EngineInner>, link: Arc<Link>) -> Self {
        Connection {
            engine,
            link,
            root: false,
            stacked: None,
            level: None,
        }
    }

    /// The pool's number for the raw connection underneath; 0 while a lazy
    /// connection has not checked one out yet.
    pub fn id(&self) -> u64 {
        self.link.id.load(SeqCst)
    }

    /// Whether this handle owns its raw connection (rather than reusing one).
    pub fn is_root(&self) -> bool {
        self.root
    }

    /// The depth of the open transaction on the raw connection (0: none),
    /// as the connection's session knows it.
    pub fn transaction_depth(&self) -> usize {
        self.link.session().map_or(0, |s| s.depth())
    }

    pub(crate) fn link(&self) -> &Arc<Link> {
        &self.link
    }

    /// Returns the connection to the pool (the same as dropping it).
    pub async fn release(self) {
        drop(self);
    }

    /// Closes the raw connection instead of returning it to the pool (for a
    /// reusing handle: the shared one, which its root then no longer has).
    pub fn invalidate(self) {
        self.link.release(true);
    }

    /// Binds parameters: named ones are rewritten to the dialect's placeholders.
    fn bind<'s>(&self, sql: &'s str, params: Params) -> Result<(std::borrow::Cow<'s, str>, Vec<Value>)> {
        self.engine.core.bind(sql, params)
    }

    /// Locks the raw connection for one statement (checking it out if lazy).
    async fn start(&self) -> Result<Running<'_>> {
        let mut raw = self.link.lock(&self.engine).await?;
        check_level(self.level, raw_of(&mut raw))?;
        Ok(Running {
            raw,
            timing: self.engine.core.timing(),
        })
    }

    /// Runs one operation through the driver trait (see [`Running`]).
    async fn run<T>(
        &self,
        sql: &str,
        op: impl for<'r> FnOnce(&'r mut AnyConnection, &'r str) -> BoxFuture<'r, Result<T>>,
    ) -> Result<T> {
        let mut running = self.start().await?;
        let result = op(running.raw(), sql).await;
        running.finish(sql, result)
    }

    /// Runs a statement; returns the number of rows affected.
    pub async fn execute(&mut self, sql: &str, params: impl IntoParams) -> Result<u64> {
        let (sql, values) = self.bind(sql, params.into_params())?;
        // Not through `run`: awaited in place, its future is not boxed.
        let mut running = self.start().await?;
        let result = running
            .raw()
            .execute_in_place(&sql, values)
            .instrument(statement_span(&sql))
            .await;
        running.finish(&sql, result)
    }

    /// Runs one prepared statement once per parameter set, atomically (in a
    /// transaction of its own when none is open). Returns the total rows affected.
    pub async fn execute_many<P: IntoParams>(
        &mut self,
        sql: &str,
        params: impl IntoIterator<Item = P>,
    ) -> Result<u64> {
        let style = self.engine.core.driver.placeholder();
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
        self.run(&sql, |raw, sql| raw.execute_many(sql, sets)).await
    }

    /// Bulk-loads rows into `table`: binary COPY on PostgreSQL, one prepared
    /// INSERT in a transaction elsewhere. Each row is positional (a tuple,
    /// array or `Vec`, in `columns` order) or named (`params!`, a serde
    /// struct: matched to `columns` by name). Table and column names are
    /// quoted, so they are taken literally (case included). Returns the rows loaded.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> reservoir::Result<()> {
    /// #[derive(serde::Serialize)]
    /// struct Emp { id: i64, name: String }
    /// let engine = reservoir::Engine::connect("sqlite::memory:").await?;
    /// engine.execute("CREATE TABLE emp (id INTEGER PRIMARY KEY, name TEXT)", ()).await?;
    /// let mut conn = engine.acquire().await?;
    /// let rows = (1..=3).map(|id| reservoir::Params::from_serde(&Emp { id, name: format!("e{id}") }));
    /// let rows: Vec<_> = rows.collect::<Result<_, _>>()?;
    /// assert_eq!(conn.copy_in("emp", &["id", "name"], rows).await?, 3);
    /// # Ok(()) }
    /// ```
    pub async fn copy_in<P: IntoParams>(
        &mut self,
        table: &str,
        columns: &[&str],
        rows: impl IntoIterator<Item = P>,
    ) -> Result<u64> {
        let quote = self.engine.core.driver.identifier_quote();
        let quoted: Vec<String> = columns
            .iter()
            .map(|c| quote_identifier(c, quote))
            .collect::<Result<_>>()?;
        let table = quote_identifier(table, quote)?;
        let rows = rows
            .into_iter()
            .map(|p| match p.into_params() {
                Params::None => Ok(Vec::new()),
                Params::Positional(values) => Ok(values),
                Params::Named(mut named) => columns
                    .iter()
                    .map(|c| {
                        let pos = named.iter().position(|(n, _)| n == c).ok_or_else(|| {
                            Error::new(ErrorKind::Param, format!("a row has no value for column {c}"))
                        })?;
                        Ok(named.swap_remove(pos).1)
                    })
                    .collect(),
            })
            .collect::<Result<Vec<_>>>()?;
        let what = format!("COPY {table}");
        self.run(&what, |raw, _| raw.copy_in(&table, &quoted, rows)).await
    }

    pub(crate) async fn query(
        &mut self,
        sql: &str,
        params: Params,
        limit: Option<usize>,
    ) -> Result<Vec<Row>> {
        let (sql, values) = self.bind(sql, params)?;
        // Not through `run`: awaited in place, its future is not boxed.
        let mut running = self.start().await?;
        let result = running
            .raw()
            .query_in_place(&sql, values, limit)
            .instrument(statement_span(&sql))
            .await;
        running.finish(&sql, result)
    }

    /// The first row; an error of kind [`ErrorKind::NoRows`] if there is none.
    pub async fn fetch_one(&mut self, sql: &str, params: impl IntoParams) -> Result<Row> {
        first_row(self.query(sql, params.into_params(), Some(1)).await?)
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
        deserialize_all(&self.fetch_all(sql, params).await?)
    }

    /// Streams the rows: they are read as the stream is polled (a little
    /// ahead at most), so memory stays flat for any result size.
    pub fn fetch(&mut self, sql: &str, params: impl IntoParams) -> RowStream<'_> {
        match self.bind(sql, params.into_params()) {
            Ok((sql, values)) => {
                let sql = sql.into_owned();
                let (link, engine) = (Arc::clone(&self.link), Arc::clone(&self.engine));
                let level = self.level;
                RowStream::opening(Box::pin(async move {
                    let mut raw = link.lock(&engine).await?;
                    let raw = raw_of(&mut raw);
                    check_level(level, raw)?;
                    raw.session().note_statement(&sql);
                    let guard = StreamGuard::new(raw.session());
                    Ok((raw.open_rows(&sql, values), guard))
                }))
            }
            Err(e) => RowStream::failed(e),
        }
    }

    /// Opens a cursor over a query (asyncpg style: `forward`, `fetch`).
    /// Inside a transaction only, on every dialect (PostgreSQL's cursors
    /// live in one; asyncpg refuses them outside one too): otherwise a
    /// [`Usage`](ErrorKind::Usage) error.
    pub async fn cursor(&mut self, sql: &str, params: impl IntoParams) -> Result<Cursor<'_>> {
        let (sql, values) = self.bind(sql, params.into_params())?;
        let mut running = self.start().await?;
        let session = Arc::clone(running.raw().session());
        if session.depth() == 0 && session.status() == crate::driver::session::TxStatus::Idle {
            return Err(Error::usage(
                "a cursor needs a transaction: call cursor() on a Transaction",
            ));
        }
        let result = running.raw().open_cursor(&sql, values).await;
        let source = running.finish(&sql, result)?;
        Ok(Cursor::new(source, StreamGuard::new(&session)))
    }

    /// Begins a transaction, or a savepoint if the raw connection is
    /// already inside one (a reused connection's).
    pub async fn begin(&mut self) -> Result<Transaction<'_>> {
        self.begin_with(TxOptions::new()).await
    }

    /// Begins a transaction with an isolation level or read-only mode.
    pub async fn begin_with(&mut self, options: TxOptions) -> Result<Transaction<'_>> {
        let level = self.begin_at(options).await?;
        Ok(Transaction::borrowed(self, level))
    }

    /// BEGIN at depth 1, SAVEPOINT deeper; returns the new level's depth
    /// and id. Refused (`Usage`) where the session says a transaction was
    /// begun with raw SQL, or a nested level asks for another isolation
    /// level than the outer one.
    pub(crate) async fn begin_at(&mut self, options: TxOptions) -> Result<(usize, u64)> {
        let mut running = self.start().await?;
        let session = Arc::clone(running.raw().session());
        let depth = session.check_begin(&options)?;
        if let (true, Some(asked), None) = (
            depth > 1,
            options.isolation_level(),
            session.outer_options().isolation_level(),
        ) {
            let actual = match self.engine.core.driver.isolation_query() {
                Some(sql) => {
                    let rows = running.raw().query_in_place(sql, Vec::new(), Some(1)).await;
                    // `finish` gives the connection's lock back: take it again.
                    let level: String = first_row(running.finish(sql, rows)?)?.get(0)?;
                    running = self.start().await?;
                    level.to_ascii_uppercase().replace('-', " ")
                }
                None => "SERIALIZABLE".to_string(),
            };
            if actual != asked.sql() {
                return Err(Error::usage(format!(
                    "a nested transaction cannot change the isolation level (outer: {actual}, asked: {})",
                    asked.sql()
                )));
            }
        }
        let sql = if depth == 1 {
            self.engine.core.driver.begin_sql(&options)?
        } else {
            format!("SAVEPOINT {}", crate::driver::session::savepoint_name(depth))
        };
        let result = running.raw().simple(&sql).await;
        running.finish(&sql, result)?;
        Ok((depth, session.push_level(depth, options)))
    }

    /// Runs transaction-control SQL.
    pub(crate) async fn simple(&mut self, sql: &str) -> Result<()> {
        self.run(sql, |raw, sql| raw.simple(sql)).await
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(key) = self.stacked {
            self.engine.contexts.remove(key, &self.link);
        }
        if self.root {
            self.link.release(false);
        }
    }
}
