//! A server that goes silent (the fault proxy stops forwarding, both
//! sides stay open): a connection given back mid-transaction cannot be
//! reset, and the reset gives up within its deadline, discards the
//! connection and frees its slot; the pool then serves again and
//! `close()` returns.

mod common;

use std::time::{Duration, Instant};

use common::proxy::Proxy;
use common::{Db, Route, fresh_table};
use reservoir::{Dialect, Engine, ErrorKind, params};

per_dialect!(
    a_reset_on_a_silent_server_gives_up_and_frees_the_slot,
    a_commit_whose_answer_is_lost_is_in_doubt,
    a_server_that_accepts_and_stalls_fails_the_connect_in_time,
    a_statement_the_server_never_answers_fails_at_its_deadline,
    a_commit_with_no_answer_by_its_deadline_is_in_doubt,
    close_with_interrupt_returns_though_the_server_is_silent,
);

/// A proxy in front of `db`'s server and the URL through it; `None` where
/// there is no socket to freeze (SQLite) or the route is Direct's again.
async fn proxied(db: &Db) -> Option<(Proxy, String)> {
    let (upstream, url) = match (db.dialect, db.route) {
        (Dialect::Postgres, Route::Direct) => ("127.0.0.1:5432", "postgres://postgres@127.0.0.1:{port}/test"),
        (Dialect::Mysql, _) => ("127.0.0.1:3306", "mysql://root@127.0.0.1:{port}/test"),
        _ => return None,
    };
    let proxy = Proxy::start(upstream).await;
    let url = url.replace("{port}", &proxy.port.to_string());
    Some((proxy, url))
}

/// One connection through the proxy, with a 1 s `statement_timeout`.
async fn one_connection_with_a_deadline(url: String) -> Engine {
    Engine::builder(url)
        .pool_size(1)
        .max_overflow(0)
        .statement_timeout(Duration::from_secs(1))
        .build()
        .await
        .unwrap()
}

/// After the proxy forwards again: the engine serves (on a new connection)
/// and `close()` returns.
async fn serves_again_and_closes(db: &Db, proxy: &Proxy, engine: Engine) {
    proxy.thaw();
    let n: i64 = engine
        .fetch_scalar(&db.echo(), params! {"n" => 99})
        .await
        .unwrap();
    assert_eq!(n, 99, "the pool serves again");
    tokio::time::timeout(Duration::from_secs(10), engine.close())
        .await
        .expect("close() returns");
}

async fn a_reset_on_a_silent_server_gives_up_and_frees_the_slot(db: Db) {
    let Some((proxy, url)) = proxied(&db).await else {
        return;
    };
    let engine = Engine::builder(url)
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

/// The connection is lost after COMMIT was sent: the caller is told the
/// commit is in doubt, never that it failed cleanly or that it may be
/// retried as a disconnect.
async fn a_commit_whose_answer_is_lost_is_in_doubt(db: Db) {
    let Some((proxy, url)) = proxied(&db).await else {
        return;
    };
    let engine = Engine::builder(url).pool_size(1).build().await.unwrap();
    let t = fresh_table(&db, &engine, "in_doubt", "id INTEGER").await;
    let mut tx = engine.begin().await.unwrap();
    tx.execute(&format!("INSERT INTO {t} (id) VALUES (1)"), ())
        .await
        .unwrap();
    proxy.freeze();
    let commit = tokio::spawn(tx.commit());
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.cut();
    let err = tokio::time::timeout(Duration::from_secs(10), commit)
        .await
        .expect("the commit returns once the connection is cut")
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::InDoubt, "{err:?}");
    assert!(err.is_in_doubt() && !err.is_disconnect(), "{err:?}");
    proxy.thaw();
    // The engine serves again; the table says what the server kept.
    let kept: i64 = engine
        .fetch_scalar(&format!("SELECT count(*) FROM {t}"), ())
        .await
        .unwrap();
    assert!(kept <= 1, "{kept}");
    engine.execute(&format!("DROP TABLE {t}"), ()).await.unwrap();
    engine.close().await;
}

/// A server that accepts the TCP connection and then says nothing: the
/// connect (TLS, startup, authentication included) fails within
/// `connect_timeout` with a `Connect` error, not at `pool_timeout`.
async fn a_server_that_accepts_and_stalls_fails_the_connect_in_time(db: Db) {
    let scheme = match (db.dialect, db.route) {
        (Dialect::Postgres, Route::Direct) => "postgres://postgres",
        (Dialect::Mysql, _) => "mysql://root",
        (Dialect::Sqlite, _) => {
            // No network: the TCP settings are accepted and ignored.
            let engine = db
                .builder()
                .connect_timeout(Duration::from_secs(1))
                .keepalives_idle(Duration::from_secs(5))
                .tcp_user_timeout(Duration::from_secs(5))
                .build()
                .await
                .unwrap();
            engine.close().await;
            return;
        }
        _ => return,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mute = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let started = Instant::now();
    let err = Engine::builder(format!("{scheme}@127.0.0.1:{port}/test?connect_timeout=1"))
        .pool_timeout(Duration::from_secs(30))
        .build()
        .await
        .unwrap_err();
    let took = started.elapsed();
    // The builder's setting overrides the URL's.
    let overridden = Instant::now();
    let again = Engine::builder(format!("{scheme}@127.0.0.1:{port}/test?connect_timeout=30"))
        .connect_timeout(Duration::from_secs(1))
        .keepalives_idle(Duration::from_secs(5))
        .build()
        .await
        .unwrap_err();
    assert_eq!(again.kind(), &ErrorKind::Connect, "{again:?}");
    assert!(
        overridden.elapsed() < Duration::from_secs(5),
        "{:?}",
        overridden.elapsed()
    );
    mute.abort();
    assert_eq!(err.kind(), &ErrorKind::Connect, "{err:?}");
    assert!(err.to_string().contains("connect_timeout"), "{err}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "the connect gave up after {took:?}"
    );
}

/// With `statement_timeout` set, a statement on a connection whose server
/// went silent fails with `Timeout` a little after the timeout (no server
/// is there to cancel it), its connection is given up, and the pool then
/// serves again on a new one.
async fn a_statement_the_server_never_answers_fails_at_its_deadline(db: Db) {
    let Some((proxy, url)) = proxied(&db).await else {
        return;
    };
    let engine = one_connection_with_a_deadline(url).await;
    let mut conn = engine.acquire().await.unwrap();
    let n: i64 = conn.fetch_scalar(&db.echo(), params! {"n" => 1}).await.unwrap();
    assert_eq!(n, 1);
    proxy.freeze();
    let started = Instant::now();
    let err = tokio::time::timeout(
        Duration::from_secs(20),
        conn.fetch_scalar::<i64>(&db.echo(), params! {"n" => 2}),
    )
    .await
    .expect("the statement gives up on its own")
    .unwrap_err();
    let took = started.elapsed();
    assert!(err.is_timeout(), "{err:?}");
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(6),
        "gave up after {took:?}"
    );
    let broken = engine.stats().broken;
    drop(conn);
    assert!(
        engine.stats().broken > broken,
        "the silent connection was discarded"
    );
    serves_again_and_closes(&db, &proxy, engine).await;
}

/// A COMMIT whose answer does not come by the client's deadline (the
/// server went silent) is in doubt, as a COMMIT on a lost connection is.
async fn a_commit_with_no_answer_by_its_deadline_is_in_doubt(db: Db) {
    let Some((proxy, url)) = proxied(&db).await else {
        return;
    };
    let engine = one_connection_with_a_deadline(url).await;
    let mut tx = engine.begin().await.unwrap();
    let n: i64 = tx.fetch_scalar(&db.echo(), params! {"n" => 1}).await.unwrap();
    assert_eq!(n, 1);
    proxy.freeze();
    let err = tokio::time::timeout(Duration::from_secs(20), tx.commit())
        .await
        .expect("the commit gives up on its own")
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::InDoubt, "{err:?}");
    serves_again_and_closes(&db, &proxy, engine).await;
}

/// `close_with(interrupt)` on an engine whose server went silent under a
/// running statement (no statement_timeout, so nothing else bounds it):
/// the interrupts go unanswered, and close returns after its patience
/// instead of retrying for good.
async fn close_with_interrupt_returns_though_the_server_is_silent(db: Db) {
    let Some((proxy, url)) = proxied(&db).await else {
        return;
    };
    let engine = Engine::builder(url).pool_size(1).build().await.unwrap();
    let mut conn = engine.acquire().await.unwrap();
    let n: i64 = conn.fetch_scalar(&db.echo(), params! {"n" => 1}).await.unwrap();
    assert_eq!(n, 1);
    proxy.freeze();
    let stuck = tokio::spawn(async move {
        let _ = conn.fetch_scalar::<i64>(&db.echo(), params! {"n" => 2}).await;
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let closed = tokio::time::timeout(
        Duration::from_secs(40),
        engine.close_with(reservoir::CloseOptions {
            force: false,
            interrupt: true,
        }),
    )
    .await;
    let took = started.elapsed();
    assert!(
        closed.is_ok(),
        "close_with(interrupt) still waiting after {took:?}"
    );
    assert!(
        took >= reservoir::pool::INTERRUPT_PATIENCE && took < Duration::from_secs(30),
        "close returned after {took:?}"
    );
    stuck.abort();
    proxy.thaw();
}
