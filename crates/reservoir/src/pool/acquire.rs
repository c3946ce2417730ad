//! The acquire path: take or wait, then make the connection ready
//! (recycle, pre-ping, open, hooks). Every step is cancel safe: a dropped
//! future hands back its queue place, slot or connection.

use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tokio::time::Instant;

use tokio::sync::oneshot;
use tokio::time::timeout_at;

use super::guard::Pooled;

/// The longest a ping may take when the caller has no earlier deadline.
const PING_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);
use super::manager::{BoxFuture, Manager};
use super::shared::{Conn, Grant, GrantResult, Shared, Take};
use super::status::Counters;
use crate::error::{Error, ErrorKind, Result};

type Deadline = Option<Instant>;

/// The future of [`Pool::acquire`](super::Pool::acquire). Written by hand
/// rather than as an `async fn` so that callers can name it (the engine's
/// `acquire()` awaits it in place instead of boxing it), and so that the
/// common outcomes, an idle connection or one handed over by a releaser,
/// need no allocation: only opening a connection, recycling, pre-pinging
/// and the checkout hook run as a boxed future of their own.
#[must_use = "an acquire does nothing until awaited"]
pub struct Checkout<'a, M: Manager> {
    shared: &'a Arc<Shared<M>>,
    caller: &'static Location<'static>,
    step: Step<'a, M>,
}

enum Step<'a, M: Manager> {
    /// Not polled yet.
    Start,
    /// Queued; the grant arrives on the place's channel.
    Waiting {
        place: Queued<'a, M>,
        since: Instant,
    },
    /// Revalidating or opening (the rare, awaiting part of the path).
    Preparing(BoxFuture<'a, Result<Pooled<M>>>),
    Done,
}

impl<'a, M: Manager> Checkout<'a, M> {
    pub(crate) fn new(shared: &'a Arc<Shared<M>>, caller: &'static Location<'static>) -> Self {
        Checkout {
            shared,
            caller,
            step: Step::Start,
        }
    }

    /// Hands the grant out at once when it needs no awaiting (see
    /// `ready_as_is`); else starts the boxed preparation.
    fn grant(&mut self, grant: Grant<M::Connection>, since: Option<Instant>) -> Option<Result<Pooled<M>>> {
        let shared = self.shared;
        match grant {
            Grant::Conn(conn) if shared.ready_as_is(&conn) => Some(Ok(
                shared.hand_out(Pooled::preparing(Arc::clone(shared), conn), self.caller)
            )),
            grant => {
                self.step = Step::Preparing(Box::pin(shared.make_ready(grant, since, self.caller)));
                None
            }
        }
    }
}

impl<M: Manager> Future for Checkout<'_, M> {
    type Output = Result<Pooled<M>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        loop {
            match &mut this.step {
                Step::Start => {
                    // A loop of acquires served from the idle list never
                    // waits: take part in tokio's cooperative budget so it
                    // cannot starve the other tasks (and the timer) of its
                    // worker, as tokio's own primitives do.
                    ready!(tokio::task::coop::poll_proceed(cx)).made_progress();
                    let taken = this.shared.take();
                    this.step = Step::Done;
                    let (grant, since) = match taken {
                        Err(e) => return Poll::Ready(Err(e)),
                        Ok(Take::Idle(conn)) => (Grant::Conn(conn), None),
                        Ok(Take::Slot) => (Grant::Slot, None),
                        Ok(Take::Wait { id, rx, since }) => {
                            Counters::bump(&this.shared.counters.waited);
                            let place = Queued {
                                shared: this.shared,
                                id,
                                rx,
                                served: false,
                            };
                            this.step = Step::Waiting { place, since };
                            continue;
                        }
                    };
                    if let Some(ready) = this.grant(grant, since) {
                        return Poll::Ready(ready);
                    }
                }
                Step::Waiting { place, since } => {
                    let outcome = ready!(Pin::new(&mut place.rx).poll(cx));
                    let since = *since;
                    this.shared.counters.add_wait(since.elapsed());
                    // The grant is ours now (or the pool dropped the sender
                    // without one: it is closing); leave the queue place unarmed.
                    place.served = true;
                    this.step = Step::Done;
                    let grant = match outcome {
                        Ok(Ok(grant)) => grant,
                        Ok(Err(e)) => return Poll::Ready(Err(e)),
                        Err(_) => return Poll::Ready(Err(Error::pool_closed())),
                    };
                    if let Some(ready) = this.grant(grant, Some(since)) {
                        return Poll::Ready(ready);
                    }
                }
                Step::Preparing(preparing) => {
                    let out = ready!(preparing.as_mut().poll(cx));
                    this.step = Step::Done;
                    return Poll::Ready(out);
                }
                Step::Done => panic!("pool::Checkout polled after it completed"),
            }
        }
    }
}

impl<M: Manager> Shared<M> {
    pub(crate) fn acquire(self: &Arc<Self>, caller: &'static Location<'static>) -> Checkout<'_, M> {
        Checkout::new(self, caller)
    }

    /// An idle connection if one can be had without waiting or opening one
    /// (and without overtaking a waiter); `None` otherwise.
    pub(crate) async fn acquire_idle(
        self: &Arc<Self>,
        caller: &'static Location<'static>,
    ) -> Option<Result<Pooled<M>>> {
        let conn = self.take_idle()?;
        Some(self.make_ready(Grant::Conn(conn), None, caller).await)
    }

    /// Whether a connection from the idle list or from a releaser can be
    /// handed out as it is: not due for recycling, not broken, no pre-ping,
    /// no checkout hook (what `make_ready` would otherwise await).
    fn ready_as_is(&self, conn: &Conn<M::Connection>) -> bool {
        !self.config.pool_pre_ping
            && self.hooks.on_checkout.is_none()
            && !self.due_for_recycle(conn)
            && !self.unusable(conn)
            && !self.seen_disconnect_since(conn.verified)
    }

    /// Known dead without a round trip: the manager says it is broken, or
    /// the runtime its sockets belong to has shut down.
    fn unusable(&self, conn: &Conn<M::Connection>) -> bool {
        self.manager.is_broken(&conn.raw) || conn.runtime_gone()
    }

    /// The last step of every acquire: the connection is checked out.
    fn hand_out(&self, mut pooled: Pooled<M>, caller: &'static Location<'static>) -> Pooled<M> {
        pooled.ready(caller);
        Counters::bump(&self.counters.acquired);
        pooled
    }

    /// Turns a grant into a checked-out connection: revalidated or opened,
    /// then the checkout hook.
    async fn make_ready(
        self: &Arc<Self>,
        grant: Grant<M::Connection>,
        since: Option<Instant>,
        caller: &'static Location<'static>,
    ) -> Result<Pooled<M>> {
        // What is left of pool_timeout bounds the pre-ping or the connect
        // (a waiter's time counts from when it joined the queue).
        let deadline = self
            .config
            .pool_timeout
            .and_then(|t| since.unwrap_or_else(Instant::now).checked_add(t));
        let mut pooled = match grant {
            Grant::Conn(conn) => match self.revalidate(conn, deadline).await? {
                Some(pooled) => pooled,
                None => self.open(deadline).await?,
            },
            Grant::Slot => self.open(deadline).await?,
        };
        if let Some(hook) = &self.hooks.on_checkout {
            hook(&mut pooled.conn_mut().raw).await?;
        }
        Ok(self.hand_out(pooled, caller))
    }

    /// Checks a connection taken from the idle list or handed over: recycles
    /// it when too old, closes it when broken (the manager says so without
    /// a round trip), pings it when `pool_pre_ping` is on. `None` means it
    /// was closed and its slot is the caller's to open a new one in. A
    /// ping cut short by the caller's own deadline says nothing about the
    /// connection: it goes back to the idle list and the caller gets
    /// `PoolTimeout`.
    async fn revalidate(
        self: &Arc<Self>,
        conn: Conn<M::Connection>,
        deadline: Deadline,
    ) -> Result<Option<Pooled<M>>> {
        // Idle and handed-over connections are always of the current
        // generation: dispose() drains the idle list and checkin() closes stale ones.
        if self.due_for_recycle(&conn) {
            self.retire(conn);
            return Ok(None);
        }
        if self.unusable(&conn) {
            // Broke while idle: replaced without a ping.
            Counters::bump(&self.counters.broken);
            self.retire(conn);
            return Ok(None);
        }
        let mut pooled = Pooled::preparing(Arc::clone(self), conn);
        if self.config.pool_pre_ping || self.seen_disconnect_since(pooled.conn_mut().verified) {
            // The ping's own deadline, or the caller's if that comes first.
            let own = Instant::now() + PING_DEADLINE;
            let (deadline, callers) = match deadline {
                Some(d) if d < own => (d, true),
                _ => (own, false),
            };
            let alive = match timeout_at(deadline, self.manager.ping(&mut pooled.conn_mut().raw)).await {
                Ok(answer) => answer.is_ok(),
                Err(_) if callers => {
                    // Cut short by the caller's deadline, not the ping's.
                    self.checkin(pooled.into_conn());
                    return Err(Error::pool_timeout(
                        self.config.pool_timeout.unwrap_or(PING_DEADLINE),
                    ));
                }
                Err(_) => false,
            };
            if alive {
                pooled.conn_mut().verified = Instant::now();
            }
            if !alive {
                tracing::debug!(id = pooled.id(), "ping failed; replacing the connection");
                Counters::bump(&self.counters.broken);
                self.retire(pooled.into_conn());
                return Ok(None);
            }
        }
        Ok(Some(pooled))
    }

    /// Opens a connection in a slot the caller holds. On failure (or if this
    /// future is dropped) the slot is freed for the next waiter.
    pub(crate) async fn open(self: &Arc<Self>, deadline: Deadline) -> Result<Pooled<M>> {
        let slot = SlotGuard {
            shared: self,
            armed: true,
        };
        let connect = self.manager.connect();
        let raw = match deadline {
            Some(deadline) => timeout_at(deadline, connect).await.map_err(|_| {
                Error::new(
                    ErrorKind::PoolTimeout,
                    "opening a connection did not finish within pool_timeout",
                )
            })??,
            None => connect.await?,
        };
        let opened = Instant::now();
        let conn = Conn {
            id: self.next_conn_id(),
            created: opened,
            verified: opened,
            generation: self.generation(),
            runtime: if self.manager.runtime_bound() {
                self.runtimes.current()
            } else {
                None
            },
            raw,
        };
        Counters::bump(&self.counters.created);
        if let Some(handle) = self.manager.interrupt_handle(&conn.raw) {
            self.register_interrupt(conn.id, handle);
        }
        let mut slot = slot;
        slot.armed = false;
        let mut pooled = Pooled::preparing(Arc::clone(self), conn);
        if let Some(hook) = &self.hooks.on_connect {
            hook(&mut pooled.conn_mut().raw).await?;
        }
        if self.is_closed() {
            return Err(Error::pool_closed());
        }
        Ok(pooled)
    }
}

/// A place in the wait queue; dropped unserved, it leaves the queue, and a
/// grant that raced in is handed back.
struct Queued<'a, M: Manager> {
    shared: &'a Arc<Shared<M>>,
    id: u64,
    rx: oneshot::Receiver<GrantResult<M::Connection>>,
    served: bool,
}

impl<M: Manager> Drop for Queued<'_, M> {
    fn drop(&mut self) {
        if self.served || self.shared.cancel_wait(self.id) {
            return;
        }
        self.rx.close();
        if let Ok(Ok(grant)) = self.rx.try_recv() {
            self.shared.return_grant(grant);
        }
    }
}

/// A reserved slot with no connection in it yet.
struct SlotGuard<'a, M: Manager> {
    shared: &'a Arc<Shared<M>>,
    armed: bool,
}

impl<M: Manager> Drop for SlotGuard<'_, M> {
    fn drop(&mut self) {
        if self.armed {
            self.shared.release_slot();
        }
    }
}
