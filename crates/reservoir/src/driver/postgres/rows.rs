//! Rows pulled on demand: a portal streamed by tokio-postgres, and
//! server-side cursors (DECLARE / FETCH / MOVE).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

use futures_util::StreamExt;
use tokio_postgres::Client;

use super::check_count;
use super::error::map_error;
use super::types::{Shape, as_refs, binds, read_row, typed};
use crate::driver::InFlight;
use crate::driver::RowSource;
use crate::error::Result;
use crate::pool::BoxFuture;
use crate::row::Row;
use crate::value::Value;

// ---- streaming through a portal -----------------------------------------

enum PortalState {
    Start {
        client: Arc<Client>,
        sql: String,
        params: Vec<Value>,
        queued: Vec<String>,
        unnamed: bool,
    },
    Streaming {
        rows: std::pin::Pin<Box<tokio_postgres::RowStream>>,
        /// From the prepared statement, or (unnamed) from the first row.
        shape: Option<Shape>,
    },
    Done,
}

pub(super) struct PgRows {
    state: Arc<tokio::sync::Mutex<PortalState>>,
    dirty: Arc<AtomicBool>,
}

impl PgRows {
    /// Rows of `sql`, sent on the first pull (after `queued`): prepared, or
    /// `unnamed` with parameters typed by their values.
    pub(super) fn new(
        client: Arc<Client>,
        sql: String,
        params: Vec<Value>,
        queued: Vec<String>,
        dirty: Arc<AtomicBool>,
        unnamed: bool,
    ) -> Self {
        let state = PortalState::Start {
            client,
            sql,
            params,
            queued,
            unnamed,
        };
        PgRows {
            state: Arc::new(tokio::sync::Mutex::new(state)),
            dirty,
        }
    }

    async fn start(state: &mut PortalState) -> Result<()> {
        if let PortalState::Start {
            client,
            sql,
            params,
            queued,
            unnamed,
        } = state
        {
            for q in queued.drain(..) {
                let _ = client.batch_execute(&q).await;
            }
            let b = binds(params);
            let (rows, shape) = if *unnamed {
                let rows = client.query_typed_raw(sql, typed(&b)).await;
                (rows.map_err(map_error)?, None)
            } else {
                let stmt = client.prepare(sql).await.map_err(map_error)?;
                check_count(&stmt, params)?;
                let rows = client.query_raw(&stmt, as_refs(&b)).await.map_err(map_error)?;
                (rows, Some(Shape::of(stmt.columns())))
            };
            *state = PortalState::Streaming {
                rows: Box::pin(rows),
                shape,
            };
        }
        Ok(())
    }

    /// Reads up to `n` rows, keeping them or (for `forward`) only counting.
    fn pull(&self, n: u64, keep: bool) -> BoxFuture<'static, Result<(Vec<Row>, u64)>> {
        let state = Arc::clone(&self.state);
        let dirty = Arc::clone(&self.dirty);
        Box::pin(async move {
            let mut op = InFlight::new(&dirty);
            let mut state = state.lock().await;
            let result = Self::advance(&mut state, n, keep).await;
            if result.is_err() {
                *state = PortalState::Done;
            }
            op.finished = true;
            result
        })
    }

    async fn advance(state: &mut PortalState, n: u64, keep: bool) -> Result<(Vec<Row>, u64)> {
        Self::start(state).await?;
        let mut out = Vec::with_capacity(if keep { n.min(1024) as usize } else { 0 });
        let mut seen = 0;
        if let PortalState::Streaming { rows, shape } = state {
            while seen < n {
                match rows.next().await {
                    Some(row) => {
                        let row = row.map_err(map_error)?;
                        seen += 1;
                        if keep {
                            let shape = shape.get_or_insert_with(|| Shape::of(row.columns()));
                            out.push(read_row(row, shape)?);
                        }
                    }
                    None => {
                        *state = PortalState::Done;
                        break;
                    }
                }
            }
        }
        Ok((out, seen))
    }
}

impl RowSource for PgRows {
    fn fetch(&mut self, n: usize) -> BoxFuture<'static, Result<Vec<Row>>> {
        let pull = self.pull(n as u64, true);
        Box::pin(async move { Ok(pull.await?.0) })
    }

    fn forward(&mut self, n: u64) -> BoxFuture<'static, Result<u64>> {
        let pull = self.pull(n, false);
        Box::pin(async move { Ok(pull.await?.1) })
    }
}

impl Drop for PgRows {
    fn drop(&mut self) {
        // A portal dropped mid-stream leaves rows in flight: the pool's reset
        // cancels and resynchronises before the connection is reused.
        if let Ok(state) = self.state.try_lock() {
            if matches!(*state, PortalState::Streaming { .. }) {
                self.dirty.store(true, SeqCst);
            }
        }
    }
}

// ---- server-side cursors -----------------------------------------------

pub(super) struct PgCursor {
    client: Arc<Client>,
    name: String,
}

impl PgCursor {
    /// A cursor already declared as `name` on `client`.
    pub(super) fn new(client: Arc<Client>, name: String) -> Self {
        PgCursor { client, name }
    }
}

impl RowSource for PgCursor {
    fn fetch(&mut self, n: usize) -> BoxFuture<'static, Result<Vec<Row>>> {
        let client = Arc::clone(&self.client);
        let sql = format!("FETCH FORWARD {n} FROM {}", self.name);
        Box::pin(async move {
            // Unnamed: one round trip, and nothing left behind for a pooler.
            let rows = client.query_typed(&sql, &[]).await.map_err(map_error)?;
            let Some(first) = rows.first() else {
                return Ok(Vec::new());
            };
            let shape = Shape::of(first.columns());
            rows.into_iter().map(|r| read_row(r, &shape)).collect()
        })
    }

    fn forward(&mut self, n: u64) -> BoxFuture<'static, Result<u64>> {
        let client = Arc::clone(&self.client);
        let sql = format!("MOVE FORWARD {n} FROM {}", self.name);
        Box::pin(async move { client.execute_typed(&sql, &[]).await.map_err(map_error) })
    }
}

impl Drop for PgCursor {
    fn drop(&mut self) {
        // Closed with the transaction at the latest; close it now if we can.
        let client = Arc::clone(&self.client);
        let sql = format!("CLOSE {}", self.name);
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = client.batch_execute(&sql).await;
            });
        }
    }
}
