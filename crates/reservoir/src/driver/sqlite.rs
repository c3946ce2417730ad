//! SQLite through rusqlite. rusqlite is blocking, so every connection lives
//! on a thread of its own and the async side talks to it over channels: no
//! shared thread pool to queue behind, and a connection's commands run in
//! the order they were sent.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection as Sqlite, OpenFlags, ffi};
use tokio::sync::oneshot;

use super::session::{Session, TxStatus};
use super::{AnyConnection, Driver, DriverOptions, Prefetch, RawConnection, RowSource};
use crate::error::{Error, ErrorKind, Result};
use crate::pool::{BoxFuture, Interrupt};
use crate::row::{Column, Row};
use crate::sql::Placeholder;
use crate::url::{DatabaseUrl, Dialect};
use crate::value::Value;

/// How long a writer waits for a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

static MEMORY_DB_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Opens SQLite connections to one database file (or one shared in-memory database).
pub struct SqliteDriver {
    path: String,
    flags: OpenFlags,
    memory: bool,
    cache_size: usize,
    statement_timeout: Option<Duration>,
    load: Arc<Load>,
    /// Keeps a shared in-memory database alive while the pool holds no
    /// connection (pool_size 0, dispose): it is dropped with the engine.
    _keeper: Option<Mutex<Sqlite>>,
}

impl SqliteDriver {
    /// A driver for the database `url` names.
    pub fn new(url: &DatabaseUrl, options: &DriverOptions) -> Result<Self> {
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if url.param("mode") == Some("ro") {
            flags = OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        }
        for (key, _) in url.query() {
            if key != "mode" {
                return Err(Error::new(
                    ErrorKind::Url,
                    format!("unknown SQLite URL parameter '{key}' in {url}"),
                ));
            }
        }
        let memory = url.is_memory();
        let path = if memory {
            // One database per engine, shared by its connections: the memdb
            // VFS (unlike shared cache) keeps normal locking, so busy_timeout works.
            let n = MEMORY_DB_COUNTER.fetch_add(1, SeqCst);
            format!("file:/reservoir-memory-{}-{n}?vfs=memdb", std::process::id())
        } else {
            url.database().unwrap_or_default().to_string()
        };
        let keeper = if memory {
            let keeper = Sqlite::open_with_flags(&path, flags).map_err(connect_error)?;
            Some(Mutex::new(keeper))
        } else {
            None
        };
        Ok(SqliteDriver {
            path,
            flags,
            memory,
            cache_size: options.statement_cache_size,
            statement_timeout: options.statement_timeout,
            load: Arc::default(),
            _keeper: keeper,
        })
    }

    fn open(&self) -> Result<Sqlite> {
        let conn = Sqlite::open_with_flags(&self.path, self.flags).map_err(connect_error)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(connect_error)?;
        conn.set_prepared_statement_cache_capacity(self.cache_size);
        if !self.memory && !self.flags.contains(OpenFlags::SQLITE_OPEN_READ_ONLY) {
            // WAL: readers never block the writer; NORMAL sync is safe in WAL.
            conn.pragma_update(None, "journal_mode", "WAL")
                .map_err(connect_error)?;
            conn.pragma_update(None, "synchronous", "NORMAL")
                .map_err(connect_error)?;
        }
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(connect_error)?;
        Ok(conn)
    }
}

impl Driver for SqliteDriver {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn placeholder(&self) -> Placeholder {
        Placeholder::Question
    }

    /// IMMEDIATE takes the write lock at BEGIN, so two writers queue on the
    /// busy timeout instead of one failing when it upgrades its read lock.
    /// SQLite transactions are always serializable, which satisfies any
    /// requested isolation level.
    fn begin_sql(&self, options: &super::session::TxOptions) -> Result<String> {
        Ok(if options.is_read_only() {
            READ_ONLY_BEGIN
        } else {
            "BEGIN IMMEDIATE"
        }
        .into())
    }

    fn connect(&self) -> BoxFuture<'_, Result<AnyConnection>> {
        Box::pin(async move {
            let (ready_tx, ready_rx) = oneshot::channel();
            let (tx, rx) = std_mpsc::channel();
            let state = Arc::new(WorkerState {
                load: Arc::clone(&self.load),
                timeout: self.statement_timeout,
                cache_size: self.cache_size,
                // A new connection is outside a transaction: set before the
                // caller can see it, or a quick return would look dirty.
                autocommit: AtomicBool::new(true),
                ..WorkerState::default()
            });
            let worker_state = Arc::clone(&state);
            let opened = self.open();
            // The worker looks at the runtime's load to decide whether to spin.
            let runtime = tokio::runtime::Handle::try_current().ok();
            let spawned = std::thread::Builder::new()
                .name("reservoir-sqlite".into())
                .spawn(move || match opened {
                    Ok(conn) => {
                        if worker_state.timeout.is_some() {
                            let clock = Arc::clone(&worker_state);
                            conn.progress_handler(1000, Some(move || clock.expired()));
                        }
                        let _ = ready_tx.send(Ok(conn.get_interrupt_handle()));
                        worker(conn, rx, &worker_state, runtime);
                        worker_state.gone.store(true, SeqCst);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                });
            if let Err(e) = spawned {
                return Err(Error::new(
                    ErrorKind::Connect,
                    format!("cannot start a SQLite worker thread: {e}"),
                ));
            }
            let interrupt = ready_rx.await.map_err(|_| {
                Error::new(ErrorKind::Connect, "the SQLite worker thread died while opening")
            })??;
            let interrupt = Arc::new(SqliteInterrupt(interrupt));
            Ok(AnyConnection::Sqlite(Box::new(SqliteConnection {
                worker: Worker {
                    tx,
                    state,
                    interrupt: Arc::clone(&interrupt),
                },
                interrupt,
            })))
        })
    }
}

fn connect_error(e: rusqlite::Error) -> Error {
    Error::new(ErrorKind::Connect, format!("cannot open SQLite database: {e}"))
}

/// How busy an engine's SQLite connections are, shared by all of them:
/// spinning pays only while the cores are otherwise idle.
#[derive(Default)]
struct Load {
    /// Commands sent and not yet finished, over every connection.
    in_flight: AtomicUsize,
    /// Workers spinning for their next command (0 or 1).
    spinners: AtomicUsize,
}

impl WorkerState {
    fn started(&self) {
        self.pending.fetch_add(1, SeqCst);
        self.load.in_flight.fetch_add(1, SeqCst);
    }

    fn finished(&self) {
        self.load.in_flight.fetch_sub(1, SeqCst);
        self.pending.fetch_sub(1, SeqCst);
    }
}

impl WorkerState {
    /// Starts the statement clock (with `statement_timeout` set).
    fn arm(&self) {
        if let Some(timeout) = self.timeout {
            *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(std::time::Instant::now() + timeout);
        }
    }

    /// Whether the running statement has passed its deadline (the progress
    /// handler asks this every few thousand VM steps and interrupts if so).
    fn expired(&self) -> bool {
        self.deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|d| std::time::Instant::now() >= d)
    }

    /// Stops the clock; an interrupt caused by the deadline becomes `Timeout`.
    fn disarm<T>(&self, result: Result<T>) -> Result<T> {
        let expired = self.expired();
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) = None;
        match result {
            Err(e) if expired && e.kind() == &ErrorKind::Interrupted => Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "statement cancelled after statement_timeout ({:?})",
                    self.timeout.unwrap_or_default()
                ),
            )),
            other => other,
        }
    }
}

/// What the async side can see of a worker.
#[derive(Default)]
struct WorkerState {
    cache_size: usize,
    timeout: Option<Duration>,
    deadline: Mutex<Option<std::time::Instant>>,
    load: Arc<Load>,
    /// Commands sent and not yet finished (rows sessions included).
    pending: AtomicUsize,
    /// Whether the connection is outside a transaction (after the last command).
    autocommit: AtomicBool,
    /// Transaction status and levels, queued SQL (see `Session`); the
    /// worker reports SQLite's autocommit flag to it after every command.
    session: Arc<Session>,
    /// The sequence number of the command the worker is running (0: none);
    /// its lock orders an abandoning caller's interrupt against the
    /// worker moving on to the next command.
    running: Mutex<u64>,
    /// Numbers the commands sent.
    sent: AtomicU64,
    /// The worker thread has ended.
    gone: AtomicBool,
}

type Reply<T> = oneshot::Sender<Result<T>>;

/// A read-only transaction: SQLite has no READ ONLY transactions, so
/// `query_only` is on while it lasts (the worker turns it off at its end).
const READ_ONLY_BEGIN: &str = "BEGIN DEFERRED; PRAGMA query_only = ON";

enum Command {
    Execute(Box<str>, Vec<Value>, Reply<u64>),
    ExecuteMany(Box<str>, Vec<Vec<Value>>, Reply<u64>),
    Query(Box<str>, Vec<Value>, Option<usize>, Reply<Vec<Row>>),
    Rows(Box<str>, Vec<Value>, std_mpsc::Receiver<Pull>),
    Simple(Box<str>, Reply<()>),
    /// Fire and forget: errors are dropped (a rollback of a dropped transaction).
    Enqueued(Box<str>),
    Reset(Reply<()>),
    Ping(Reply<()>),
}

enum Pull {
    Fetch(usize, Reply<Vec<Row>>),
    Forward(u64, Reply<u64>),
}

/// An open SQLite connection: a handle on its worker thread (held by the
/// pool as an [`AnyConnection`]).
pub struct SqliteConnection {
    worker: Worker,
    interrupt: Arc<SqliteInterrupt>,
}

/// Sends commands to the connection's worker thread. Cloned, it is the
/// handle of reads that share the connection (`pipeline_reads`): they queue
/// on the thread in the order sent.
#[derive(Clone)]
pub(crate) struct Worker {
    tx: std_mpsc::Sender<(u64, Command)>,
    state: Arc<WorkerState>,
    interrupt: Arc<SqliteInterrupt>,
}

/// Whether the runtime has no more tasks than workers: then a spinning
/// caller keeps no other task from running.
fn is_quiet(runtime: Option<&tokio::runtime::Handle>) -> bool {
    runtime.is_some_and(|h| {
        let metrics = h.metrics();
        metrics.num_alive_tasks() <= metrics.num_workers()
    })
}

/// How long a caller alone in flight spins for its answer before it parks.
const CALLER_SPIN: Duration = Duration::from_micros(20);

struct SqliteInterrupt(rusqlite::InterruptHandle);

impl Interrupt for SqliteInterrupt {
    fn interrupt(&self) -> BoxFuture<'_, ()> {
        self.0.interrupt();
        Box::pin(async {})
    }
}

fn worker_gone() -> Error {
    Error::new(ErrorKind::Disconnected, "the SQLite worker thread has stopped")
}

/// A command sent to the worker thread, awaiting its reply.
struct Request<T> {
    sent: Result<()>,
    rx: oneshot::Receiver<Result<T>>,
    /// The only statement in flight when it was sent.
    alone: bool,
    abandon: Abandon,
}

/// Interrupts the command it names if the future awaiting its answer is
/// dropped while the worker runs it (a caller's timeout must not leave a
/// long statement running on the connection); a command not yet started
/// is skipped by the worker, which sees its reply channel closed.
struct Abandon {
    state: Arc<WorkerState>,
    interrupt: Arc<SqliteInterrupt>,
    seq: u64,
    answered: bool,
}

impl Drop for Abandon {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        let running = self.state.running.lock().unwrap_or_else(|e| e.into_inner());
        if *running == self.seq {
            self.interrupt.0.interrupt();
        }
    }
}

impl<T> Request<T> {
    async fn answer(self) -> Result<T> {
        let Request {
            sent,
            mut rx,
            alone,
            mut abandon,
        } = self;
        if sent.is_err() {
            abandon.answered = true;
        }
        sent?;
        // The only statement in flight: nothing else wants this core, and
        // a short statement answers sooner than a park and wake-up would.
        if alone {
            let started = std::time::Instant::now();
            while started.elapsed() < CALLER_SPIN {
                match rx.try_recv() {
                    Ok(result) => {
                        abandon.answered = true;
                        return result;
                    }
                    Err(oneshot::error::TryRecvError::Closed) => {
                        abandon.answered = true;
                        return Err(worker_gone());
                    }
                    Err(oneshot::error::TryRecvError::Empty) => {
                        for _ in 0..32 {
                            std::hint::spin_loop();
                        }
                    }
                }
            }
        }
        let answer = rx.await;
        abandon.answered = true;
        answer.map_err(|_| worker_gone())?
    }
}

impl Worker {
    /// Sends a command (after the session's queued SQL, which runs first:
    /// commands run in the order sent); returns its sequence number.
    fn send(&self, command: Command) -> Result<u64> {
        if self.state.session.has_pending() {
            for sql in self.state.session.take_pending() {
                self.send_one(Command::Enqueued(sql.into()))?;
            }
        }
        self.send_one(command)
    }

    fn send_one(&self, command: Command) -> Result<u64> {
        let seq = self.state.sent.fetch_add(1, SeqCst) + 1;
        self.state.started();
        self.tx.send((seq, command)).map_err(|_| {
            self.state.finished();
            worker_gone()
        })?;
        Ok(seq)
    }

    /// Sends a command now; [`Request::answer`] waits for its reply.
    fn request<T: Send + 'static>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Request<T> {
        let (reply, rx) = oneshot::channel();
        let sent = self.send(make(reply));
        let alone = self.state.load.in_flight.load(SeqCst) == 1
            && is_quiet(tokio::runtime::Handle::try_current().ok().as_ref());
        let abandon = Abandon {
            state: Arc::clone(&self.state),
            interrupt: Arc::clone(&self.interrupt),
            seq: *sent.as_ref().unwrap_or(&0),
            answered: false,
        };
        Request {
            sent: sent.map(drop),
            rx,
            alone,
            abandon,
        }
    }

    /// A query sent now; the future waits for its rows.
    pub(crate) fn query(
        &self,
        sql: &str,
        params: Vec<Value>,
        limit: Option<usize>,
    ) -> impl Future<Output = Result<Vec<Row>>> + Send + use<> {
        self.request(|r| Command::Query(sql.into(), params, limit, r))
            .answer()
    }
}

impl SqliteConnection {
    /// The handle for reads that share this connection.
    pub(crate) fn shared_reader(&self) -> Worker {
        self.worker.clone()
    }

    fn send(&self, command: Command) -> Result<()> {
        self.worker.send(command).map(drop)
    }

    /// A command sent now, its reply as a boxed future (the trait's form).
    fn call<T: Send + 'static>(
        &self,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> BoxFuture<'static, Result<T>> {
        Box::pin(self.worker.request(make).answer())
    }

    /// [`RawConnection::execute`], as a future of its own type.
    pub(crate) fn run_execute(
        &mut self,
        sql: &str,
        params: Vec<Value>,
    ) -> impl Future<Output = Result<u64>> + Send + use<> {
        self.worker
            .request(|r| Command::Execute(sql.into(), params, r))
            .answer()
    }

    /// [`RawConnection::query`], as a future of its own type.
    pub(crate) fn run_query(
        &mut self,
        sql: &str,
        params: Vec<Value>,
        limit: Option<usize>,
    ) -> impl Future<Output = Result<Vec<Row>>> + Send + use<> {
        self.worker.query(sql, params, limit)
    }
}

impl RawConnection for SqliteConnection {
    fn execute<'a>(&'a mut self, sql: &'a str, params: Vec<Value>) -> BoxFuture<'a, Result<u64>> {
        Box::pin(self.run_execute(sql, params))
    }

    fn execute_many<'a>(&'a mut self, sql: &'a str, params: Vec<Vec<Value>>) -> BoxFuture<'a, Result<u64>> {
        self.call(|r| Command::ExecuteMany(sql.into(), params, r))
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
        let (pulls, rx) = std_mpsc::channel();
        let sent = self.send(Command::Rows(sql.into(), params, rx));
        Box::new(SqliteRows {
            pulls,
            failed: sent.is_err(),
            prefetch: Prefetch::default(),
        })
    }

    fn simple<'a>(&'a mut self, sql: &'a str) -> BoxFuture<'a, Result<()>> {
        self.call(|r| Command::Simple(sql.into(), r))
    }

    fn ping(&mut self) -> BoxFuture<'_, Result<()>> {
        self.call(Command::Ping)
    }

    fn session(&self) -> &Arc<Session> {
        &self.worker.state.session
    }

    /// SQLite's session state (temp tables, pragmas) belongs to the
    /// engine's own connections: a full reset is a rollback here too.
    fn reset(&mut self, full: bool) -> BoxFuture<'_, Result<()>> {
        // Queued SQL is a rollback at most: the reset's ROLLBACK covers it.
        self.worker.state.session.take_pending();
        let reset = self.call(Command::Reset);
        let session = Arc::clone(&self.worker.state.session);
        Box::pin(async move {
            reset.await?;
            session.reset_done(full);
            Ok(())
        })
    }

    fn needs_reset(&self) -> bool {
        let state = &self.worker.state;
        state.pending.load(SeqCst) > 0 || !state.autocommit.load(SeqCst) || state.session.has_pending()
    }

    fn is_broken(&self) -> bool {
        self.worker.state.gone.load(SeqCst)
    }

    fn interrupt_handle(&self) -> Option<Arc<dyn Interrupt>> {
        Some(Arc::clone(&self.interrupt) as Arc<dyn Interrupt>)
    }
}

struct SqliteRows {
    pulls: std_mpsc::Sender<Pull>,
    failed: bool,
    prefetch: Prefetch,
}

/// Sends a request to the worker now; the future waits for its answer.
fn pull<T: Send + 'static>(
    pulls: &std_mpsc::Sender<Pull>,
    failed: bool,
    make: impl FnOnce(Reply<T>) -> Pull,
) -> BoxFuture<'static, Result<T>> {
    let (reply, rx) = oneshot::channel();
    let sent = if failed {
        Err(worker_gone())
    } else {
        pulls.send(make(reply)).map_err(|_| worker_gone())
    };
    Box::pin(async move {
        sent?;
        rx.await.map_err(|_| worker_gone())?
    })
}

impl RowSource for SqliteRows {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Row>>> {
        let (pulls, failed) = (&self.pulls, self.failed);
        self.prefetch
            .poll_next(cx, |n| pull(pulls, failed, |r| Pull::Fetch(n, r)))
    }
    fn fetch(&mut self, n: usize) -> BoxFuture<'static, Result<Vec<Row>>> {
        pull(&self.pulls, self.failed, |r| Pull::Fetch(n, r))
    }
    fn forward(&mut self, n: u64) -> BoxFuture<'static, Result<u64>> {
        pull(&self.pulls, self.failed, |r| Pull::Forward(n, r))
    }
}

// ---- the worker thread -------------------------------------------------

/// How long an idle worker spins for its next command before it sleeps.
/// A caller that awaits one statement after another sends the next within
/// microseconds: catching it while spinning saves a futex wake-up, which
/// costs more than a point select itself.
const WORKER_SPIN: Duration = Duration::from_micros(50);

fn next_command(
    rx: &std_mpsc::Receiver<(u64, Command)>,
    load: &Load,
    runtime: Option<&tokio::runtime::Handle>,
) -> Option<(u64, Command)> {
    // Spin only while no other statement is in flight (the cores are free),
    // and one spinner per engine at most: under load, spinning threads would
    // only take the cores from the threads doing the work.
    if load.in_flight.load(SeqCst) == 0
        && is_quiet(runtime)
        && load.spinners.compare_exchange(0, 1, SeqCst, SeqCst).is_ok()
    {
        let started = std::time::Instant::now();
        let spun = loop {
            match rx.try_recv() {
                Ok(command) => break Some(Some(command)),
                Err(std_mpsc::TryRecvError::Disconnected) => break Some(None),
                Err(std_mpsc::TryRecvError::Empty) if started.elapsed() < WORKER_SPIN => {
                    for _ in 0..32 {
                        std::hint::spin_loop();
                    }
                }
                Err(std_mpsc::TryRecvError::Empty) => break None,
            }
        };
        load.spinners.store(0, SeqCst);
        if let Some(command) = spun {
            return command;
        }
    }
    rx.recv().ok()
}

impl Command {
    /// Whether the caller has given up on the answer (dropped its future)
    /// before the command started: then it is not run at all.
    fn abandoned(&self) -> bool {
        match self {
            Command::Execute(.., r) | Command::ExecuteMany(.., r) => r.is_closed(),
            Command::Query(.., r) => r.is_closed(),
            Command::Simple(_, r) | Command::Reset(r) | Command::Ping(r) => r.is_closed(),
            Command::Rows(..) | Command::Enqueued(_) => false,
        }
    }
}

fn worker(
    conn: Sqlite,
    rx: std_mpsc::Receiver<(u64, Command)>,
    state: &WorkerState,
    runtime: Option<tokio::runtime::Handle>,
) {
    let mut shapes = Shapes::new(state.cache_size);
    // `query_only` is on for a read-only transaction (READ_ONLY_BEGIN).
    let mut query_only = false;
    while let Some((seq, command)) = next_command(&rx, &state.load, runtime.as_ref()) {
        if command.abandoned() {
            state.finished();
            continue;
        }
        *state.running.lock().unwrap_or_else(|e| e.into_inner()) = seq;
        state.arm();
        match command {
            Command::Execute(sql, params, reply) => {
                let result = execute(&conn, &sql, &params);
                finish(&conn, state, reply, result)
            }
            Command::ExecuteMany(sql, params, reply) => {
                let result = execute_many(&conn, &sql, &params);
                finish(&conn, state, reply, result)
            }
            Command::Query(sql, params, limit, reply) => {
                let result = query(&conn, &mut shapes, &sql, &params, limit.unwrap_or(usize::MAX));
                finish(&conn, state, reply, result)
            }
            Command::Simple(sql, reply) => {
                let result = conn.execute_batch(&sql).map_err(map_error);
                if result.is_ok() && &*sql == READ_ONLY_BEGIN {
                    query_only = true;
                }
                finish(&conn, state, reply, result)
            }
            Command::Enqueued(sql) => {
                let result = conn.execute_batch(&sql);
                if let Err(error) = &result {
                    tracing::debug!(%error, "queued statement failed");
                }
                publish(&conn, state, result.is_err());
                state.finished();
                result.is_err()
            }
            Command::Reset(reply) => {
                let result = if conn.is_autocommit() {
                    Ok(())
                } else {
                    conn.execute_batch("ROLLBACK").map_err(map_error)
                };
                finish(&conn, state, reply, result)
            }
            Command::Ping(reply) => {
                let result = conn.query_row("SELECT 1", [], |_| Ok(())).map_err(map_error);
                finish(&conn, state, reply, result)
            }
            Command::Rows(sql, params, pulls) => {
                let failed = serve_rows(&conn, &mut shapes, &sql, &params, &pulls);
                publish(&conn, state, failed);
                state.finished();
                failed
            }
        };
        *state.running.lock().unwrap_or_else(|e| e.into_inner()) = 0;
        if query_only && conn.is_autocommit() {
            // The read-only transaction has ended.
            match conn.execute_batch("PRAGMA query_only = OFF") {
                Ok(()) => query_only = false,
                Err(error) => tracing::debug!(%error, "cannot turn query_only off"),
            }
        }
    }
}

/// Reports the connection's state to the async side: SQLite's autocommit
/// flag is the server's own word on whether a transaction is open; a
/// failed command that ended the transaction means SQLite rolled it back.
fn publish(conn: &Sqlite, state: &WorkerState, failed: bool) {
    let idle = conn.is_autocommit();
    state.autocommit.store(idle, SeqCst);
    let session = &state.session;
    if idle && failed && session.status() != TxStatus::Idle {
        session.server_rolled_back();
    } else {
        session.observe(if idle { TxStatus::Idle } else { TxStatus::Active });
    }
}

/// Publishes the connection state before replying, so a caller that has its
/// answer also sees the session up to date. Returns whether it failed.
fn finish<T>(conn: &Sqlite, state: &WorkerState, reply: Reply<T>, result: Result<T>) -> bool {
    let result = state.disarm(result);
    let failed = result.is_err();
    publish(conn, state, failed);
    state.finished();
    let _ = reply.send(result);
    failed
}

struct Bind<'a>(&'a Value);

impl rusqlite::ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        use rusqlite::types::Value as S;
        Ok(match self.0 {
            Value::Null => ToSqlOutput::Owned(S::Null),
            Value::Bool(b) => ToSqlOutput::Owned(S::Integer((*b).into())),
            Value::I16(v) => ToSqlOutput::Owned(S::Integer((*v).into())),
            Value::I32(v) => ToSqlOutput::Owned(S::Integer((*v).into())),
            Value::I64(v) => ToSqlOutput::Owned(S::Integer(*v)),
            Value::F32(v) => ToSqlOutput::Owned(S::Real((*v).into())),
            Value::F64(v) => ToSqlOutput::Owned(S::Real(*v)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Bytes(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            Value::Decimal(d) => ToSqlOutput::Owned(S::Text(d.to_string())),
            Value::Date(d) => ToSqlOutput::Owned(S::Text(d.format("%Y-%m-%d").to_string())),
            Value::Time(t) => ToSqlOutput::Owned(S::Text(t.format("%H:%M:%S%.f").to_string())),
            Value::Timestamp(t) => ToSqlOutput::Owned(S::Text(t.format("%Y-%m-%d %H:%M:%S%.f").to_string())),
            Value::TimestampTz(t) => ToSqlOutput::Owned(S::Text(t.to_rfc3339())),
            Value::Uuid(u) => ToSqlOutput::Owned(S::Text(u.hyphenated().to_string())),
            Value::Json(j) => ToSqlOutput::Owned(S::Text(j.to_string())),
            // SQLite has no arrays: stored as JSON text, read back by `Array<T>`.
            Value::Array(_) => ToSqlOutput::Owned(S::Text(crate::value::to_json(self.0).to_string())),
        })
    }
}

fn bind_all(stmt: &mut rusqlite::Statement<'_>, params: &[Value]) -> Result<()> {
    let expected = stmt.parameter_count();
    if expected != params.len() {
        return Err(Error::new(
            ErrorKind::Param,
            format!(
                "the statement has {expected} placeholders but {} values were given",
                params.len()
            ),
        ));
    }
    for (i, value) in params.iter().enumerate() {
        stmt.raw_bind_parameter(i + 1, Bind(value)).map_err(map_error)?;
    }
    Ok(())
}

fn execute(conn: &Sqlite, sql: &str, params: &[Value]) -> Result<u64> {
    let mut stmt = conn.prepare_cached(sql).map_err(map_error)?;
    bind_all(&mut stmt, params)?;
    // raw_execute refuses statements that return rows; step through them instead.
    if stmt.column_count() > 0 {
        // Rows produced, as the other dialects count a SELECT (a statement
        // with RETURNING produces one row per row it changed).
        let mut rows = stmt.raw_query();
        let mut produced = 0;
        while rows.next().map_err(map_error)?.is_some() {
            produced += 1;
        }
        return Ok(produced);
    }
    Ok(stmt.raw_execute().map_err(map_error)? as u64)
}

fn execute_many(conn: &Sqlite, sql: &str, sets: &[Vec<Value>]) -> Result<u64> {
    // Atomic: outside a transaction the whole batch runs in one.
    let own_tx = conn.is_autocommit();
    if own_tx {
        conn.execute_batch("BEGIN IMMEDIATE").map_err(map_error)?;
    }
    let run = || -> Result<u64> {
        let mut stmt = conn.prepare_cached(sql).map_err(map_error)?;
        let mut total = 0u64;
        for params in sets {
            bind_all(&mut stmt, params)?;
            total += stmt.raw_execute().map_err(map_error)? as u64;
        }
        Ok(total)
    };
    let result = run();
    if own_tx {
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        if let Err(e) = conn.execute_batch(end) {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(map_error(e));
        }
    }
    result
}

/// How a column's values are read: SQLite stores booleans as integers, so a
/// column declared BOOLEAN reads back as `Value::Bool`.
#[derive(Clone, Copy)]
enum Hint {
    Plain,
    Bool,
}

/// A statement's result columns and how to read them.
#[derive(Clone)]
struct Shape {
    columns: Arc<[Column]>,
    hints: Arc<[Hint]>,
}

/// Result shapes by SQL text, so a repeated query builds its columns once
/// (a point select spent more on column names than on the lookup itself).
struct Shapes(lru::LruCache<Box<str>, Shape>);

impl Shapes {
    fn new(capacity: usize) -> Self {
        Shapes(lru::LruCache::new(
            std::num::NonZeroUsize::new(capacity.max(1)).expect("at least 1"),
        ))
    }

    fn of(&mut self, sql: &str, stmt: &rusqlite::Statement<'_>) -> Shape {
        if let Some(shape) = self.0.get(sql) {
            // The schema may have changed under the same SQL (SELECT *).
            let same = shape.columns.len() == stmt.column_count()
                && shape
                    .columns
                    .iter()
                    .enumerate()
                    .all(|(i, c)| stmt.column_name(i).is_ok_and(|n| n == c.name()));
            if same {
                return shape.clone();
            }
        }
        let columns: Arc<[Column]> = stmt
            .columns()
            .iter()
            .map(|c| Column::new(c.name(), c.decl_type().map(str::to_string)))
            .collect();
        let hints = columns
            .iter()
            .map(|c| match c.decl_type().map(str::to_ascii_uppercase).as_deref() {
                Some("BOOLEAN" | "BOOL") => Hint::Bool,
                _ => Hint::Plain,
            })
            .collect();
        let shape = Shape { columns, hints };
        self.0.put(sql.into(), shape.clone());
        shape
    }
}

fn read_row(row: &rusqlite::Row<'_>, columns: &Arc<[Column]>, hints: &[Hint]) -> Result<Row> {
    let mut values = Vec::with_capacity(hints.len());
    for (i, hint) in hints.iter().enumerate() {
        let value = match (row.get_ref(i).map_err(map_error)?, hint) {
            (ValueRef::Null, _) => Value::Null,
            (ValueRef::Integer(v), Hint::Bool) => Value::Bool(v != 0),
            (ValueRef::Integer(v), Hint::Plain) => Value::I64(v),
            (ValueRef::Real(v), _) => Value::F64(v),
            (ValueRef::Text(t), _) => Value::Text(String::from_utf8_lossy(t).into_owned()),
            (ValueRef::Blob(b), _) => Value::Bytes(b.to_vec()),
        };
        values.push(value);
    }
    Ok(Row::new(Arc::clone(columns), values))
}

fn query(conn: &Sqlite, shapes: &mut Shapes, sql: &str, params: &[Value], limit: usize) -> Result<Vec<Row>> {
    let mut stmt = conn.prepare_cached(sql).map_err(map_error)?;
    bind_all(&mut stmt, params)?;
    let Shape { columns, hints } = shapes.of(sql, &stmt);
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while out.len() < limit {
        match rows.next().map_err(map_error)? {
            Some(row) => out.push(read_row(row, &columns, &hints)?),
            None => break,
        }
    }
    Ok(out)
}

/// Serves pulls on one query until the puller hangs up. Rows are stepped
/// only as they are asked for, so memory stays flat for any result size.
fn serve_rows(
    conn: &Sqlite,
    shapes: &mut Shapes,
    sql: &str,
    params: &[Value],
    pulls: &std_mpsc::Receiver<Pull>,
) -> bool {
    let mut stmt = match conn.prepare_cached(sql).map_err(map_error) {
        Ok(stmt) => stmt,
        Err(e) => {
            fail_pulls(pulls, &e);
            return true;
        }
    };
    if let Err(e) = bind_all(&mut stmt, params) {
        fail_pulls(pulls, &e);
        return true;
    }
    let mut failed = false;
    let Shape { columns, hints } = shapes.of(sql, &stmt);
    let mut rows = stmt.raw_query();
    let mut exhausted = false;
    while let Ok(pull) = pulls.recv() {
        match pull {
            Pull::Fetch(n, reply) => {
                let mut batch = Vec::with_capacity(n.min(1024));
                let mut result = Ok(());
                while !exhausted && batch.len() < n {
                    match rows.next() {
                        Ok(Some(row)) => match read_row(row, &columns, &hints) {
                            Ok(r) => batch.push(r),
                            Err(e) => {
                                result = Err(e);
                                break;
                            }
                        },
                        Ok(None) => exhausted = true,
                        Err(e) => {
                            result = Err(map_error(e));
                            exhausted = true;
                            failed = true;
                        }
                    }
                }
                let _ = reply.send(result.map(|()| batch));
            }
            Pull::Forward(n, reply) => {
                let mut skipped = 0u64;
                let mut result = Ok(());
                while !exhausted && skipped < n {
                    match rows.next() {
                        Ok(Some(_)) => skipped += 1,
                        Ok(None) => exhausted = true,
                        Err(e) => {
                            result = Err(map_error(e));
                            exhausted = true;
                            failed = true;
                        }
                    }
                }
                let _ = reply.send(result.map(|()| skipped));
            }
        }
    }
    failed
}

fn fail_pulls(pulls: &std_mpsc::Receiver<Pull>, error: &Error) {
    let again = || Error::new(error.kind().clone(), error.message().to_string());
    while let Ok(pull) = pulls.recv() {
        match pull {
            Pull::Fetch(_, reply) => drop(reply.send(Err(again()))),
            Pull::Forward(_, reply) => drop(reply.send(Err(again()))),
        }
    }
}

/// Maps SQLite's result codes onto SQLSTATE classes, so that
/// `is_unique_violation()` and friends work the same on every dialect.
fn map_error(e: rusqlite::Error) -> Error {
    match e {
        rusqlite::Error::SqliteFailure(failure, message) => {
            let message = message.unwrap_or_else(|| failure.to_string());
            let code = match failure.code {
                rusqlite::ErrorCode::OperationInterrupted => {
                    return Error::new(
                        ErrorKind::Interrupted,
                        format!("statement interrupted: {message}"),
                    );
                }
                rusqlite::ErrorCode::ConstraintViolation => match failure.extended_code {
                    ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => "23505",
                    ffi::SQLITE_CONSTRAINT_NOTNULL => "23502",
                    ffi::SQLITE_CONSTRAINT_FOREIGNKEY => "23503",
                    ffi::SQLITE_CONSTRAINT_CHECK => "23514",
                    _ => "23000",
                },
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked => "55P03",
                rusqlite::ErrorCode::ReadOnly => "25006",
                _ if message.contains("syntax error") => "42601",
                _ if message.starts_with("no such table") => "42P01",
                _ if message.starts_with("no such column") => "42703",
                _ => "HY000",
            };
            Error::database(code, message)
        }
        rusqlite::Error::SqlInputError { msg, sql, offset, .. } => {
            Error::database("42601", format!("{msg} at offset {offset} of: {sql}"))
        }
        rusqlite::Error::InvalidParameterCount(given, expected) => Error::new(
            ErrorKind::Param,
            format!("the statement has {expected} placeholders but {given} values were given"),
        ),
        other => Error::database("HY000", other.to_string()),
    }
}
