//! `pipeline_reads`: connectionless reads under load share the connections
//! other such reads hold, on every dialect.

#[macro_use]
mod common;

use std::time::Duration;

use common::{Db, fresh_table};
use reservoir::{CloseOptions, Dialect, Engine, ErrorKind, params};

per_dialect!(
    every_caller_gets_its_own_rows_with_few_checkouts,
    a_failing_read_fails_alone,
    reads_in_a_transaction_stay_on_its_connection,
    the_backlog_bound_applies_to_queued_reads,
    dropped_reads_leave_the_engine_healthy,
    close_ends_queued_reads,
    a_checkout_is_not_starved_by_a_stream_of_reads,
    close_with_interrupt_ends_reads_sharing_a_connection,
    two_engines_reading_at_once_never_see_each_others_answers,
);

/// Two connections, pipelining on, no backlog bound (tested on its own).
async fn busy_engine(db: &Db) -> Engine {
    db.pipelining_engine(2).await
}

/// `tasks` tasks each running `reads` point reads; checks every answer.
/// On SQLite a read on a free connection runs on the caller's thread and
/// is over before any other read starts, so nothing would share a
/// connection: there each read also counts a few thousand rows, which
/// takes it past the inline budget and onto the connection's thread.
async fn read_storm(db: &Db, engine: &Engine, tasks: i64, reads: i64) {
    let n = db.typed("n", "BIGINT");
    let sql = match db.dialect {
        Dialect::Sqlite => format!(
            "SELECT {n} * 2 + 0 * (SELECT count(*) FROM ({}) s)",
            db.series(5000)
        ),
        _ => format!("SELECT {n} * 2"),
    };
    let workers: Vec<_> = (0..tasks)
        .map(|task| {
            let engine = engine.clone();
            let sql = sql.clone();
            tokio::spawn(async move {
                for i in 0..reads {
                    let n = task * 1000 + i;
                    let doubled: i64 = engine.fetch_scalar(&sql, params! {"n" => n}).await.unwrap();
                    assert_eq!(doubled, n * 2);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
}

async fn every_caller_gets_its_own_rows_with_few_checkouts(db: Db) {
    let engine = busy_engine(&db).await;
    let before = engine.stats().acquired;
    read_storm(&db, &engine, 40, 25).await;
    let checkouts = engine.stats().acquired - before;
    // 1,000 reads: a lease serves many per checkout.
    assert!(checkouts < 500, "{checkouts} checkouts for 1000 reads");
    // Leases give their connections back when their last read ends.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(engine.status().in_use, 0);
}

async fn a_failing_read_fails_alone(db: Db) {
    let engine = busy_engine(&db).await;
    let good = format!("SELECT {}", db.typed("n", "BIGINT"));
    let tasks: Vec<_> = (0..60i64)
        .map(|n| {
            let engine = engine.clone();
            let good = good.clone();
            tokio::spawn(async move {
                if n % 3 == 0 {
                    let err = engine
                        .fetch_one("SELECT no_such_column FROM no_such_table", ())
                        .await
                        .unwrap_err();
                    assert!(matches!(err.kind(), ErrorKind::Database { .. }), "{err:?}");
                } else {
                    let v: i64 = engine.fetch_scalar(&good, params! {"n" => n}).await.unwrap();
                    assert_eq!(v, n);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

async fn reads_in_a_transaction_stay_on_its_connection(db: Db) {
    let engine = busy_engine(&db).await;
    let t = fresh_table(&db, &engine, "pipe_tx", "id INTEGER PRIMARY KEY").await;
    // Both connections busy: one by the transaction, one by a read storm.
    let storm = {
        let engine = engine.clone();
        tokio::spawn(async move { read_storm(&db, &engine, 8, 50).await })
    };
    engine
        .scope(async {
            let tx = engine.begin().await.unwrap();
            engine
                .execute(&format!("INSERT INTO {t} (id) VALUES (1)"), ())
                .await
                .unwrap();
            let seen: i64 = engine
                .fetch_scalar(&format!("SELECT COUNT(*) FROM {t}"), ())
                .await
                .unwrap();
            assert_eq!(seen, 1, "the read joined the transaction");
            tx.rollback().await.unwrap();
        })
        .await;
    storm.await.unwrap();
    let after: i64 = engine
        .fetch_scalar(&format!("SELECT COUNT(*) FROM {t}"), ())
        .await
        .unwrap();
    assert_eq!(after, 0);
}

async fn the_backlog_bound_applies_to_queued_reads(db: Db) {
    let engine = db
        .builder()
        .pool_size(1)
        .max_overflow(0)
        .max_waiting(Some(5))
        .pipeline_reads(true)
        .build()
        .await
        .unwrap();
    // Hold the only connection: reads queue for one to open a lease on.
    let held = engine.acquire().await.unwrap();
    let rejected_before = engine.stats().rejected;
    let reads: Vec<_> = (0..20)
        .map(|_| {
            let engine = engine.clone();
            tokio::spawn(async move { engine.fetch_scalar::<i64>("SELECT 7", ()).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(held);
    let mut served = 0;
    let mut rejected = 0;
    for read in reads {
        match read.await.unwrap() {
            Ok(7) => served += 1,
            Err(e) if e.kind() == &ErrorKind::PoolOverloaded => rejected += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((served, rejected), (5, 15));
    assert_eq!(engine.stats().rejected - rejected_before, 15);
}

async fn dropped_reads_leave_the_engine_healthy(db: Db) {
    let engine = busy_engine(&db).await;
    let slow = match db.dialect {
        reservoir::Dialect::Postgres => "SELECT pg_sleep(0.02), 1",
        _ => {
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000) SELECT count(*) FROM c"
        }
    };
    let tasks: Vec<_> = (0..30u64)
        .map(|i| {
            let engine = engine.clone();
            tokio::spawn(async move {
                let read = engine.fetch_all(slow, ());
                let _ = tokio::time::timeout(Duration::from_millis(i % 7), read).await;
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    read_storm(&db, &engine, 10, 10).await;
    // Abandoned statements are cancelled before their connection is reused
    // (behind PgBouncer the cancel waits for a server connection of its own).
    let started = std::time::Instant::now();
    while engine.status().in_use > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            engine.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn close_ends_queued_reads(db: Db) {
    let engine = busy_engine(&db).await;
    let sql = format!("SELECT {}", db.typed("n", "BIGINT"));
    let readers: Vec<_> = (0..20i64)
        .map(|n| {
            let engine = engine.clone();
            let sql = sql.clone();
            tokio::spawn(async move {
                loop {
                    match engine.fetch_scalar::<i64>(&sql, params! {"n" => n}).await {
                        Ok(v) => assert_eq!(v, n),
                        Err(e) if e.kind() == &ErrorKind::PoolClosed => return,
                        Err(e) => panic!("{e:?}"),
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    tokio::time::timeout(Duration::from_secs(5), engine.close())
        .await
        .expect("close returns while reads are queued");
    for reader in readers {
        tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .expect("every reader hears of the close")
            .unwrap();
    }
    assert_eq!(engine.status().size, 0);
}

/// Two engines on one server (behind PgBouncer: sharing its two server
/// connections), one pipelining slow reads, the other reading values it
/// checks: no answer reaches the wrong engine. PgBouncer in transaction
/// mode hands a server connection on at the first ReadyForQuery, so reads
/// pipelined through it would deliver their later answers to whichever
/// client gets that connection next.
async fn two_engines_reading_at_once_never_see_each_others_answers(db: Db) {
    let slow = match db.dialect {
        reservoir::Dialect::Postgres => "SELECT CAST(pg_sleep(0.002) AS TEXT), 1",
        _ => {
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000) SELECT count(*), 1 FROM c"
        }
    };
    let pipelining = busy_engine(&db).await;
    let checking = busy_engine(&db).await;
    let slow_readers: Vec<_> = (0..16)
        .map(|_| {
            let engine = pipelining.clone();
            tokio::spawn(async move {
                for i in 0..20u64 {
                    // Some reads are dropped half way, as a timeout would.
                    let read = engine.fetch_all(slow, ());
                    if let Ok(rows) = tokio::time::timeout(Duration::from_millis(i % 5), read).await {
                        let rows = rows.unwrap();
                        assert_eq!((rows.len(), rows[0].len()), (1, 2), "{rows:?}");
                    }
                }
            })
        })
        .collect();
    read_storm(&db, &checking, 8, 40).await;
    for reader in slow_readers {
        reader.await.unwrap();
    }
}

/// While reads keep every lease busy, a checkout still gets a connection:
/// leases take no new reads while it waits.
async fn a_checkout_is_not_starved_by_a_stream_of_reads(db: Db) {
    let engine = busy_engine(&db).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sql = format!("SELECT {}", db.typed("n", "BIGINT"));
    let readers: Vec<_> = (0..20i64)
        .map(|n| {
            let (engine, stop, sql) = (engine.clone(), stop.clone(), sql.clone());
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let v: i64 = engine.fetch_scalar(&sql, params! {"n" => n}).await.unwrap();
                    assert_eq!(v, n);
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..3 {
        let tx = tokio::time::timeout(Duration::from_secs(5), engine.begin())
            .await
            .expect("a transaction starts while reads stream")
            .unwrap();
        tx.rollback().await.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for reader in readers {
        reader.await.unwrap();
    }
}

/// Endless reads sharing one connection (pipelined, queued on SQLite's
/// thread, or taking turns): `close_with(interrupt)` ends every one of
/// them, not only the one running when it was called.
async fn close_with_interrupt_ends_reads_sharing_a_connection(db: Db) {
    let engine = db.pipelining_engine(1).await;
    // Hold the only connection, so that the reads queue for one lease.
    let held = engine.acquire().await.unwrap();
    let reads: Vec<_> = (0..4)
        .map(|_| {
            let engine = engine.clone();
            let sql = db.endless_query();
            tokio::spawn(async move { engine.fetch_one(sql, ()).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    tokio::time::timeout(
        Duration::from_secs(10),
        engine.close_with(CloseOptions {
            force: false,
            interrupt: true,
        }),
    )
    .await
    .expect("close with interrupt returns while reads share the connection");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    for read in reads {
        let err = read.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Interrupted, "{err:?}");
    }
    assert_eq!(engine.status().size, 0);
}
