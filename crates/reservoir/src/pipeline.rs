//! Pipelined connectionless reads (the `pipeline_reads` setting, off by
//! default).
//!
//! When every connection is in use, a connectionless read outside any
//! transaction does not wait for a connection of its own: it joins a
//! *lease*, a pooled connection that several reads share at once. Each
//! read runs from its own task, on the lease's [`SharedReader`]:
//! PostgreSQL pipelines the reads sent together on one connection, SQLite
//! queues them on the connection's thread. Where the driver cannot run
//! reads side by side (MySQL, or PostgreSQL with the statement cache off,
//! the pooler setting), they take turns on the lease's connection, which
//! still saves a checkout each.
//!
//! A read joins the least busy lease, or opens a new one from an idle
//! connection while the pool has one to spare; with no lease open, it waits
//! for a connection like any checkout (so `pool_timeout` and the backlog
//! bound apply). A lease returns its connection when its last read ends.
//!
//! The trade, and why it is a setting: reads that share a connection wait
//! for each other's answers on it, so a slow one delays those behind it;
//! and a dropped read that was already sent runs to completion rather
//! than being cancelled on the server.

use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::driver::SharedReader;
use crate::engine::EngineInner;
use crate::error::{Error, ErrorKind, Result};
use crate::exec::{log_statement, statements_logged};
use crate::manager::DriverManager;
use crate::pool::Pooled;
use crate::row::Row;
use crate::value::Value;

/// The open leases.
#[derive(Default)]
pub(crate) struct Pipeline {
    leases: Mutex<Vec<Arc<Lease>>>,
    /// Wakes the reads waiting for a connection when a lease opens: they
    /// join it instead (else, under steady load, no lease ever closes and
    /// they would wait for good).
    opened: tokio::sync::Notify,
    /// Reads queued in the pool for a connection to open a lease on: the
    /// pool's other waiters are the checkouts that leases must not starve.
    queued: AtomicUsize,
}

/// A pooled connection shared by the reads running on it.
struct Lease {
    /// The connection itself, for the readers that take turns on it.
    pooled: tokio::sync::Mutex<Pooled<DriverManager>>,
    reader: Option<SharedReader>,
    /// Reads on it now; changed only under the pipeline's lock, so that a
    /// read never joins a lease that is being closed.
    reads: AtomicUsize,
    /// A read found the connection lost: no new reads, and it is
    /// discarded when the last one ends.
    lost: AtomicBool,
}

impl Lease {
    async fn query(&self, sql: &str, params: Vec<Value>, limit: Option<usize>) -> Result<Vec<Row>> {
        match &self.reader {
            Some(reader) => reader.query(sql, params, limit).await,
            None => self.pooled.lock().await.query_in_place(sql, params, limit).await,
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.lost.load(SeqCst) {
            self.pooled.get_mut().mark_broken();
        }
    }
}

/// One read's place on a lease; leaving (at the end, or when the read's
/// future is dropped) closes the lease if it was the last read.
pub(crate) struct Seat {
    engine: Arc<EngineInner>,
    lease: Arc<Lease>,
}

impl Seat {
    /// Runs the read; a lost connection closes the lease to new reads.
    async fn read(&self, sql: &str, params: Vec<Value>, limit: Option<usize>) -> Result<Vec<Row>> {
        let result = self.lease.query(sql, params, limit).await;
        if result.as_ref().is_err_and(Error::is_disconnect) {
            self.lease.lost.store(true, SeqCst);
        }
        result
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        let closed = {
            let mut leases = self.engine.pipeline.lock();
            let left = self.lease.reads.fetch_sub(1, SeqCst) - 1;
            if left == 0 || self.lease.lost.load(SeqCst) {
                leases
                    .iter()
                    .position(|l| Arc::ptr_eq(l, &self.lease))
                    .map(|i| leases.swap_remove(i))
            } else {
                None
            }
        };
        // Outside the lock: the last reference returns the connection to the pool.
        drop(closed);
    }
}

/// Where [`Pipeline::place`] puts a read.
pub(crate) enum Place {
    Seat(Seat),
    /// Open a lease on an idle connection, if the pool has one.
    Spare,
    None,
}

/// Counts a read in [`Pipeline::queued`] while it waits in the pool.
struct InPoolQueue<'a>(&'a AtomicUsize);

impl<'a> InPoolQueue<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, SeqCst);
        InPoolQueue(count)
    }
}

impl Drop for InPoolQueue<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

impl Pipeline {
    fn lock(&self) -> MutexGuard<'_, Vec<Arc<Lease>>> {
        self.leases.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where a read goes if it goes through the pipeline, decided under one
    /// lock: `None` (it does not) while no lease is open and the pool has a
    /// connection to give at once; else its first place (see `place`).
    pub(crate) fn enter(&self, engine: &Arc<EngineInner>) -> Option<Place> {
        let leases = self.lock();
        if leases.is_empty() {
            drop(leases);
            let status = engine.core.pool.status();
            return (status.idle == 0 && status.size >= status.max).then_some(Place::Spare);
        }
        Some(self.place_in(leases, engine, true))
    }

    /// Runs a read (SQL in the driver's placeholder style) on a lease.
    pub(crate) async fn read(
        &self,
        engine: &Arc<EngineInner>,
        first: Place,
        sql: &str,
        params: Vec<Value>,
        limit: Option<usize>,
    ) -> Result<Vec<Row>> {
        if engine.core.pool.is_closed() {
            return Err(Error::pool_closed());
        }
        let seat = self.seat(engine, first).await?;
        let started = statements_logged(engine.core.echo).then(Instant::now);
        let result = if seat.lease.reader.is_some() {
            seat.read(sql, params, limit).await
        } else {
            // Taking turns, the read runs on a task of its own: dropped half
            // way, it would leave the connection to be cancelled under the
            // reads queued behind it. It runs to completion instead, as a
            // read sent on a shared connection does.
            let sql = sql.to_owned();
            let turn = tokio::spawn(async move { seat.read(&sql, params, limit).await });
            match turn.await {
                Ok(result) => result,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => Err(Error::new(
                    ErrorKind::PoolClosed,
                    "the runtime is shutting down: the read's task was stopped",
                )),
            }
        };
        if let Some(started) = started {
            log_statement(engine.core.echo, sql, started.elapsed(), result.is_ok());
        }
        result
    }

    /// A place on the least busy lease (`first`, from `enter`); on a new
    /// one when the pool has an idle connection for it, or when no lease is
    /// open.
    async fn seat(&self, engine: &Arc<EngineInner>, first: Place) -> Result<Seat> {
        let caller = Location::caller();
        match first {
            Place::Seat(seat) => return Ok(seat),
            Place::Spare => {
                if let Some(pooled) = engine.core.pool.acquire_idle(caller).await {
                    return Self::open(engine, pooled?).await;
                }
            }
            Place::None => {}
        }
        loop {
            let opened = self.opened.notified();
            let mut opened = std::pin::pin!(opened);
            opened.as_mut().enable();
            if let Place::Seat(seat) = self.place(engine, false) {
                return Ok(seat);
            }
            // Dropping the acquire (when a lease opens first) leaves the
            // pool's queue, handing back a connection granted meanwhile.
            let waiting = InPoolQueue::new(&self.queued);
            tokio::select! {
                pooled = engine.core.pool.acquire_from(caller) => {
                    drop(waiting);
                    return Self::open(engine, pooled?).await;
                }
                () = opened => {}
            }
        }
    }

    /// Under one lock: `Spare` when asked and fewer leases are open than the
    /// pool has connections (spread the reads over them), else a place on
    /// the open lease with the fewest reads. None while other checkouts
    /// wait for a connection: the leases then drain and hand theirs over,
    /// and this read queues behind them, so that a stream of reads cannot
    /// keep a transaction from ever starting.
    fn place(&self, engine: &Arc<EngineInner>, spare: bool) -> Place {
        self.place_in(self.lock(), engine, spare)
    }

    /// `place`, with the lease list already locked.
    fn place_in(
        &self,
        leases: MutexGuard<'_, Vec<Arc<Lease>>>,
        engine: &Arc<EngineInner>,
        spare: bool,
    ) -> Place {
        if spare && leases.len() < engine.core.pool.config().capacity() {
            return Place::Spare;
        }
        if engine.core.pool.waiting() > self.queued.load(SeqCst) {
            return Place::None;
        }
        let Some(lease) = leases
            .iter()
            .filter(|l| !l.lost.load(SeqCst))
            .min_by_key(|l| l.reads.load(SeqCst))
        else {
            return Place::None;
        };
        lease.reads.fetch_add(1, SeqCst);
        Place::Seat(Seat {
            engine: Arc::clone(engine),
            lease: Arc::clone(lease),
        })
    }

    /// Opens a lease on `pooled` with the caller's read as its first.
    async fn open(engine: &Arc<EngineInner>, mut pooled: Pooled<DriverManager>) -> Result<Seat> {
        let reader = pooled.shared_reader().await?;
        let lease = Arc::new(Lease {
            pooled: tokio::sync::Mutex::new(pooled),
            reader,
            reads: AtomicUsize::new(1),
            lost: AtomicBool::new(false),
        });
        engine.pipeline.lock().push(Arc::clone(&lease));
        engine.pipeline.opened.notify_waiters();
        Ok(Seat {
            engine: Arc::clone(engine),
            lease,
        })
    }
}
