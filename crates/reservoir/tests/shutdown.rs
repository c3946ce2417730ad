//! A runtime shut down while its tasks are mid-statement (what happens
//! when `#[tokio::main]` returns with work still running): nothing panics,
//! on any thread, every connection comes back to the pool, and the engine
//! then serves from another runtime. Alone in its test binary, because it
//! counts panics with a process-wide hook.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use common::Db;
use reservoir::{Engine, params};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Every dialect this build has, with a URL for each (SQLite: a file in
/// `dir`, so that its connections write concurrently as separate ones).
fn dialects(dir: &std::path::Path) -> Vec<(Db, String)> {
    let mut all = vec![(
        Db::sqlite(),
        format!("sqlite://{}", dir.join("shutdown.db").display()),
    )];
    #[cfg(feature = "postgres")]
    all.push((Db::postgres(), Db::postgres().url()));
    #[cfg(feature = "mysql")]
    all.push((Db::mysql(), Db::mysql().url()));
    all
}

/// Transactions, a stream dropped half read, and connectionless reads
/// (pipelined when the pool is busy), until the runtime stops the task.
/// A statement caught by the shutdown itself may fail (a pipelined read
/// whose task was stopped first): an error ends the task's work, and must
/// come after `SHUTTING_DOWN` is set.
async fn work(db: Db, engine: Engine, table: String, task: i64) {
    if let Err(e) = statements(db, engine, table, task).await {
        assert!(SHUTTING_DOWN.load(SeqCst), "before the shutdown: {e:?}");
    }
}

/// Set just before the first runtime is dropped.
static SHUTTING_DOWN: AtomicBool = AtomicBool::new(false);

async fn statements(db: Db, engine: Engine, table: String, task: i64) -> reservoir::Result<()> {
    let insert = format!("INSERT INTO {table} (id) VALUES (:id)");
    for i in 0.. {
        let mut conn = engine.acquire().await?;
        let mut tx = conn.begin().await?;
        tx.execute(&insert, params! {"id" => task * 1_000_000 + i})
            .await?;
        {
            let mut rows = tx.fetch(&db.series(1000), ());
            rows.next().await.expect("a row")?;
        }
        tx.commit().await?;
        drop(conn);
        let rows = engine.fetch_all(&db.series(20), ()).await?;
        assert_eq!(rows.len(), 20);
    }
    Ok(())
}

#[test]
fn a_runtime_shut_down_mid_work_panics_nothing_and_loses_no_connection() {
    let panics = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&panics);
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        counted.fetch_add(1, SeqCst);
        report(info);
    }));
    let dir = tempfile::tempdir().unwrap();
    for ((db, url), pre_ping) in dialects(dir.path())
        .into_iter()
        .flat_map(|d| [(d.clone(), true), (d, false)])
    {
        let first = runtime();
        let (engine, table) = first.block_on(async {
            let engine = Engine::builder(url.as_str())
                .pool_size(4)
                .max_overflow(0)
                .max_waiting(None)
                .pipeline_reads(true)
                .pool_pre_ping(pre_ping)
                .build()
                .await
                .unwrap();
            let table = common::fresh_table(&db, &engine, "shutdown", "id BIGINT PRIMARY KEY").await;
            (engine, table)
        });
        for task in 0..12 {
            first.spawn(work(db, engine.clone(), table.clone(), task));
        }
        first.block_on(async { tokio::time::sleep(Duration::from_millis(300)).await });
        let done = first.block_on(async {
            engine
                .fetch_scalar::<i64>(&format!("SELECT count(*) FROM {table}"), ())
                .await
        });
        assert!(
            done.unwrap() > 0,
            "{}: no work was done before the shutdown",
            db.label()
        );
        SHUTTING_DOWN.store(true, SeqCst);
        drop(first);
        SHUTTING_DOWN.store(false, SeqCst);

        let second = runtime();
        second.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(10);
            while engine.status().in_use > 0 {
                assert!(
                    Instant::now() < deadline,
                    "{}: connections lost: {:?}",
                    db.label(),
                    engine.status()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // Connections whose I/O ran on the first runtime are replaced
            // (PostgreSQL's I/O task went with it): the caller sees no
            // error, with or without pre-ping.
            for n in 0..8i64 {
                let got: i64 = engine
                    .fetch_scalar(&db.echo(), params! {"n" => n})
                    .await
                    .unwrap_or_else(|e| panic!("{} (pre_ping {pre_ping}): {e:?}", db.label()));
                assert_eq!(got, n);
            }
            engine.close().await;
        });
    }
    let _ = std::panic::take_hook();
    assert_eq!(panics.load(SeqCst), 0, "something panicked (reported above)");
}

/// One engine used from one runtime after another, as a `static` engine
/// is by `#[tokio::test]`s (each has a runtime of its own): connections
/// opened on a runtime that has ended are replaced unused, so no caller
/// sees an error. SQLite's connections run on threads of their own and
/// are kept.
#[test]
fn an_engine_outlives_the_runtimes_that_used_it() {
    let dir = tempfile::tempdir().unwrap();
    for (db, url) in dialects(dir.path()) {
        let engine = runtime().block_on(async {
            Engine::builder(url.as_str())
                .pool_size(3)
                .max_overflow(0)
                .build()
                .await
                .unwrap()
        });
        let echo = db.echo();
        for round in 0..3i64 {
            runtime().block_on(async {
                // Three connections at once, so that every idle one is used.
                let mut held = Vec::new();
                for n in 0..3 {
                    let mut conn = engine.acquire().await.unwrap();
                    let got: i64 = conn
                        .fetch_scalar(&echo, params! {"n" => round * 10 + n})
                        .await
                        .unwrap_or_else(|e| panic!("{} round {round}: {e:?}", db.label()));
                    assert_eq!(got, round * 10 + n);
                    held.push(conn);
                }
            });
        }
        // Rounds 1 and 2 found the three of the round before them dead (and
        // round 0 any that `build()` opened).
        let replaced = engine.stats().broken;
        if db.dialect == reservoir::Dialect::Sqlite {
            assert_eq!(replaced, 0, "sqlite: connections replaced");
        } else {
            assert!(
                replaced >= 6,
                "{}: only {replaced} connections replaced",
                db.label()
            );
        }
        runtime().block_on(engine.close());
    }
}
