//! The tour: the seed demo (cx_Oracle_async on SQLAlchemy's pool) in Rust,
//! on the embedded SQLite default with no setup.
//!
//! ```text
//! cargo run --example tour
//! DATABASE_URL=sqlite://tour.db cargo run --example tour
//! ```

use std::time::{Duration, Instant};

use reservoir::{Engine, ErrorKind, params};

const DEFAULT_URL: &str = "sqlite::memory:";

#[tokio::main]
async fn main() -> reservoir::Result<()> {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_string());
    let engine = Engine::builder(url.as_str())
        .pool_size(5)
        .max_overflow(5)
        .pool_timeout(Duration::from_secs(1))
        .pool_recycle(Duration::from_secs(3600))
        .pool_use_lifo(true)
        .pool_pre_ping(true)
        .build()
        .await?;
    println!("engine: {} ({:?})", engine.url(), engine.dialect());
    let cfg = engine.pool_config();
    println!(
        "pool: pool_size={} max_overflow={} pool_timeout={:?} max_waiting={:?}\n",
        cfg.pool_size, cfg.max_overflow, cfg.pool_timeout, cfg.max_waiting
    );

    // Create a testing table.
    engine
        .execute(
            "CREATE TABLE employee (id INTEGER NOT NULL PRIMARY KEY, department_id INTEGER NOT NULL)",
            (),
        )
        .await?;
    println!("created table employee");

    // Adding data in parallel: 10 tasks, 10 rows each, one execute_many per task.
    let tasks: Vec<_> = (0..100)
        .step_by(10)
        .map(|start: i64| {
            let engine = engine.clone();
            tokio::spawn(async move {
                let mut conn = engine.acquire().await?;
                conn.execute_many(
                    "INSERT INTO employee (id, department_id) VALUES (:a, 1)",
                    (0..10).map(|i| params! {"a" => start + i}),
                )
                .await
            })
        })
        .collect();
    let mut inserted = 0;
    for task in tasks {
        inserted += task.await.expect("insert task")?;
    }
    println!("10 tasks inserted {inserted} rows in parallel");

    // Basic queries.
    let mut conn = engine.acquire().await?;
    let one = conn
        .fetch_one("SELECT * FROM employee ORDER BY id LIMIT 1", ())
        .await?;
    println!("fetch_one: {one:?}");
    let ten = conn
        .fetch_all("SELECT * FROM employee ORDER BY id LIMIT 10", ())
        .await?;
    let ids: Vec<i64> = ten.iter().map(|r| r.get("id")).collect::<Result<_, _>>()?;
    println!("fetch_all: {} rows, ids {ids:?}", ten.len());
    drop(conn);

    // Simulate an instantaneous flood of 1000 requests: 10 connections, a
    // backlog of 5 x 10 = 50; everything beyond is rejected at once.
    let started = Instant::now();
    let outcomes = futures_util::future::join_all((0..1000).map(|_| flooding(&engine))).await;
    let served = outcomes.iter().filter(|o| **o == Outcome::Served).count();
    let rejected = outcomes.iter().filter(|o| **o == Outcome::Rejected).count();
    let timed_out = outcomes.iter().filter(|o| **o == Outcome::TimedOut).count();
    println!(
        "\nflood of 1000 requests in {:.2?}: {served} served, {timed_out} timed out, {rejected} rejected at once",
        started.elapsed()
    );
    println!("Task returned immediately: {rejected}");
    let stats = engine.stats();
    println!(
        "pool stats: created {} connections, {} acquires waited, {} rejected\n",
        stats.created, stats.waited, stats.rejected
    );

    // A transaction with a savepoint rolled back.
    let mut conn = engine.acquire().await?;
    let mut tx = conn.begin().await?;
    tx.execute(
        "INSERT INTO employee (id, department_id) VALUES (:id, 2)",
        params! {"id" => 1000},
    )
    .await?;
    let mut savepoint = tx.begin().await?;
    savepoint
        .execute(
            "INSERT INTO employee (id, department_id) VALUES (:id, 2)",
            params! {"id" => 1001},
        )
        .await?;
    savepoint.rollback().await?;
    tx.commit().await?;
    let kept: Vec<i64> = conn
        .fetch_all("SELECT id FROM employee WHERE department_id = 2", ())
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect::<Result<_, _>>()?;
    println!("transaction committed, savepoint rolled back: department 2 holds {kept:?}");

    // A cursor: skip 50 rows, then fetch 5.
    let mut tx = conn.begin().await?;
    let mut cursor = tx.cursor("SELECT id FROM employee ORDER BY id", ()).await?;
    let skipped = cursor.forward(50).await?;
    let batch = cursor.fetch(5).await?;
    let ids: Vec<i64> = batch.iter().map(|r| r.get(0)).collect::<Result<_, _>>()?;
    println!("cursor: skipped {skipped}, then fetched {ids:?}");
    drop(cursor);
    tx.commit().await?;
    drop(conn);

    // Destroy the table and close.
    engine.execute("DROP TABLE employee", ()).await?;
    println!("dropped table employee");
    engine.close().await;
    println!("engine closed: {:?}", engine.status());
    Ok(())
}

#[derive(PartialEq)]
enum Outcome {
    Served,
    Rejected,
    TimedOut,
}

/// One request of the flood: holds a connection for 100 ms, then queries.
async fn flooding(engine: &Engine) -> Outcome {
    match engine.acquire().await {
        Ok(mut conn) => {
            tokio::time::sleep(Duration::from_millis(100)).await;
            match conn.fetch_one("SELECT * FROM employee LIMIT 1", ()).await {
                Ok(_) => Outcome::Served,
                Err(e) => panic!("query failed: {e}"),
            }
        }
        Err(e) if e.kind() == &ErrorKind::PoolOverloaded => Outcome::Rejected,
        Err(e) if e.kind() == &ErrorKind::PoolTimeout => Outcome::TimedOut,
        Err(e) => panic!("acquire failed: {e}"),
    }
}
