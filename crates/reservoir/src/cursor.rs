//! Cursors, asyncpg style: `forward(n)` skips rows where the database
//! produces them, `fetch(n)` returns the next `n`.

use std::marker::PhantomData;

use crate::driver::RowSource;
use crate::driver::session::StreamGuard;
use crate::error::Result;
use crate::error::{Error, ErrorKind};
use crate::row::Row;
use crate::stream::RowStream;

/// A cursor over a query; borrows its connection until dropped.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> reservoir::Result<()> {
/// let engine = reservoir::Engine::connect("sqlite::memory:").await?;
/// let mut conn = engine.acquire().await?;
/// let mut tx = conn.begin().await?;
/// let sql = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 10) SELECT x FROM n";
/// let mut cur = tx.cursor(sql, ()).await?;
/// assert_eq!(cur.forward(5).await?, 5);
/// let batch = cur.fetch(3).await?;
/// assert_eq!(batch[0].get::<i64>(0)?, 6);
/// # Ok(()) }
/// ```
pub struct Cursor<'c> {
    source: Box<dyn RowSource>,
    guard: StreamGuard,
    /// A call's future was dropped before it finished: where the cursor
    /// stands is unknown (a row may have been read and lost), so every
    /// later call fails rather than silently skipping it.
    poisoned: bool,
    _conn: PhantomData<&'c mut ()>,
}

impl std::fmt::Debug for Cursor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cursor").finish_non_exhaustive()
    }
}

impl<'c> Cursor<'c> {
    pub(crate) fn new(source: Box<dyn RowSource>, guard: StreamGuard) -> Self {
        Cursor {
            source,
            guard,
            poisoned: false,
            _conn: PhantomData,
        }
    }

    /// Runs one call, poisoning the cursor until it finishes.
    async fn call<T>(&mut self, op: impl AsyncFnOnce(&mut dyn RowSource) -> Result<T>) -> Result<T> {
        if self.poisoned {
            return Err(Error::new(
                ErrorKind::Usage,
                "an earlier call on this cursor was abandoned mid-flight (its future was \
                 dropped), so its position is unknown: open a new cursor",
            ));
        }
        self.poisoned = true;
        let result = op(&mut *self.source).await;
        self.poisoned = false;
        result
    }

    /// The next `n` rows (fewer at the end; `fetch(0)` is empty).
    pub async fn fetch(&mut self, n: usize) -> Result<Vec<Row>> {
        if n == 0 && !self.poisoned {
            return Ok(Vec::new());
        }
        self.call(async |source| source.fetch(n).await).await
    }

    /// The next row, if any.
    pub async fn fetch_one(&mut self) -> Result<Option<Row>> {
        Ok(self.fetch(1).await?.pop())
    }

    /// Skips up to `n` rows; returns how many were skipped.
    pub async fn forward(&mut self, n: u64) -> Result<u64> {
        if n == 0 && !self.poisoned {
            return Ok(0);
        }
        self.call(async |source| source.forward(n).await).await
    }

    /// The rows not yet read, as a stream that reads ahead in batches
    /// (asyncpg's `async for` over a cursor). It takes the cursor, so the
    /// rows it has read ahead cannot be skipped by a later `fetch`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> reservoir::Result<()> {
    /// let engine = reservoir::Engine::connect("sqlite::memory:").await?;
    /// let mut conn = engine.acquire().await?;
    /// let mut tx = conn.begin().await?;
    /// let sql = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 10) SELECT x FROM n";
    /// let mut cur = tx.cursor(sql, ()).await?;
    /// cur.forward(7).await?;
    /// let mut rest = cur.into_stream();
    /// let mut seen = Vec::new();
    /// while let Some(row) = rest.next().await {
    ///     seen.push(row?.get::<i64>(0)?);
    /// }
    /// assert_eq!(seen, [8, 9, 10]);
    /// # Ok(()) }
    /// ```
    pub fn into_stream(self) -> RowStream<'c> {
        if self.poisoned {
            return RowStream::failed(Error::new(
                ErrorKind::Usage,
                "an earlier call on this cursor was abandoned mid-flight: open a new cursor",
            ));
        }
        RowStream::open((self.source, self.guard))
    }
}
