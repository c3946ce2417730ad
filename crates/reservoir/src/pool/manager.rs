//! What the pool needs to know about a connection: how to open, test, reset,
//! close and interrupt it. The pool itself knows nothing about SQL.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::error::Result;

/// A boxed, sendable future (hooks and interrupt handles return these).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Opens and maintains the connections of a [`Pool`](super::Pool).
///
/// Only `connect` and `ping` are required; the rest have defaults for
/// connections that need no reset, never break silently and cannot be interrupted.
///
/// ```
/// use reservoir::pool::{Manager, Pool};
///
/// struct Counter;
/// impl Manager for Counter {
///     type Connection = u32;
///     async fn connect(&self) -> reservoir::Result<u32> { Ok(7) }
///     async fn ping(&self, _conn: &mut u32) -> reservoir::Result<()> { Ok(()) }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> reservoir::Result<()> {
/// let pool = Pool::builder(Counter).pool_size(2).build().await?;
/// let conn = pool.acquire().await?;
/// assert_eq!(*conn, 7);
/// # Ok(()) }
/// ```
pub trait Manager: Send + Sync + 'static {
    /// The raw connection the pool hands out.
    type Connection: Send + 'static;

    /// Opens a new connection. Errors should be [`ErrorKind::Connect`](crate::ErrorKind::Connect).
    fn connect(&self) -> impl Future<Output = Result<Self::Connection>> + Send;

    /// Checks that an idle connection still works (used by `pool_pre_ping`).
    fn ping(&self, conn: &mut Self::Connection) -> impl Future<Output = Result<()>> + Send;

    /// Whether a connection's I/O belongs to the tokio runtime it was
    /// opened on (its sockets are registered with that runtime's reactor).
    /// If so, the pool replaces it unused once that runtime has shut down.
    fn runtime_bound(&self) -> bool {
        false
    }

    /// Cheap, synchronous check on return and on checkout: a broken
    /// connection is discarded (on checkout, replaced without a ping).
    fn is_broken(&self, _conn: &Self::Connection) -> bool {
        false
    }

    /// Cheap, synchronous check on return: whether [`reset`](Self::reset) must
    /// run (for example an open transaction) before the connection is reused.
    fn needs_reset(&self, _conn: &Self::Connection) -> bool {
        false
    }

    /// Brings a returned connection back to a clean state; an error discards it.
    fn reset(&self, _conn: &mut Self::Connection) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// Closes a connection the pool no longer keeps.
    fn close(&self, conn: Self::Connection) -> impl Future<Output = ()> + Send {
        async move { drop(conn) }
    }

    /// A handle that can interrupt the statement running on `conn` from
    /// another task (used by `close_with(CloseOptions { interrupt: true, .. })`).
    fn interrupt_handle(&self, _conn: &Self::Connection) -> Option<Arc<dyn Interrupt>> {
        None
    }
}

/// Cancels whatever statement is running on one connection.
pub trait Interrupt: Send + Sync + 'static {
    /// Sends the interrupt; returns when it has been delivered (not when the
    /// statement has stopped).
    fn interrupt(&self) -> BoxFuture<'_, ()>;
}
