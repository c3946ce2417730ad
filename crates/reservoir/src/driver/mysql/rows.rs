//! Streaming a MySQL result: a task holds the connection while the stream
//! lasts and reads rows only as they are asked for. A stream dropped early
//! leaves the rest of the result to mysql_async, which reads it off before
//! the connection's next statement.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::task::{Context, Poll};

use mysql_async::Params;
use mysql_async::prelude::Queryable;
use tokio::sync::{mpsc, oneshot};

use super::Shared;
use super::error::{breaks_connection, map_error};
use super::types::Shape;
use crate::driver::session::Session;
use crate::driver::{Prefetch, RowSource};
use crate::error::{Error, ErrorKind, Result};
use crate::pool::BoxFuture;
use crate::row::Row;

enum Pull {
    Fetch(usize, oneshot::Sender<Result<Vec<Row>>>),
    Forward(u64, oneshot::Sender<Result<u64>>),
}

pub(super) struct MyRows {
    pulls: mpsc::UnboundedSender<Pull>,
    prefetch: Prefetch,
}

/// What the statement to stream is, and what runs before it.
pub(super) struct Statement {
    pub(super) sql: String,
    pub(super) params: Params,
}

impl MyRows {
    pub(super) fn start(
        conn: Shared,
        statement: Statement,
        session: Arc<Session>,
        broken: Arc<AtomicBool>,
        dirty: Arc<AtomicBool>,
    ) -> Self {
        let (pulls, rx) = mpsc::unbounded_channel();
        tokio::spawn(serve(conn, statement, session, rx, broken, dirty));
        MyRows {
            pulls,
            prefetch: Prefetch::default(),
        }
    }
}

/// Sends a pull to the serving task now; the future waits for its answer.
fn ask<T: Send + 'static>(
    pulls: &mpsc::UnboundedSender<Pull>,
    make: impl FnOnce(oneshot::Sender<Result<T>>) -> Pull,
) -> BoxFuture<'static, Result<T>> {
    let (reply, rx) = oneshot::channel();
    let sent = pulls.send(make(reply)).is_ok();
    Box::pin(async move {
        if !sent {
            return Err(ended());
        }
        rx.await.map_err(|_| ended())?
    })
}

fn ended() -> Error {
    Error::new(ErrorKind::Disconnected, "the MySQL result stream has ended")
}

impl RowSource for MyRows {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Row>>> {
        let pulls = &self.pulls;
        self.prefetch
            .poll_next(cx, |n| ask(pulls, |reply| Pull::Fetch(n, reply)))
    }

    fn fetch(&mut self, n: usize) -> BoxFuture<'static, Result<Vec<Row>>> {
        ask(&self.pulls, |reply| Pull::Fetch(n, reply))
    }

    fn forward(&mut self, n: u64) -> BoxFuture<'static, Result<u64>> {
        ask(&self.pulls, |reply| Pull::Forward(n, reply))
    }
}

/// Answers pulls until the result ends or the stream is dropped. After the
/// end (or an error), pulls get an empty batch (or the error once).
async fn serve(
    conn: Shared,
    statement: Statement,
    session: Arc<Session>,
    mut pulls: mpsc::UnboundedReceiver<Pull>,
    broken: Arc<AtomicBool>,
    dirty: Arc<AtomicBool>,
) {
    let mut conn = conn.lock_owned().await;
    if dirty.load(SeqCst) {
        return;
    }
    for sql in session.take_pending() {
        let result = conn.query_drop(&sql).await;
        super::observe(&session, &conn, &result);
        if let Err(error) = result {
            tracing::debug!(%error, "queued statement failed");
        }
    }
    let fail = |e: mysql_async::Error| {
        if breaks_connection(&e) {
            broken.store(true, SeqCst);
        }
        map_error(e)
    };
    let given = match &statement.params {
        Params::Positional(values) => values.len(),
        _ => 0,
    };
    let prepared = super::prepare(&mut conn, &statement.sql, given).await;
    let run = match prepared {
        Ok(stmt) => conn.exec_iter(stmt, statement.params).await,
        Err(e) => Err(e),
    };
    let mut result = match run {
        Ok(result) => result,
        Err(e) => {
            let error = fail(e);
            if let Some(pull) = pulls.recv().await {
                match pull {
                    Pull::Fetch(_, reply) => drop(reply.send(Err(error))),
                    Pull::Forward(_, reply) => drop(reply.send(Err(error))),
                }
            }
            return;
        }
    };
    let shape = result.columns().map(|c| Shape::of(&c));
    let mut done = shape.is_none();
    while let Some(pull) = pulls.recv().await {
        let (wanted, keep) = match &pull {
            Pull::Fetch(n, _) => (*n as u64, true),
            Pull::Forward(n, _) => (*n, false),
        };
        let mut rows = Vec::new();
        let mut seen = 0u64;
        let mut error = None;
        while !done && seen < wanted {
            match result.next().await {
                Ok(Some(row)) => {
                    seen += 1;
                    if keep {
                        match shape.as_ref().map(|s| s.read(row)) {
                            Some(Ok(row)) => rows.push(row),
                            Some(Err(e)) => error = Some(e),
                            None => {}
                        }
                    }
                }
                Ok(None) => done = true,
                Err(e) => error = Some(fail(e)),
            }
            if error.is_some() {
                done = true;
            }
        }
        match pull {
            Pull::Fetch(_, reply) => drop(reply.send(error.map_or(Ok(rows), Err))),
            Pull::Forward(_, reply) => drop(reply.send(error.map_or(Ok(seen), Err))),
        }
    }
}
