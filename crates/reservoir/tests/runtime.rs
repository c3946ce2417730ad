//! A statement never holds the runtime's thread: a long read, or a read
//! waiting for another connection's lock, leaves the caller's runtime
//! free to run its other tasks. Each case runs on a one-thread runtime,
//! where a blocked thread would stop everything else.
//!
//! SQLite runs short reads on the caller's thread (see the driver's
//! `inline.rs`); these are the cases that must leave it.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use common::{Db, fresh_table};
use reservoir::Dialect;

per_dialect!(
    a_long_read_leaves_the_runtime_free,
    a_read_waiting_for_a_lock_leaves_the_runtime_free
);

/// Runs `case` on a new one-thread runtime of its own.
async fn on_one_thread<F, Fut, T>(case: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(case())
    })
    .await
    .unwrap()
}

async fn a_long_read_leaves_the_runtime_free(db: Db) {
    const N: i64 = 1_000_000;
    let (count, took, ticks) = on_one_thread(move || async move {
        let engine = db.engine().await;
        let ticks = Arc::new(AtomicU64::new(0));
        let ticker = tokio::spawn({
            let ticks = Arc::clone(&ticks);
            async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    ticks.fetch_add(1, SeqCst);
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        let before = ticks.load(SeqCst);
        let started = Instant::now();
        let sql = format!("SELECT count(*) FROM ({}) s", db.series(N as u64));
        let count: i64 = engine.fetch_scalar(&sql, ()).await.unwrap();
        let took = started.elapsed();
        let ticks = ticks.load(SeqCst) - before;
        ticker.abort();
        engine.close().await;
        (count, took, ticks)
    })
    .await;
    assert_eq!(count, N);
    // A millisecond ticker on the same thread kept ticking while the read
    // ran: a read holding the thread leaves it at zero or one (measured:
    // zero, for a 100 ms read with no budget); a free thread ticks about
    // once a millisecond, less on a loaded machine.
    let millis = took.as_millis() as u64;
    assert!(
        ticks >= (millis / 20).max(2),
        "{ticks} ticks of 1 ms during a read of {took:?}"
    );
}

/// Statements on one connection that take a lock no other connection can
/// read through, and the statements that release it.
fn exclusive_lock(db: &Db, table: &str) -> (Vec<String>, Vec<String>) {
    match db.dialect {
        // In the in-memory database's rollback journal, an exclusive lock
        // keeps readers out (they get SQLITE_BUSY and wait).
        Dialect::Sqlite => (vec!["BEGIN EXCLUSIVE".into()], vec!["COMMIT".into()]),
        Dialect::Mysql => (
            vec![format!("LOCK TABLES {table} WRITE")],
            vec!["UNLOCK TABLES".into()],
        ),
        _ => (
            vec![
                "BEGIN".into(),
                format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"),
            ],
            vec!["COMMIT".into()],
        ),
    }
}

async fn a_read_waiting_for_a_lock_leaves_the_runtime_free(db: Db) {
    let (count, waited) = on_one_thread(move || async move {
        let engine = db.builder().pool_size(2).build().await.unwrap();
        let t = fresh_table(&db, &engine, "lock_wait", "id INTEGER").await;
        engine
            .execute(&format!("INSERT INTO {t} (id) VALUES (1), (2), (3)"), ())
            .await
            .unwrap();
        let (lock, unlock) = exclusive_lock(&db, &t);
        let mut holder = engine.acquire().await.unwrap();
        for sql in &lock {
            holder.execute(sql, ()).await.unwrap();
        }
        // Only a free runtime thread can run this task and release the lock.
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            for sql in &unlock {
                holder.execute(sql, ()).await.unwrap();
            }
        });
        let started = Instant::now();
        let count: i64 = engine
            .fetch_scalar(&format!("SELECT count(*) FROM {t}"), ())
            .await
            .unwrap();
        let waited = started.elapsed();
        release.await.unwrap();
        engine.execute(&format!("DROP TABLE {t}"), ()).await.unwrap();
        engine.close().await;
        (count, waited)
    })
    .await;
    assert_eq!(count, 3);
    // It did wait for the lock, and got it once the lock was released.
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(4),
        "the read took {waited:?}"
    );
}
