//! The connection's prepared statements, by SQL text (LRU), shared with
//! the row streams it opens so that a streamed query is prepared once too.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};

use lru::LruCache;
use tokio_postgres::Client;

use super::error::map_error;
use super::types::Prepared;
use crate::error::Result;

pub(super) struct StatementCache(Mutex<LruCache<String, Prepared>>);

impl StatementCache {
    /// A cache of `capacity` statements; `None` (caching off) for 0.
    pub(super) fn new(capacity: usize) -> Option<Arc<Self>> {
        let capacity = NonZeroUsize::new(capacity)?;
        Some(Arc::new(StatementCache(Mutex::new(LruCache::new(capacity)))))
    }

    /// `sql` prepared: from the cache, or prepared now and kept (the least
    /// recently used statement is closed when the cache is full).
    pub(super) async fn prepared(&self, client: &Client, sql: &str) -> Result<Prepared> {
        if let Some(prepared) = self.lock().get(sql) {
            return Ok(prepared.clone());
        }
        // Boxed: a miss is rare, and the prepare future would otherwise make
        // every statement's future too big for the allocator's fast path.
        let stmt = Box::pin(client.prepare(sql)).await.map_err(map_error)?;
        let prepared = Prepared::new(stmt);
        self.lock().put(sql.to_string(), prepared.clone());
        Ok(prepared)
    }

    /// Forgets every statement (after the server deallocated them all).
    pub(super) fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<String, Prepared>> {
        // Never held across an await; a panic elsewhere leaves it usable.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
