//! Acquire + release throughput with a no-op connection: Reservoir's pool
//! against deadpool (managed) and bb8.

use crate::harness::{Contender, Row, interleaved, print_table, runtime};
use reservoir_bench::noop::pools;

pub fn run() {
    let rt = runtime();
    println!("\n## Pool: acquire + release, no-op connection, 2-worker tokio runtime");
    for (tasks, slots) in [(1usize, 8usize), (64, 8), (512, 16)] {
        let (ours, peers) = rt.block_on(case(tasks, slots));
        print_table(
            &format!("{tasks} tasks / {slots} slots (contenders interleaved, median of 3 rounds)"),
            "acquires/s",
            &ours,
            &peers,
        );
    }
}

async fn case(tasks: usize, slots: usize) -> (Vec<Row>, Vec<Row>) {
    let ours = pools::reservoir(slots).await;
    let dp = pools::deadpool(slots);
    let b = pools::bb8(slots).await;
    let contenders = [
        Contender::looping("reservoir", true, tasks, move || {
            let pool = ours.clone();
            async move {
                drop(pool.acquire().await.expect("acquire"));
            }
        }),
        Contender::looping("deadpool 0.12 (managed)", false, tasks, move || {
            let pool = dp.clone();
            async move {
                drop(pool.get().await.expect("deadpool get"));
            }
        }),
        Contender::looping("bb8 0.9", false, tasks, move || {
            let pool = b.clone();
            async move {
                drop(pool.get().await.expect("bb8 get"));
            }
        }),
    ];
    interleaved(&contenders).await
}
