//! The background task that keeps `min_size` connections open (with backoff
//! while the server is down) and closes idle ones past `idle_timeout` or
//! `pool_recycle`. It holds the pool weakly and ends when the pool does.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::Instant;

use super::manager::Manager;
use super::shared::Shared;

const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A hanging connect must not stall the task for ever.
const CONNECT_LIMIT: Duration = Duration::from_secs(30);

/// Whether the settings give the task anything to do.
pub(crate) fn needed<M: Manager>(shared: &Shared<M>) -> bool {
    let cfg = &shared.config;
    cfg.min_size > 0 || cfg.idle_timeout.is_some() || cfg.pool_recycle.is_some()
}

pub(crate) fn spawn<M: Manager>(shared: &Arc<Shared<M>>) {
    let weak = Arc::downgrade(shared);
    let wake = Arc::clone(&shared.maintenance);
    let period = period(shared);
    tokio::spawn(async move {
        let mut backoff = FIRST_BACKOFF;
        loop {
            match run_once(&weak).await {
                None => return,
                Some(Ok(())) => {
                    backoff = FIRST_BACKOFF;
                    tokio::select! {
                        _ = tokio::time::sleep(period) => {}
                        _ = wake.notified() => {}
                    }
                }
                // The failed connect freed its slot, which notified `wake`:
                // listening to it now would spin instead of backing off.
                Some(Err(())) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    });
}

/// How often expiry is checked: often enough to honour the shortest limit.
fn period<M: Manager>(shared: &Shared<M>) -> Duration {
    let cfg = &shared.config;
    [cfg.idle_timeout, cfg.pool_recycle]
        .into_iter()
        .flatten()
        .map(|d| d / 2)
        .min()
        .unwrap_or(Duration::from_secs(1))
        .clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// One pass. `None`: the pool is gone or closed. `Some(Err)`: a connect failed.
async fn run_once<M: Manager>(weak: &Weak<Shared<M>>) -> Option<Result<(), ()>> {
    let shared = weak.upgrade()?;
    if shared.is_closed() {
        return None;
    }
    for conn in shared.take_expired(Instant::now()) {
        shared.discard(conn);
    }
    while shared.reserve_for_min_size() {
        let deadline = Some(Instant::now() + CONNECT_LIMIT);
        match shared.open(deadline).await {
            Ok(pooled) => shared.checkin(pooled.into_conn()),
            Err(error) => {
                tracing::warn!(%error, "could not open a connection to keep min_size; retrying");
                return Some(Err(()));
            }
        }
    }
    Some(Ok(()))
}
