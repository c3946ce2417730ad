//! A fixed number of acquire + release cycles on a pool of no-op
//! connections, for counting instructions and syscalls (the timed harness
//! runs for a set time, which valgrind and perf stretch), and for seeing
//! the run-to-run spread of a contended pool: `REPEAT=n` runs the batch n
//! times on one runtime and prints each batch's seconds to stderr;
//! `WORKERS=n` sets the runtime's worker threads (2).
//!
//! ```text
//! cargo build --release -p reservoir-bench --example pool_count
//! REPEAT=6 target/release/examples/pool_count reservoir 4000000 512 16
//! perf stat -e task-clock,context-switches target/release/examples/pool_count bb8 4000000 512 16
//! ```
//!
//! Arguments: `reservoir`, `deadpool` or `bb8`; the number of acquires
//! (1,000,000), split over the tasks; the number of tasks (512);
//! the pool size (16).

use std::sync::Arc;

use reservoir_bench::noop::pools;

type Cycle = Arc<dyn Fn() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

fn main() {
    let mut args = std::env::args().skip(1);
    let who = args.next().unwrap_or_else(|| "reservoir".into());
    let mut number = |default: usize| args.next().and_then(|n| n.parse().ok()).unwrap_or(default);
    let (total, tasks, slots) = (number(1_000_000), number(512).max(1), number(16));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(env_number("WORKERS", 2))
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let cycle: Cycle = match who.as_str() {
            "reservoir" => {
                let pool = pools::reservoir(slots).await;
                Arc::new(move || {
                    let pool = pool.clone();
                    Box::pin(async move { drop(pool.acquire().await.expect("acquire")) })
                })
            }
            "deadpool" => {
                let pool = pools::deadpool(slots);
                Arc::new(move || {
                    let pool = pool.clone();
                    Box::pin(async move { drop(pool.get().await.expect("get")) })
                })
            }
            "bb8" => {
                let pool = pools::bb8(slots).await;
                Arc::new(move || {
                    let pool = pool.clone();
                    Box::pin(async move { drop(pool.get().await.expect("get")) })
                })
            }
            other => panic!("unknown contender {other:?}: reservoir, deadpool or bb8"),
        };
        for _ in 0..env_number("REPEAT", 1) {
            // Each task its share, counted locally: a shared countdown would
            // be one more contended cache line, the same for every pool.
            let started = std::time::Instant::now();
            let handles: Vec<_> = (0..tasks)
                .map(|t| {
                    let cycle = Arc::clone(&cycle);
                    // The first `total % tasks` tasks take one more, so that
                    // exactly `total` acquires run.
                    let share = total / tasks + usize::from(t < total % tasks);
                    tokio::spawn(async move {
                        for _ in 0..share {
                            cycle().await;
                        }
                    })
                })
                .collect();
            for handle in handles {
                handle.await.expect("task");
            }
            eprintln!("{:.2}", started.elapsed().as_secs_f64());
        }
    });
}

/// A number from the environment variable `name`, else `default`.
fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}
