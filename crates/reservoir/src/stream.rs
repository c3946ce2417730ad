//! `RowStream`: rows read in batches as the stream is polled, one batch
//! ahead, so memory stays flat whatever the result size.

use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

use crate::driver::RowSource;
use crate::error::{Error, Result};
use crate::pool::BoxFuture;
use crate::row::Row;

/// Rows per round trip to the database.
const BATCH: usize = 512;

/// A stream of rows; borrows its connection until dropped. Dropping it early
/// stops the query.
pub struct RowStream<'c> {
    /// Locking (and if lazy, checking out) the connection, then starting the query.
    opening: Option<BoxFuture<'static, Result<Box<dyn RowSource>>>>,
    source: Option<Box<dyn RowSource>>,
    in_flight: Option<BoxFuture<'static, Result<Vec<Row>>>>,
    buffered: std::vec::IntoIter<Row>,
    error: Option<Error>,
    finished: bool,
    _conn: PhantomData<&'c mut ()>,
}

impl std::fmt::Debug for RowStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowStream")
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl RowStream<'_> {
    pub(crate) fn opening(opening: BoxFuture<'static, Result<Box<dyn RowSource>>>) -> Self {
        RowStream {
            opening: Some(opening),
            source: None,
            in_flight: None,
            buffered: Vec::new().into_iter(),
            error: None,
            finished: false,
            _conn: PhantomData,
        }
    }

    pub(crate) fn failed(error: Error) -> Self {
        RowStream {
            opening: None,
            source: None,
            in_flight: None,
            buffered: Vec::new().into_iter(),
            error: Some(error),
            finished: false,
            _conn: PhantomData,
        }
    }

    /// The next row (`None` at the end), without needing `StreamExt`.
    pub async fn next(&mut self) -> Option<Result<Row>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    fn request(&mut self) {
        if let Some(source) = &mut self.source {
            self.in_flight = Some(source.fetch(BATCH));
        }
    }
}

impl Stream for RowStream<'_> {
    type Item = Result<Row>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Row>>> {
        let this = self.get_mut();
        if let Some(opening) = this.opening.as_mut() {
            match opening.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(result) => {
                    this.opening = None;
                    match result {
                        Ok(source) => this.source = Some(source),
                        Err(e) => this.error = Some(e),
                    }
                }
            }
        }
        loop {
            if let Some(row) = this.buffered.next() {
                return Poll::Ready(Some(Ok(row)));
            }
            if let Some(error) = this.error.take() {
                this.finished = true;
                return Poll::Ready(Some(Err(error)));
            }
            if this.finished {
                this.source = None;
                return Poll::Ready(None);
            }
            if this.in_flight.is_none() {
                this.request();
            }
            let Some(in_flight) = this.in_flight.as_mut() else {
                this.finished = true;
                continue;
            };
            match in_flight.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(result) => {
                    this.in_flight = None;
                    match result {
                        Ok(rows) => {
                            if rows.len() < BATCH {
                                this.finished = true;
                            } else {
                                // Ask for the next batch while this one is consumed.
                                this.request();
                            }
                            this.buffered = rows.into_iter();
                        }
                        Err(e) => this.error = Some(e),
                    }
                }
            }
        }
    }
}
