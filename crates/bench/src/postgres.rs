//! PostgreSQL point selects on a pgbench table (`pgbench -i -s 10`), 32
//! tasks over 8 connections: Reservoir against deadpool-postgres,
//! bb8-postgres, sqlx's PgPool, raw tokio-postgres sharing 8 clients, and
//! `pgbench -S` as the C reference.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use reservoir::Engine;

use crate::harness::{Row, print_table, run_time, runtime, throughput};

const URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const SELECT: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = $1";
const ACCOUNTS: u64 = 1_000_000;
const TASKS: usize = 32;
const CONNECTIONS: usize = 8;

static NEXT: AtomicU64 = AtomicU64::new(0);

fn next_aid() -> i32 {
    (NEXT.fetch_add(7919, Relaxed) % ACCOUNTS + 1) as i32
}

pub fn run() {
    prepare_table();
    let rt = runtime();
    println!(
        "\n## PostgreSQL point select (pgbench_accounts, scale 10), {TASKS} tasks, {CONNECTIONS} connections"
    );
    let (ours, peers) = rt.block_on(point_selects());
    let mut peers = peers;
    if let Some(tps) = pgbench_select() {
        peers.push(Row {
            name: "pgbench -S -M prepared -c 8 -j 2 (C reference)",
            rate: tps,
        });
    }
    print_table("point select by primary key", "selects/s", &ours, &peers);
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

fn pgbench_select() -> Option<f64> {
    let secs = run_time().as_secs().max(2).to_string();
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

async fn point_selects() -> (Vec<Row>, Vec<Row>) {
    let engine = Engine::builder(URL)
        .pool_size(CONNECTIONS)
        .max_overflow(0)
        .max_waiting(None)
        .build()
        .await
        .expect("reservoir engine");
    let e = engine.clone();
    let connectionless = throughput(TASKS, move || {
        let engine = e.clone();
        async move {
            let row = engine.fetch_one(SELECT, (next_aid(),)).await.expect("select");
            std::hint::black_box(row);
        }
    })
    .await;
    let e = engine.clone();
    let checkout = throughput(TASKS, move || {
        let engine = e.clone();
        async move {
            let mut conn = engine.acquire().await.expect("acquire");
            let row = conn.fetch_one(SELECT, (next_aid(),)).await.expect("select");
            std::hint::black_box(row);
        }
    })
    .await;
    engine.close().await;

    let mut cfg = deadpool_postgres::Config::new();
    cfg.url = Some(URL.into());
    cfg.pool = Some(deadpool_postgres::PoolConfig::new(CONNECTIONS));
    let dp = cfg
        .create_pool(Some(deadpool_postgres::Runtime::Tokio1), tokio_postgres::NoTls)
        .expect("deadpool");
    let deadpool = throughput(TASKS, move || {
        let pool = dp.clone();
        async move {
            let client = pool.get().await.expect("deadpool get");
            let stmt = client.prepare_cached(SELECT).await.expect("prepare");
            let row = client.query_one(&stmt, &[&next_aid()]).await.expect("select");
            std::hint::black_box(row);
        }
    })
    .await;

    let manager = bb8_postgres::PostgresConnectionManager::new_from_stringlike(URL, tokio_postgres::NoTls)
        .expect("bb8 manager");
    let b = bb8::Pool::builder()
        .max_size(CONNECTIONS as u32)
        .build(manager)
        .await
        .expect("bb8");
    let bb8_rate = throughput(TASKS, move || {
        let pool = b.clone();
        async move {
            let client = pool.get().await.expect("bb8 get");
            let row = client.query_one(SELECT, &[&next_aid()]).await.expect("select");
            std::hint::black_box(row);
        }
    })
    .await;

    let sqlx_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(CONNECTIONS as u32)
        .connect(URL)
        .await
        .expect("sqlx");
    let sqlx_rate = throughput(TASKS, move || {
        let pool = sqlx_pool.clone();
        async move {
            let row = sqlx::query(SELECT)
                .bind(next_aid())
                .fetch_one(&pool)
                .await
                .expect("select");
            std::hint::black_box(row);
        }
    })
    .await;

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
    let raw = throughput(TASKS, move || {
        let (clients, turn) = (Arc::clone(&clients), Arc::clone(&turn));
        async move {
            let (client, stmt) = &clients[turn.fetch_add(1, Relaxed) % CONNECTIONS];
            let row = client.query_one(stmt, &[&next_aid()]).await.expect("select");
            std::hint::black_box(row);
        }
    })
    .await;

    (
        vec![
            Row {
                name: "reservoir engine.fetch_one (connectionless)",
                rate: connectionless,
            },
            Row {
                name: "reservoir acquire + conn.fetch_one",
                rate: checkout,
            },
        ],
        vec![
            Row {
                name: "deadpool-postgres 0.14 (prepare_cached)",
                rate: deadpool,
            },
            Row {
                name: "bb8-postgres 0.9",
                rate: bb8_rate,
            },
            Row {
                name: "sqlx 0.9 PgPool",
                rate: sqlx_rate,
            },
            Row {
                name: "tokio-postgres, 8 clients shared (pipelined)",
                rate: raw,
            },
        ],
    )
}
