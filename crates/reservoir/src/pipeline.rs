//! Pipelined connectionless reads (the `pipeline_reads` setting, off by
//! default).
//!
//! When every connection is in use, a connectionless read outside any
//! transaction does not wait for a connection of its own: it joins a queue
//! that *carriers* serve. A carrier is a task holding one pooled connection
//! (checked out like any other); it sends the waiting reads as one batch
//! (PostgreSQL pipelines them in one round trip, SQLite runs them in one
//! visit to its worker thread) until the queue is empty, then returns the
//! connection. At most the pool's capacity of carriers run at once.
//!
//! The trade, and why it is a setting: reads sent in one batch wait for each
//! other, so a slow one delays those that share its round trip; and a
//! dropped read that was already sent runs to completion rather than being
//! cancelled on the server.

use std::collections::VecDeque;
use std::panic::Location;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::oneshot;

use crate::connection::{log_statement, statements_logged};
use crate::driver::Query;
use crate::engine::EngineInner;
use crate::error::{Error, ErrorKind, Result};
use crate::row::Row;

/// Reads sent in one batch at most.
const BATCH: usize = 64;

/// Times an idle carrier yields for new reads before it leaves.
const LINGER: usize = 2;

/// The queue of reads and the count of carriers serving it.
#[derive(Default)]
pub(crate) struct Pipeline {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Job>,
    carriers: usize,
}

struct Job {
    query: Query,
    reply: oneshot::Sender<Result<Vec<Row>>>,
}

impl Pipeline {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a read should go through the pipeline: when carriers are
    /// already at work, or when the pool has no connection to give at once.
    pub(crate) fn should_take(&self, engine: &EngineInner) -> bool {
        if self.lock().carriers > 0 {
            return true;
        }
        let status = engine.pool.status();
        status.idle == 0 && status.size >= status.max
    }

    /// Queues `query` for a carrier (starting one if fewer than the pool's
    /// capacity run) and waits for its rows. The backlog bound and
    /// `pool_timeout` apply as they do to a checkout.
    pub(crate) async fn read(&self, engine: &Arc<EngineInner>, query: Query) -> Result<Vec<Row>> {
        if engine.pool.is_closed() {
            return Err(Error::pool_closed());
        }
        let config = engine.pool.config();
        let (reply, rx) = oneshot::channel();
        let start_carrier = {
            let mut st = self.lock();
            if let Some(max) = config.max_waiting {
                if st.queue.len() >= max {
                    drop(st);
                    engine.pool.count_rejection();
                    return Err(Error::new(
                        ErrorKind::PoolOverloaded,
                        format!("{max} reads are already waiting for a connection"),
                    ));
                }
            }
            st.queue.push_back(Job { query, reply });
            let start = st.carriers < config.capacity();
            if start {
                st.carriers += 1;
            }
            start
        };
        if start_carrier {
            tokio::spawn(carry(Arc::clone(engine)));
        }
        let answer = match config.pool_timeout {
            Some(limit) => {
                let started = Instant::now();
                tokio::time::timeout(limit, rx)
                    .await
                    .map_err(|_| Error::pool_timeout(started.elapsed()))?
            }
            None => rx.await,
        };
        answer.unwrap_or_else(|_| Err(Error::pool_closed()))
    }

    /// Up to `BATCH` reads whose callers still wait. None means the queue is
    /// empty; with `leave`, the carrier asking is then no longer counted.
    fn next_batch(&self, leave: bool) -> Vec<Job> {
        let mut st = self.lock();
        let mut batch = Vec::new();
        while batch.len() < BATCH {
            match st.queue.pop_front() {
                Some(job) if job.reply.is_closed() => {}
                Some(job) => batch.push(job),
                None => break,
            }
        }
        if batch.is_empty() && leave {
            st.carriers -= 1;
        }
        batch
    }

    /// A carrier that cannot go on leaves: if it was the last, the reads it
    /// leaves behind fail with its reason, as their own checkout would have.
    fn leave(&self, reason: &Error) {
        let orphans: Vec<Job> = {
            let mut st = self.lock();
            st.carriers -= 1;
            if st.carriers == 0 {
                st.queue.drain(..).collect()
            } else {
                Vec::new()
            }
        };
        for job in orphans {
            let _ = job.reply.send(Err(reason.duplicate()));
        }
    }
}

/// A carrier: checks out a connection and serves the queue until it is
/// empty; a lost connection is replaced and the work goes on.
async fn carry(engine: Arc<EngineInner>) {
    let pipeline = &engine.pipeline;
    loop {
        let mut pooled = match engine.pool.acquire_from(Location::caller()).await {
            Ok(pooled) => pooled,
            Err(e) => return pipeline.leave(&e),
        };
        loop {
            let mut batch = pipeline.next_batch(false);
            for _ in 0..LINGER {
                if !batch.is_empty() {
                    break;
                }
                // The readers just answered usually ask again at once: give
                // them a turn before handing the connection back.
                tokio::task::yield_now().await;
                batch = pipeline.next_batch(false);
            }
            if batch.is_empty() {
                batch = pipeline.next_batch(true);
                if batch.is_empty() {
                    return;
                }
            }
            let (queries, replies): (Vec<Query>, Vec<_>) =
                batch.into_iter().map(|j| (j.query, j.reply)).unzip();
            // Kept only when statements are logged (`log_statement`).
            let sqls: Vec<String> = if statements_logged(engine.echo) {
                queries.iter().map(|q| q.sql.clone()).collect()
            } else {
                Vec::new()
            };
            let started = Instant::now();
            let results = pooled.query_batch(queries).await;
            let elapsed = started.elapsed();
            let mut lost = false;
            for (i, (reply, result)) in replies.into_iter().zip(results).enumerate() {
                if let Some(sql) = sqls.get(i) {
                    log_statement(engine.echo, sql, elapsed, result.is_ok());
                }
                lost |= result.as_ref().is_err_and(Error::is_disconnect);
                let _ = reply.send(result);
            }
            if lost {
                pooled.mark_broken();
                break;
            }
        }
    }
}
