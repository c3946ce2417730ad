//! SQLite through rusqlite. rusqlite is blocking, so every connection lives
//! on a thread of its own and the async side talks to it over channels: no
//! shared thread pool to queue behind, and a connection's commands run in
//! the order they were sent.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection as Sqlite, OpenFlags};

use crate::driver::{AnyConnection, Driver, DriverOptions};
use crate::error::{Error, ErrorKind, Result};
use crate::pool::BoxFuture;
use crate::sql::Placeholder;
use crate::url::{DatabaseUrl, Dialect};

mod connection;
mod error;
mod exec;
mod inline;
mod rows;
mod state;
mod worker;

pub use connection::SqliteConnection;
pub(crate) use connection::Worker;
use connection::*;
use error::*;
use exec::*;
use inline::*;
use rows::*;
use state::*;
use worker::*;

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
            let (tx, rx) = std_mpsc::channel();
            let state = Arc::new(WorkerState {
                load: Arc::clone(&self.load),
                timeout: self.statement_timeout,
                // A new connection is outside a transaction: set before the
                // caller can see it, or a quick return would look dirty.
                autocommit: AtomicBool::new(true),
                ..WorkerState::default()
            });
            let conn = self.open()?;
            // The clock of `statement_timeout` and of the inline budget: the
            // handler runs every thousand VM steps and interrupts past it.
            let clock = Arc::clone(&state);
            conn.progress_handler(1000, Some(move || clock.expired()));
            let interrupt = Arc::new(SqliteInterrupt(conn.get_interrupt_handle()));
            let db = Arc::new(Mutex::new(Db::new(conn, self.cache_size)));
            let (worker_db, worker_state) = (Arc::clone(&db), Arc::clone(&state));
            // The worker looks at the runtime's load to decide whether to spin.
            let runtime = tokio::runtime::Handle::try_current().ok();
            std::thread::Builder::new()
                .name("reservoir-sqlite".into())
                .spawn(move || {
                    worker(&worker_db, rx, &worker_state, runtime);
                    worker_state.gone.store(true, SeqCst);
                })
                .map_err(|e| {
                    Error::new(
                        ErrorKind::Connect,
                        format!("cannot start a SQLite worker thread: {e}"),
                    )
                })?;
            Ok(AnyConnection::Sqlite(Box::new(SqliteConnection {
                worker: Worker {
                    tx,
                    state,
                    db,
                    interrupt: Arc::clone(&interrupt),
                },
                interrupt,
            })))
        })
    }
}
