//! A fixed number of PostgreSQL point selects, each through a checkout of
//! its own (32 tasks, 8 connections), for counting instructions: the
//! timed harness runs for a set time, which valgrind stretches. Count the
//! client's instructions per select as the difference between two counts:
//!
//! ```text
//! cargo build --release -p reservoir-bench --example pg_checkout_count
//! valgrind --tool=callgrind target/release/examples/pg_checkout_count reservoir 4000
//! valgrind --tool=callgrind target/release/examples/pg_checkout_count reservoir 12000
//! ```
//!
//! The first argument is `reservoir` (acquire + `conn.fetch_one`),
//! `connectionless` (`engine.fetch_one`, a checkout of its own each),
//! `pipelined` (connectionless `engine.fetch_one` with `pipeline_reads`),
//! `deadpool` (deadpool-postgres, `prepare_cached` + `query_one`) or `raw`
//! (8 tokio-postgres clients shared by the tasks in turn); the second
//! the number of selects; an optional third, the number of tasks (32).
//! `CONNECTIONS=n` sets the pool size (8). Needs the pgbench tables (`-- pg-select` makes them).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

const URL: &str = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable";
const SELECT: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = $1";
const TASKS: u64 = 32;
/// The pool size (or number of raw clients): `CONNECTIONS`, else 8.
fn connections() -> usize {
    std::env::var("CONNECTIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(8)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let who = args.next().unwrap_or_else(|| "reservoir".into());
    let total: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let tasks: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(TASKS);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let select = match who.as_str() {
            "reservoir" => reservoir_select().await,
            "connectionless" => connectionless_select(false).await,
            "pipelined" => connectionless_select(true).await,
            "deadpool" => deadpool_select(),
            "raw" => raw_select().await,
            other => {
                panic!("unknown contender {other:?}: reservoir, connectionless, pipelined, deadpool or raw")
            }
        };
        let left = Arc::new(AtomicU64::new(total));
        let tasks: Vec<_> = (0..tasks)
            .map(|t| {
                let (left, select) = (Arc::clone(&left), Arc::clone(&select));
                tokio::spawn(async move {
                    let mut aid = t as i32 + 1;
                    while left.fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1)).is_ok() {
                        select(aid).await;
                        aid = (aid + 7918) % 1_000_000 + 1;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
    });
}

type Select = Arc<dyn Fn(i32) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

async fn engine(pipeline_reads: bool) -> reservoir::Engine {
    reservoir::Engine::builder(URL)
        .pool_size(connections())
        .max_overflow(0)
        .max_waiting(None)
        .pipeline_reads(pipeline_reads)
        .build()
        .await
        .expect("engine")
}

async fn connectionless_select(pipeline_reads: bool) -> Select {
    let engine = engine(pipeline_reads).await;
    Arc::new(move |aid| {
        let engine = engine.clone();
        Box::pin(async move {
            std::hint::black_box(engine.fetch_one(SELECT, (aid,)).await.expect("select"));
        })
    })
}

async fn raw_select() -> Select {
    let mut clients = Vec::new();
    for _ in 0..connections() {
        let (client, conn) = tokio_postgres::connect(URL, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(conn);
        let stmt = client.prepare(SELECT).await.expect("prepare");
        clients.push((client, stmt));
    }
    let clients = Arc::new(clients);
    let turn = Arc::new(AtomicU64::new(0));
    Arc::new(move |aid| {
        let (clients, turn) = (Arc::clone(&clients), Arc::clone(&turn));
        Box::pin(async move {
            let (client, stmt) = &clients[turn.fetch_add(1, Relaxed) as usize % clients.len()];
            std::hint::black_box(client.query_one(stmt, &[&aid]).await.expect("select"));
        })
    })
}

async fn reservoir_select() -> Select {
    let engine = engine(false).await;
    Arc::new(move |aid| {
        let engine = engine.clone();
        Box::pin(async move {
            let mut conn = engine.acquire().await.expect("acquire");
            std::hint::black_box(conn.fetch_one(SELECT, (aid,)).await.expect("select"));
        })
    })
}

fn deadpool_select() -> Select {
    let mut cfg = deadpool_postgres::Config::new();
    cfg.url = Some(URL.into());
    cfg.pool = Some(deadpool_postgres::PoolConfig::new(connections()));
    let pool = cfg
        .create_pool(Some(deadpool_postgres::Runtime::Tokio1), tokio_postgres::NoTls)
        .expect("deadpool");
    Arc::new(move |aid| {
        let pool = pool.clone();
        Box::pin(async move {
            let client = pool.get().await.expect("get");
            let stmt = client.prepare_cached(SELECT).await.expect("prepare");
            std::hint::black_box(client.query_one(&stmt, &[&aid]).await.expect("select"));
        })
    })
}
