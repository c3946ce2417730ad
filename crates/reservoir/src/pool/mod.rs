//! A generic async connection pool with SQLAlchemy's settings, usable on its
//! own like deadpool or bb8: it knows nothing about SQL.
//!
//! - Waiters are served strictly first come, first served; a returned
//!   connection (or a freed slot) goes straight to the oldest waiter.
//! - At most `pool_size + max_overflow` connections exist; overflow ones are
//!   closed when returned while `pool_size` are idle.
//! - When `max_waiting` acquires already wait, the next fails at once with
//!   [`ErrorKind::PoolOverloaded`](crate::ErrorKind::PoolOverloaded).
//! - Every future is cancel safe: dropping an acquire while it waits, opens,
//!   pings or runs a hook gives back its queue place, slot or connection.

mod acquire;
mod config;
mod expiry;
mod guard;
mod maintenance;
mod manager;
mod runtimes;
mod shared;
mod status;

use std::panic::Location;
use std::sync::Arc;
use std::time::Duration;

pub use acquire::Checkout;
pub use config::{AsyncHook, PoolConfig, SyncHook};
pub use guard::Pooled;
pub use manager::{BoxFuture, Interrupt, Manager};
pub use status::{PoolStats, PoolStatus};

use crate::error::Result;
use config::Hooks;
use shared::Shared;

/// How [`Pool::close_with`] treats connections that are still checked out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CloseOptions {
    /// Return at once instead of waiting for checked-out connections; they
    /// are closed when they come back.
    pub force: bool,
    /// First interrupt the statements running on checked-out connections;
    /// when waiting, interrupt them again until they are back (a read
    /// queued behind an interrupted one on a shared connection starts next),
    /// for at most [`INTERRUPT_PATIENCE`]: past it, a connection that has not
    /// come back is one whose server no longer answers, and close returns
    /// as `force` does (the connection is closed when it comes back).
    pub interrupt: bool,
}

/// How long `close_with(interrupt)` keeps interrupting before it returns.
pub const INTERRUPT_PATIENCE: Duration = Duration::from_secs(10);

/// A pool of connections opened by a [`Manager`]. Cheap to clone: clones
/// share one pool.
pub struct Pool<M: Manager> {
    shared: Arc<Shared<M>>,
}

impl<M: Manager> Clone for Pool<M> {
    fn clone(&self) -> Self {
        Pool {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<M: Manager> std::fmt::Debug for Pool<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("status", &self.status())
            .field("config", &self.shared.config)
            .finish()
    }
}

impl<M: Manager> Pool<M> {
    /// Starts configuring a pool over `manager`.
    pub fn builder(manager: M) -> PoolBuilder<M> {
        PoolBuilder {
            manager,
            config: PoolConfig::default(),
            max_waiting_set: false,
            hooks: Hooks::default(),
        }
    }

    /// Checks out a connection: an idle one, a new one if there is room, or
    /// the next one returned, waiting in arrival order up to `pool_timeout`.
    #[track_caller]
    pub fn acquire(&self) -> Checkout<'_, M> {
        let caller = Location::caller();
        self.shared.acquire(caller)
    }

    /// [`acquire`](Self::acquire) on behalf of a call site captured earlier.
    pub(crate) fn acquire_from(&self, caller: &'static Location<'static>) -> Checkout<'_, M> {
        self.shared.acquire(caller)
    }

    /// An idle connection if one is there now (no wait, no new connection,
    /// no overtaking a waiter); `None` otherwise.
    pub(crate) async fn acquire_idle(&self, caller: &'static Location<'static>) -> Option<Result<Pooled<M>>> {
        self.shared.acquire_idle(caller).await
    }

    /// How many acquires are queued for a connection (a lock-free hint).
    pub(crate) fn waiting(&self) -> usize {
        self.shared.waiting()
    }

    /// Current occupancy.
    pub fn status(&self) -> PoolStatus {
        self.shared.status()
    }

    /// Counters since the pool was built.
    pub fn stats(&self) -> PoolStats {
        self.shared.counters.snapshot()
    }

    /// The settings in force.
    pub fn config(&self) -> &PoolConfig {
        &self.shared.config
    }

    /// The manager that opens this pool's connections.
    pub fn manager(&self) -> &M {
        &self.shared.manager
    }

    /// Whether [`close`](Self::close) has been called.
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// Closes idle connections now and checked-out ones when they come back;
    /// the pool keeps serving with fresh connections.
    pub fn dispose(&self) {
        self.shared.dispose();
    }

    /// Refuses new acquires, closes idle connections, and returns when every
    /// checked-out connection has come back and been closed.
    pub async fn close(&self) {
        self.close_with(CloseOptions::default()).await;
    }

    /// [`close`](Self::close), optionally interrupting running statements
    /// first and/or not waiting for checked-out connections.
    pub async fn close_with(&self, options: CloseOptions) {
        let shared = &self.shared;
        let shared::Closing { idle, interrupts } = shared.begin_close();
        shared.maintenance.notify_one();
        if options.interrupt {
            interrupt_all(&interrupts).await;
        }
        for conn in idle {
            shared.discard(conn);
        }
        if options.force {
            return;
        }
        if !options.interrupt {
            shared.drained().await;
            return;
        }
        // An interrupted connection can be busy again at once: a read
        // pipelined behind the interrupted one starts when it ends. So what
        // is still checked out is interrupted again until it is back, less
        // often as time goes on (a connection merely held costs a cancel
        // request each time).
        let given_up = tokio::time::Instant::now() + INTERRUPT_PATIENCE;
        let mut pause = Duration::from_millis(100);
        while tokio::time::timeout(pause, shared.drained()).await.is_err() {
            if tokio::time::Instant::now() >= given_up {
                tracing::warn!(
                    in_use = shared.status().in_use,
                    "close: connections still checked out after {INTERRUPT_PATIENCE:?} of interrupts; \
                     they are closed when they come back"
                );
                return;
            }
            interrupt_all(&shared.interrupt_handles()).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }
}

/// Interrupts every connection at once: one whose server does not answer
/// holds up no other (each interrupt bounds its own wait).
async fn interrupt_all(handles: &[Arc<dyn Interrupt>]) {
    futures_util::future::join_all(handles.iter().map(|h| h.interrupt())).await;
}

/// Configures and builds a [`Pool`]. Every setting defaults as in [`PoolConfig`].
pub struct PoolBuilder<M: Manager> {
    manager: M,
    config: PoolConfig,
    max_waiting_set: bool,
    hooks: Hooks<M::Connection>,
}

impl<M: Manager> PoolBuilder<M> {
    /// Connections kept open when idle.
    pub fn pool_size(mut self, n: usize) -> Self {
        self.config.pool_size = n;
        self
    }
    /// Extra connections beyond `pool_size`.
    pub fn max_overflow(mut self, n: usize) -> Self {
        self.config.max_overflow = n;
        self
    }
    /// Connections opened at build and kept open.
    pub fn min_size(mut self, n: usize) -> Self {
        self.config.min_size = n;
        self
    }
    /// Longest wait in `acquire`; `None` waits for ever.
    pub fn pool_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.config.pool_timeout = timeout.into();
        self
    }
    /// Replace connections older than this.
    pub fn pool_recycle(mut self, age: impl Into<Option<Duration>>) -> Self {
        self.config.pool_recycle = age.into();
        self
    }
    /// Close idle connections above `min_size` after this long.
    pub fn idle_timeout(mut self, idle: impl Into<Option<Duration>>) -> Self {
        self.config.idle_timeout = idle.into();
        self
    }
    /// Hand out the most recently returned connection first.
    pub fn pool_use_lifo(mut self, lifo: bool) -> Self {
        self.config.pool_use_lifo = lifo;
        self
    }
    /// Ping idle connections before handing them out.
    pub fn pool_pre_ping(mut self, ping: bool) -> Self {
        self.config.pool_pre_ping = ping;
        self
    }
    /// Backlog bound; `None` is unbounded. Default: five times the capacity.
    pub fn max_waiting(mut self, max: Option<usize>) -> Self {
        self.config.max_waiting = max;
        self.max_waiting_set = true;
        self
    }
    /// Warn about connections held longer than this.
    pub fn leak_threshold(mut self, held: impl Into<Option<Duration>>) -> Self {
        self.config.leak_threshold = held.into();
        self
    }
    /// Replaces every setting at once (`max_waiting` included).
    pub fn config(mut self, config: PoolConfig) -> Self {
        self.config = config;
        self.max_waiting_set = true;
        self
    }
    /// Runs on every new connection before its first use; an error fails the acquire.
    pub fn on_connect<F>(mut self, hook: F) -> Self
    where
        F: for<'a> Fn(&'a mut M::Connection) -> BoxFuture<'a, Result<()>> + Send + Sync + 'static,
    {
        self.hooks.on_connect = Some(Arc::new(hook));
        self
    }
    /// Runs on every checkout; an error closes the connection and fails the acquire.
    pub fn on_checkout<F>(mut self, hook: F) -> Self
    where
        F: for<'a> Fn(&'a mut M::Connection) -> BoxFuture<'a, Result<()>> + Send + Sync + 'static,
    {
        self.hooks.on_checkout = Some(Arc::new(hook));
        self
    }
    /// Runs synchronously as a connection is returned; an error closes it.
    pub fn on_checkin<F>(mut self, hook: F) -> Self
    where
        F: Fn(&mut M::Connection) -> Result<()> + Send + Sync + 'static,
    {
        self.hooks.on_checkin = Some(Arc::new(hook));
        self
    }

    /// The settings as they stand (with the default backlog bound applied).
    pub fn settings(&self) -> PoolConfig {
        let mut config = self.config.clone();
        if !self.max_waiting_set {
            config.max_waiting = Some(PoolConfig::default_max_waiting(
                config.pool_size,
                config.max_overflow,
            ));
        }
        config
    }

    /// Validates the settings, opens `min_size` connections (failing with the
    /// connect error if the server cannot be reached) and starts the
    /// maintenance task. Must run inside a tokio runtime.
    pub async fn build(self) -> Result<Pool<M>> {
        let config = self.settings();
        config.validate()?;
        let shared = Arc::new(Shared::new(self.manager, config, self.hooks));
        let mut opened = Vec::with_capacity(shared.config.min_size);
        while shared.reserve_for_min_size() {
            let deadline = shared
                .config
                .pool_timeout
                .map(|t| tokio::time::Instant::now() + t);
            opened.push(shared.open(deadline).await?);
        }
        for pooled in opened {
            shared.checkin(pooled.into_conn());
        }
        if maintenance::needed(&shared) {
            maintenance::spawn(&shared);
        }
        Ok(Pool { shared })
    }
}
