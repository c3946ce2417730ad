//! PostgreSQL point selects on a pgbench table (`pgbench -i -s 10`), 32
//! tasks over 8 connections: Reservoir against deadpool-postgres,
//! bb8-postgres, sqlx's PgPool, raw tokio-postgres sharing 8 clients, and
//! `pgbench -S` as the C reference. `PG_SELECT_ONLY=<parts of names,
//! comma-separated>` runs only the contenders named so, to compare or
//! profile a few alone.

use std::pin::Pin;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_postgres::types::Type;

use reservoir::Engine;

use crate::harness::{Contender, Row, interleaved, print_table, runtime};

/// Plain TCP for every contender: the peers here are built without TLS.
pub(crate) const URL: &str = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable";
const SELECT: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = $1";
pub(crate) const ACCOUNTS: u64 = 1_000_000;
const TASKS: usize = 32;
const CONNECTIONS: usize = 8;

static NEXT: AtomicU64 = AtomicU64::new(0);

fn next_aid() -> i32 {
    (NEXT.fetch_add(7919, Relaxed) % ACCOUNTS + 1) as i32
}

pub fn run() {
    let rt = runtime();
    select_section(&rt);
    bulk_section(&rt);
    streaming_section(&rt);
}

/// Only the point-select comparison (`-- pg-select`).
pub fn run_select() {
    select_section(&runtime());
}

fn select_section(rt: &tokio::runtime::Runtime) {
    prepare_table();
    println!(
        "\n## PostgreSQL point select (pgbench_accounts, scale 10), {TASKS} tasks, {CONNECTIONS} connections"
    );
    let (ours, peers) = rt.block_on(point_selects());
    print_table(
        "point select by primary key (contenders interleaved, median of 3 rounds)",
        "selects/s",
        &ours,
        &peers,
    );
}

/// Only the bulk-load comparison (`-- pg-bulk`).
pub fn run_bulk() {
    bulk_section(&runtime());
}

fn bulk_section(rt: &tokio::runtime::Runtime) {
    let (ours, peers) = rt.block_on(bulk());
    print_table(
        &format!("{BULK} rows inserted in one transaction (median of {BULK_ROUNDS} interleaved rounds)"),
        "rows/s",
        &ours,
        &peers,
    );
}

/// Only the streaming comparison (`-- pg-stream`).
pub fn run_streaming() {
    prepare_table();
    streaming_section(&runtime());
}

fn streaming_section(rt: &tokio::runtime::Runtime) {
    rt.block_on(crate::pg_stream::run());
}

const BULK: usize = 100_000;
const BULK_INSERT: &str = "INSERT INTO reservoir_bulk (id, name, value) VALUES ($1, $2, $3)";

fn bulk_rows() -> Vec<(i32, String, i32)> {
    (1..=BULK as i32)
        .map(|i| (i, format!("name-{i}"), i * 3))
        .collect()
}

/// One bulk-load contender: a name, whether it is Reservoir's, and a run.
type BulkRun<'a> = (
    &'static str,
    bool,
    Box<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + 'a>> + 'a>,
);

/// Rounds of the bulk comparison: each contender runs once per round, in
/// turn, and its rate is the median (single runs varied by 30% here).
const BULK_ROUNDS: usize = 3;

async fn bulk() -> (Vec<Row>, Vec<Row>) {
    let (admin, conn) = tokio_postgres::connect(URL, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    admin
        .batch_execute(
            "DROP TABLE IF EXISTS reservoir_bulk; \
             CREATE TABLE reservoir_bulk (id INTEGER PRIMARY KEY, name TEXT NOT NULL, value INTEGER NOT NULL)",
        )
        .await
        .expect("bulk table");
    let engine = Engine::builder(URL).pool_size(1).build().await.expect("engine");
    let (client, conn) = tokio_postgres::connect(URL, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(URL)
        .await
        .expect("sqlx");

    let contenders: Vec<BulkRun<'_>> = vec![
        (
            "reservoir tx.execute_many (pipelined)",
            true,
            Box::new(|| {
                Box::pin(async {
                    let mut conn = engine.acquire().await.expect("acquire");
                    let mut tx = conn.begin().await.expect("begin");
                    let n = tx.execute_many(BULK_INSERT, bulk_rows()).await;
                    assert_eq!(n.expect("execute_many"), BULK as u64);
                    tx.commit().await.expect("commit");
                })
            }),
        ),
        (
            "reservoir conn.copy_in (binary COPY)",
            true,
            Box::new(|| {
                Box::pin(async {
                    let mut conn = engine.acquire().await.expect("acquire");
                    let n = conn.copy_in("reservoir_bulk", &["id", "name", "value"], bulk_rows());
                    assert_eq!(n.await.expect("copy_in"), BULK as u64);
                })
            }),
        ),
        (
            "tokio-postgres pipelined executes (256 in flight)",
            false,
            Box::new(|| {
                Box::pin(async {
                    client.batch_execute("BEGIN").await.expect("begin");
                    let stmt = client.prepare(BULK_INSERT).await.expect("prepare");
                    let rows = bulk_rows();
                    let futures = rows.iter().map(|(id, name, value)| {
                        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [id, name, value];
                        client.execute_raw(&stmt, params)
                    });
                    let mut in_flight = futures_util::stream::iter(futures).buffered(256);
                    while let Some(n) = in_flight.next().await {
                        n.expect("insert");
                    }
                    client.batch_execute("COMMIT").await.expect("commit");
                })
            }),
        ),
        (
            "tokio-postgres binary COPY",
            false,
            Box::new(|| {
                Box::pin(async {
                    let sink = client
                        .copy_in("COPY reservoir_bulk (id, name, value) FROM STDIN BINARY")
                        .await
                        .expect("copy");
                    let types = [Type::INT4, Type::TEXT, Type::INT4];
                    let writer = tokio_postgres::binary_copy::BinaryCopyInWriter::new(sink, &types);
                    let mut writer = std::pin::pin!(writer);
                    for (id, name, value) in bulk_rows() {
                        writer.as_mut().write(&[&id, &name, &value]).await.expect("row");
                    }
                    writer.finish().await.expect("finish");
                })
            }),
        ),
        (
            "sqlx 0.9 row by row in a transaction",
            false,
            Box::new(|| {
                Box::pin(async {
                    let mut tx = pool.begin().await.expect("begin");
                    for (id, name, value) in bulk_rows() {
                        sqlx::query(BULK_INSERT)
                            .bind(id)
                            .bind(name)
                            .bind(value)
                            .execute(&mut *tx)
                            .await
                            .expect("insert");
                    }
                    tx.commit().await.expect("commit");
                })
            }),
        ),
    ];
    let n = contenders.len();
    let mut rates = vec![Vec::new(); n];
    for round in 0..BULK_ROUNDS {
        // Each round starts with the next contender (see `harness::interleaved`).
        for k in 0..n {
            let i = (round + k) % n;
            let (_, _, run) = &contenders[i];
            admin
                .batch_execute("TRUNCATE reservoir_bulk")
                .await
                .expect("truncate");
            let started = Instant::now();
            run().await;
            rates[i].push(BULK as f64 / started.elapsed().as_secs_f64());
        }
    }
    engine.close().await;
    let (mut ours, mut peers) = (Vec::new(), Vec::new());
    for ((name, is_ours, _), mut rates) in contenders.into_iter().zip(rates) {
        rates.sort_by(f64::total_cmp);
        let row = Row {
            name,
            rate: rates[rates.len() / 2].into(),
        };
        if is_ours { ours.push(row) } else { peers.push(row) }
    }
    (ours, peers)
}

fn prepare_table() {
    let ready = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "test",
            "-tAc",
            "SELECT count(*) FROM pgbench_accounts",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<u64>().ok());
    if ready != Some(ACCOUNTS) {
        println!("(initialising pgbench tables, scale 10)");
        let status = Command::new("pgbench")
            .args([
                "-i",
                "-s",
                "10",
                "-q",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "test",
            ])
            .status()
            .expect("pgbench -i");
        assert!(status.success(), "pgbench -i failed");
    }
}

/// `pgbench -S` for about `length` (whole seconds, at least one): its tps.
fn pgbench_select(length: Duration) -> Option<f64> {
    let secs = length.as_secs_f64().round().max(1.0).to_string();
    let out = Command::new("pgbench")
        .args([
            "-S",
            "-M",
            "prepared",
            "-c",
            "8",
            "-j",
            "2",
            "-T",
            &secs,
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "test",
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().find(|l| l.starts_with("tps = ")).and_then(|l| {
        l.trim_start_matches("tps = ")
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

/// Reads every account once, so that whichever implementation runs first
/// does not pay for a cold buffer cache.
async fn warm_up() {
    let (client, conn) = tokio_postgres::connect(URL, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
        .batch_execute("SELECT count(abalance) FROM pgbench_accounts")
        .await
        .expect("warm-up");
}

async fn point_selects() -> (Vec<Row>, Vec<Row>) {
    warm_up().await;
    let mut contenders = crate::ours::point_selects(URL, CONNECTIONS, TASKS, SELECT, next_aid).await;

    let mut cfg = deadpool_postgres::Config::new();
    cfg.url = Some(URL.into());
    cfg.pool = Some(deadpool_postgres::PoolConfig::new(CONNECTIONS));
    let dp = cfg
        .create_pool(Some(deadpool_postgres::Runtime::Tokio1), tokio_postgres::NoTls)
        .expect("deadpool");
    contenders.push(Contender::looping(
        "deadpool-postgres 0.14 (prepare_cached)",
        false,
        TASKS,
        move || {
            let pool = dp.clone();
            async move {
                let client = pool.get().await.expect("deadpool get");
                let stmt = client.prepare_cached(SELECT).await.expect("prepare");
                let row = client.query_one(&stmt, &[&next_aid()]).await.expect("select");
                std::hint::black_box(row);
            }
        },
    ));

    let manager = bb8_postgres::PostgresConnectionManager::new_from_stringlike(URL, tokio_postgres::NoTls)
        .expect("bb8 manager");
    let b = bb8::Pool::builder()
        .max_size(CONNECTIONS as u32)
        .build(manager)
        .await
        .expect("bb8");
    contenders.push(Contender::looping("bb8-postgres 0.9", false, TASKS, move || {
        let pool = b.clone();
        async move {
            let client = pool.get().await.expect("bb8 get");
            let row = client.query_one(SELECT, &[&next_aid()]).await.expect("select");
            std::hint::black_box(row);
        }
    }));

    let sqlx_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(CONNECTIONS as u32)
        .connect(URL)
        .await
        .expect("sqlx");
    contenders.push(Contender::looping("sqlx 0.9 PgPool", false, TASKS, move || {
        let pool = sqlx_pool.clone();
        async move {
            let row = sqlx::query(SELECT)
                .bind(next_aid())
                .fetch_one(&pool)
                .await
                .expect("select");
            std::hint::black_box(row);
        }
    }));

    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        let (client, conn) = tokio_postgres::connect(URL, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(conn);
        let stmt = client.prepare(SELECT).await.expect("prepare");
        clients.push((client, stmt));
    }
    let clients = Arc::new(clients);
    let turn = Arc::new(AtomicUsize::new(0));
    contenders.push(Contender::looping(
        "tokio-postgres, 8 clients shared (pipelined)",
        false,
        TASKS,
        move || {
            let (clients, turn) = (Arc::clone(&clients), Arc::clone(&turn));
            async move {
                let (client, stmt) = &clients[turn.fetch_add(1, Relaxed) % CONNECTIONS];
                let row = client.query_one(stmt, &[&next_aid()]).await.expect("select");
                std::hint::black_box(row);
            }
        },
    ));

    if pgbench_select(Duration::from_secs(1)).is_some() {
        contenders.push(Contender::external(
            "pgbench -S -M prepared -c 8 -j 2 (C reference)",
            |length| pgbench_select(length).unwrap_or(f64::NAN),
        ));
    }
    if let Ok(only) = std::env::var("PG_SELECT_ONLY") {
        contenders.retain(|c| only.split(',').any(|part| c.name.contains(part)));
    }
    interleaved(&contenders).await
}
