//! Who polls a connection's socket.
//!
//! tokio-postgres splits a connection into a `Client` (requests in, answers
//! out through channels) and a `Connection` future that does the socket
//! I/O and must be polled for anything to move. A task of its own polls it
//! (the background task here), so every answer crosses from that task to
//! the one waiting for it. For a one-round-trip statement that is one
//! hand-off, and it is the cheaper way (measured: driving those from the
//! caller's task cost more CPU per point select, pipelined ones most). An
//! operation that receives many messages (a stream of rows, a cursor's
//! batch, `copy_in`) would pay a hand-off per socket read, so it polls the
//! I/O from its own task while it runs, as sqlx and asyncpg read their
//! sockets where the query runs. `execute_many` is the exception: its
//! encoding and the socket work run in parallel on two threads when the
//! background task does the I/O (100,000 pipelined inserts: 130k rows/s
//! that way against 105k driven in-task, alternating builds on 2 cores).
//! A raw connection runs one operation at a time, so nothing else waits on
//! the I/O meanwhile; the background task takes over again when it stops
//! (or is dropped).
//!
//! Wakers: a socket or channel remembers only the last task that polled it.
//! While an operation drives, it is that task, and the background task
//! stays out; when the last driver stops, it polls once more with the
//! background task's waker, which so takes the wakers back.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use crate::pool::BoxFuture;

type ConnectionFuture = Pin<Box<dyn Future<Output = Result<(), tokio_postgres::Error>> + Send>>;

/// The I/O half of one connection, and who is polling it.
pub(super) struct Io {
    state: Mutex<State>,
    /// The I/O has ended (server gone, socket error, or terminated): a
    /// lock-free copy of `connection.is_none()`, read at every check-in.
    closed: AtomicBool,
}

struct State {
    /// `None` once it has ended.
    connection: Option<ConnectionFuture>,
    /// Operations driving the I/O now; the background task waits while any do.
    drivers: usize,
    /// The background task's waker: the I/O is polled with it when the last
    /// driver stops, and it is woken when the connection ends.
    background: Option<Waker>,
}

impl Io {
    /// Takes over tokio-postgres's `Connection` future and starts the
    /// background task that polls it between operations.
    pub(super) fn start<F>(connection: F) -> Arc<Io>
    where
        F: Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
    {
        let io = Arc::new(Io {
            state: Mutex::new(State {
                connection: Some(Box::pin(connection)),
                drivers: 0,
                background: None,
            }),
            closed: AtomicBool::new(false),
        });
        let background = Background(Arc::clone(&io));
        tokio::spawn(std::future::poll_fn(move |cx| background.0.poll_between(cx)));
        io
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(SeqCst)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Polling tokio-postgres does not panic in practice; if it did,
        // the state is still consistent enough to let the connection end.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The background task: polls the I/O unless an operation is driving it;
    /// ends with the connection.
    fn poll_between(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.lock();
        if !state.background.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            state.background = Some(cx.waker().clone());
        }
        if state.drivers == 0 {
            self.poll_connection(&mut state, cx);
        }
        if state.connection.is_none() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Moves the I/O along: writes queued requests, hands out what has been read.
    fn poll_connection(&self, state: &mut State, cx: &mut Context<'_>) {
        let Some(connection) = state.connection.as_mut() else {
            return;
        };
        let Poll::Ready(ended) = connection.as_mut().poll(cx) else {
            return;
        };
        if let Err(error) = ended {
            tracing::debug!(%error, "PostgreSQL connection ended");
        }
        // Dropping it ends every answer still awaited with a closed error.
        state.connection = None;
        self.closed.store(true, SeqCst);
        if let Some(background) = state.background.take() {
            background.wake();
        }
    }
}

/// The background task's hold on the I/O. Dropped with the task: when the
/// connection has ended, or when the task's runtime shuts down first. The
/// socket belongs to that runtime, so in the latter case nothing can poll
/// the I/O again: it counts as ended, and the pool discards the connection
/// instead of handing out one whose statements would never be answered.
struct Background(Arc<Io>);

impl Drop for Background {
    fn drop(&mut self) {
        self.0.closed.store(true, SeqCst);
    }
}

/// An operation's claim to drive the I/O from its own task while it runs;
/// released when it is stopped or dropped (a dropped future included).
pub(super) struct Driving {
    io: Arc<Io>,
    active: bool,
}

impl Driving {
    pub(super) fn new(io: Arc<Io>) -> Self {
        Driving { io, active: false }
    }

    /// Polls `op`, driving the I/O around it: before `op` on the first poll
    /// (so that its requests wake this task, not the background one), and
    /// whenever `op` is waiting (to write what it queued and read its answer).
    pub(super) fn poll<T>(
        &mut self,
        cx: &mut Context<'_>,
        mut op: impl FnMut(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        if !self.active {
            self.active = true;
            let mut state = self.io.lock();
            state.drivers += 1;
            self.io.poll_connection(&mut state, cx);
        }
        if let Poll::Ready(out) = op(cx) {
            return Poll::Ready(out);
        }
        {
            let mut state = self.io.lock();
            self.io.poll_connection(&mut state, cx);
        }
        op(cx)
    }

    /// Hands the I/O back to the background task.
    pub(super) fn stop(&mut self) {
        if !std::mem::take(&mut self.active) {
            return;
        }
        let mut state = self.io.lock();
        state.drivers -= 1;
        if state.drivers > 0 {
            return;
        }
        // One poll on the background task's behalf points the socket's and
        // the request channel's wakers at it, without scheduling it: it runs
        // only when something does arrive (the rest of a dropped answer, a
        // request sent from `Drop`, the server hanging up).
        if let Some(background) = state.background.clone() {
            self.io
                .poll_connection(&mut state, &mut Context::from_waker(&background));
        }
    }
}

impl Drop for Driving {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `op`, run with its task driving the connection's I/O.
pub(super) fn driven<'a, T: 'a>(io: Arc<Io>, op: impl Future<Output = T> + Send + 'a) -> BoxFuture<'a, T> {
    let mut driving = Driving::new(io);
    Box::pin(async move {
        let mut op = std::pin::pin!(op);
        let out = std::future::poll_fn(|cx| driving.poll(cx, |cx| op.as_mut().poll(cx))).await;
        driving.stop();
        out
    })
}
