//! What the async side and the worker thread share: the connection
//! itself (behind the lock they take turns on), the load over an engine's
//! workers, a worker's state, the commands and pulls it serves.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use rusqlite::Connection as Sqlite;

use super::*;
use crate::driver::session::Session;
use crate::error::{Error, ErrorKind, Result};
use crate::row::Row;
use crate::value::Value;

/// The SQLite connection and the result shapes its queries keep, behind
/// one lock: the worker thread holds it for each command it runs, and a
/// caller that finds the connection free holds it for a short read on its
/// own thread (see `inline.rs`). Whoever holds it runs one statement at a
/// time on the connection; nobody waits for it on a runtime thread.
pub(super) struct Db {
    pub(super) conn: Sqlite,
    pub(super) shapes: Shapes,
}

impl Db {
    pub(super) fn new(conn: Sqlite, cache_size: usize) -> Db {
        Db {
            conn,
            shapes: Shapes::new(cache_size),
        }
    }
}

/// Takes the connection's lock for the worker thread. A panic while the lock
/// was held cannot leave the connection half-used (every statement is
/// reset when its handle drops), so a poisoned lock is taken as it is.
pub(super) fn lock(db: &Mutex<Db>) -> std::sync::MutexGuard<'_, Db> {
    db.lock().unwrap_or_else(|e| e.into_inner())
}

/// How busy an engine's SQLite connections are, shared by all of them:
/// spinning pays only while the cores are otherwise idle.
#[derive(Default)]
pub(super) struct Load {
    /// Commands sent and not yet finished, over every connection.
    pub(super) in_flight: AtomicUsize,
    /// Workers spinning for their next command (0 or 1).
    pub(super) spinners: AtomicUsize,
}

impl WorkerState {
    pub(super) fn started(&self) {
        self.pending.fetch_add(1, SeqCst);
        self.load.in_flight.fetch_add(1, SeqCst);
    }

    pub(super) fn finished(&self) {
        self.load.in_flight.fetch_sub(1, SeqCst);
        self.pending.fetch_sub(1, SeqCst);
    }
}

impl WorkerState {
    /// Starts the statement clock (with `statement_timeout` set).
    pub(super) fn arm(&self) {
        if let Some(timeout) = self.timeout {
            self.arm_for(timeout);
        }
    }

    /// Stops the clock; whether it had run out.
    pub(super) fn stop_clock(&self) -> bool {
        let expired = self.expired();
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) = None;
        expired
    }

    /// Starts the clock with a limit of the caller's (the inline budget).
    pub(super) fn arm_for(&self, limit: Duration) {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::time::Instant::now() + limit);
    }

    /// Whether the running statement has passed its deadline (the progress
    /// handler asks this every few thousand VM steps and interrupts if so).
    pub(super) fn expired(&self) -> bool {
        self.deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|d| std::time::Instant::now() >= d)
    }

    /// Stops the clock; an interrupt caused by the deadline becomes `Timeout`.
    pub(super) fn disarm<T>(&self, result: Result<T>) -> Result<T> {
        let expired = self.stop_clock();
        match result {
            // SQLite's own definitive answer (not a client's lost one).
            Err(e) if expired && e.kind() == &ErrorKind::Interrupted => Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "statement cancelled after statement_timeout ({:?})",
                    self.timeout.unwrap_or_default()
                ),
            )
            .answered_by_server()),
            other => other,
        }
    }
}

/// What the async side can see of a worker.
#[derive(Default)]
pub(super) struct WorkerState {
    pub(super) timeout: Option<Duration>,
    pub(super) deadline: Mutex<Option<std::time::Instant>>,
    pub(super) load: Arc<Load>,
    /// Commands sent and not yet finished (rows sessions included).
    pub(super) pending: AtomicUsize,
    /// Whether the connection is outside a transaction (after the last command).
    pub(super) autocommit: AtomicBool,
    /// Transaction status and levels, queued SQL (see `Session`); the
    /// worker reports SQLite's autocommit flag to it after every command.
    pub(super) session: Arc<Session>,
    /// The sequence number of the command the worker is running (0: none);
    /// its lock orders an abandoning caller's interrupt against the
    /// worker moving on to the next command.
    pub(super) running: Mutex<u64>,
    /// Numbers the commands sent.
    pub(super) sent: AtomicU64,
    /// The worker thread has ended.
    pub(super) gone: AtomicBool,
}

pub(super) type Reply<T> = oneshot::Sender<Result<T>>;

/// A read-only transaction: SQLite has no READ ONLY transactions, so
/// `query_only` is on while it lasts (the worker turns it off at its end).
pub(super) const READ_ONLY_BEGIN: &str = "BEGIN DEFERRED; PRAGMA query_only = ON";

pub(super) enum Command {
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

pub(super) enum Pull {
    Fetch(usize, Reply<Vec<Row>>),
    Forward(u64, Reply<u64>),
}
