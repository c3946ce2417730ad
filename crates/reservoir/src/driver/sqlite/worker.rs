//! The worker thread: one per connection, running its commands in order
//! and reporting the session's state after each.

use std::sync::Mutex;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use rusqlite::Connection as Sqlite;

use super::*;
use crate::driver::session::TxStatus;
use crate::error::Result;

/// How long an idle worker spins for its next command before it sleeps.
/// A caller that awaits one statement after another sends the next within
/// microseconds: catching it while spinning saves a futex wake-up, which
/// costs more than a point select itself.
pub(super) const WORKER_SPIN: Duration = Duration::from_micros(50);

pub(super) fn next_command(
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
    pub(super) fn abandoned(&self) -> bool {
        match self {
            Command::Execute(.., r) | Command::ExecuteMany(.., r) => r.is_closed(),
            Command::Query(.., r) => r.is_closed(),
            Command::Simple(_, r) | Command::Reset(r) | Command::Ping(r) => r.is_closed(),
            Command::Rows(..) | Command::Enqueued(_) => false,
        }
    }
}

pub(super) fn worker(
    db: &Mutex<Db>,
    rx: std_mpsc::Receiver<(u64, Command)>,
    state: &WorkerState,
    runtime: Option<tokio::runtime::Handle>,
) {
    // `query_only` is on for a read-only transaction (READ_ONLY_BEGIN).
    let mut query_only = false;
    while let Some((seq, command)) = next_command(&rx, &state.load, runtime.as_ref()) {
        if command.abandoned() {
            state.finished();
            continue;
        }
        let mut guard = lock(db);
        let Db { conn, shapes } = &mut *guard;
        *state.running.lock().unwrap_or_else(|e| e.into_inner()) = seq;
        state.arm();
        match command {
            Command::Execute(sql, params, reply) => {
                let result = execute(conn, &sql, &params);
                finish(conn, state, reply, result)
            }
            Command::ExecuteMany(sql, params, reply) => {
                let result = execute_many(conn, &sql, &params);
                finish(conn, state, reply, result)
            }
            Command::Query(sql, params, limit, reply) => {
                let result = query(conn, shapes, &sql, &params, limit.unwrap_or(usize::MAX));
                finish(conn, state, reply, result)
            }
            Command::Simple(sql, reply) => {
                let result = conn.execute_batch(&sql).map_err(map_error);
                if result.is_ok() && &*sql == READ_ONLY_BEGIN {
                    query_only = true;
                }
                finish(conn, state, reply, result)
            }
            Command::Enqueued(sql) => {
                let result = conn.execute_batch(&sql);
                if let Err(error) = &result {
                    tracing::debug!(%error, "queued statement failed");
                }
                publish(conn, state, result.is_err());
                state.finished();
                result.is_err()
            }
            Command::Reset(reply) => {
                let result = if conn.is_autocommit() {
                    Ok(())
                } else {
                    conn.execute_batch("ROLLBACK").map_err(map_error)
                };
                finish(conn, state, reply, result)
            }
            Command::Ping(reply) => {
                let result = conn.query_row("SELECT 1", [], |_| Ok(())).map_err(map_error);
                finish(conn, state, reply, result)
            }
            Command::Rows(sql, params, pulls) => {
                let failed = serve_rows(conn, shapes, &sql, &params, &pulls);
                publish(conn, state, failed);
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
pub(super) fn publish(conn: &Sqlite, state: &WorkerState, failed: bool) {
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
pub(super) fn finish<T>(conn: &Sqlite, state: &WorkerState, reply: Reply<T>, result: Result<T>) -> bool {
    let result = state.disarm(result);
    let failed = result.is_err();
    publish(conn, state, failed);
    state.finished();
    let _ = reply.send(result);
    failed
}
