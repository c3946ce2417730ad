//! `Pooled`: a checked-out connection that goes back to its pool on drop.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::panic::Location;
use std::sync::Arc;
use tokio::time::Instant;

use super::manager::Manager;
use super::shared::{Conn, Shared};
use super::status::Counters;

/// A connection checked out of a [`Pool`](super::Pool). Derefs to the raw
/// connection; dropping it returns the connection (reset first if the manager
/// says so), or closes it if it is broken or was invalidated.
pub struct Pooled<M: Manager> {
    shared: Arc<Shared<M>>,
    conn: Option<Conn<M::Connection>>,
    /// Set while the connection is being prepared (ping, hooks) or after
    /// `invalidate`: a drop then closes it instead of returning it.
    discard: bool,
    checked_out: Option<(Instant, &'static Location<'static>)>,
}

impl<M: Manager> Pooled<M> {
    /// Wraps a connection that is not yet ready: dropping it discards it.
    pub(crate) fn preparing(shared: Arc<Shared<M>>, conn: Conn<M::Connection>) -> Self {
        Pooled {
            shared,
            conn: Some(conn),
            discard: true,
            checked_out: None,
        }
    }

    /// The connection is ready: from now on a drop returns it.
    pub(crate) fn ready(&mut self, caller: &'static Location<'static>) {
        self.discard = false;
        if self.shared.config.leak_threshold.is_some() {
            self.checked_out = Some((Instant::now(), caller));
        }
    }

    pub(crate) fn conn_mut(&mut self) -> &mut Conn<M::Connection> {
        self.conn
            .as_mut()
            .expect("a Pooled always holds its connection until dropped")
    }

    pub(crate) fn into_conn(mut self) -> Conn<M::Connection> {
        self.conn
            .take()
            .expect("a Pooled always holds its connection until dropped")
    }

    /// A number that identifies the raw connection within its pool.
    pub fn id(&self) -> u64 {
        self.conn.as_ref().map_or(0, |c| c.id)
    }

    /// When the raw connection was opened.
    pub fn created_at(&self) -> std::time::Instant {
        self.conn
            .as_ref()
            .map_or_else(std::time::Instant::now, |c| c.created.into_std())
    }

    /// Closes the raw connection instead of returning it to the pool.
    pub fn invalidate(mut self) {
        self.discard = true;
    }

    /// Marks the connection to be closed, not reused, when this guard drops.
    pub fn mark_broken(&mut self) {
        self.discard = true;
    }

    /// The connection was found disconnected: it is closed when this guard
    /// drops, and every idle connection opened before now is pinged at its
    /// next checkout (the server may have restarted under all of them).
    pub fn mark_disconnected(&mut self) {
        self.discard = true;
        self.shared.note_disconnect();
    }
}

impl<M: Manager> Deref for Pooled<M> {
    type Target = M::Connection;
    fn deref(&self) -> &M::Connection {
        &self
            .conn
            .as_ref()
            .expect("a Pooled always holds its connection until dropped")
            .raw
    }
}

impl<M: Manager> DerefMut for Pooled<M> {
    fn deref_mut(&mut self) -> &mut M::Connection {
        &mut self.conn_mut().raw
    }
}

impl<M: Manager> fmt::Debug for Pooled<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pooled").field("id", &self.id()).finish()
    }
}

impl<M: Manager> Drop for Pooled<M> {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let shared = &self.shared;
        if self.discard {
            Counters::bump(&shared.counters.broken);
            shared.discard(conn);
            return;
        }
        if let (Some(limit), Some((since, caller))) = (shared.config.leak_threshold, self.checked_out) {
            let held = since.elapsed();
            if held > limit {
                tracing::warn!(?held, ?limit, %caller, "connection held longer than leak_threshold");
            }
        }
        if shared.manager.is_broken(&conn.raw) {
            Counters::bump(&shared.counters.broken);
            shared.discard(conn);
            return;
        }
        if let Some(hook) = &shared.hooks.on_checkin {
            if let Err(error) = hook(&mut conn.raw) {
                tracing::debug!(%error, "on_checkin hook failed; closing the connection");
                shared.discard(conn);
                return;
            }
        }
        if shared.due_for_recycle(&conn) {
            shared.discard(conn);
            return;
        }
        if shared.manager.needs_reset(&conn.raw) {
            reset_then_checkin(Arc::clone(shared), conn);
            return;
        }
        shared.checkin(conn);
    }
}

/// Resets a returned connection on a task of its own (Drop cannot await).
/// The guard is made before the task, so that a task dropped mid-reset, or
/// before it ever ran (spawned on a runtime that is shutting down), still
/// discards the connection and frees its slot.
fn reset_then_checkin<M: Manager>(shared: Arc<Shared<M>>, conn: Conn<M::Connection>) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        shared.discard(conn);
        return;
    };
    let mut guard = Pooled::preparing(Arc::clone(&shared), conn);
    handle.spawn(async move {
        match shared.manager.reset(&mut guard.conn_mut().raw).await {
            Ok(()) => shared.checkin(guard.into_conn()),
            Err(error) => tracing::debug!(%error, "reset on return failed; closing the connection"),
        }
    });
}
