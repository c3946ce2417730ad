//! Point-in-time status and cumulative counters.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// A snapshot of the pool's occupancy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStatus {
    /// Connections that exist or are being opened.
    pub size: usize,
    /// Connections idle in the pool.
    pub idle: usize,
    /// Connections checked out (or being opened for an acquirer).
    pub in_use: usize,
    /// Acquires queued for a connection.
    pub waiting: usize,
    /// The most connections that may exist (`pool_size + max_overflow`).
    pub max: usize,
}

/// Cumulative counters since the pool was built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Successful acquires.
    pub acquired: u64,
    /// Acquires that had to queue.
    pub waited: u64,
    /// Acquires that gave up after `pool_timeout`.
    pub timed_out: u64,
    /// Acquires rejected at once because `max_waiting` were queued.
    pub rejected: u64,
    /// Connections opened.
    pub created: u64,
    /// Connections closed (for any reason).
    pub closed: u64,
    /// Connections discarded as broken (failed ping, reset or marked broken).
    pub broken: u64,
    /// Total time acquires spent queued.
    pub wait_time: Duration,
}

/// Bumped by every acquire from every worker: aligned to keep these writes
/// off the cache lines of the read-mostly pool settings beside them.
#[derive(Default)]
#[repr(align(128))]
pub(crate) struct Counters {
    pub acquired: AtomicU64,
    pub waited: AtomicU64,
    pub timed_out: AtomicU64,
    pub rejected: AtomicU64,
    pub created: AtomicU64,
    pub closed: AtomicU64,
    pub broken: AtomicU64,
    pub wait_nanos: AtomicU64,
}

impl Counters {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    pub fn add_wait(&self, waited: Duration) {
        let nanos = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
        self.wait_nanos.fetch_add(nanos, Relaxed);
    }

    pub fn snapshot(&self) -> PoolStats {
        PoolStats {
            acquired: self.acquired.load(Relaxed),
            waited: self.waited.load(Relaxed),
            timed_out: self.timed_out.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
            created: self.created.load(Relaxed),
            closed: self.closed.load(Relaxed),
            broken: self.broken.load(Relaxed),
            wait_time: Duration::from_nanos(self.wait_nanos.load(Relaxed)),
        }
    }
}
