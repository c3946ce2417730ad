//! Rows pulled on demand: a portal streamed by tokio-postgres, and
//! server-side cursors (DECLARE / FETCH / MOVE).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::task::{Context, Poll};

use futures_core::Stream;
use tokio_postgres::Client;

use super::cache::StatementCache;
use super::check_count;
use super::error::map_error;
use super::io::{Driving, Io, driven};
use super::types::{Shape, bound, read_row, typed};
use crate::driver::session::{Session, TxStatus};
use crate::driver::{Prefetch, RowSource};
use crate::error::Result;
use crate::pool::BoxFuture;
use crate::row::Row;
use crate::value::Value;

// ---- streaming through a portal -----------------------------------------

/// The rows as tokio-postgres streams them, and (prepared) their shape.
type Started = (Pin<Box<tokio_postgres::RowStream>>, Option<Shape>);

enum Portal {
    /// The query, sent on the first pull.
    Unsent(Unsent),
    Starting(BoxFuture<'static, Result<Started>>),
    Streaming(Pin<Box<tokio_postgres::RowStream>>),
    Done,
}

struct Unsent {
    client: Arc<Client>,
    sql: String,
    params: Vec<Value>,
    session: Arc<Session>,
    /// The connection's statement cache; `None`: sent unnamed.
    cache: Option<Arc<StatementCache>>,
}

/// A query's rows, read off tokio-postgres's stream one at a time: a
/// stream decodes and frees each row before the next (no batch is kept).
pub(super) struct PgRows {
    portal: Portal,
    /// This task polls the connection's I/O from the first pull to the end.
    driving: Driving,
    /// From the prepared statement, or (unnamed) from the first row.
    shape: Option<Shape>,
    dirty: Arc<AtomicBool>,
}

impl PgRows {
    /// Rows of `sql`, sent on the first pull (after the session's queued
    /// SQL): prepared
    /// through `cache`, or without one unnamed, with parameters typed by
    /// their values.
    pub(super) fn new(
        client: Arc<Client>,
        io: &Arc<Io>,
        sql: String,
        params: Vec<Value>,
        session: Arc<Session>,
        dirty: Arc<AtomicBool>,
        cache: Option<Arc<StatementCache>>,
    ) -> Self {
        let unsent = Unsent {
            client,
            sql,
            params,
            session,
            cache,
        };
        PgRows {
            portal: Portal::Unsent(unsent),
            driving: Driving::new(Arc::clone(io)),
            shape: None,
            dirty,
        }
    }

    /// The next row as tokio-postgres gives it (`None` at the end; an
    /// error ends the rows).
    fn poll_raw(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<tokio_postgres::Row>>> {
        if matches!(self.portal, Portal::Done) {
            return Poll::Ready(None);
        }
        let (portal, shape) = (&mut self.portal, &mut self.shape);
        let next = std::task::ready!(self.driving.poll(cx, |cx| poll_portal(portal, shape, cx)));
        if matches!(self.portal, Portal::Done) {
            self.driving.stop();
        }
        Poll::Ready(next)
    }

    fn next_raw(&mut self) -> impl Future<Output = Option<Result<tokio_postgres::Row>>> + '_ {
        std::future::poll_fn(move |cx| self.poll_raw(cx))
    }
}

/// Moves `portal` along to its next row, or to its end.
fn poll_portal(
    portal: &mut Portal,
    shape: &mut Option<Shape>,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<tokio_postgres::Row>>> {
    loop {
        match portal {
            Portal::Unsent(_) => {
                if let Portal::Unsent(unsent) = std::mem::replace(portal, Portal::Done) {
                    *portal = Portal::Starting(Box::pin(start(unsent)));
                }
            }
            Portal::Starting(starting) => match std::task::ready!(starting.as_mut().poll(cx)) {
                Ok((rows, started)) => {
                    *shape = started;
                    *portal = Portal::Streaming(rows);
                }
                Err(e) => {
                    *portal = Portal::Done;
                    return Poll::Ready(Some(Err(e)));
                }
            },
            Portal::Streaming(rows) => {
                let next = std::task::ready!(rows.as_mut().poll_next(cx));
                if !matches!(next, Some(Ok(_))) {
                    *portal = Portal::Done;
                }
                return Poll::Ready(next.map(|row| row.map_err(map_error)));
            }
            Portal::Done => return Poll::Ready(None),
        }
    }
}

/// Sends the queued statements, then the query.
async fn start(unsent: Unsent) -> Result<Started> {
    let Unsent {
        client,
        sql,
        params,
        session,
        cache,
    } = unsent;
    for q in session.take_pending() {
        let result = client.batch_execute(&q).await.map_err(map_error);
        super::observe(&session, &q, &result);
    }
    let started = send(&client, &sql, &params, cache).await;
    super::observe(&session, &sql, &started);
    started
}

async fn send(
    client: &Arc<Client>,
    sql: &str,
    params: &[Value],
    cache: Option<Arc<StatementCache>>,
) -> Result<Started> {
    let Some(cache) = cache else {
        let rows = client
            .query_typed_raw(sql, typed(params))
            .await
            .map_err(map_error)?;
        return Ok((Box::pin(rows), None));
    };
    let prepared = cache.prepared(client, sql).await?;
    check_count(&prepared.stmt, params)?;
    let rows = client
        .query_raw(&prepared.stmt, bound(params))
        .await
        .map_err(map_error)?;
    Ok((Box::pin(rows), Some(prepared.shape)))
}

impl RowSource for PgRows {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Row>>> {
        let next = std::task::ready!(self.poll_raw(cx));
        Poll::Ready(next.map(|row| {
            let row = row?;
            let shape = self.shape.get_or_insert_with(|| Shape::of(row.columns()));
            let read = read_row(row, shape);
            if read.is_err() {
                self.portal = Portal::Done;
            }
            read
        }))
    }

    fn fetch(&mut self, n: usize) -> BoxFuture<'_, Result<Vec<Row>>> {
        Box::pin(async move {
            let mut rows = Vec::with_capacity(n.min(1024));
            while rows.len() < n {
                match std::future::poll_fn(|cx| self.poll_next(cx)).await {
                    Some(row) => rows.push(row?),
                    None => break,
                }
            }
            Ok(rows)
        })
    }

    fn forward(&mut self, n: u64) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async move {
            let mut skipped = 0;
            while skipped < n {
                match self.next_raw().await {
                    Some(row) => drop(row?),
                    None => break,
                }
                skipped += 1;
            }
            Ok(skipped)
        })
    }
}

impl Drop for PgRows {
    fn drop(&mut self) {
        // A query sent and not read to its end leaves rows in flight: the
        // pool's reset cancels and resynchronises before the connection is
        // reused.
        if matches!(self.portal, Portal::Starting(_) | Portal::Streaming(_)) {
            self.dirty.store(true, SeqCst);
        }
    }
}

// ---- server-side cursors -----------------------------------------------

pub(super) struct PgCursor {
    client: Arc<Client>,
    io: Arc<Io>,
    name: String,
    prefetch: Prefetch,
    session: Arc<Session>,
    /// The transaction it was declared in (see `Session::serial`).
    serial: u64,
}

impl PgCursor {
    /// A cursor already declared as `name` on `client`.
    pub(super) fn new(client: Arc<Client>, io: &Arc<Io>, name: String, session: &Arc<Session>) -> Self {
        PgCursor {
            client,
            io: Arc::clone(io),
            name,
            prefetch: Prefetch::default(),
            serial: session.serial(),
            session: Arc::clone(session),
        }
    }
}

/// The next `n` rows of cursor `name`.
fn fetch_forward(
    client: &Arc<Client>,
    io: &Arc<Io>,
    name: &str,
    n: usize,
) -> BoxFuture<'static, Result<Vec<Row>>> {
    let client = Arc::clone(client);
    let sql = format!("FETCH FORWARD {n} FROM {name}");
    driven(Arc::clone(io), async move {
        // Unnamed: one round trip, and nothing left behind for a pooler.
        let rows = client.query_typed(&sql, &[]).await.map_err(map_error)?;
        let Some(first) = rows.first() else {
            return Ok(Vec::new());
        };
        let shape = Shape::of(first.columns());
        rows.into_iter().map(|r| read_row(r, &shape)).collect()
    })
}

impl RowSource for PgCursor {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Row>>> {
        let (client, io, name) = (&self.client, &self.io, &self.name);
        self.prefetch
            .poll_next(cx, |n| fetch_forward(client, io, name, n))
    }

    fn fetch(&mut self, n: usize) -> BoxFuture<'static, Result<Vec<Row>>> {
        fetch_forward(&self.client, &self.io, &self.name, n)
    }

    fn forward(&mut self, n: u64) -> BoxFuture<'static, Result<u64>> {
        let client = Arc::clone(&self.client);
        let sql = format!("MOVE FORWARD {n} FROM {}", self.name);
        Box::pin(async move { client.execute_typed(&sql, &[]).await.map_err(map_error) })
    }
}

impl Drop for PgCursor {
    fn drop(&mut self) {
        // Closed before the connection's next statement, while the
        // transaction it was declared in is open (it ends with it, and a
        // CLOSE of an unknown cursor would fail a later transaction).
        let s = &self.session;
        if s.status() == TxStatus::Active && s.serial() == self.serial {
            s.queue(format!("CLOSE {}", self.name));
        }
    }
}
