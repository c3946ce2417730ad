//! The generic pool, with a scripted in-memory manager (no SQL involved):
//! every setting, every error, fairness, the seed's flood, cancel safety.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reservoir::pool::{BoxFuture, CloseOptions, Interrupt, Manager, Pool, PoolBuilder};
use reservoir::{Error, ErrorKind};

/// A manager whose behaviour the test scripts: failing or hanging connects,
/// connections that die while idle, slow operations. It counts what it did.
#[derive(Clone, Default)]
struct Script(Arc<ScriptState>);

#[derive(Default)]
struct ScriptState {
    next_id: AtomicU64,
    opened: AtomicU64,
    live: AtomicI64,
    pings: AtomicU64,
    resets: AtomicU64,
    interrupts: AtomicU64,
    fail_connect: AtomicBool,
    hang_connect: AtomicBool,
    fail_reset: AtomicBool,
    /// Milliseconds each connect / ping / reset takes.
    delay_ms: AtomicU64,
    dead: Mutex<HashSet<u64>>,
}

struct TestConn {
    id: u64,
    dirty: bool,
    broken: bool,
    state: Arc<ScriptState>,
}

impl Drop for TestConn {
    fn drop(&mut self) {
        self.state.live.fetch_sub(1, SeqCst);
    }
}

struct CountInterrupt(Arc<ScriptState>);

impl Interrupt for CountInterrupt {
    fn interrupt(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.0.interrupts.fetch_add(1, SeqCst);
        })
    }
}

impl Script {
    fn live(&self) -> i64 {
        self.0.live.load(SeqCst)
    }
    fn opened(&self) -> u64 {
        self.0.opened.load(SeqCst)
    }
    fn kill(&self, id: u64) {
        self.0.dead.lock().unwrap().insert(id);
    }
    async fn pause(&self) {
        let ms = self.0.delay_ms.load(SeqCst);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
}

impl Manager for Script {
    type Connection = TestConn;

    async fn connect(&self) -> reservoir::Result<TestConn> {
        if self.0.hang_connect.load(SeqCst) {
            std::future::pending::<()>().await;
        }
        self.pause().await;
        if self.0.fail_connect.load(SeqCst) {
            return Err(Error::new(ErrorKind::Connect, "connection refused (scripted)"));
        }
        self.0.opened.fetch_add(1, SeqCst);
        self.0.live.fetch_add(1, SeqCst);
        Ok(TestConn {
            id: self.0.next_id.fetch_add(1, SeqCst) + 1,
            dirty: false,
            broken: false,
            state: Arc::clone(&self.0),
        })
    }

    async fn ping(&self, conn: &mut TestConn) -> reservoir::Result<()> {
        self.0.pings.fetch_add(1, SeqCst);
        self.pause().await;
        if self.0.dead.lock().unwrap().contains(&conn.id) {
            return Err(Error::new(
                ErrorKind::Disconnected,
                "server closed the connection",
            ));
        }
        Ok(())
    }

    fn is_broken(&self, conn: &TestConn) -> bool {
        conn.broken
    }

    fn needs_reset(&self, conn: &TestConn) -> bool {
        conn.dirty
    }

    async fn reset(&self, conn: &mut TestConn) -> reservoir::Result<()> {
        self.0.resets.fetch_add(1, SeqCst);
        self.pause().await;
        if self.0.fail_reset.load(SeqCst) {
            return Err(Error::new(ErrorKind::Disconnected, "reset failed (scripted)"));
        }
        conn.dirty = false;
        Ok(())
    }

    fn interrupt_handle(&self, _conn: &TestConn) -> Option<Arc<dyn Interrupt>> {
        Some(Arc::new(CountInterrupt(Arc::clone(&self.0))))
    }
}

fn builder(script: &Script, pool_size: usize, max_overflow: usize) -> PoolBuilder<Script> {
    Pool::builder(script.clone())
        .pool_size(pool_size)
        .max_overflow(max_overflow)
}

/// Lets spawned close/reset tasks run.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
}

#[tokio::test]
async fn acquire_release_and_status() {
    let script = Script::default();
    let pool = builder(&script, 2, 1).build().await.unwrap();
    let a = pool.acquire().await.unwrap();
    let b = pool.acquire().await.unwrap();
    assert_ne!(a.id, b.id);
    let s = pool.status();
    assert_eq!((s.size, s.idle, s.in_use, s.waiting, s.max), (2, 0, 2, 0, 3));
    drop(a);
    drop(b);
    let s = pool.status();
    assert_eq!((s.size, s.idle, s.in_use), (2, 2, 0));
    let again = pool.acquire().await.unwrap();
    assert!(again.id <= 2, "an idle connection is reused");
    assert_eq!(script.opened(), 2);
    assert_eq!(pool.stats().acquired, 3);
}

#[tokio::test]
async fn zero_capacity_and_bad_min_size_are_config_errors() {
    let script = Script::default();
    let err = builder(&script, 0, 0).build().await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Config);
    assert!(err.to_string().contains("pool_size + max_overflow"), "{err}");
    let err = builder(&script, 1, 1).min_size(3).build().await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Config);
    assert!(err.to_string().contains("min_size"), "{err}");
}

#[tokio::test]
async fn pool_size_zero_keeps_nothing_idle() {
    let script = Script::default();
    let pool = builder(&script, 0, 2).build().await.unwrap();
    let a = pool.acquire().await.unwrap();
    drop(a);
    settle().await;
    assert_eq!(pool.status().size, 0);
    assert_eq!(script.live(), 0);
    assert_eq!(pool.stats().closed, 1);
}

#[tokio::test]
async fn overflow_connections_close_when_returned() {
    let script = Script::default();
    let pool = builder(&script, 2, 2).build().await.unwrap();
    let held: Vec<_> = futures_util::future::join_all((0..4).map(|_| pool.acquire()))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(pool.status().size, 4);
    drop(held);
    settle().await;
    let s = pool.status();
    assert_eq!((s.size, s.idle), (2, 2));
    assert_eq!(script.live(), 2);
}

#[tokio::test]
async fn waiters_are_served_in_arrival_order() {
    let script = Script::default();
    let pool = builder(&script, 1, 0).max_waiting(None).build().await.unwrap();
    let holder = pool.acquire().await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..50 {
        let task_pool = pool.clone();
        let order = Arc::clone(&order);
        tasks.push(tokio::spawn(async move {
            let conn = task_pool.acquire().await.unwrap();
            order.lock().unwrap().push(i);
            tokio::task::yield_now().await;
            drop(conn);
        }));
        // Each task queues before the next one is spawned.
        while pool.status().waiting < i + 1 {
            tokio::task::yield_now().await;
        }
    }
    drop(holder);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), (0..50).collect::<Vec<_>>());
    assert_eq!(pool.stats().waited, 50);
}

/// The seed's flood: 1000 simultaneous requests on 5 + 5 with a backlog of 50.
#[tokio::test(start_paused = true)]
async fn flood_serves_capacity_plus_backlog_and_rejects_the_rest_at_once() {
    let script = Script::default();
    let pool = builder(&script, 5, 5)
        .max_waiting(Some(50))
        .pool_timeout(Duration::from_secs(60))
        .build()
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let outcomes = futures_util::future::join_all((0..1000).map(|_| {
        let pool = pool.clone();
        async move {
            match pool.acquire().await {
                Ok(conn) => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    drop(conn);
                    Ok(())
                }
                Err(e) => Err((e.kind().clone(), started.elapsed())),
            }
        }
    }));
    let outcomes = tokio::time::timeout(Duration::from_secs(120), outcomes)
        .await
        .expect("no request hangs");
    let served = outcomes.iter().filter(|o| o.is_ok()).count();
    let rejected: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert_eq!(served, 60);
    assert_eq!(rejected.len(), 940);
    for (kind, when) in rejected {
        assert_eq!(kind, &ErrorKind::PoolOverloaded);
        assert_eq!(*when, Duration::ZERO, "rejected without waiting");
    }
    assert_eq!(pool.stats().rejected, 940);
    assert!(script.opened() <= 10);
}

/// A pool of one connection whose waits end at `timeout`.
async fn one_connection(script: &Script, timeout: Duration) -> Pool<Script> {
    builder(script, 1, 0).pool_timeout(timeout).build().await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn acquire_times_out_after_pool_timeout() {
    let script = Script::default();
    let pool = one_connection(&script, Duration::from_millis(250)).await;
    let _held = pool.acquire().await.unwrap();
    let started = tokio::time::Instant::now();
    let err = pool.acquire().await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::PoolTimeout);
    assert!(err.is_timeout());
    assert_eq!(started.elapsed(), Duration::from_millis(250));
    let s = pool.status();
    assert_eq!((s.waiting, s.size), (0, 1));
    assert_eq!(pool.stats().timed_out, 1);
}

/// Every waiter's time counts from when it joined the queue, though one
/// timer serves them all: waiters arriving 100 ms apart fail 100 ms apart,
/// a waiter served in time is not failed, and a waiter arriving after the
/// queue has been empty for longer than pool_timeout still times out.
#[tokio::test(start_paused = true)]
async fn each_waiter_times_out_pool_timeout_after_it_joined() {
    let script = Script::default();
    let pool = one_connection(&script, Duration::from_millis(250)).await;
    let held = pool.acquire().await.unwrap();
    let started = tokio::time::Instant::now();
    let mut waiters = Vec::new();
    for i in 0..3u64 {
        let pool = pool.clone();
        waiters.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100 * i)).await;
            let joined = started.elapsed();
            let outcome = pool.acquire().await.map(drop);
            (joined, started.elapsed(), outcome)
        }));
    }
    for (i, w) in waiters.into_iter().enumerate() {
        let (joined, ended, outcome) = w.await.unwrap();
        assert_eq!(joined, Duration::from_millis(100 * i as u64));
        assert_eq!(outcome.unwrap_err().kind(), &ErrorKind::PoolTimeout);
        assert_eq!(ended, joined + Duration::from_millis(250), "waiter {i}");
    }
    assert_eq!(pool.stats().timed_out, 3);

    // Served before its deadline: no timeout, and the one behind it still
    // times out on time.
    let first = tokio::spawn({
        let pool = pool.clone();
        async move { pool.acquire().await.map(drop) }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = tokio::spawn({
        let pool = pool.clone();
        async move {
            let joined = tokio::time::Instant::now();
            (pool.acquire().await.map(drop), joined.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(held);
    first.await.unwrap().expect("served before its deadline");
    let _held = pool.acquire().await.unwrap();
    let (outcome, waited) = second.await.unwrap();
    // The second was served the connection the first gave back.
    outcome.expect("the second waiter was served too");
    assert!(waited < Duration::from_millis(250));

    // Long after the queue emptied, a new waiter still times out on time.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let joined = tokio::time::Instant::now();
    let err = pool.acquire().await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::PoolTimeout);
    assert_eq!(joined.elapsed(), Duration::from_millis(250));
    assert_eq!(pool.stats().timed_out, 4);
    assert_eq!(pool.status().waiting, 0);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A pool whose one connection is held, with waits ending at 100 ms.
async fn held_pool(script: &Script) -> (Pool<Script>, reservoir::pool::Pooled<Script>) {
    let pool = one_connection(script, Duration::from_millis(100)).await;
    let held = pool.acquire().await.unwrap();
    (pool, held)
}

/// Asserts that a wait on `pool` (from `held_pool`) ends at its pool_timeout.
async fn times_out(pool: &Pool<Script>) {
    let started = std::time::Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(10), pool.acquire()).await;
    let err = outcome.expect("the wait ended at pool_timeout").unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::PoolTimeout);
    assert!(started.elapsed() >= Duration::from_millis(100));
}

/// A wait begun where the current runtime has shut down (its spawn drops
/// the expiry task at once) neither deadlocks nor leaves the pool without
/// a timer: the next wait, on a live runtime, times out.
#[test]
fn a_wait_begun_on_a_runtime_that_has_shut_down_leaves_the_pool_working() {
    let script = Script::default();
    let live = runtime();
    let (pool, held) = live.block_on(held_pool(&script));
    let dead = runtime();
    let handle = dead.handle().clone();
    dead.shutdown_background();
    {
        let _entered = handle.enter();
        let mut wait = std::pin::pin!(pool.acquire());
        assert!(futures_util::FutureExt::now_or_never(wait.as_mut()).is_none());
        assert_eq!(pool.status().waiting, 1);
    }
    assert_eq!(pool.status().waiting, 0, "the dropped wait left the queue");
    live.block_on(times_out(&pool));
    drop(held);
}

/// A pool_timeout longer than the clock can count is no limit, not a panic.
#[tokio::test(start_paused = true)]
async fn a_pool_timeout_beyond_the_clock_never_expires() {
    let script = Script::default();
    let pool = one_connection(&script, Duration::MAX).await;
    let held = pool.acquire().await.unwrap();
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { pool.acquire().await.map(drop) }
    });
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(pool.status().waiting, 1);
    drop(held);
    waiter
        .await
        .unwrap()
        .expect("served once the connection came back");
    assert_eq!(pool.stats().timed_out, 0);
}

/// The task that ends waits at pool_timeout runs on the runtime of the
/// first wait; when that runtime is gone, a wait on another runtime still
/// times out.
#[test]
fn waits_time_out_after_the_runtime_of_the_first_wait_is_gone() {
    let script = Script::default();
    let first = runtime();
    let (pool, held) = first.block_on(async {
        let (pool, held) = held_pool(&script).await;
        let err = pool.acquire().await.unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::PoolTimeout);
        (pool, held)
    });
    drop(first);
    runtime().block_on(times_out(&pool));
    assert_eq!(pool.stats().timed_out, 2);
    drop(held);
}

#[tokio::test]
async fn max_waiting_zero_rejects_instead_of_waiting() {
    let script = Script::default();
    let pool = builder(&script, 1, 0).max_waiting(Some(0)).build().await.unwrap();
    let _held = pool.acquire().await.unwrap();
    let err = pool.acquire().await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::PoolOverloaded);
}

#[tokio::test]
async fn lifo_and_fifo_order_of_idle_connections() {
    for lifo in [false, true] {
        let script = Script::default();
        let pool = builder(&script, 3, 0).pool_use_lifo(lifo).build().await.unwrap();
        let (a, b, c) = (
            pool.acquire().await.unwrap(),
            pool.acquire().await.unwrap(),
            pool.acquire().await.unwrap(),
        );
        let (ida, idc) = (a.id, c.id);
        drop(a);
        drop(b);
        drop(c);
        let next = pool.acquire().await.unwrap();
        assert_eq!(next.id, if lifo { idc } else { ida }, "lifo={lifo}");
    }
}

#[tokio::test]
async fn pre_ping_replaces_a_dead_idle_connection_silently() {
    let script = Script::default();
    let pool = builder(&script, 1, 0).pool_pre_ping(true).build().await.unwrap();
    let first = pool.acquire().await.unwrap();
    let dead_id = first.id;
    drop(first);
    script.kill(dead_id);
    let conn = pool.acquire().await.expect("the caller sees no error");
    assert_ne!(conn.id, dead_id);
    assert_eq!(pool.stats().broken, 1);
    assert_eq!(pool.status().size, 1);
}

#[tokio::test]
async fn without_pre_ping_idle_connections_are_not_pinged() {
    let script = Script::default();
    let pool = builder(&script, 1, 0).build().await.unwrap();
    drop(pool.acquire().await.unwrap());
    drop(pool.acquire().await.unwrap());
    assert_eq!(script.0.pings.load(SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn a_failed_connect_is_returned_at_once_and_frees_its_slot() {
    let script = Script::default();
    script.0.fail_connect.store(true, SeqCst);
    let pool = builder(&script, 1, 0).build().await.unwrap();
    let started = tokio::time::Instant::now();
    let err = pool.acquire().await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Connect);
    assert!(err.to_string().contains("refused"), "the server's reason: {err}");
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(pool.status().size, 0);
    script.0.fail_connect.store(false, SeqCst);
    pool.acquire()
        .await
        .expect("serves again once the server is back");
}

#[tokio::test]
async fn a_waiter_handed_a_slot_gets_the_connect_error() {
    let script = Script::default();
    let pool = builder(&script, 1, 0).build().await.unwrap();
    let holder = pool.acquire().await.unwrap();
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.acquire().await.map(|c| c.id) })
    };
    while pool.status().waiting == 0 {
        tokio::task::yield_now().await;
    }
    script.0.fail_connect.store(true, SeqCst);
    holder.invalidate();
    let err = waiter.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Connect);
    assert_eq!(pool.status().size, 0);
}

#[tokio::test(start_paused = true)]
async fn a_hanging_connect_fails_at_pool_timeout_and_frees_its_slot() {
    let script = Script::default();
    script.0.hang_connect.store(true, SeqCst);
    let pool = builder(&script, 1, 0)
        .pool_timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    let err = pool.acquire().await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::PoolTimeout);
    assert!(
        err.is_timeout(),
        "a connect cut short by pool_timeout is a timeout"
    );
    assert!(err.to_string().contains("pool_timeout"), "{err}");
    assert_eq!(pool.status().size, 0);
}

/// After a disconnect, an idle connection opened before it is pinged once
/// at its next checkout, not at every checkout from then on.
#[tokio::test(start_paused = true)]
async fn after_a_disconnect_older_connections_are_pinged_once() {
    let script = Script::default();
    let pool = builder(&script, 2, 0).build().await.unwrap();
    let (first, second) = (pool.acquire().await.unwrap(), pool.acquire().await.unwrap());
    drop(second);
    let mut lost = first;
    lost.mark_disconnected();
    drop(lost);
    settle().await;
    for _ in 0..3 {
        drop(pool.acquire().await.unwrap());
    }
    assert_eq!(script.0.pings.load(SeqCst), 1, "pinged once, then known to work");
    assert_eq!(pool.status().size, 1);
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_waiter_sees_itself_counted() {
    let script = Script::default();
    let pool = builder(&script, 1, 0)
        .pool_timeout(Duration::from_millis(50))
        .build()
        .await
        .unwrap();
    let held = pool.acquire().await.unwrap();
    let err = pool.acquire().await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::PoolTimeout);
    assert_eq!(pool.stats().timed_out, 1, "counted before the waiter woke");
    drop(held);
}

/// A connection handed to a waiter just before its deadline is pinged
/// with what is left of it: a ping cut short by the caller's deadline
/// says nothing against the connection, which stays in the pool.
#[tokio::test(start_paused = true)]
async fn a_ping_cut_short_by_the_callers_deadline_keeps_the_connection() {
    let script = Script::default();
    let pool = builder(&script, 1, 0)
        .pool_timeout(Duration::from_millis(100))
        .pool_pre_ping(true)
        .build()
        .await
        .unwrap();
    let held = pool.acquire().await.unwrap();
    script.0.delay_ms.store(50, SeqCst);
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.acquire().await.map(drop) })
    };
    tokio::time::sleep(Duration::from_millis(80)).await;
    drop(held);
    let err = waiter.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::PoolTimeout, "{err:?}");
    settle().await;
    assert_eq!(pool.stats().broken, 0, "not closed as broken");
    assert_eq!(pool.status().size, 1);
    assert_eq!(pool.status().idle, 1);
    script.0.delay_ms.store(0, SeqCst);
    drop(pool.acquire().await.unwrap());
    assert_eq!(script.opened(), 1, "the same connection serves again");
}

#[tokio::test(start_paused = true)]
async fn recycle_replaces_old_connections() {
    let script = Script::default();
    let pool = builder(&script, 1, 0)
        .pool_recycle(Duration::from_secs(60))
        .build()
        .await
        .unwrap();
    let first = pool.acquire().await.unwrap().id;
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(pool.acquire().await.unwrap().id, first);
    tokio::time::advance(Duration::from_secs(31)).await;
    let next = pool.acquire().await.unwrap().id;
    assert_ne!(next, first);
    settle().await;
    assert_eq!(script.live(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_is_not_handed_a_connection_past_pool_recycle() {
    let script = Script::default();
    let pool = builder(&script, 1, 0)
        .pool_recycle(Duration::from_secs(60))
        .pool_timeout(Duration::from_secs(600))
        .build()
        .await
        .unwrap();
    let held = pool.acquire().await.unwrap();
    let old = held.id;
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { pool.acquire().await.map(|c| c.id) }
    });
    settle().await;
    assert_eq!(pool.status().waiting, 1);
    tokio::time::advance(Duration::from_secs(61)).await;
    drop(held);
    let new = waiter.await.unwrap().unwrap();
    assert_ne!(
        new, old,
        "the waiter got the connection that was due for recycling"
    );
    settle().await;
    assert_eq!(script.live(), 1);
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_closes_idle_connections_above_min_size() {
    let script = Script::default();
    let pool = builder(&script, 4, 0)
        .min_size(1)
        .idle_timeout(Duration::from_secs(10))
        .build()
        .await
        .unwrap();
    assert_eq!(pool.status().size, 1, "min_size opened at build");
    let held: Vec<_> = futures_util::future::join_all((0..4).map(|_| pool.acquire())).await;
    drop(held);
    assert_eq!(pool.status().idle, 4);
    tokio::time::sleep(Duration::from_secs(12)).await;
    settle().await;
    assert_eq!(pool.status().size, 1);
    assert_eq!(script.live(), 1);
}

#[tokio::test(start_paused = true)]
async fn min_size_is_restored_with_backoff_after_the_server_returns() {
    let script = Script::default();
    let pool = builder(&script, 2, 0).min_size(2).build().await.unwrap();
    assert_eq!(pool.status().idle, 2);
    script.0.fail_connect.store(true, SeqCst);
    let a = pool.acquire().await.unwrap();
    let b = pool.acquire().await.unwrap();
    a.invalidate();
    b.invalidate();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(pool.status().size, 0, "nothing opens while the server is down");
    script.0.fail_connect.store(false, SeqCst);
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(pool.status().idle, 2, "restored after the backoff");
}

#[tokio::test]
async fn broken_and_invalidated_connections_are_discarded() {
    let script = Script::default();
    let pool = builder(&script, 2, 0).build().await.unwrap();
    let mut a = pool.acquire().await.unwrap();
    a.broken = true;
    let ida = a.id;
    drop(a);
    let b = pool.acquire().await.unwrap();
    assert_ne!(b.id, ida);
    b.invalidate();
    settle().await;
    assert_eq!(pool.status().size, 0);
    assert_eq!(script.live(), 0);
    assert_eq!(pool.stats().broken, 2);
}

#[tokio::test]
async fn dirty_connections_are_reset_before_reuse_or_discarded_if_reset_fails() {
    let script = Script::default();
    let pool = builder(&script, 1, 0).build().await.unwrap();
    let mut a = pool.acquire().await.unwrap();
    a.dirty = true;
    let ida = a.id;
    drop(a);
    let b = pool.acquire().await.unwrap();
    assert_eq!(b.id, ida);
    assert!(!b.dirty, "reset ran before the next checkout");
    assert_eq!(script.0.resets.load(SeqCst), 1);
    let mut b = b;
    b.dirty = true;
    script.0.fail_reset.store(true, SeqCst);
    drop(b);
    let c = pool.acquire().await.unwrap();
    assert_ne!(c.id, ida, "a connection whose reset failed is never handed out");
}

#[tokio::test]
async fn hooks_run_on_connect_checkout_and_checkin() {
    let script = Script::default();
    let connects = Arc::new(AtomicU64::new(0));
    let checkouts = Arc::new(AtomicU64::new(0));
    let (c1, c2) = (Arc::clone(&connects), Arc::clone(&checkouts));
    let pool = builder(&script, 1, 0)
        .on_connect(move |_conn| {
            let c1 = Arc::clone(&c1);
            Box::pin(async move {
                c1.fetch_add(1, SeqCst);
                Ok(())
            })
        })
        .on_checkout(move |_conn| {
            let c2 = Arc::clone(&c2);
            Box::pin(async move {
                c2.fetch_add(1, SeqCst);
                Ok(())
            })
        })
        .on_checkin(|conn| {
            if conn.id == 1 {
                Err(Error::new(ErrorKind::Config, "refuse the first connection"))
            } else {
                Ok(())
            }
        })
        .build()
        .await
        .unwrap();
    drop(pool.acquire().await.unwrap());
    settle().await;
    let second = pool.acquire().await.unwrap();
    assert_eq!(second.id, 2, "checkin hook error closed connection 1");
    drop(second);
    assert_eq!(pool.acquire().await.unwrap().id, 2);
    assert_eq!(connects.load(SeqCst), 2);
    assert_eq!(checkouts.load(SeqCst), 3);
}

#[tokio::test]
async fn close_fails_waiters_and_new_acquires_and_waits_for_checked_out() {
    let script = Script::default();
    let pool = builder(&script, 1, 0).build().await.unwrap();
    let held = pool.acquire().await.unwrap();
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.acquire().await.map(|c| c.id) })
    };
    while pool.status().waiting == 0 {
        tokio::task::yield_now().await;
    }
    let closing = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.close().await })
    };
    assert_eq!(waiter.await.unwrap().unwrap_err().kind(), &ErrorKind::PoolClosed);
    assert_eq!(pool.acquire().await.unwrap_err().kind(), &ErrorKind::PoolClosed);
    settle().await;
    assert!(
        !closing.is_finished(),
        "close waits for the checked-out connection"
    );
    drop(held);
    tokio::time::timeout(Duration::from_secs(5), closing)
        .await
        .expect("close returns once the connection is back")
        .unwrap();
    settle().await;
    assert_eq!(script.live(), 0);
}

#[tokio::test]
async fn close_with_force_returns_at_once_and_interrupt_cancels_running_work() {
    let script = Script::default();
    let pool = builder(&script, 2, 0).build().await.unwrap();
    let held = pool.acquire().await.unwrap();
    drop(pool.acquire().await.unwrap());
    tokio::time::timeout(
        Duration::from_secs(1),
        pool.close_with(CloseOptions {
            force: true,
            interrupt: true,
        }),
    )
    .await
    .expect("force does not wait");
    assert_eq!(
        script.0.interrupts.load(SeqCst),
        1,
        "only the checked-out connection"
    );
    assert!(pool.is_closed());
    drop(held);
    settle().await;
    assert_eq!(script.live(), 0, "closed when it came back");
}

#[tokio::test]
async fn dispose_replaces_every_connection_and_keeps_serving() {
    let script = Script::default();
    let pool = builder(&script, 2, 0).build().await.unwrap();
    let out = pool.acquire().await.unwrap();
    let out_id = out.id;
    drop(pool.acquire().await.unwrap());
    pool.dispose();
    settle().await;
    assert_eq!(pool.status().idle, 0);
    drop(out);
    settle().await;
    assert_eq!(pool.status().size, 0, "the checked-out one closed on return");
    let fresh = pool.acquire().await.unwrap();
    assert!(fresh.id > out_id);
    assert_eq!(script.live(), 1);
}

#[tokio::test]
async fn leak_threshold_warns_with_the_call_site() {
    let buf = common::LogCapture::default();
    let subscriber = tracing_subscriber::fmt().with_writer(buf.clone()).finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let script = Script::default();
    let pool = builder(&script, 1, 0)
        .leak_threshold(Duration::from_millis(20))
        .build()
        .await
        .unwrap();
    drop(pool.acquire().await.unwrap());
    let held = pool.acquire().await.unwrap();
    tokio::time::sleep(Duration::from_millis(40)).await;
    drop(held);
    let log = buf.text();
    assert_eq!(log.matches("leak_threshold").count(), 1, "{log}");
    assert!(
        log.contains("tests/pool.rs"),
        "names the acquiring call site: {log}"
    );
}

/// Thousands of acquires dropped at random points (queued, opening, pinging,
/// resetting) under contention: afterwards no slot or connection has leaked
/// and every slot can still be acquired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_acquires_at_random_points_leaks_nothing() {
    use rand::Rng;

    let script = Script::default();
    script.0.delay_ms.store(1, SeqCst);
    let pool = builder(&script, 3, 3)
        .pool_pre_ping(true)
        .max_waiting(None)
        .build()
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for worker in 0..16u64 {
        let pool = pool.clone();
        let script = script.clone();
        tasks.push(tokio::spawn(async move {
            use rand::SeedableRng;
            let mut rng = rand::rngs::StdRng::seed_from_u64(worker);
            for i in 0..250u64 {
                let budget = Duration::from_micros(rng.random_range(0..3000));
                match tokio::time::timeout(budget, pool.acquire()).await {
                    Ok(Ok(mut conn)) => {
                        match rng.random_range(0..10) {
                            0 => conn.dirty = true,
                            1 => script.kill(conn.id),
                            2 => conn.invalidate(),
                            _ => tokio::task::yield_now().await,
                        };
                    }
                    Ok(Err(e)) => panic!("unexpected error {e}"),
                    Err(_) => {} // dropped mid-acquire
                }
                if (worker + i) % 7 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    script.0.delay_ms.store(0, SeqCst);
    // Let spawned resets and closes finish.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let s = pool.status();
    assert_eq!((s.in_use, s.waiting), (0, 0), "{s:?}");
    assert!(s.size <= 6);
    assert_eq!(
        script.live(),
        s.size as i64,
        "no connection leaked outside the pool"
    );
    let all: Vec<_> = futures_util::future::join_all((0..6).map(|_| pool.acquire())).await;
    assert!(all.iter().all(Result::is_ok), "every slot can still be acquired");
    drop(all);
    pool.close().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(script.live(), 0);
}

#[tokio::test]
async fn dropping_the_pool_closes_its_idle_connections() {
    let script = Script::default();
    let pool = builder(&script, 2, 0).min_size(2).build().await.unwrap();
    assert_eq!(script.live(), 2);
    drop(pool);
    settle().await;
    assert_eq!(script.live(), 0);
}

/// A hot loop of acquires on every worker must not starve the runtime's timer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_acquire_loop_does_not_starve_timers() {
    use std::sync::atomic::AtomicBool;
    let script = Script::default();
    let pool = builder(&script, 8, 0).max_waiting(None).build().await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let watchdog = Arc::clone(&stop);
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(10));
        watchdog.store(true, SeqCst);
    });
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (pool, stop) = (pool.clone(), Arc::clone(&stop));
            tokio::spawn(async move {
                while !stop.load(SeqCst) {
                    drop(pool.acquire().await.unwrap());
                }
            })
        })
        .collect();
    let started = std::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let slept = started.elapsed();
    stop.store(true, SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    assert!(slept < Duration::from_secs(2), "the timer fired after {slept:?}");
}

/// Acquires from many worker threads at once are all counted.
#[test]
fn counters_add_up_over_every_thread() {
    let script = Script::default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(12)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pool = builder(&script, 4, 0).max_waiting(None).build().await.unwrap();
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let pool = pool.clone();
                tokio::spawn(async move {
                    for _ in 0..100 {
                        let conn = pool.acquire().await.unwrap();
                        tokio::task::yield_now().await;
                        drop(conn);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let stats = pool.stats();
        assert_eq!(stats.acquired, 6400);
        assert_eq!(stats.created, 4);
        assert!(stats.waited > 0 && stats.waited <= 6400, "{stats:?}");
        assert!(stats.wait_time > Duration::ZERO, "{stats:?}");
        assert_eq!((stats.timed_out, stats.rejected, stats.broken), (0, 0, 0));
    });
}
