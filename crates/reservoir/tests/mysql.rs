//! What is specific to MySQL/MariaDB: killed connections and abandoned
//! statements. The shared behaviour runs in engine.rs.
#![cfg(feature = "mysql")]

mod common;

use std::time::{Duration, Instant};

use common::Db;
use reservoir::{Engine, ErrorKind};

async fn single_connection_engine() -> Engine {
    Db::mysql()
        .builder()
        .pool_size(1)
        .max_overflow(0)
        .build()
        .await
        .unwrap()
}

async fn connection_id(conn: &mut reservoir::Connection) -> i64 {
    conn.fetch_scalar("SELECT CONNECTION_ID()", ()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_connection_is_detected_and_replaced() {
    let engine = single_connection_engine().await;
    let mut conn = engine.acquire().await.unwrap();
    let id = connection_id(&mut conn).await;
    let admin = Db::mysql().engine().await;
    admin.execute(&format!("KILL {id}"), ()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let err = conn.fetch_scalar::<i64>("SELECT 1", ()).await.unwrap_err();
    assert!(err.is_disconnect(), "{err:?}");
    drop(conn);
    let mut conn = engine.acquire().await.expect("the pool serves again");
    assert_ne!(connection_id(&mut conn).await, id);
    assert!(engine.stats().broken >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_statement_is_killed_and_its_connection_not_reused() {
    let engine = single_connection_engine().await;
    let id = {
        let mut conn = engine.acquire().await.unwrap();
        let id = connection_id(&mut conn).await;
        let sleeping = conn.fetch_one("SELECT SLEEP(30)", ());
        assert!(
            tokio::time::timeout(Duration::from_millis(300), sleeping)
                .await
                .is_err()
        );
        id
    };
    let started = Instant::now();
    let mut conn = engine.acquire().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_ne!(connection_id(&mut conn).await, id, "a fresh connection");
    // The abandoned connection is killed as it closes, in the background.
    let admin = Db::mysql().engine().await;
    let started = Instant::now();
    loop {
        let still_sleeping: i64 = admin
            .fetch_scalar(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = ? AND INFO LIKE 'SELECT SLEEP%'",
                (id,),
            )
            .await
            .unwrap();
        if still_sleeping == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the server still runs the abandoned statement"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn connect_errors_carry_the_reason_and_never_the_password() {
    let err = Engine::connect("mysql://root:hunter2@127.0.0.1:1/test")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Connect, "{err:?}");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    let err = Engine::connect("mysql://root@127.0.0.1:3306/no_such_database_here")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Connect);
    assert!(err.to_string().contains("no_such_database_here"), "{err}");
    let err = Engine::connect("mysql://root@127.0.0.1:3306/test?bogus=1")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Url);
}

#[tokio::test]
async fn named_parameters_skip_backslash_escaped_strings() {
    let engine = Db::mysql().engine().await;
    let row = engine
        .fetch_one(
            r"SELECT 'it\'s :not a parameter' AS s, :n AS n",
            reservoir::params! {"n" => 7},
        )
        .await
        .unwrap();
    assert_eq!(row.get::<String>("s").unwrap(), "it's :not a parameter");
    assert_eq!(row.get::<i64>("n").unwrap(), 7);
}

/// An UNSIGNED column's values above the signed range read exactly (once
/// SMALLINT UNSIGNED 65535 read as -1).
#[tokio::test]
async fn unsigned_columns_read_exactly() {
    let db = common::Db::mysql();
    let engine = db.engine().await;
    let t = common::fresh_table(
        &db,
        &engine,
        "unsigned",
        "s SMALLINT UNSIGNED, t TINYINT UNSIGNED, m MEDIUMINT UNSIGNED, i INT UNSIGNED",
    )
    .await;
    engine
        .execute(
            &format!("INSERT INTO {t} VALUES (65535, 255, 16777215, 4294967295)"),
            (),
        )
        .await
        .unwrap();
    let row = engine
        .fetch_one(&format!("SELECT s, t, m, i FROM {t}"), ())
        .await
        .unwrap();
    for (column, want) in [
        ("s", 65_535i64),
        ("t", 255),
        ("m", 16_777_215),
        ("i", 4_294_967_295),
    ] {
        assert_eq!(row.get::<i64>(column).unwrap(), want, "{column}");
    }
    engine.execute(&format!("DROP TABLE {t}"), ()).await.unwrap();
    engine.close().await;
}
