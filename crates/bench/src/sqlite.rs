//! SQLite on a file database: point selects by primary key and a
//! 100,000-row insert in one transaction. Reservoir against direct
//! synchronous rusqlite on one thread (the limit) and sqlx's SqlitePool.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use reservoir::Engine;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

use crate::harness::{Neighbour, Rate, Row, print_table, run_time, runtime, throughput};

const ROWS: u64 = 100_000;
const SELECT: &str = "SELECT id, name, value FROM bench WHERE id = ?";
const INSERT: &str = "INSERT INTO ins (id, name, value) VALUES (?, ?, ?)";
const POOL: u32 = 8;

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// Primary keys spread over the table.
fn next_id() -> i64 {
    (NEXT_ID.fetch_add(7919, Relaxed) % ROWS + 1) as i64
}

pub fn run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bench.db");
    prepare(&path);
    let url = format!("sqlite://{}", path.display());
    let rt = runtime();
    println!("\n## SQLite file database (WAL), 2-worker tokio runtime, pools of {POOL} connections");

    let direct = Row {
        name: "rusqlite direct, sync, 1 thread (the limit)",
        rate: direct_point_selects(&path).into(),
    };
    let (quiet_1, service_1, ours_32, sqlx_32) = rt.block_on(point_selects(&url, &path));
    let (ours, mut peers) = quiet_1;
    peers.insert(0, direct.clone());
    print_table(
        "point select by primary key, 1 spawned task, the runtime doing nothing else",
        "selects/s",
        &ours,
        &peers,
    );
    let (ours, mut peers) = service_1;
    peers.insert(0, direct);
    print_table(
        &format!(
            "point select by primary key, 1 spawned task, beside a service's network I/O ({NEIGHBOURS} loopback clients, a message a millisecond each)"
        ),
        "selects/s",
        &ours,
        &peers,
    );
    print_table(
        "point select by primary key, 32 tasks, beside the same network I/O",
        "selects/s",
        &ours_32,
        &[sqlx_32],
    );

    let direct = median(|| direct_insert(&path));
    let (ours, sqlx) = rt.block_on(async {
        let engine = Engine::builder(url.as_str())
            .pool_size(1)
            .build()
            .await
            .expect("engine");
        let ours = median_async(|| ours_insert(&engine)).await;
        let pool = sqlx_pool(&path, 1).await;
        let sqlx = median_async(|| sqlx_insert(&pool)).await;
        (ours, sqlx)
    });
    print_table(
        &format!("execute_many: {ROWS} rows inserted in one transaction"),
        "rows/s",
        &[Row {
            name: "reservoir tx.execute_many",
            rate: ours.into(),
        }],
        &[
            Row {
                name: "rusqlite direct, prepared, 1 thread (the limit)",
                rate: direct.into(),
            },
            Row {
                name: "sqlx 0.9 row by row in a transaction",
                rate: sqlx.into(),
            },
        ],
    );
}

fn prepare(path: &Path) {
    let conn = rusqlite::Connection::open(path).expect("open");
    conn.pragma_update(None, "journal_mode", "WAL").expect("wal");
    conn.execute_batch(
        "CREATE TABLE bench (id INTEGER PRIMARY KEY, name TEXT NOT NULL, value INTEGER NOT NULL);
         CREATE TABLE ins (id INTEGER PRIMARY KEY, name TEXT NOT NULL, value INTEGER NOT NULL);",
    )
    .expect("schema");
    let tx = conn.unchecked_transaction().expect("tx");
    {
        let mut stmt = tx.prepare("INSERT INTO bench VALUES (?, ?, ?)").expect("prepare");
        for id in 1..=ROWS as i64 {
            stmt.execute(rusqlite::params![id, format!("name-{id}"), id * 3])
                .expect("insert");
        }
    }
    tx.commit().expect("commit");
}

fn direct_point_selects(path: &Path) -> f64 {
    let conn = rusqlite::Connection::open(path).expect("open");
    median(|| {
        let started = Instant::now();
        let deadline = started + run_time();
        let mut n = 0u64;
        while Instant::now() < deadline {
            for _ in 0..64 {
                let mut stmt = conn.prepare_cached(SELECT).expect("prepare");
                let row: (i64, String, i64) = stmt
                    .query_row([next_id()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .expect("select");
                std::hint::black_box(row);
                n += 1;
            }
        }
        n as f64 / started.elapsed().as_secs_f64()
    })
}

async fn sqlx_pool(path: &Path, size: u32) -> sqlx::SqlitePool {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(5));
    SqlitePoolOptions::new()
        .max_connections(size)
        .min_connections(size)
        .connect_with(options)
        .await
        .expect("sqlx pool")
}

/// The clients of the [`Neighbour`] that plays a service's other work.
const NEIGHBOURS: usize = 4;

/// Reservoir's one-task rows and sqlx's, each a spawned task looping.
async fn one_task(engine: &Engine, pool: &Arc<sqlx::SqlitePool>) -> (Vec<Row>, Vec<Row>) {
    let exclusive = {
        let engine = engine.clone();
        median_async(move || {
            let engine = engine.clone();
            async move {
                tokio::spawn(async move {
                    let mut conn = engine.acquire().await.expect("acquire");
                    let started = Instant::now();
                    let deadline = started + run_time();
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        let row = conn.fetch_one(SELECT, (next_id(),)).await.expect("select");
                        std::hint::black_box(row);
                        n += 1;
                    }
                    n as f64 / started.elapsed().as_secs_f64()
                })
                .await
                .expect("exclusive run")
            }
        })
        .await
    };
    let connectionless = connectionless(engine, 1).await;
    let checkout = per_op_checkout(engine, 1).await;
    let sqlx = sqlx_run(pool, 1).await;
    (
        vec![
            Row {
                name: "reservoir conn.fetch_one (exclusive checkout)",
                rate: exclusive.into(),
            },
            Row {
                name: "reservoir engine.fetch_one (connectionless)",
                rate: connectionless,
            },
            Row {
                name: "reservoir acquire + conn.fetch_one per select",
                rate: checkout,
            },
        ],
        vec![Row {
            name: "sqlx 0.9 SqlitePool",
            rate: sqlx,
        }],
    )
}

async fn connectionless(engine: &Engine, tasks: usize) -> Rate {
    let engine = engine.clone();
    throughput(tasks, move || {
        let engine = engine.clone();
        async move {
            std::hint::black_box(engine.fetch_one(SELECT, (next_id(),)).await.expect("select"));
        }
    })
    .await
}

async fn per_op_checkout(engine: &Engine, tasks: usize) -> Rate {
    let engine = engine.clone();
    throughput(tasks, move || {
        let engine = engine.clone();
        async move {
            let mut conn = engine.acquire().await.expect("acquire");
            std::hint::black_box(conn.fetch_one(SELECT, (next_id(),)).await.expect("select"));
        }
    })
    .await
}

async fn sqlx_run(pool: &Arc<sqlx::SqlitePool>, tasks: usize) -> Rate {
    let pool = Arc::clone(pool);
    throughput(tasks, move || {
        let pool = Arc::clone(&pool);
        async move {
            let row = sqlx::query(SELECT)
                .bind(next_id())
                .fetch_one(&*pool)
                .await
                .expect("sqlx select");
            std::hint::black_box(row);
        }
    })
    .await
}

type Table = (Vec<Row>, Vec<Row>);

/// The one-task rows on a quiet runtime and beside a [`Neighbour`], and
/// the 32-task rows beside it.
async fn point_selects(url: &str, path: &Path) -> (Table, Table, Vec<Row>, Row) {
    let engine = Engine::builder(url)
        .pool_size(POOL as usize)
        .max_overflow(0)
        .max_waiting(None)
        .build()
        .await
        .expect("engine");
    let pool = Arc::new(sqlx_pool(path, POOL).await);
    // One-task runs first: after a 32-task run the FIFO pool holds 8 idle
    // connections and rotates through their (sleeping) worker threads.
    let quiet = one_task(&engine, &pool).await;
    let neighbour = Neighbour::start(NEIGHBOURS).await;
    let service = one_task(&engine, &pool).await;
    let ours_32 = connectionless(&engine, 32).await;
    let checkout_32 = per_op_checkout(&engine, 32).await;
    engine.close().await;
    let pipelined_engine = Engine::builder(url)
        .pool_size(POOL as usize)
        .max_overflow(0)
        .max_waiting(None)
        .pipeline_reads(true)
        .build()
        .await
        .expect("engine");
    let pipelined_32 = connectionless(&pipelined_engine, 32).await;
    pipelined_engine.close().await;
    let sqlx_32 = sqlx_run(&pool, 32).await;
    drop(neighbour);
    (
        quiet,
        service,
        vec![
            Row {
                name: "reservoir engine.fetch_one (connectionless)",
                rate: ours_32,
            },
            Row {
                name: "reservoir acquire + conn.fetch_one per select",
                rate: checkout_32,
            },
            Row {
                name: "reservoir engine.fetch_one, pipeline_reads",
                rate: pipelined_32,
            },
        ],
        Row {
            name: "sqlx 0.9 SqlitePool",
            rate: sqlx_32,
        },
    )
}

fn insert_rows() -> impl Iterator<Item = (i64, String, i64)> {
    (1..=ROWS as i64).map(|id| (id, format!("name-{id}"), id * 3))
}

fn direct_insert(path: &Path) -> f64 {
    let conn = rusqlite::Connection::open(path).expect("open");
    conn.execute("DELETE FROM ins", []).expect("clear");
    let rows: Vec<_> = insert_rows().collect();
    let started = Instant::now();
    let tx = conn.unchecked_transaction().expect("tx");
    {
        let mut stmt = tx.prepare_cached(INSERT).expect("prepare");
        for (id, name, value) in &rows {
            stmt.execute(rusqlite::params![id, name, value]).expect("insert");
        }
    }
    tx.commit().expect("commit");
    ROWS as f64 / started.elapsed().as_secs_f64()
}

async fn ours_insert(engine: &Engine) -> f64 {
    engine.execute("DELETE FROM ins", ()).await.expect("clear");
    let rows: Vec<_> = insert_rows().collect();
    let started = Instant::now();
    let mut conn = engine.acquire().await.expect("acquire");
    let mut tx = conn.begin().await.expect("begin");
    let n = tx.execute_many(INSERT, rows).await.expect("execute_many");
    tx.commit().await.expect("commit");
    assert_eq!(n, ROWS);
    ROWS as f64 / started.elapsed().as_secs_f64()
}

async fn sqlx_insert(pool: &sqlx::SqlitePool) -> f64 {
    sqlx::query("DELETE FROM ins").execute(pool).await.expect("clear");
    let rows: Vec<_> = insert_rows().collect();
    let started = Instant::now();
    let mut tx = pool.begin().await.expect("begin");
    for (id, name, value) in rows {
        sqlx::query(INSERT)
            .bind(id)
            .bind(name)
            .bind(value)
            .execute(&mut *tx)
            .await
            .expect("insert");
    }
    tx.commit().await.expect("commit");
    ROWS as f64 / started.elapsed().as_secs_f64()
}

fn median(mut f: impl FnMut() -> f64) -> f64 {
    let mut v: Vec<f64> = (0..3).map(|_| f()).collect();
    v.sort_by(f64::total_cmp);
    v[1]
}

async fn median_async<F: Future<Output = f64>>(mut f: impl FnMut() -> F) -> f64 {
    let mut v = Vec::new();
    for _ in 0..3 {
        v.push(f().await);
    }
    v.sort_by(f64::total_cmp);
    v[1]
}
