//! The acquire path: take or wait, then make the connection ready
//! (recycle, pre-ping, open, hooks). Every step is cancel safe: a dropped
//! future hands back its queue place, slot or connection.

use std::panic::Location;
use std::sync::Arc;
use tokio::time::Instant;

use tokio::sync::oneshot;
use tokio::time::timeout_at;

use super::guard::Pooled;
use super::manager::Manager;
use super::shared::{Conn, Grant, GrantResult, Shared, Take};
use super::status::Counters;
use crate::error::{Error, ErrorKind, Result};

type Deadline = Option<Instant>;

impl<M: Manager> Shared<M> {
    pub(crate) async fn acquire(self: &Arc<Self>, caller: &'static Location<'static>) -> Result<Pooled<M>> {
        // A loop of acquires served from the idle list never waits: take part
        // in tokio's cooperative budget so it cannot starve the other tasks
        // (and the timer) of its worker, as tokio's own primitives do.
        tokio::task::consume_budget().await;
        let (grant, since) = match self.take()? {
            Take::Idle(conn) => (Grant::Conn(conn), None),
            Take::Slot => (Grant::Slot, None),
            Take::Wait { id, rx, since } => (self.wait(id, rx, since).await?, Some(since)),
        };
        self.make_ready(grant, since, caller).await
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
            Grant::Conn(conn) => match self.revalidate(conn, deadline).await {
                Some(pooled) => pooled,
                None => self.open(deadline).await?,
            },
            Grant::Slot => self.open(deadline).await?,
        };
        if let Some(hook) = &self.hooks.on_checkout {
            hook(&mut pooled.conn_mut().raw).await?;
        }
        pooled.ready(caller);
        Counters::bump(&self.counters.acquired);
        Ok(pooled)
    }

    /// Waits for a grant; the expiry task ends the wait at `pool_timeout`
    /// with an error sent the same way.
    async fn wait(
        self: &Arc<Self>,
        id: u64,
        rx: oneshot::Receiver<GrantResult<M::Connection>>,
        since: Instant,
    ) -> Result<Grant<M::Connection>> {
        Counters::bump(&self.counters.waited);
        let mut queued = Queued {
            shared: self,
            id,
            rx,
            served: false,
        };
        let outcome = (&mut queued.rx).await;
        self.counters.add_wait(since.elapsed());
        match outcome {
            Ok(grant) => {
                queued.served = true;
                grant
            }
            // The pool dropped the sender without a grant: it is closing.
            Err(_) => Err(Error::pool_closed()),
        }
    }

    /// Checks a connection taken from the idle list or handed over: recycles
    /// it when too old, pings it when `pool_pre_ping` is on. `None` means it
    /// was closed and its slot is the caller's to open a new one in.
    async fn revalidate(
        self: &Arc<Self>,
        conn: Conn<M::Connection>,
        deadline: Deadline,
    ) -> Option<Pooled<M>> {
        // Idle and handed-over connections are always of the current
        // generation: dispose() drains the idle list and checkin() closes stale ones.
        if self
            .config
            .pool_recycle
            .is_some_and(|r| conn.created.elapsed() >= r)
        {
            self.retire(conn);
            return None;
        }
        let mut pooled = Pooled::preparing(Arc::clone(self), conn);
        if self.config.pool_pre_ping {
            let ping = self.manager.ping(&mut pooled.conn_mut().raw);
            let alive = match deadline {
                Some(deadline) => matches!(timeout_at(deadline, ping).await, Ok(Ok(()))),
                None => ping.await.is_ok(),
            };
            if !alive {
                tracing::debug!(id = pooled.id(), "pre-ping failed; replacing the connection");
                Counters::bump(&self.counters.broken);
                self.retire(pooled.into_conn());
                return None;
            }
        }
        Some(pooled)
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
                    ErrorKind::Connect,
                    "opening a connection did not finish within pool_timeout",
                )
            })??,
            None => connect.await?,
        };
        let conn = Conn {
            id: self.next_conn_id(),
            created: Instant::now(),
            generation: self.generation(),
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
