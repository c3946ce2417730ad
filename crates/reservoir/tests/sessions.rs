//! Server sessions end when the engine is done with them: after `close()`,
//! `dispose()`, `invalidate()`, and when the last `Engine` is dropped
//! without `close()`. Checked on the server, by session id, for each
//! dialect with a server.
#![cfg(any(feature = "postgres", feature = "mysql"))]

mod common;

use std::time::{Duration, Instant};

use common::Db;
use reservoir::{Connection, Engine};

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sessions_end_with_the_engine() {
    sessions_end_with_the_engine(Db::postgres()).await;
}

#[cfg(feature = "mysql")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_sessions_end_with_the_engine() {
    sessions_end_with_the_engine(Db::mysql()).await;
}

/// The server's id for the session under `conn`.
async fn session_id(db: &Db, conn: &mut Connection) -> i64 {
    let sql = match db.dialect {
        reservoir::Dialect::Postgres => "SELECT CAST(pg_backend_pid() AS BIGINT)",
        _ => "SELECT CONNECTION_ID()",
    };
    conn.fetch_scalar(sql, ()).await.unwrap()
}

/// Which of `ids` are live sessions on the server, asked through `observer`.
async fn live(db: &Db, observer: &Engine, ids: &[i64]) -> Vec<i64> {
    let sql = match db.dialect {
        reservoir::Dialect::Postgres => "SELECT CAST(pid AS BIGINT) FROM pg_stat_activity",
        _ => "SELECT CAST(ID AS SIGNED) FROM information_schema.PROCESSLIST",
    };
    let rows = observer.fetch_all(sql, ()).await.unwrap();
    common::ids(&rows)
        .into_iter()
        .filter(|id| ids.contains(id))
        .collect()
}

/// Waits (up to 5 s: a server notices a closed socket on its own time)
/// until, of `ids`, exactly `open` are live sessions.
async fn assert_open(db: &Db, observer: &Engine, ids: &[i64], open: &[i64], after: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut left = live(db, observer, ids).await;
        left.sort_unstable();
        if left == open {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "after {after}, sessions {left:?} of {ids:?} are open, not {open:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// None of `ids` is a live session (waiting as `assert_open` does).
async fn assert_ended(db: &Db, observer: &Engine, ids: &[i64], after: &str) {
    assert_open(db, observer, ids, &[], after).await;
}

/// Checks out `n` connections at once and returns them with their session ids.
async fn hold(db: &Db, engine: &Engine, n: usize) -> (Vec<Connection>, Vec<i64>) {
    let (mut conns, mut ids) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let mut conn = engine.acquire().await.unwrap();
        ids.push(session_id(db, &mut conn).await);
        conns.push(conn);
    }
    (conns, ids)
}

async fn sessions_end_with_the_engine(db: Db) {
    let observer = db.builder().pool_size(1).build().await.unwrap();
    let engine = || db.builder().pool_size(3).max_overflow(0).build();

    // close(): idle and checked-out sessions alike, the latter once returned.
    let closing = engine().await.unwrap();
    let (mut conns, ids) = hold(&db, &closing, 3).await;
    let out = conns.pop().unwrap();
    drop(conns);
    let close = tokio::spawn({
        let closing = closing.clone();
        async move { closing.close().await }
    });
    assert_open(&db, &observer, &ids, &ids[2..], "close() with one connection out").await;
    drop(out);
    close.await.unwrap();
    assert_ended(&db, &observer, &ids, "close()").await;

    // dispose(): every session replaced, the engine still serving.
    let disposing = engine().await.unwrap();
    let (conns, old) = hold(&db, &disposing, 3).await;
    drop(conns);
    disposing.dispose();
    let (fresh, new) = hold(&db, &disposing, 3).await;
    assert!(
        new.iter().all(|id| !old.contains(id)),
        "dispose() handed out an old session"
    );
    assert_ended(&db, &observer, &old, "dispose()").await;
    drop(fresh);

    // invalidate(): that one session ends, the pool opens another.
    let (mut conns, ids) = hold(&db, &disposing, 1).await;
    conns.pop().unwrap().invalidate();
    assert_ended(&db, &observer, &ids, "invalidate()").await;

    // The last Engine dropped without close(), a connection still out: that
    // connection keeps the pool (and its idle sessions) alive, as any handle
    // does; when it is dropped too, every session ends.
    let dropped = engine().await.unwrap();
    let (mut conns, ids) = hold(&db, &dropped, 3).await;
    let out = conns.pop().unwrap();
    drop(conns);
    drop(dropped);
    drop(disposing);
    assert_open(
        &db,
        &observer,
        &ids,
        &sorted(&ids),
        "dropping the engine, a connection out",
    )
    .await;
    drop(out);
    assert_ended(&db, &observer, &ids, "dropping the engine's last connection").await;
}

fn sorted(ids: &[i64]) -> Vec<i64> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids
}
