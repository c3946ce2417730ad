//! The async side of a connection: sending commands to its worker thread,
//! awaiting answers (interrupting what a dropped caller abandoned), rows.

use std::sync::atomic::Ordering::SeqCst;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::oneshot;

use super::*;
use crate::driver::session::Session;
use crate::driver::{Prefetch, RawConnection, RowSource};
use crate::error::{Error, ErrorKind, Result};
use crate::pool::{BoxFuture, Interrupt};
use crate::row::Row;
use crate::value::Value;

/// An open SQLite connection: a handle on its worker thread (held by the
/// pool as an [`AnyConnection`]).
pub struct SqliteConnection {
    pub(super) worker: Worker,
    pub(super) interrupt: Arc<SqliteInterrupt>,
}

/// Sends commands to the connection's worker thread. Cloned, it is the
/// handle of reads that share the connection (`pipeline_reads`): they queue
/// on the thread in the order sent.
#[derive(Clone)]
pub(crate) struct Worker {
    /// The connection, for reads run inline. Declared (so dropped) before
    /// `tx`: the worker thread ends when the last sender is gone, so it
    /// holds the last reference and the connection closes on its thread.
    pub(super) db: Arc<Mutex<Db>>,
    pub(super) tx: std_mpsc::Sender<(u64, Command)>,
    pub(super) state: Arc<WorkerState>,
    pub(super) interrupt: Arc<SqliteInterrupt>,
}

/// Whether the runtime has no more tasks than workers: then a spinning
/// caller keeps no other task from running.
pub(super) fn is_quiet(runtime: Option<&tokio::runtime::Handle>) -> bool {
    runtime.is_some_and(|h| {
        let metrics = h.metrics();
        metrics.num_alive_tasks() <= metrics.num_workers()
    })
}

/// How long a caller alone in flight spins for its answer before it parks.
pub(super) const CALLER_SPIN: Duration = Duration::from_micros(20);

pub(super) struct SqliteInterrupt(pub(super) rusqlite::InterruptHandle);

impl Interrupt for SqliteInterrupt {
    fn interrupt(&self) -> BoxFuture<'_, ()> {
        self.0.interrupt();
        Box::pin(async {})
    }
}

pub(super) fn worker_gone() -> Error {
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

/// A command's answer: already there (run inline), or from the worker.
enum Answer<T> {
    Ready(Result<T>),
    Sent(Request<T>),
}

impl<T> Answer<T> {
    async fn get(self) -> Result<T> {
        match self {
            Answer::Ready(result) => {
                // An answer that never waits would let a loop of reads hold
                // its runtime thread for good: every so often (tokio's task
                // budget) this yields, as any tokio resource does.
                tokio::task::coop::consume_budget().await;
                result
            }
            Answer::Sent(request) => request.answer().await,
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

    /// A query sent now to the worker thread, where reads that share the
    /// connection queue (`pipeline_reads`); the future gives its rows.
    pub(crate) fn query(
        &self,
        sql: &str,
        params: Vec<Value>,
        limit: Option<usize>,
    ) -> impl Future<Output = Result<Vec<Row>>> + Send + use<> {
        self.request(|r| Command::Query(sql.into(), params, limit, r))
            .answer()
    }

    /// A query run now on this thread if it is a short read on a free
    /// connection (see `inline.rs`), else sent now to the worker thread;
    /// the future gives its rows.
    fn read(
        &self,
        sql: &str,
        params: Vec<Value>,
        limit: Option<usize>,
    ) -> impl Future<Output = Result<Vec<Row>>> + Send + use<> {
        let answer = match try_read(&self.db, &self.state, sql, &params, limit) {
            Some(rows) => Answer::Ready(rows),
            None => Answer::Sent(self.request(|r| Command::Query(sql.into(), params, limit, r))),
        };
        answer.get()
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
        self.worker.read(sql, params, limit)
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
