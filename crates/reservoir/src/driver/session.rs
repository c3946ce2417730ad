//! `Session`: the one owner of a raw connection's session state. Each
//! driver connection creates one when it opens and keeps it for its life;
//! handles and transactions read it through the connection they use and
//! never keep a copy.
//!
//! What it owns:
//! - the server's transaction status ([`TxStatus`]), fed by what the
//!   server reports after every statement (MySQL's status flags, SQLite's
//!   autocommit flag, PostgreSQL's answers: an error inside a transaction
//!   block aborts it, a success means it is usable);
//! - the transaction levels the handles opened (a stack of level ids:
//!   depth is its length, and a handle whose id is no longer on the stack
//!   was ended by an outer level or by the server);
//! - SQL queued by `Drop` impls that cannot await (a dropped transaction's
//!   rollback, a dropped cursor's close), run by the driver before the
//!   connection's next operation;
//! - how many row streams hold the wire, and whether the session's state
//!   (settings, temp tables, listens) was changed since the last reset.
//!
//! Its lock is a std mutex, never held across an await.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Mutex, MutexGuard};

use crate::error::{Error, ErrorKind, Result};

/// Isolation levels (SQL standard names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// READ UNCOMMITTED.
    ReadUncommitted,
    /// READ COMMITTED.
    ReadCommitted,
    /// REPEATABLE READ.
    RepeatableRead,
    /// SERIALIZABLE.
    Serializable,
}

impl Isolation {
    /// The level as SQL writes it.
    pub fn sql(self) -> &'static str {
        match self {
            Isolation::ReadUncommitted => "READ UNCOMMITTED",
            Isolation::ReadCommitted => "READ COMMITTED",
            Isolation::RepeatableRead => "REPEATABLE READ",
            Isolation::Serializable => "SERIALIZABLE",
        }
    }
}

/// How to begin a transaction.
///
/// ```
/// use reservoir::transaction::{Isolation, TxOptions};
/// let opts = TxOptions::new().isolation(Isolation::Serializable).read_only(true);
/// assert!(opts.is_read_only());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxOptions {
    isolation: Option<Isolation>,
    read_only: bool,
}

impl TxOptions {
    /// The database's defaults.
    pub fn new() -> Self {
        TxOptions::default()
    }
    /// Asks for an isolation level.
    pub fn isolation(mut self, level: Isolation) -> Self {
        self.isolation = Some(level);
        self
    }
    /// Asks for a read-only transaction.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }
    /// The requested isolation level.
    pub fn isolation_level(&self) -> Option<Isolation> {
        self.isolation
    }
    /// Whether read-only was requested.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }
}

/// What a connection's reset does when it goes back to the pool
/// (`reset_on_return`). An open transaction is rolled back in every mode
/// (a connection is never handed out inside one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResetOnReturn {
    /// Roll back an open transaction; reset the whole session (PostgreSQL
    /// `DISCARD ALL`, MySQL `COM_RESET_CONNECTION`) only when it ran
    /// something that changed session state: a `SET` (not `SET
    /// TRANSACTION`/`SET LOCAL`), `RESET`, `LISTEN`, `PREPARE`, `CREATE
    /// TEMP` table, `DECLARE ... WITH HOLD`, MySQL `USE` or `LOCK TABLES`.
    /// It cannot see state changed inside a function call (`SELECT
    /// set_config(..)`, advisory locks): use `Discard` for those.
    #[default]
    Auto,
    /// Roll back an open transaction only (SQLAlchemy's and sqlx's reset).
    Rollback,
    /// Reset the whole session on every return (asyncpg's reset; a round
    /// trip each time).
    Discard,
    /// Reset nothing beyond rolling back an open transaction.
    None,
}

impl ResetOnReturn {
    /// The mode named in a URL (`auto`, `rollback`, `discard`, `none`).
    pub fn parse(name: &str) -> Option<ResetOnReturn> {
        Some(match name {
            "auto" => ResetOnReturn::Auto,
            "rollback" => ResetOnReturn::Rollback,
            "discard" => ResetOnReturn::Discard,
            "none" => ResetOnReturn::None,
            _ => return Option::None,
        })
    }
}

/// Whether `sql` changes session state that outlives its transaction
/// (see [`ResetOnReturn::Auto`]). Runs on every statement: it branches on
/// the first letter, then compares a keyword or two, without allocating.
pub(crate) fn changes_session_state(sql: &str) -> bool {
    let bytes = sql.trim_start().as_bytes();
    let Some(first) = bytes.first() else {
        return false;
    };
    let words = || {
        sql.split(|c: char| c.is_ascii_whitespace() || c == '(' || c == ';')
            .filter(|w| !w.is_empty())
    };
    let word = |i: usize, want: &str| words().nth(i).is_some_and(|w| w.eq_ignore_ascii_case(want));
    match first.to_ascii_uppercase() {
        b'S' => word(0, "SET") && !word(1, "TRANSACTION") && !word(1, "LOCAL"),
        b'R' => word(0, "RESET"),
        b'L' => word(0, "LISTEN") || (word(0, "LOCK") && word(1, "TABLES")),
        b'P' => word(0, "PREPARE"),
        b'U' => word(0, "USE"),
        b'C' => {
            word(0, "CREATE")
                && (word(1, "TEMP")
                    || word(1, "TEMPORARY")
                    || (word(1, "LOCAL") || word(1, "GLOBAL")) && (word(2, "TEMP") || word(2, "TEMPORARY")))
        }
        b'D' => word(0, "DECLARE") && sql.to_ascii_uppercase().contains("WITH HOLD"),
        _ => false,
    }
}

/// The server's transaction status, as it last reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxStatus {
    /// No transaction is open.
    Idle,
    /// A transaction is open and usable.
    Active,
    /// A transaction is open but failed: the server refuses every
    /// statement until it is rolled back (PostgreSQL's aborted block).
    Failed,
}

/// Why the server ended a transaction that handles still had open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EndedBy {
    /// The server rolled it back (a deadlock, an interrupted write on
    /// SQLite): none of its work was kept.
    RolledBack,
    /// It was committed by a statement that commits implicitly (MySQL DDL)
    /// or by raw SQL: the work up to then was kept, the rest ran outside it.
    Committed,
}

#[derive(Debug)]
struct State {
    status: TxStatus,
    /// One id per open level, outermost first; depth is the length.
    levels: Vec<u64>,
    next_level: u64,
    /// The outermost level's options.
    options: TxOptions,
    ended: Option<EndedBy>,
    /// Counts transactions begun on this connection, so a cursor can tell
    /// whether the transaction it was declared in is still the open one.
    serial: u64,
    pending: Vec<String>,
    /// A ROLLBACK of the whole transaction is queued: the server will be
    /// idle before the next statement runs.
    rolling_back: bool,
    /// Session state (settings, temp tables, listens, prepared SQL
    /// statements) changed since the last reset.
    state_changed: bool,
}

/// The state of one raw connection's session (see the module header).
#[derive(Debug)]
pub struct Session {
    state: Mutex<State>,
    /// `pending` is not empty: lets every statement skip the lock.
    has_pending: AtomicBool,
    /// Row streams that hold the wire (see [`StreamGuard`]).
    streams: AtomicUsize,
}

impl Default for Session {
    fn default() -> Self {
        Session {
            state: Mutex::new(State {
                status: TxStatus::Idle,
                levels: Vec::new(),
                next_level: 1,
                options: TxOptions::new(),
                ended: None,
                serial: 0,
                pending: Vec::new(),
                rolling_back: false,
                state_changed: false,
            }),
            has_pending: AtomicBool::new(false),
            streams: AtomicUsize::new(0),
        }
    }
}

/// The savepoint that a transaction at `depth` (2 and more) stands for.
pub(crate) fn savepoint_name(depth: usize) -> String {
    format!("reservoir_sp_{depth}")
}

impl Session {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    // ---- what the driver reports -------------------------------------

    /// The server's status after a statement, as the server reported it.
    pub(crate) fn observe(&self, status: TxStatus) {
        let mut s = self.lock();
        if status == TxStatus::Idle && s.status != TxStatus::Idle && !s.levels.is_empty() {
            // Ended under open levels; `end_levels` clears this when the
            // handles end them themselves (a COMMIT they sent).
            s.ended.get_or_insert(EndedBy::Committed);
        }
        if status != TxStatus::Idle && s.status == TxStatus::Idle {
            s.serial += 1;
        }
        if status == TxStatus::Idle {
            s.rolling_back = false;
        }
        s.status = status;
    }

    /// The server rolled the whole transaction back on its own (deadlock,
    /// interrupted write): its open levels are gone with their work.
    pub(crate) fn server_rolled_back(&self) {
        let mut s = self.lock();
        if !s.levels.is_empty() {
            s.ended = Some(EndedBy::RolledBack);
        }
        s.status = TxStatus::Idle;
    }

    /// The server's status right now.
    pub fn status(&self) -> TxStatus {
        self.lock().status
    }

    /// Counts a transaction begun (for cursors: see [`serial`](Self::serial)).
    pub(crate) fn serial(&self) -> u64 {
        self.lock().serial
    }

    /// Notes a statement run: one that changes session state (see
    /// [`changes_session_state`]) makes the next reset a full one.
    pub(crate) fn note_statement(&self, sql: &str) {
        if changes_session_state(sql) {
            self.lock().state_changed = true;
        }
    }

    /// Whether session state changed since the last reset.
    pub(crate) fn state_changed(&self) -> bool {
        self.lock().state_changed
    }

    /// After a full reset (or a rollback with nothing else to clear).
    pub(crate) fn reset_done(&self, full: bool) {
        let mut s = self.lock();
        s.status = TxStatus::Idle;
        s.levels.clear();
        s.ended = None;
        s.pending.clear();
        s.rolling_back = false;
        self.has_pending.store(false, SeqCst);
        if full {
            s.state_changed = false;
        }
    }

    // ---- queued SQL ----------------------------------------------------

    /// Queues `sql` to run before the connection's next operation.
    pub(crate) fn queue(&self, sql: String) {
        let mut s = self.lock();
        s.pending.push(sql);
        self.has_pending.store(true, SeqCst);
    }

    /// The queued SQL, taken (the driver runs it now).
    pub(crate) fn take_pending(&self) -> Vec<String> {
        if !self.has_pending.load(SeqCst) {
            return Vec::new();
        }
        let mut s = self.lock();
        self.has_pending.store(false, SeqCst);
        std::mem::take(&mut s.pending)
    }

    /// Whether SQL is queued.
    pub(crate) fn has_pending(&self) -> bool {
        self.has_pending.load(SeqCst)
    }

    // ---- streams ---------------------------------------------------------

    /// Whether a row stream holds the wire.
    pub(crate) fn stream_open(&self) -> bool {
        self.streams.load(SeqCst) > 0
    }

    // ---- transaction levels (what handles ask) -------------------------

    /// Open levels: 0 outside a transaction.
    pub fn depth(&self) -> usize {
        self.lock().levels.len()
    }

    /// Checks that a level may begin now; returns its depth (1: BEGIN,
    /// deeper: SAVEPOINT).
    pub(crate) fn check_begin(&self, options: &TxOptions) -> Result<usize> {
        let s = self.lock();
        let depth = s.levels.len() + 1;
        if depth == 1 {
            if s.status != TxStatus::Idle && !s.rolling_back {
                return Err(Error::usage(
                    "a transaction is already open on this connection, begun with raw SQL \
                     (BEGIN / START TRANSACTION): end it with raw SQL, or use begin() only",
                ));
            }
            return Ok(1);
        }
        if let Some(why) = s.ended {
            return Err(ended_error(why));
        }
        if s.status == TxStatus::Failed {
            return Err(failed_error());
        }
        // An outer level begun with the database's default is checked
        // against the level the server reports (see `Connection::begin_at`).
        if let Some(level) = options.isolation_level() {
            if s.options.isolation_level().is_some_and(|outer| outer != level) {
                return Err(Error::usage(format!(
                    "a nested transaction cannot change the isolation level (outer: {}, asked: {})",
                    s.options
                        .isolation_level()
                        .map_or("database default", |l| l.sql()),
                    level.sql()
                )));
            }
        }
        Ok(depth)
    }

    /// The options the outermost level was begun with.
    pub(crate) fn outer_options(&self) -> TxOptions {
        self.lock().options
    }

    /// Records a level begun at `depth` (after its BEGIN or SAVEPOINT
    /// succeeded); returns its id.
    pub(crate) fn push_level(&self, depth: usize, options: TxOptions) -> u64 {
        let mut s = self.lock();
        s.levels.truncate(depth - 1);
        let id = s.next_level;
        s.next_level += 1;
        s.levels.push(id);
        if depth == 1 {
            s.options = options;
            s.ended = None;
        }
        id
    }

    /// Whether the level `(depth, id)` is still open.
    pub(crate) fn is_live(&self, depth: usize, id: u64) -> bool {
        self.lock().levels.get(depth - 1) == Some(&id)
    }

    /// Ends the level at `depth` and every level inside it.
    pub(crate) fn end_levels(&self, depth: usize) {
        let mut s = self.lock();
        s.levels.truncate(depth - 1);
        if s.levels.is_empty() {
            s.ended = None;
        }
    }

    /// What ending level `(depth, id)` must do, decided from the state.
    pub(crate) fn plan_end(&self, depth: usize, id: u64, commit: bool) -> EndPlan {
        let s = self.lock();
        if s.levels.get(depth - 1) != Some(&id) {
            return EndPlan::AlreadyEnded;
        }
        if let Some(why) = s.ended {
            return EndPlan::EndedByServer(why);
        }
        if commit && s.status == TxStatus::Failed {
            return EndPlan::RollBackFailed;
        }
        EndPlan::Send
    }

    /// Queues the rollback of a level dropped while open (and ends it).
    pub(crate) fn drop_level(&self, depth: usize, id: u64) {
        let mut s = self.lock();
        if s.levels.get(depth - 1) != Some(&id) {
            return;
        }
        s.levels.truncate(depth - 1);
        if s.levels.is_empty() {
            let ended = s.ended.take();
            if ended.is_none() || s.status != TxStatus::Idle {
                s.pending.push("ROLLBACK".into());
                s.rolling_back = true;
            }
        } else if s.ended.is_none() {
            s.pending.push(rollback_to(depth));
        }
        self.has_pending.store(!s.pending.is_empty(), SeqCst);
    }
}

/// `ROLLBACK TO` and `RELEASE` of the savepoint of `depth`.
pub(crate) fn rollback_to(depth: usize) -> String {
    let sp = savepoint_name(depth);
    format!("ROLLBACK TO SAVEPOINT {sp}; RELEASE SAVEPOINT {sp}")
}

/// What a `commit` or `rollback` of one level does.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum EndPlan {
    /// Ended already, by an outer level or the server: nothing to send.
    AlreadyEnded,
    /// The server ended the whole transaction under the open levels.
    EndedByServer(EndedBy),
    /// A commit of a failed transaction: roll back and report it.
    RollBackFailed,
    /// Send the COMMIT / RELEASE / ROLLBACK.
    Send,
}

pub(crate) fn failed_error() -> Error {
    Error::new(
        ErrorKind::RolledBack,
        "the transaction failed at an earlier statement and the server refuses every statement \
         until it is rolled back: nothing of it will be kept",
    )
}

pub(crate) fn ended_error(why: EndedBy) -> Error {
    match why {
        EndedBy::RolledBack => Error::new(
            ErrorKind::RolledBack,
            "the server rolled the transaction back (deadlock, or an interrupted statement): \
             nothing of it was kept",
        ),
        EndedBy::Committed => Error::usage(
            "the server ended the transaction early: a statement committed it implicitly \
             (MySQL commits before DDL) or raw SQL ended it; the work up to that statement was \
             kept, later statements ran outside any transaction",
        ),
    }
}

/// Holds the wire for a row stream while it is open: other statements on
/// the same session fail at once instead of waiting behind it for good.
pub(crate) struct StreamGuard(std::sync::Arc<Session>);

impl StreamGuard {
    pub(crate) fn new(session: &std::sync::Arc<Session>) -> Self {
        session.streams.fetch_add(1, SeqCst);
        StreamGuard(std::sync::Arc::clone(session))
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ending_a_middle_level_ends_the_inner_ones() {
        let s = Session::default();
        let o = TxOptions::new();
        assert_eq!(s.check_begin(&o).unwrap(), 1);
        s.observe(TxStatus::Active);
        let a = s.push_level(1, o);
        let b = s.push_level(2, o);
        let c = s.push_level(3, o);
        assert_eq!(s.plan_end(2, b, true), EndPlan::Send);
        s.end_levels(2);
        assert_eq!(s.depth(), 1);
        assert_eq!(s.plan_end(3, c, false), EndPlan::AlreadyEnded);
        s.drop_level(3, c);
        assert!(!s.has_pending(), "a dead level's drop queues nothing");
        assert!(s.is_live(1, a));
        // A new level at depth 2 is not the old one.
        let b2 = s.push_level(2, o);
        assert!(!s.is_live(2, b) && s.is_live(2, b2));
    }

    #[test]
    fn statements_that_change_session_state_are_known() {
        for sql in [
            "SET search_path TO x",
            "set role app",
            "RESET ALL",
            "LISTEN ch",
            "PREPARE p AS SELECT 1",
            "CREATE TEMP TABLE t (x int)",
            "create temporary table t (x int)",
            "CREATE LOCAL TEMPORARY TABLE t (x int)",
            "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
            "USE other",
            "LOCK TABLES t WRITE",
            "  SET @x = 1",
        ] {
            assert!(changes_session_state(sql), "{sql}");
        }
        for sql in [
            "SELECT 1",
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "SET LOCAL statement_timeout = 1",
            "CREATE TABLE t (x int)",
            "DECLARE c CURSOR FOR SELECT 1",
            "UPDATE t SET x = 1",
            "",
            "SETTINGS",
            "LOCK TABLE t",
        ] {
            assert!(!changes_session_state(sql), "{sql}");
        }
    }

    #[test]
    fn a_raw_transaction_refuses_begin() {
        let s = Session::default();
        s.observe(TxStatus::Active);
        assert_eq!(
            s.check_begin(&TxOptions::new()).unwrap_err().kind(),
            &ErrorKind::Usage
        );
    }

    #[test]
    fn a_failed_transaction_commits_as_a_rollback() {
        let s = Session::default();
        s.observe(TxStatus::Active);
        let a = s.push_level(1, TxOptions::new());
        s.observe(TxStatus::Failed);
        assert_eq!(s.plan_end(1, a, true), EndPlan::RollBackFailed);
        assert_eq!(s.plan_end(1, a, false), EndPlan::Send);
    }

    #[test]
    fn a_server_rollback_ends_every_level() {
        let s = Session::default();
        s.observe(TxStatus::Active);
        let a = s.push_level(1, TxOptions::new());
        let b = s.push_level(2, TxOptions::new());
        s.server_rolled_back();
        assert_eq!(
            s.plan_end(2, b, true),
            EndPlan::EndedByServer(EndedBy::RolledBack)
        );
        s.drop_level(2, b);
        assert!(!s.has_pending());
        s.drop_level(1, a);
        assert!(!s.has_pending(), "nothing to roll back on the server");
        assert_eq!(s.depth(), 0);
    }
}
