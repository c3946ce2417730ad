//! The pool survives a server restart (PostgreSQL, MariaDB) with no action
//! by the application. Alone in its test binary: cargo runs test binaries
//! one after another, so restarting a shared server here disturbs no other
//! test (the two tests restart different servers). They run only when
//! `RESERVOIR_DISRUPTIVE_TESTS=1` (`.ci/run` sets it).
#![cfg(any(feature = "postgres", feature = "mysql"))]

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use common::Db;
use reservoir::{Engine, ErrorKind, params};

fn run(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
        .success()
}

#[cfg(feature = "postgres")]
fn restart_postgres() {
    let version = std::fs::read_dir("/etc/postgresql")
        .expect("a Debian PostgreSQL cluster")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .next()
        .expect("a cluster version");
    let restarted = run(
        "pg_ctlcluster",
        &["--skip-systemctl-redirect", &version, "main", "restart"],
    );
    assert!(restarted, "restarting PostgreSQL failed");
}

/// Stops MariaDB (waiting until its process has gone: a start issued
/// before that would find it still running and do nothing) and starts it
/// again the way `.ci/run` does, then waits until it answers.
#[cfg(feature = "mysql")]
fn restart_mariadb() {
    let daemon = ["--oknodo", "--exec", "/usr/sbin/mariadbd"];
    let stopped = run(
        "start-stop-daemon",
        &[&["--stop", "--retry", "60"], &daemon[..]].concat(),
    );
    assert!(stopped, "stopping MariaDB failed");
    let started = run(
        "start-stop-daemon",
        &[&["--start", "--background"], &daemon[..]].concat(),
    );
    assert!(started, "starting MariaDB failed");
    let ping = ["-h", "127.0.0.1", "-P", "3306", "-u", "root", "--silent", "ping"];
    let deadline = Instant::now() + Duration::from_secs(60);
    while !run("mysqladmin", &ping) {
        assert!(Instant::now() < deadline, "MariaDB did not come back");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_serves_again_after_a_restart() {
    if !common::disruptive_allowed("restarting PostgreSQL") {
        return;
    }
    serves_again_after_a_restart(Db::postgres(), restart_postgres).await;
    survives_a_restart_under_load(Db::postgres(), restart_postgres).await;
}

#[cfg(feature = "mysql")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_serves_again_after_a_restart() {
    if !common::disruptive_allowed("restarting MariaDB") {
        return;
    }
    serves_again_after_a_restart(Db::mysql(), restart_mariadb).await;
    survives_a_restart_under_load(Db::mysql(), restart_mariadb).await;
}

async fn serves_again_after_a_restart(db: Db, restart: fn()) {
    let pinged = db
        .builder()
        .pool_size(2)
        .pool_pre_ping(true)
        .build()
        .await
        .unwrap();
    let plain = db.builder().pool_size(2).build().await.unwrap();
    for engine in [&pinged, &plain] {
        // Two idle connections each, opened before the restart.
        let (mut a, mut b) = (engine.acquire().await.unwrap(), engine.acquire().await.unwrap());
        a.fetch_one("SELECT 1", ()).await.unwrap();
        b.fetch_one("SELECT 1", ()).await.unwrap();
    }
    tokio::task::spawn_blocking(restart).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // With pre-ping the caller never sees the dead connections.
    for _ in 0..5 {
        let n: i64 = pinged
            .fetch_scalar("SELECT 7", ())
            .await
            .expect("pre-ping hides the restart");
        assert_eq!(n, 7);
    }
    // Without it, a statement on a dead connection fails as a disconnect,
    // the connection is discarded, and the pool recovers by itself.
    let mut failures = 0;
    for _ in 0..6 {
        match plain.fetch_scalar::<i64>("SELECT 7", ()).await {
            Ok(n) => assert_eq!(n, 7),
            Err(e) => {
                assert!(e.is_disconnect(), "{e:?}");
                failures += 1;
            }
        }
    }
    assert!(
        failures <= 2,
        "at most one failure per dead idle connection, saw {failures}"
    );
    assert_eq!(plain.fetch_scalar::<i64>("SELECT 8", ()).await.unwrap(), 8);
    assert!(plain.stats().broken >= failures);
}

/// Tasks running statements without pause through a restart, with each
/// checkout and with `pipeline_reads`: every statement either returns its
/// own answer or fails as a lost connection (or, while the server is down,
/// a failed connect); none hangs; once the server is back every task is
/// served again, and every connection comes back to the pool.
async fn survives_a_restart_under_load(db: Db, restart: fn()) {
    const TASKS: usize = 16;
    for pipeline_reads in [false, true] {
        let engine = db
            .builder()
            .pool_size(4)
            .max_overflow(0)
            .max_waiting(None)
            .pipeline_reads(pipeline_reads)
            .build()
            .await
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let served: Arc<Vec<AtomicU64>> = Arc::new((0..TASKS).map(|_| AtomicU64::new(0)).collect());
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let (db, engine, stop, served) = (db, engine.clone(), Arc::clone(&stop), Arc::clone(&served));
                tokio::spawn(async move { keep_querying(&db, &engine, &stop, &served[t], t).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        tokio::task::spawn_blocking(restart).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while engine.fetch_scalar::<i64>("SELECT 1", ()).await.is_err() {
            assert!(Instant::now() < deadline, "the engine never served again");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let before: Vec<u64> = served.iter().map(|n| n.load(SeqCst)).collect();
        tokio::time::sleep(Duration::from_millis(500)).await;
        for (t, n) in served.iter().enumerate() {
            assert!(
                n.load(SeqCst) > before[t],
                "task {t} was not served after the restart (pipeline_reads: {pipeline_reads})"
            );
        }
        stop.store(true, SeqCst);
        let mut failed = 0;
        for task in tasks {
            failed += tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("a statement hung after the restart")
                .unwrap();
        }
        assert!(
            failed > 0,
            "no statement saw the restart: the test did not restart anything"
        );
        let status = engine.status();
        assert_eq!(status.in_use, 0, "{status:?}");
    }
}

/// Runs statements until `stop`, counting answers in `served`; returns how
/// many failed (each one as the restart explains).
async fn keep_querying(db: &Db, engine: &Engine, stop: &AtomicBool, served: &AtomicU64, task: usize) -> u64 {
    let echo = db.echo();
    let mut failed = 0;
    for i in 0.. {
        if stop.load(SeqCst) {
            break;
        }
        let n = (task * 1_000_000 + i) as i64;
        match engine.fetch_scalar::<i64>(&echo, params! {"n" => n}).await {
            Ok(got) => {
                assert_eq!(got, n, "task {task} got another statement's answer");
                served.fetch_add(1, SeqCst);
            }
            Err(e) => {
                assert!(
                    e.is_disconnect() || e.kind() == &ErrorKind::Connect,
                    "task {task}: {e:?}"
                );
                failed += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    failed
}
