//! Timing helpers shared by every benchmark.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// The runtime every comparison runs on: what a small service gets.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// How long each measured run lasts, from `BENCH_SECS` (default 2).
pub fn run_time() -> Duration {
    let secs: f64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    Duration::from_secs_f64(secs)
}

/// Runs `tasks` copies of `op` in a loop for `run_time()` and returns
/// operations per second (the median of three runs, after a warm-up).
/// Also gives this process's CPU time per operation (the median run's),
/// which moves less than the rate on a shared machine.
pub async fn throughput<F, Fut>(tasks: usize, op: F) -> Rate
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let mut runs = Vec::new();
    for round in 0..4 {
        let length = if round == 0 { run_time() / 4 } else { run_time() };
        let run = one_run(tasks, length, op.clone()).await;
        if round > 0 {
            runs.push(run);
        }
    }
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (per_sec, cpu) = runs[runs.len() / 2];
    Rate {
        per_sec,
        cpu_us: Some(cpu * 1e6),
    }
}

/// One timed run of a contender: operations per second, and client CPU
/// seconds per operation when the contender runs in this process.
type Run = Pin<Box<dyn Future<Output = (f64, Option<f64>)> + Send>>;

/// One contender of an [`interleaved`] comparison.
pub struct Contender {
    pub name: &'static str,
    /// Whether it is Reservoir's (its table row goes above the peers').
    pub ours: bool,
    run: Box<dyn Fn(Duration) -> Run + Send + Sync>,
}

impl Contender {
    /// `tasks` copies of `op` in a loop, as [`throughput`] runs them.
    pub fn looping<F, Fut>(name: &'static str, ours: bool, tasks: usize, op: F) -> Contender
    where
        F: Fn() -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Contender {
            name,
            ours,
            run: Box::new(move |length| {
                let op = op.clone();
                Box::pin(async move {
                    let (rate, cpu) = one_run(tasks, length, op).await;
                    (rate, Some(cpu))
                })
            }),
        }
    }

    /// A contender measured outside this process (`pgbench`): `run` blocks
    /// for about `length` and gives a rate.
    pub fn external(
        name: &'static str,
        run: impl Fn(Duration) -> f64 + Send + Sync + Clone + 'static,
    ) -> Contender {
        Contender {
            name,
            ours: false,
            run: Box::new(move |length| {
                let run = run.clone();
                Box::pin(async move { (run(length), None) })
            }),
        }
    }
}

/// Runs every contender once per round, in turn (each round starting one
/// further along): a short warm-up round, then three measured ones; each
/// contender's rate is its median round.
/// Taking turns, rather than one contender's runs after another's, exposes
/// them all alike to what drifts on a shared machine (the server's caches,
/// the neighbours' load), which moved single runs by ±15% here. Returns
/// Reservoir's rows and the peers'.
pub async fn interleaved(contenders: &[Contender]) -> (Vec<Row>, Vec<Row>) {
    let n = contenders.len();
    let mut runs: Vec<Vec<(f64, Option<f64>)>> = vec![Vec::new(); n];
    for round in 0..4 {
        let length = if round == 0 { run_time() / 4 } else { run_time() };
        // Each round starts with the next contender, so that no contender
        // always runs first, right after another's teardown. With a fixed
        // order, the first streaming contender (Reservoir, rows unread) came
        // out slower than Reservoir reading every column in three runs of
        // three, which only its place in the order can explain.
        for k in 0..n {
            let i = (round + k) % n;
            let run = (contenders[i].run)(length).await;
            if round > 0 {
                runs[i].push(run);
            }
        }
    }
    let (mut ours, mut peers) = (Vec::new(), Vec::new());
    for (contender, mut runs) in contenders.iter().zip(runs) {
        runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (per_sec, cpu) = runs[runs.len() / 2];
        let row = Row {
            name: contender.name,
            rate: Rate {
                per_sec,
                cpu_us: cpu.map(|c| c * 1e6),
            },
        };
        if contender.ours {
            ours.push(row)
        } else {
            peers.push(row)
        }
    }
    (ours, peers)
}

/// One timed run: operations per second, and CPU seconds per operation.
async fn one_run<F, Fut>(tasks: usize, length: Duration, op: F) -> (f64, f64)
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (stop, done, op) = (Arc::clone(&stop), Arc::clone(&done), op.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Relaxed) {
                    op().await;
                    n += 1;
                }
                done.fetch_add(n, Relaxed);
            })
        })
        .collect();
    // The stop signal comes from a plain thread: bb8 in a hot loop keeps both
    // workers from driving the timer (a tokio sleep of 500 ms took 1 s), so a
    // timer-based stop would measure that, not the pools.
    let stopper = Arc::clone(&stop);
    std::thread::spawn(move || {
        std::thread::sleep(length);
        stopper.store(true, Relaxed);
    });

    while !stop.load(Relaxed) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for h in handles {
        h.await.expect("benchmark task");
    }
    let ops = done.load(Relaxed) as f64;
    (
        ops / started.elapsed().as_secs_f64(),
        (cpu_seconds() - cpu_before) / ops,
    )
}

/// CPU time this process has used (user + system), from /proc/self/stat.
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime is the 12th, stime the 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // The kernel reports them in USER_HZ ticks, 100 a second on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

/// A measured rate, and (from `throughput`) the client CPU time per operation.
#[derive(Clone, Copy)]
pub struct Rate {
    pub per_sec: f64,
    pub cpu_us: Option<f64>,
}

impl From<f64> for Rate {
    fn from(per_sec: f64) -> Rate {
        Rate {
            per_sec,
            cpu_us: None,
        }
    }
}

/// One row of a results table: a name and a rate.
#[derive(Clone)]
pub struct Row {
    pub name: &'static str,
    pub rate: Rate,
}

/// Prints a markdown table with each rate's ratio to the best peer's, and
/// a client CPU column when some rate has one.
pub fn print_table(title: &str, unit: &str, ours: &[Row], peers: &[Row]) {
    let best_peer = peers.iter().map(|r| r.rate.per_sec).fold(0.0, f64::max);
    let with_cpu = ours.iter().chain(peers).any(|r| r.rate.cpu_us.is_some());
    println!("\n### {title}\n");
    if with_cpu {
        println!("| implementation | {unit} | vs best peer | client CPU us/op |");
        println!("|---|---:|---:|---:|");
    } else {
        println!("| implementation | {unit} | vs best peer |");
        println!("|---|---:|---:|");
    }
    for row in ours.iter().chain(peers) {
        let ratio = if best_peer > 0.0 {
            row.rate.per_sec / best_peer
        } else {
            f64::NAN
        };
        let cpu = match (with_cpu, row.rate.cpu_us) {
            (false, _) => String::new(),
            (true, Some(us)) => format!(" {us:.2} |"),
            (true, None) => " - |".into(),
        };
        println!("| {} | {:.0} | {ratio:.2}x |{cpu}", row.name, row.rate.per_sec);
    }
}

/// What a service's runtime does beside the database work being measured:
/// a loopback TCP server with a few clients exchanging a small message
/// every millisecond, each on a task of its own. A runtime with more live
/// tasks than workers and a busy I/O driver is what a service gives a
/// driver; a runtime that runs the benchmark alone flatters hand-offs that
/// only pay when nothing else wants the workers. Stopped when dropped.
pub struct Neighbour {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Neighbour {
    /// Starts the server and `clients` clients on the current runtime.
    pub async fn start(clients: usize) -> Neighbour {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("neighbour listener");
        let addr = listener.local_addr().expect("neighbour address");
        let mut tasks = vec![tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n @ 1..) = socket.read(&mut buf).await {
                        if socket.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        })];
        for _ in 0..clients {
            let mut socket = tokio::net::TcpStream::connect(addr)
                .await
                .expect("neighbour client");
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(1));
                let mut buf = [0u8; 16];
                loop {
                    tick.tick().await;
                    if socket.write_all(b"ping").await.is_err()
                        || socket.read_exact(&mut buf[..4]).await.is_err()
                    {
                        break;
                    }
                }
            }));
        }
        Neighbour { tasks }
    }
}

impl Drop for Neighbour {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
