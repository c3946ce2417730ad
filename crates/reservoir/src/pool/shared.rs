//! The state every handle of one pool shares, and the few operations that
//! change it. One mutex owns the occupancy (idle list, slot count, waiter
//! queue); it is never held across an await.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{
    AtomicBool, AtomicU64, AtomicUsize, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::time::Instant;

use tokio::sync::{Notify, oneshot};

use super::config::{Hooks, PoolConfig};
use super::expiry::{self, Next, Watcher};
use super::manager::{Interrupt, Manager};
use super::status::{Counters, PoolStatus};
use crate::error::{Error, ErrorKind, Result};

/// A raw connection with the bookkeeping the pool keeps about it.
pub(crate) struct Conn<C> {
    pub raw: C,
    pub id: u64,
    pub created: Instant,
    /// When it was last known to work: opened, or answered a ping. One
    /// not known to work since the pool last saw a disconnect is pinged
    /// before it is handed out.
    pub verified: Instant,
    /// Connections from before the last `dispose()` are closed on return.
    pub generation: u64,
    /// The runtime its sockets belong to (`None`: not bound to one).
    pub runtime: Option<super::runtimes::RuntimeToken>,
}

impl<C> Conn<C> {
    /// Its sockets belonged to a runtime that has shut down.
    pub fn runtime_gone(&self) -> bool {
        self.runtime
            .as_ref()
            .is_some_and(|token| !super::runtimes::is_alive(token))
    }
}

struct Idle<C> {
    conn: Conn<C>,
    since: Instant,
}

/// What a releaser hands to the oldest waiter: a connection, or the right to
/// open one (a freed slot).
pub(crate) enum Grant<C> {
    Conn(Conn<C>),
    Slot,
}

pub(crate) type GrantResult<C> = Result<Grant<C>>;

struct Waiter<C> {
    id: u64,
    tx: oneshot::Sender<GrantResult<C>>,
    /// When it joined the queue: its `pool_timeout` counts from here.
    since: Instant,
}

/// The outcome of trying to take a connection without waiting.
pub(crate) enum Take<C> {
    Idle(Conn<C>),
    /// A slot was reserved: the caller opens the connection.
    Slot,
    /// Queued at `since`; the grant (or the `pool_timeout` error) arrives on `rx`.
    Wait {
        id: u64,
        rx: oneshot::Receiver<GrantResult<C>>,
        since: Instant,
    },
}

struct State<C> {
    idle: VecDeque<Idle<C>>,
    /// Connections that exist or are being opened (slots taken).
    size: usize,
    waiters: VecDeque<Waiter<C>>,
    next_waiter: u64,
    generation: u64,
    /// Interrupt handles of every open connection, by connection id.
    interrupts: HashMap<u64, Arc<dyn Interrupt>>,
    /// The task that fails waiters at `pool_timeout`.
    watcher: Watcher,
}

/// What `begin_close` leaves for the closer to do outside the lock.
pub(crate) struct Closing<C> {
    pub idle: Vec<Conn<C>>,
    pub interrupts: Vec<Arc<dyn Interrupt>>,
}

/// The pool's lock, taken twice per checkout from every worker: aligned to
/// keep its writes off the cache lines of the read-mostly settings.
#[repr(align(128))]
struct Locked<T>(Mutex<T>);

pub(crate) struct Shared<M: Manager> {
    pub manager: M,
    pub config: PoolConfig,
    pub hooks: Hooks<M::Connection>,
    pub counters: Counters,
    /// Wakes the maintenance task (a slot fell below `min_size`, or close).
    pub maintenance: Arc<Notify>,
    /// Wakes the parked expiry task (a waiter arrived, or close).
    pub expiry: Arc<Notify>,
    state: Locked<State<M::Connection>>,
    /// `state.waiters.len()`, readable without the lock (set under it).
    waiting: AtomicUsize,
    /// Set once, under the lock, by `begin_close`: code under the lock sees
    /// it in order with the queue, and the pipeline checks it on every read
    /// without taking the lock.
    closed: AtomicBool,
    next_conn_id: AtomicU64,
    /// Signalled when the last connection of a closed pool is gone.
    drained: Notify,
    /// The runtimes connections were opened on (see `runtimes`).
    pub runtimes: super::runtimes::Runtimes,
    /// When a checked-out connection was last found disconnected, as
    /// nanoseconds after `epoch` (0: never). Connections opened before it
    /// are pinged at their next checkout: the server may have restarted
    /// under all of them (SQLAlchemy invalidates the pool the same way).
    last_disconnect: AtomicU64,
    epoch: Instant,
}

impl<M: Manager> Shared<M> {
    pub fn new(manager: M, config: PoolConfig, hooks: Hooks<M::Connection>) -> Self {
        Shared {
            manager,
            config,
            hooks,
            last_disconnect: AtomicU64::new(0),
            epoch: Instant::now(),
            counters: Counters::default(),
            maintenance: Arc::new(Notify::new()),
            expiry: Arc::new(Notify::new()),
            state: Locked(Mutex::new(State {
                idle: VecDeque::new(),
                size: 0,
                waiters: VecDeque::new(),
                next_waiter: 0,
                generation: 0,
                interrupts: HashMap::new(),
                watcher: Watcher::NotStarted,
            })),
            runtimes: Default::default(),
            waiting: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            next_conn_id: AtomicU64::new(1),
            drained: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<M::Connection>> {
        // No code path panics while holding the lock, but a poisoned lock must
        // not take the whole pool down with it.
        self.state.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes the queue length; called under the lock after it changes.
    fn count_waiters(&self, st: &State<M::Connection>) {
        self.waiting.store(st.waiters.len(), Relaxed);
    }

    /// How many acquires are queued (read without the lock: a hint).
    pub fn waiting(&self) -> usize {
        self.waiting.load(Relaxed)
    }

    /// Takes an idle connection or a free slot, or joins the queue.
    /// Waiters are served in arrival order, so nobody overtakes a queue.
    pub fn take(self: &Arc<Self>) -> Result<Take<M::Connection>> {
        let mut st = self.lock();
        if self.is_closed() {
            return Err(Error::pool_closed());
        }
        if st.waiters.is_empty() {
            if let Some(conn) = self.pop_idle(&mut st) {
                return Ok(Take::Idle(conn));
            }
            if st.size < self.config.capacity() {
                st.size += 1;
                return Ok(Take::Slot);
            }
        }
        if let Some(max) = self.config.max_waiting {
            if st.waiters.len() >= max {
                drop(st);
                Counters::bump(&self.counters.rejected);
                return Err(Error::new(
                    ErrorKind::PoolOverloaded,
                    format!("{max} requests are already waiting for a connection"),
                ));
            }
        }
        let (tx, rx) = oneshot::channel();
        let id = st.next_waiter;
        st.next_waiter += 1;
        let since = Instant::now();
        st.waiters.push_back(Waiter { id, tx, since });
        self.count_waiters(&st);
        if self.config.pool_timeout.is_some() {
            let before = std::mem::replace(&mut st.watcher, Watcher::Running);
            drop(st);
            match before {
                Watcher::Running => {}
                Watcher::Parked => self.expiry.notify_one(),
                // Spawned outside the lock: a runtime that is shutting down
                // drops the task at once, and its drop takes the lock.
                Watcher::NotStarted => {
                    if !expiry::spawn(self) {
                        self.expiry_stopped();
                    }
                }
            }
        }
        Ok(Take::Wait { id, rx, since })
    }

    /// An idle connection, if there is one and nobody is waiting.
    pub fn take_idle(&self) -> Option<Conn<M::Connection>> {
        let mut st = self.lock();
        if self.is_closed() || !st.waiters.is_empty() {
            return None;
        }
        self.pop_idle(&mut st)
    }

    fn pop_idle(&self, st: &mut State<M::Connection>) -> Option<Conn<M::Connection>> {
        let idle = if self.config.pool_use_lifo {
            st.idle.pop_back()
        } else {
            st.idle.pop_front()
        };
        idle.map(|idle| idle.conn)
    }

    /// Fails the waiters whose `pool_timeout` is up (the expiry task's
    /// work) and says when to look again.
    pub(crate) fn expire_waiters(&self, now: Instant) -> Next {
        let Some(timeout) = self.config.pool_timeout else {
            return Next::Stop;
        };
        let mut st = self.lock();
        if self.is_closed() {
            return Next::Stop;
        }
        // Deadlines follow queue order (a waiter's `since` is read under
        // this lock when it joins), so the first one still running ends the scan.
        // A timeout too long for the clock to represent never expires.
        while let Some(deadline) = st.waiters.front().and_then(|w| w.since.checked_add(timeout)) {
            if deadline > now {
                self.count_waiters(&st);
                return Next::SleepUntil(deadline);
            }
            let waiter = st.waiters.pop_front().expect("the head was just seen");
            // Counted before the waiter can wake and read the stats.
            if !waiter.tx.is_closed() {
                Counters::bump(&self.counters.timed_out);
                let _ = waiter.tx.send(Err(Error::pool_timeout(now - waiter.since)));
            }
        }
        self.count_waiters(&st);
        st.watcher = Watcher::Parked;
        Next::Park
    }

    /// The expiry task is gone (its runtime shut down, or the pool closed):
    /// the next waiter starts a new one.
    pub(crate) fn expiry_stopped(&self) {
        self.lock().watcher = Watcher::NotStarted;
    }

    /// Removes a waiter that gave up. Returns false if it was already served
    /// (its grant is then in its channel, for the caller to hand back).
    pub fn cancel_wait(&self, id: u64) -> bool {
        let mut st = self.lock();
        match st.waiters.iter().position(|w| w.id == id) {
            Some(pos) => {
                st.waiters.remove(pos);
                self.count_waiters(&st);
                true
            }
            None => false,
        }
    }

    /// Whether `conn` is older than `pool_recycle` (it is then replaced
    /// rather than handed out or kept).
    pub fn due_for_recycle(&self, conn: &Conn<M::Connection>) -> bool {
        self.config
            .pool_recycle
            .is_some_and(|r| conn.created.elapsed() >= r)
    }

    /// Takes the oldest waiter off the queue, to be sent a grant once the
    /// lock is released: waking its task can take a syscall (unparking the
    /// other worker), and the other worker may be waiting for this lock. A
    /// waiter that gives up meanwhile finds itself off the queue, closes its
    /// channel, and the send hands the grant back to the sender.
    fn next_waiter(&self, st: &mut State<M::Connection>) -> Option<Waiter<M::Connection>> {
        let waiter = st.waiters.pop_front()?;
        self.count_waiters(st);
        Some(waiter)
    }

    pub fn next_conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Relaxed)
    }

    /// A checked-out connection was found disconnected just now.
    pub fn note_disconnect(&self) {
        let nanos = self.epoch.elapsed().as_nanos().max(1);
        self.last_disconnect
            .fetch_max(u64::try_from(nanos).unwrap_or(u64::MAX), Release);
    }

    /// Whether the pool saw a disconnect after `verified` (when a
    /// connection was last known to work).
    pub fn seen_disconnect_since(&self, verified: Instant) -> bool {
        match self.last_disconnect.load(Acquire) {
            0 => false,
            nanos => verified < self.epoch + std::time::Duration::from_nanos(nanos),
        }
    }

    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// The interrupt handles of the open connections (once the pool is
    /// closing: of the ones still checked out).
    pub fn interrupt_handles(&self) -> Vec<Arc<dyn Interrupt>> {
        self.lock().interrupts.values().cloned().collect()
    }

    pub fn register_interrupt(&self, id: u64, handle: Arc<dyn Interrupt>) {
        self.lock().interrupts.insert(id, handle);
    }

    /// Returns a clean connection: to the oldest waiter, to the idle list, or
    /// closed when it is surplus (overflow, disposed, or the pool is closed).
    pub fn checkin(self: &Arc<Self>, mut conn: Conn<M::Connection>) {
        loop {
            let mut st = self.lock();
            if self.is_closed() || conn.generation != st.generation {
                drop(st);
                self.discard(conn);
                return;
            }
            if let Some(waiter) = self.next_waiter(&mut st) {
                drop(st);
                match waiter.tx.send(Ok(Grant::Conn(conn))) {
                    Ok(()) => return,
                    // It gave up: the next waiter, or the idle list.
                    Err(Ok(Grant::Conn(back))) => conn = back,
                    Err(_) => unreachable!("the connection sent comes back"),
                }
                continue;
            }
            if st.idle.len() < self.config.pool_size {
                st.idle.push_back(Idle {
                    conn,
                    since: Instant::now(),
                });
                return;
            }
            drop(st);
            self.discard(conn);
            return;
        }
    }

    /// Closes a connection and frees its slot.
    pub fn discard(self: &Arc<Self>, conn: Conn<M::Connection>) {
        self.retire(conn);
        self.release_slot();
    }

    /// Closes a connection but keeps its slot for the caller to reuse.
    pub fn retire(self: &Arc<Self>, conn: Conn<M::Connection>) {
        self.lock().interrupts.remove(&conn.id);
        Counters::bump(&self.counters.closed);
        self.close_raw(conn.raw);
    }

    fn close_raw(self: &Arc<Self>, raw: M::Connection) {
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let shared = Arc::clone(self);
                handle.spawn(async move { shared.manager.close(raw).await });
            }
            // Outside a runtime (a guard dropped after shutdown): the
            // connection's own Drop is all the closing there can be.
            Err(_) => drop(raw),
        }
    }

    /// Frees a slot: the oldest waiter gets the right to open a connection.
    pub fn release_slot(&self) {
        let mut st = self.lock();
        while !self.is_closed() {
            let Some(waiter) = self.next_waiter(&mut st) else {
                break;
            };
            drop(st);
            if waiter.tx.send(Ok(Grant::Slot)).is_ok() {
                return;
            }
            st = self.lock();
        }
        st.size -= 1;
        let drained = self.is_closed() && st.size == 0;
        let below_min = st.size < self.config.min_size;
        drop(st);
        if drained {
            self.drained.notify_waiters();
        }
        if below_min {
            self.maintenance.notify_one();
        }
    }

    /// Hands a grant back that its waiter no longer wants.
    pub fn return_grant(self: &Arc<Self>, grant: Grant<M::Connection>) {
        match grant {
            Grant::Conn(conn) => self.checkin(conn),
            Grant::Slot => self.release_slot(),
        }
    }

    pub fn status(&self) -> PoolStatus {
        let st = self.lock();
        PoolStatus {
            size: st.size,
            idle: st.idle.len(),
            in_use: st.size - st.idle.len(),
            waiting: st.waiters.len(),
            max: self.config.capacity(),
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Acquire)
    }

    /// Closes idle connections now and marks the checked-out ones to be
    /// closed when they come back.
    pub fn dispose(self: &Arc<Self>) {
        let idle: Vec<_> = {
            let mut st = self.lock();
            st.generation += 1;
            st.idle.drain(..).collect()
        };
        for idle in idle {
            self.discard(idle.conn);
        }
        self.maintenance.notify_one();
    }

    /// Marks the pool closed, fails every waiter, and returns the idle
    /// connections (slots still counted) and the interrupt handles of the
    /// checked-out ones.
    pub fn begin_close(&self) -> Closing<M::Connection> {
        let mut st = self.lock();
        self.closed.store(true, Release);
        self.expiry.notify_one();
        for waiter in st.waiters.drain(..) {
            let _ = waiter.tx.send(Err(Error::pool_closed()));
        }
        self.count_waiters(&st);
        let idle: Vec<_> = st.idle.drain(..).map(|i| i.conn).collect();
        for conn in &idle {
            st.interrupts.remove(&conn.id);
        }
        let interrupts = st.interrupts.values().cloned().collect();
        Closing { idle, interrupts }
    }

    /// Waits until every connection of a closed pool has been closed.
    pub async fn drained(&self) {
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.lock().size == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Idle connections past `idle_timeout` (above `min_size`) or past
    /// `pool_recycle`, removed from the idle list; their slots stay counted.
    pub fn take_expired(&self, now: Instant) -> Vec<Conn<M::Connection>> {
        let cfg = &self.config;
        let mut st = self.lock();
        let mut keep = VecDeque::with_capacity(st.idle.len());
        let mut expired = Vec::new();
        let mut size = st.size;
        for idle in st.idle.drain(..) {
            let too_old = cfg
                .pool_recycle
                .is_some_and(|r| now.duration_since(idle.conn.created) >= r);
            let idle_too_long = cfg
                .idle_timeout
                .is_some_and(|t| now.duration_since(idle.since) >= t)
                && size > cfg.min_size;
            if too_old || idle_too_long {
                size -= 1;
                expired.push(idle.conn);
            } else {
                keep.push_back(idle);
            }
        }
        st.idle = keep;
        expired
    }

    /// Reserves a slot for the maintenance task if the pool is below
    /// `min_size` and nobody is queued (queued acquirers come first).
    pub fn reserve_for_min_size(&self) -> bool {
        let mut st = self.lock();
        if self.is_closed() || st.size >= self.config.min_size || !st.waiters.is_empty() {
            return false;
        }
        st.size += 1;
        true
    }
}

impl<M: Manager> Drop for Shared<M> {
    fn drop(&mut self) {
        // Let the background tasks see that the pool is gone.
        self.maintenance.notify_one();
        self.expiry.notify_one();
    }
}
