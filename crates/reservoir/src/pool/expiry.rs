//! One timer for every waiter's `pool_timeout`. Waiters queue in arrival
//! order and all wait the same time, so their deadlines are in queue order:
//! the head's is the next to expire. A task sleeps until it, fails the
//! waiters whose time is up with `PoolTimeout`, and sleeps again. A timer
//! per waiting acquire (tokio's `timeout`) cost about 850 instructions per
//! acquire on a busy pool (callgrind, PostgreSQL point selects); this costs
//! a wake-up per `pool_timeout` period, and one when a waiter arrives while
//! the queue has been empty since the task's last wake-up.
//!
//! The task starts with the first wait, on that waiter's runtime, holds the
//! pool weakly, and ends when the pool closes or is dropped. If its runtime
//! shuts down under it, the next waiter starts another.

use std::sync::{Arc, Weak};

use tokio::time::Instant;

use super::manager::Manager;
use super::shared::Shared;

/// What the expiry task does next.
pub(crate) enum Next {
    /// Sleep until the head waiter's deadline.
    SleepUntil(Instant),
    /// The queue is empty: wait to be woken by the next waiter.
    Park,
    /// The pool is closed: end.
    Stop,
}

/// The expiry task's state, kept under the pool's lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Watcher {
    NotStarted,
    /// Sleeping until a deadline no later than the head waiter's.
    Running,
    /// Waiting on `Shared::expiry` for a waiter to arrive.
    Parked,
}

/// Starts the expiry task on the current runtime. Outside a runtime there
/// is no timer to run it on, so waits there have no time limit (a tokio
/// timeout would panic instead); returns whether it started.
pub(crate) fn spawn<M: Manager>(shared: &Arc<Shared<M>>) -> bool {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return false;
    };
    let running = Running(Arc::downgrade(shared));
    let wake = Arc::clone(&shared.expiry);
    runtime.spawn(async move {
        loop {
            let next = match running.0.upgrade() {
                Some(shared) => shared.expire_waiters(Instant::now()),
                None => return,
            };
            match next {
                Next::SleepUntil(at) => tokio::time::sleep_until(at).await,
                Next::Park => wake.notified().await,
                Next::Stop => return,
            }
        }
    });
    true
}

/// Held by the task: when the task is dropped without ending (its runtime
/// shut down), the pool learns that it must start a new one.
struct Running<M: Manager>(Weak<Shared<M>>);

impl<M: Manager> Drop for Running<M> {
    fn drop(&mut self) {
        if let Some(shared) = self.0.upgrade() {
            shared.expiry_stopped();
        }
    }
}
