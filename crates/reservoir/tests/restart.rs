//! The pool survives a server restart (PostgreSQL, MariaDB) with no action
//! by the application. Alone in its test binary: cargo runs test binaries
//! one after another, so restarting a shared server here disturbs no other
//! test (the two tests restart different servers).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::Db;

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
    serves_again_after_a_restart(Db::postgres(), restart_postgres).await;
}

#[cfg(feature = "mysql")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_serves_again_after_a_restart() {
    serves_again_after_a_restart(Db::mysql(), restart_mariadb).await;
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
