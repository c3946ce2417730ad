//! `RowStream`: rows pulled from the database as the stream is polled (each
//! source reads ahead as suits it), so memory stays flat whatever the
//! result size.

use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

use crate::driver::RowSource;
use crate::driver::session::StreamGuard;
use crate::error::{Error, Result};
use crate::pool::BoxFuture;
use crate::row::Row;

/// A stream of rows; borrows its connection until dropped. Dropping it early
/// stops the query.
pub struct RowStream<'c> {
    /// Locking (and if lazy, checking out) the connection, then starting the query.
    opening: Option<BoxFuture<'static, Result<Opened>>>,
    /// `None` once the rows have ended (or failed to start). The guard
    /// tells the session a stream holds the wire while the rows last.
    source: Option<Opened>,
    error: Option<Error>,
    _conn: PhantomData<&'c mut ()>,
}

impl std::fmt::Debug for RowStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowStream")
            .field("finished", &(self.opening.is_none() && self.source.is_none()))
            .finish_non_exhaustive()
    }
}

/// A started query's rows, and the guard that holds the session's wire.
pub(crate) type Opened = (Box<dyn RowSource>, StreamGuard);

impl RowStream<'_> {
    pub(crate) fn opening(opening: BoxFuture<'static, Result<Opened>>) -> Self {
        RowStream {
            opening: Some(opening),
            source: None,
            error: None,
            _conn: PhantomData,
        }
    }

    /// Rows of a source already open (a cursor's).
    pub(crate) fn open(source: Opened) -> Self {
        RowStream {
            opening: None,
            source: Some(source),
            error: None,
            _conn: PhantomData,
        }
    }

    pub(crate) fn failed(error: Error) -> Self {
        RowStream {
            opening: None,
            source: None,
            error: Some(error),
            _conn: PhantomData,
        }
    }

    /// The next row (`None` at the end), without needing `StreamExt`.
    pub async fn next(&mut self) -> Option<Result<Row>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

impl Stream for RowStream<'_> {
    type Item = Result<Row>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Row>>> {
        let this = self.get_mut();
        if let Some(opening) = this.opening.as_mut() {
            let opened = std::task::ready!(opening.as_mut().poll(cx));
            this.opening = None;
            match opened {
                Ok(source) => this.source = Some(source),
                Err(e) => this.error = Some(e),
            }
        }
        if let Some(error) = this.error.take() {
            return Poll::Ready(Some(Err(error)));
        }
        let Some((source, _)) = this.source.as_mut() else {
            return Poll::Ready(None);
        };
        let next = std::task::ready!(source.poll_next(cx));
        if !matches!(next, Some(Ok(_))) {
            // The end, or an error (which ends the stream too): give the
            // connection back now rather than when the stream is dropped.
            this.source = None;
        }
        Poll::Ready(next)
    }
}
