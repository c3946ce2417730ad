//! A server that goes silent (the fault proxy stops forwarding, both
//! sides stay open): a connection given back mid-transaction cannot be
//! reset, and the reset gives up within its deadline, discards the
//! connection and frees its slot; the pool then serves again and
//! `close()` returns.

mod common;

use std::time::{Duration, Instant};

use common::proxy::Proxy;
use common::{Db, Route};
use reservoir::{Dialect, Engine, params};

per_dialect!(a_reset_on_a_silent_server_gives_up_and_frees_the_slot);

async fn a_reset_on_a_silent_server_gives_up_and_frees_the_slot(db: Db) {
    let (upstream, url) = match (db.dialect, db.route) {
        (Dialect::Postgres, Route::Direct) => ("127.0.0.1:5432", "postgres://postgres@127.0.0.1:{port}/test"),
        (Dialect::Mysql, _) => ("127.0.0.1:3306", "mysql://root@127.0.0.1:{port}/test"),
        _ => return, // no socket to freeze (SQLite), or the same path as Direct
    };
    let proxy = Proxy::start(upstream).await;
    let engine = Engine::builder(url.replace("{port}", &proxy.port.to_string()))
        .pool_size(1)
        .max_overflow(0)
        .pool_timeout(Duration::from_secs(30))
        .build()
        .await
        .unwrap();
    let mut conn = engine.acquire().await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    let n: i64 = tx.fetch_scalar(&db.echo(), params! {"n" => 1}).await.unwrap();
    assert_eq!(n, 1);
    proxy.freeze();
    drop(tx);
    drop(conn); // the reset's ROLLBACK is never answered
    let started = Instant::now();
    while engine.status().size > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the slot is still held: {:?}",
            engine.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("slot freed after {:?}", started.elapsed());
    proxy.thaw();
    let n: i64 = engine.fetch_scalar(&db.echo(), params! {"n" => 2}).await.unwrap();
    assert_eq!(n, 2, "the pool serves again");
    tokio::time::timeout(Duration::from_secs(10), engine.close())
        .await
        .expect("close() returns");
}
