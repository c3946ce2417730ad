//! Short reads on the caller's own thread, when the connection is free.
//!
//! A command sent to the worker thread costs two thread hand-offs: the
//! worker's wake-up, then the caller's. On a runtime that also serves
//! network I/O (any service) both are full futex and epoll wake-ups, which
//! cost many times a point select itself. So a read-only statement on a
//! connection with nothing queued or running on its worker runs right on
//! the caller's thread, under the lock the worker takes for a command.
//!
//! It never holds a runtime thread long: a time budget enforced by the
//! progress handler, and no waiting on another connection's lock (busy
//! timeout zero). A read that runs past either is abandoned (a read has
//! nothing to undo, and an interrupted read leaves its transaction as it
//! was) and sent to the worker thread, which runs it without those limits.
//! Writes always go to the worker: SQLite rolls back the whole transaction
//! of an interrupted write.
//!
//! Owns nothing: it borrows the connection's lock (`Db`) and reports to the
//! session as the worker does.

use std::sync::Mutex;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use rusqlite::Connection as Sqlite;

use super::*;
use crate::error::Result;
use crate::row::Row;
use crate::value::Value;

/// The longest a read holds the caller's thread before it is handed to the
/// worker thread instead: about what tokio asks of a task between awaits,
/// and a hundred times a point select by key.
pub(super) const INLINE_BUDGET: Duration = Duration::from_micros(100);

/// Runs a read-only query on this thread if the connection is free, and
/// gives its answer; `None` if it must go to the worker thread (the
/// connection is busy, the statement writes, or it ran past the budget).
pub(super) fn try_read(
    db: &Mutex<Db>,
    state: &WorkerState,
    sql: &str,
    params: &[Value],
    limit: Option<usize>,
) -> Option<Result<Vec<Row>>> {
    // Never wait for the lock: the worker holding it may run a long command.
    let mut guard = db.try_lock().ok()?;
    // Under the lock, nothing the worker has not finished is ahead of us:
    // a command counts itself pending before it is sent, and queued SQL
    // (a dropped transaction's rollback) must run first.
    if state.pending.load(SeqCst) != 0 || state.session.has_pending() || state.gone.load(SeqCst) {
        return None;
    }
    let Db { conn, shapes } = &mut *guard;
    // No waiting on this thread for a lock another connection holds, from
    // the prepare on (preparing may read the schema).
    conn.busy_timeout(Duration::ZERO).ok()?;
    let answer = read_here(conn, shapes, state, sql, params, limit);
    if conn.busy_timeout(BUSY_TIMEOUT).is_err() {
        // Left without its busy timeout the connection would fail writers
        // at once: let the pool replace it.
        state.gone.store(true, SeqCst);
    }
    answer
}

/// [`try_read`] once the connection is this thread's, with no busy wait.
fn read_here(
    conn: &Sqlite,
    shapes: &mut Shapes,
    state: &WorkerState,
    sql: &str,
    params: &[Value],
    limit: Option<usize>,
) -> Option<Result<Vec<Row>>> {
    let mut stmt = match conn.prepare_cached(sql) {
        Ok(stmt) => stmt,
        // A lock held elsewhere, a syntax error: the worker says which.
        Err(_) => return None,
    };
    if !stmt.readonly() || stmt.column_count() == 0 {
        // Writes, and BEGIN/COMMIT (read-only to SQLite, but they move the
        // transaction): the worker runs them.
        return None;
    }
    if let Err(e) = bind_all(&mut stmt, params) {
        return Some(Err(e));
    }
    state.arm_for(state.timeout.map_or(INLINE_BUDGET, |t| t.min(INLINE_BUDGET)));
    let read = read_rows(&mut stmt, shapes, sql, limit.unwrap_or(usize::MAX));
    drop(stmt);
    let expired = state.stop_clock();
    let result = match read {
        Err(e) if hand_over(&e, expired) => return None,
        Err(e) => Err(map_error(e)),
        Ok(rows) => rows,
    };
    publish(conn, state, result.is_err());
    Some(result)
}

/// Whether a read failed only because of the inline limits (past the
/// budget, or a lock another connection holds), so the worker should run
/// it again.
fn hand_over(e: &rusqlite::Error, expired: bool) -> bool {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::OperationInterrupted) => expired,
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => true,
        _ => false,
    }
}
