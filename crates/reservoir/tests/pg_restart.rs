//! The pool survives a PostgreSQL restart with no action by the application.
//! Alone in its test binary: cargo runs test binaries one after another, so
//! restarting the shared server here disturbs no other test.
#![cfg(feature = "postgres")]

mod common;

use std::process::Command;
use std::time::Duration;

use common::Db;

fn restart_postgres() {
    let version = std::fs::read_dir("/etc/postgresql")
        .expect("a Debian PostgreSQL cluster")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .next()
        .expect("a cluster version");
    let status = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, "main", "restart"])
        .status()
        .expect("pg_ctlcluster");
    assert!(status.success(), "restarting PostgreSQL failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_serves_again_after_a_server_restart() {
    let db = Db::postgres();
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
    tokio::task::spawn_blocking(restart_postgres).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // With pre-ping the caller never sees the dead connections.
    for _ in 0..5 {
        let n: i32 = pinged
            .fetch_scalar("SELECT 7", ())
            .await
            .expect("pre-ping hides the restart");
        assert_eq!(n, 7);
    }
    // Without it, a statement on a dead connection fails as a disconnect,
    // the connection is discarded, and the pool recovers by itself.
    let mut failures = 0;
    for _ in 0..6 {
        match plain.fetch_scalar::<i32>("SELECT 7", ()).await {
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
    assert_eq!(plain.fetch_scalar::<i32>("SELECT 8", ()).await.unwrap(), 8);
    assert!(plain.stats().broken >= failures);
}
