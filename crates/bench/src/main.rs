//! Reservoir's comparison harness: timed runs against the peers, in one
//! process, on a 2-worker tokio runtime. Not a test; run it in release mode:
//!
//! ```text
//! cargo run --release -p reservoir-bench -- pool sqlite postgres mysql
//! ```

mod harness;
mod mysql;
mod ours;
mod pg_stream;
mod pool;
mod postgres;
mod sqlite;

fn main() {
    let which: Vec<String> = std::env::args().skip(1).collect();
    let all = which.is_empty();
    let wants = |name: &str| all || which.iter().any(|w| w == name);
    println!(
        "machine: {} cores, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        harness::cpu_model()
    );
    if wants("pool") {
        pool::run();
    }
    if wants("sqlite") {
        sqlite::run();
    }
    if wants("postgres") {
        postgres::run();
    }
    if which.iter().any(|w| w == "pg-select") {
        postgres::run_select();
    }
    if which.iter().any(|w| w == "pg-bulk") {
        postgres::run_bulk();
    }
    if which.iter().any(|w| w == "pg-stream") {
        postgres::run_streaming();
    }
    if wants("mysql") {
        mysql::run();
    }
}
