//! Pool settings and their defaults (SQLAlchemy's names).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::manager::BoxFuture;
use crate::error::{Error, Result};

/// An async hook run on a connection (on connect, on checkout).
pub type AsyncHook<C> = Arc<dyn for<'a> Fn(&'a mut C) -> BoxFuture<'a, Result<()>> + Send + Sync>;
/// A synchronous hook run on a connection as it is returned (it runs in `Drop`).
pub type SyncHook<C> = Arc<dyn Fn(&mut C) -> Result<()> + Send + Sync>;

/// Every setting of a pool. Built through [`PoolBuilder`](super::PoolBuilder)
/// or the engine builder.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolConfig {
    /// Connections kept open when idle (default 5).
    pub pool_size: usize,
    /// Extra connections beyond `pool_size`, closed when returned idle (default 10).
    pub max_overflow: usize,
    /// Connections opened at build and kept open (default 0).
    pub min_size: usize,
    /// Longest wait in `acquire`; `None` waits for ever (default 30 s).
    pub pool_timeout: Option<Duration>,
    /// Connections older than this are replaced (default none).
    pub pool_recycle: Option<Duration>,
    /// Idle connections above `min_size` are closed after this long (default none).
    pub idle_timeout: Option<Duration>,
    /// Hand out the most recently returned connection first (default false: FIFO).
    pub pool_use_lifo: bool,
    /// Ping an idle connection before handing it out (default false).
    pub pool_pre_ping: bool,
    /// At most this many acquires wait; more are rejected at once.
    /// Default `Some(5 * (pool_size + max_overflow))`; `None` is unbounded.
    pub max_waiting: Option<usize>,
    /// Warn (with the acquiring call site) about a connection held longer than this.
    pub leak_threshold: Option<Duration>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            pool_size: 5,
            max_overflow: 10,
            min_size: 0,
            pool_timeout: Some(Duration::from_secs(30)),
            pool_recycle: None,
            idle_timeout: None,
            pool_use_lifo: false,
            pool_pre_ping: false,
            max_waiting: Some(5 * 15),
            leak_threshold: None,
        }
    }
}

impl PoolConfig {
    /// The most connections that may exist at once.
    pub fn capacity(&self) -> usize {
        self.pool_size + self.max_overflow
    }

    /// The backlog bound SQLAlchemy's seed describes: five times the capacity.
    pub fn default_max_waiting(pool_size: usize, max_overflow: usize) -> usize {
        5 * (pool_size + max_overflow)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.capacity() == 0 {
            return Err(Error::config(
                "pool_size + max_overflow is 0: the pool could never hand out a connection",
            ));
        }
        if self.min_size > self.capacity() {
            return Err(Error::config(format!(
                "min_size ({}) exceeds pool_size + max_overflow ({})",
                self.min_size,
                self.capacity()
            )));
        }
        if self.pool_timeout == Some(Duration::ZERO) {
            return Err(Error::config(
                "pool_timeout of 0 would fail every wait; use max_waiting(Some(0)) to reject instead of waiting",
            ));
        }
        Ok(())
    }
}

/// Hooks run around a connection's life in the pool.
pub(crate) struct Hooks<C> {
    pub on_connect: Option<AsyncHook<C>>,
    pub on_checkout: Option<AsyncHook<C>>,
    pub on_checkin: Option<SyncHook<C>>,
}

impl<C> Default for Hooks<C> {
    fn default() -> Self {
        Hooks {
            on_connect: None,
            on_checkout: None,
            on_checkin: None,
        }
    }
}

impl<C> fmt::Debug for Hooks<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("on_connect", &self.on_connect.is_some())
            .field("on_checkout", &self.on_checkout.is_some())
            .field("on_checkin", &self.on_checkin.is_some())
            .finish()
    }
}
