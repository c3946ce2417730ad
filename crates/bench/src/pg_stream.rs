//! Streaming 1,000,000 rows of `pgbench_accounts`: Reservoir's `fetch()`
//! against tokio-postgres `query_raw` and sqlx `fetch`, each with rows
//! dropped unread and with every column read.
//!
//! The contenders take turns, one run each per round, so that the machine's
//! slow minutes fall on all of them alike; each rate is the median over the
//! rounds. Every round runs twice: in a spawned task (where a service's
//! request handler runs) and on the `block_on` thread, which is not one of
//! the runtime's workers (tokio-postgres then hands every chunk of rows
//! from its connection task to another thread).
//!
//! Beside the rates, each contender's client CPU time per row (this
//! process's, both placements together, median over the rounds): on a
//! shared machine it moves far less from run to run than the rates do.
//!
//! `PG_STREAM_ONLY=<part of a name>` runs only the contenders named so, to
//! profile one alone.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use futures_util::StreamExt;
use reservoir::Engine;

use crate::harness::cpu_seconds;
use crate::postgres::{ACCOUNTS, URL};

const STREAM: &str = "SELECT aid, bid, abalance, filler FROM pgbench_accounts";
/// Rounds, unless `PG_STREAM_ROUNDS` says otherwise.
const ROUNDS: usize = 5;

type Run = Box<dyn Fn() -> Pin<Box<dyn Future<Output = u64> + Send>>>;

struct Contender {
    name: &'static str,
    run: Run,
    spawned: Vec<f64>,
    on_caller: Vec<f64>,
    /// This process's CPU time per row (both placements), in nanoseconds.
    cpu: Vec<f64>,
    /// The most RSS grew during one of its runs.
    growth: u64,
}

fn contender<F>(name: &'static str, run: impl Fn() -> F + 'static) -> Contender
where
    F: Future<Output = u64> + Send + 'static,
{
    Contender {
        name,
        run: Box::new(move || Box::pin(run())),
        spawned: Vec::new(),
        on_caller: Vec::new(),
        cpu: Vec::new(),
        growth: 0,
    }
}

pub async fn run() {
    let engine = Engine::builder(URL).pool_size(1).build().await.expect("engine");
    let (client, conn) = tokio_postgres::connect(URL, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    let client = Arc::new(client);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(URL)
        .await
        .expect("sqlx");

    let mut contenders = vec![
        contender("reservoir conn.fetch()", {
            let engine = engine.clone();
            move || {
                let engine = engine.clone();
                async move {
                    let mut conn = engine.acquire().await.expect("acquire");
                    drain(conn.fetch(STREAM, ()), |row| row).await
                }
            }
        }),
        contender("tokio-postgres query_raw", {
            let client = Arc::clone(&client);
            move || {
                let client = Arc::clone(&client);
                async move { drain(query_raw(&client).await, |row| row).await }
            }
        }),
        contender("sqlx 0.9 fetch", {
            let pool = pool.clone();
            move || {
                let pool = pool.clone();
                async move { drain(sqlx::query(STREAM).fetch(&pool), |row| row).await }
            }
        }),
        contender("reservoir conn.fetch(), every column read", {
            let engine = engine.clone();
            move || {
                let engine = engine.clone();
                async move {
                    let mut conn = engine.acquire().await.expect("acquire");
                    drain(conn.fetch(STREAM, ()), |r| {
                        let row = (
                            r.get::<i32>(0),
                            r.get::<i32>(1),
                            r.get::<i32>(2),
                            r.get::<String>(3),
                        );
                        (row.0.unwrap(), row.1.unwrap(), row.2.unwrap(), row.3.unwrap())
                    })
                    .await
                }
            }
        }),
        contender("tokio-postgres query_raw, every column read", {
            let client = Arc::clone(&client);
            move || {
                let client = Arc::clone(&client);
                async move {
                    drain(query_raw(&client).await, |r| {
                        let row: (i32, i32, i32, String) = (r.get(0), r.get(1), r.get(2), r.get(3));
                        row
                    })
                    .await
                }
            }
        }),
        contender("sqlx 0.9 fetch, every column read", {
            let pool = pool.clone();
            move || {
                let pool = pool.clone();
                async move {
                    use sqlx::Row as _;
                    drain(sqlx::query(STREAM).fetch(&pool), |r| {
                        let row: (i32, i32, i32, String) = (r.get(0), r.get(1), r.get(2), r.get(3));
                        row
                    })
                    .await
                }
            }
        }),
    ];

    if let Ok(only) = std::env::var("PG_STREAM_ONLY") {
        contenders.retain(|c| c.name.contains(only.as_str()));
    }
    let rounds = std::env::var("PG_STREAM_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(ROUNDS);
    let n = contenders.len();
    for round in 0..rounds {
        // Each round starts with the next contender (see `harness::interleaved`).
        for k in 0..n {
            let c = &mut contenders[(round + k) % n];
            let cpu = cpu_seconds();
            let (rate, grew) = timed(tokio::spawn((c.run)())).await;
            c.spawned.push(rate);
            let (rate, grew_too) = timed(async { Ok::<_, ()>((c.run)().await) }).await;
            c.on_caller.push(rate);
            c.cpu.push((cpu_seconds() - cpu) / (2 * ACCOUNTS) as f64 * 1e9);
            c.growth = c.growth.max(grew).max(grew_too);
        }
    }
    engine.close().await;
    print(&mut contenders, rounds);
}

async fn query_raw(client: &tokio_postgres::Client) -> tokio_postgres::RowStream {
    client
        .query_raw(STREAM, std::iter::empty::<i32>())
        .await
        .expect("query_raw")
}

/// Rows per second of one run, and how far RSS grew during it.
async fn timed<E: std::fmt::Debug>(run: impl Future<Output = Result<u64, E>>) -> (f64, u64) {
    let before = rss_bytes();
    PEAK.store(before, Relaxed);
    let started = Instant::now();
    let n = run.await.expect("streaming run");
    assert_eq!(n, ACCOUNTS);
    let rate = n as f64 / started.elapsed().as_secs_f64();
    (rate, PEAK.load(Relaxed).saturating_sub(before))
}

static PEAK: AtomicU64 = AtomicU64::new(0);

/// Reads a stream of rows to its end, passing each through `read` (to
/// decode its columns) and sampling RSS; returns the row count.
async fn drain<S, T, E, U>(stream: S, mut read: impl FnMut(T) -> U) -> u64
where
    S: futures_util::Stream<Item = Result<T, E>>,
    E: std::fmt::Debug,
{
    let mut stream = std::pin::pin!(stream);
    let mut n = 0;
    while let Some(row) = stream.next().await {
        std::hint::black_box(read(row.expect("row")));
        n += 1;
        if n % 50_000 == 0 {
            PEAK.fetch_max(rss_bytes(), Relaxed);
        }
    }
    n
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse::<u64>().ok())
        .unwrap_or(0)
        * 4096
}

fn median(rates: &mut [f64]) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

fn print(contenders: &mut [Contender], rounds: usize) {
    println!("\n### streaming 1,000,000 rows of pgbench_accounts (median of {rounds} interleaved rounds)\n");
    println!(
        "| implementation | rows/s, spawned task | rows/s, block_on thread | client CPU ns/row | RSS growth |"
    );
    println!("|---|---:|---:|---:|---:|");
    let mut medians = Vec::new();
    for c in contenders.iter_mut() {
        let (spawned, on_caller) = (median(&mut c.spawned), median(&mut c.on_caller));
        let cpu = median(&mut c.cpu);
        println!(
            "| {} | {spawned:.0} | {on_caller:.0} | {cpu:.0} | {} MiB |",
            c.name,
            c.growth >> 20
        );
        medians.push((c.name, spawned, on_caller));
    }
    if medians.len() != 6 {
        return;
    }
    // Reservoir against each peer, like for like (rows unread / every column read).
    println!("\n| reservoir vs | spawned task | block_on thread |\n|---|---:|---:|");
    for group in medians.chunks(3) {
        let (_, ours_spawned, ours_caller) = group[0];
        for &(name, spawned, on_caller) in &group[1..] {
            println!(
                "| {name} | {:.2}x | {:.2}x |",
                ours_spawned / spawned,
                ours_caller / on_caller
            );
        }
    }
}
