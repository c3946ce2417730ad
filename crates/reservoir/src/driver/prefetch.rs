//! `Prefetch`: rows of a source that produces them in batches (a worker
//! thread, a task holding the connection, a server-side cursor) handed to a
//! stream one at a time, with the next batch asked for as soon as one
//! arrives.

use std::task::{Context, Poll};

use crate::error::Result;
use crate::pool::BoxFuture;
use crate::row::Row;

/// Rows per request to a batched source.
pub const BATCH: usize = 512;

/// A batched source's read-ahead state, kept by the source itself: its
/// [`RowSource::poll_next`](super::RowSource::poll_next) calls
/// [`Prefetch::poll_next`] with a closure that requests a batch.
#[derive(Default)]
pub struct Prefetch {
    in_flight: Option<BoxFuture<'static, Result<Vec<Row>>>>,
    buffered: std::vec::IntoIter<Row>,
    finished: bool,
}

impl std::fmt::Debug for Prefetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefetch")
            .field("buffered", &self.buffered.len())
            .field("in_flight", &self.in_flight.is_some())
            .field("finished", &self.finished)
            .finish()
    }
}

impl Prefetch {
    /// The next row, asking `fetch` for batches of [`BATCH`]. A source's
    /// `fetch` should send its request when called (not when first polled):
    /// the next batch is then produced while this one is consumed.
    pub fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        mut fetch: impl FnMut(usize) -> BoxFuture<'static, Result<Vec<Row>>>,
    ) -> Poll<Option<Result<Row>>> {
        loop {
            if let Some(row) = self.buffered.next() {
                return Poll::Ready(Some(Ok(row)));
            }
            if self.finished {
                return Poll::Ready(None);
            }
            let in_flight = self.in_flight.get_or_insert_with(|| fetch(BATCH));
            let result = std::task::ready!(in_flight.as_mut().poll(cx));
            self.in_flight = None;
            match result {
                Ok(rows) => {
                    if rows.len() < BATCH {
                        self.finished = true;
                    } else {
                        self.in_flight = Some(fetch(BATCH));
                    }
                    self.buffered = rows.into_iter();
                }
                Err(e) => {
                    self.finished = true;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }
}
