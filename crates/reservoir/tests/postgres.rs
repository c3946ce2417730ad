//! What is specific to PostgreSQL: killed backends, cancel of dropped
//! futures, connect errors, settings. The shared behaviour runs in engine.rs.
#![cfg(feature = "postgres")]

mod common;

use std::time::{Duration, Instant};

use common::Db;
use reservoir::{Engine, ErrorKind};

/// An engine of exactly one connection, so every acquire gets the same one.
async fn single_connection_engine() -> Engine {
    Db::postgres()
        .builder()
        .pool_size(1)
        .max_overflow(0)
        .build()
        .await
        .unwrap()
}

async fn backend_pid(conn: &mut reservoir::Connection) -> i32 {
    conn.fetch_scalar("SELECT pg_backend_pid()", ()).await.unwrap()
}

async fn terminate(pid: i32) {
    let admin = Db::postgres().engine().await;
    let killed: bool = admin
        .fetch_scalar(
            "SELECT pg_terminate_backend(:pid)",
            reservoir::params! {"pid" => pid},
        )
        .await
        .unwrap();
    assert!(killed);
    admin.close().await;
    // Let the server finish closing the socket.
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn a_killed_backend_is_detected_discarded_and_replaced() {
    let engine = single_connection_engine().await;
    let mut conn = engine.acquire().await.unwrap();
    let pid = backend_pid(&mut conn).await;
    terminate(pid).await;
    let err = conn.fetch_scalar::<i32>("SELECT 1", ()).await.unwrap_err();
    assert!(err.is_disconnect(), "{err:?}");
    drop(conn);
    let mut conn = engine.acquire().await.expect("the pool serves again");
    assert_ne!(backend_pid(&mut conn).await, pid);
    assert!(engine.stats().broken >= 1);
}

/// A stream reads the socket from its own task: when the server goes away
/// mid-stream it ends with a disconnect (after the rows already sent), and
/// the pool replaces the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_killed_mid_stream_ends_the_stream_with_a_disconnect() {
    let engine = single_connection_engine().await;
    let mut conn = engine.acquire().await.unwrap();
    let pid = backend_pid(&mut conn).await;
    let mut stream = conn.fetch("SELECT generate_series(1, 100000000)", ());
    assert!(stream.next().await.unwrap().is_ok());
    terminate(pid).await;
    let started = Instant::now();
    let mut rows = 0u64;
    let ended = loop {
        match stream.next().await {
            Some(Ok(_)) => rows += 1,
            Some(Err(e)) => break e,
            None => panic!("the stream ended cleanly after {rows} more rows"),
        }
    };
    assert!(ended.is_disconnect(), "{ended:?}");
    assert!(rows < 10_000_000, "{rows} rows after the kill");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    drop(stream);
    drop(conn);
    let mut conn = engine.acquire().await.expect("the pool serves again");
    assert_ne!(backend_pid(&mut conn).await, pid);
}

#[tokio::test]
async fn pre_ping_hides_a_killed_idle_backend() {
    let engine = Db::postgres()
        .builder()
        .pool_size(1)
        .max_overflow(0)
        .pool_pre_ping(true)
        .build()
        .await
        .unwrap();
    let pid = backend_pid(&mut engine.acquire().await.unwrap()).await;
    terminate(pid).await;
    let mut conn = engine.acquire().await.expect("no error reaches the caller");
    assert_ne!(backend_pid(&mut conn).await, pid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_query_future_cancels_its_statement_on_the_server() {
    let engine = single_connection_engine().await;
    let pid = {
        let mut conn = engine.acquire().await.unwrap();
        let pid = backend_pid(&mut conn).await;
        let sleeping = conn.fetch_one("SELECT pg_sleep(30)", ());
        assert!(
            tokio::time::timeout(Duration::from_millis(300), sleeping)
                .await
                .is_err()
        );
        pid
    };
    let started = Instant::now();
    let mut conn = engine.acquire().await.unwrap();
    assert_eq!(backend_pid(&mut conn).await, pid, "the same connection, reset");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the sleep was cancelled: {:?}",
        started.elapsed()
    );
    let running: i64 = conn
        .fetch_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'",
            (),
        )
        .await
        .unwrap();
    assert_eq!(running, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_kept_after_a_dropped_query_does_not_wait_for_it() {
    let engine = Db::postgres().engine().await;
    let mut conn = engine.acquire().await.unwrap();
    let sleeping = conn.fetch_one("SELECT pg_sleep(30)", ());
    assert!(
        tokio::time::timeout(Duration::from_millis(300), sleeping)
            .await
            .is_err()
    );
    let started = Instant::now();
    let n: i32 = conn.fetch_scalar("SELECT 3", ()).await.unwrap();
    assert_eq!(n, 3);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn connect_errors_carry_the_reason_and_never_the_password() {
    let err = Engine::connect("postgres://postgres:hunter2@127.0.0.1:1/test")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Connect, "{err:?}");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    let err = Engine::connect("postgres://postgres@127.0.0.1:5432/no_such_database_here")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Connect);
    assert!(err.to_string().contains("no_such_database_here"), "{err}");
    // The server's certificate is not signed by a root this system trusts
    // (pg_tls.rs tests TLS with a CA of its own).
    let err = Engine::connect("postgres://postgres@127.0.0.1:5432/test?sslmode=verify-full")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Connect, "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");
    let err = Engine::connect("postgres://postgres@127.0.0.1:5432/test?bogus=1")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Url);
}

#[tokio::test]
async fn statements_run_with_the_cache_off() {
    let engine = Db::postgres()
        .builder()
        .statement_cache_size(0)
        .build()
        .await
        .unwrap();
    for i in 0..20i64 {
        let n: i64 = engine.fetch_scalar("SELECT $1::bigint * 2", (i,)).await.unwrap();
        assert_eq!(n, i * 2);
    }
}

#[tokio::test]
async fn cursors_need_a_transaction() {
    let engine = Db::postgres().engine().await;
    let mut conn = engine.acquire().await.unwrap();
    let err = conn.cursor("SELECT 1", ()).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Usage);
    assert!(err.to_string().contains("transaction"), "{err}");
}

/// Types without a binary mapping (inet, interval, enums) and text arrays
/// with quotes and backslashes bind through their text form, prepared or
/// unnamed.
#[tokio::test]
async fn types_without_a_binary_mapping_bind_as_text() {
    use reservoir::value::Array;
    for db in [Db::postgres(), Db::postgres_unnamed()] {
        let engine = db.engine().await;
        let kind = format!("rsv_mood_{}", db.label());
        let t = common::table_name(&db, "text_bound");
        engine
            .execute(format!("DROP TABLE IF EXISTS {t}").as_str(), ())
            .await
            .unwrap();
        engine
            .execute(format!("DROP TYPE IF EXISTS {kind}").as_str(), ())
            .await
            .unwrap();
        engine
            .execute(format!("CREATE TYPE {kind} AS ENUM ('sad', 'ok')").as_str(), ())
            .await
            .unwrap();
        engine
            .execute(
                format!("CREATE TABLE {t} (addr inet, span interval, mood {kind}, tags text[])").as_str(),
                (),
            )
            .await
            .unwrap();
        let tags = vec!["a b", "c\"d", "e\\f", "{}"];
        engine
            .execute(
                format!("INSERT INTO {t} VALUES ($1, $2, $3, $4)").as_str(),
                ("10.1.2.3", "1 day", "ok", Array(tags.clone())),
            )
            .await
            .unwrap();
        let row = engine
            .fetch_one(
                format!("SELECT host(addr), span::text, mood::text, tags FROM {t}").as_str(),
                (),
            )
            .await
            .unwrap();
        assert_eq!(row.get::<String>(0).unwrap(), "10.1.2.3", "{}", db.label());
        assert_eq!(row.get::<String>(1).unwrap(), "1 day");
        assert_eq!(row.get::<String>(2).unwrap(), "ok");
        let expected: Vec<String> = tags.iter().map(|s| s.to_string()).collect();
        assert_eq!(row.get::<Array<String>>(3).unwrap(), Array(expected));
        engine.close().await;
    }
}

/// A column of a type with no `Value` mapping fails the query at once with
/// a Decode error naming it (rows are decoded lazily, so the type is checked
/// when the result starts); cast to text reads it.
#[tokio::test]
async fn a_column_of_an_unreadable_type_is_named_in_the_error() {
    for db in [Db::postgres(), Db::postgres_unnamed()] {
        let engine = db.engine().await;
        let err = engine
            .fetch_all("SELECT 1 AS id, '10.0.0.1'::inet AS addr", ())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Decode, "{err}");
        assert!(
            err.to_string().contains("'addr'") && err.to_string().contains("inet"),
            "{err}"
        );
        let text: String = engine
            .fetch_scalar("SELECT '10.0.0.1'::inet::text", ())
            .await
            .unwrap();
        assert_eq!(text, "10.0.0.1/32");
        engine.close().await;
    }
}

/// `application_name`, `options` and `connect_timeout` from the URL reach
/// the server's session; a bad timeout is a URL error.
#[tokio::test]
async fn session_settings_from_the_url() {
    let url =
        Db::postgres().url_with("application_name=rsv_app&options=-c%20work_mem%3D8MB&connect_timeout=2");
    let engine = Engine::connect(&url).await.unwrap();
    let name: String = engine.fetch_scalar("SHOW application_name", ()).await.unwrap();
    assert_eq!(name, "rsv_app");
    let work_mem: String = engine.fetch_scalar("SHOW work_mem", ()).await.unwrap();
    assert_eq!(work_mem, "8MB");
    engine.close().await;
    let err = Engine::connect(&Db::postgres().url_with("connect_timeout=soon"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Url, "{err}");
    assert!(err.to_string().contains("connect_timeout"), "{err}");
}

/// A streamed query's statement goes through the connection's statement
/// cache like any other: streaming the same SQL twice prepares it once, and
/// it stays prepared on the server for the next time.
#[tokio::test]
async fn a_streamed_statement_is_prepared_once_and_cached() {
    const SQL: &str = "SELECT generate_series(1, $1::int) AS n";
    let engine = single_connection_engine().await;
    let mut conn = engine.acquire().await.unwrap();
    for _ in 0..2 {
        let mut stream = conn.fetch(SQL, (50,));
        let mut n = 0;
        while let Some(row) = stream.next().await {
            n += 1;
            assert_eq!(row.unwrap().get::<i32>("n").unwrap(), n);
        }
        assert_eq!(n, 50);
    }
    let prepared: i64 = conn
        .fetch_scalar(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement = :sql",
            reservoir::params! {"sql" => SQL},
        )
        .await
        .unwrap();
    assert_eq!(prepared, 1, "prepared once, kept in the cache");
    drop(conn);
    engine.close().await;
}

/// Backends killed under pipelined reads: the reads sharing their leases
/// fail as disconnects, the leases are discarded, and the reads after
/// them run on new connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_killed_under_pipelined_reads_are_replaced() {
    let engine = Db::postgres().pipelining_engine(2).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..16)
        .map(|_| {
            let (engine, stop) = (engine.clone(), stop.clone());
            tokio::spawn(async move {
                let mut pids = Vec::new();
                let mut lost = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    match engine.fetch_scalar::<i32>("SELECT pg_backend_pid()", ()).await {
                        Ok(pid) => pids.push(pid),
                        Err(e) if e.is_disconnect() => lost += 1,
                        Err(e) => panic!("{e:?}"),
                    }
                }
                (pids, lost)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let admin = Db::postgres().engine().await;
    let killed: i64 = admin
        .fetch_scalar(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = 'test' AND pid <> pg_backend_pid() AND query = 'SELECT pg_backend_pid()'",
            (),
        )
        .await
        .unwrap();
    assert!(killed >= 1, "no reading backend was found to kill");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut seen = std::collections::BTreeSet::new();
    for reader in readers {
        let (pids, _lost) = reader.await.unwrap();
        seen.extend(pids);
    }
    // Reads went on after the kill, on backends of their own.
    assert!(seen.len() > 2, "backends seen: {seen:?}");
    let after: Vec<i32> = (0..20)
        .map(|_| engine.fetch_scalar::<i32>("SELECT pg_backend_pid()", ()))
        .collect::<futures_util::future::JoinAll<_>>()
        .await
        .into_iter()
        .collect::<reservoir::Result<_>>()
        .expect("every read after the kill succeeds");
    assert_eq!(after.len(), 20);
    assert!(engine.stats().broken >= 1, "{:?}", engine.stats());
    admin.close().await;
}

/// NUMERIC values `Decimal` cannot hold exactly (out of range, too many
/// digits after the point, NaN, infinities) read as their exact text, the
/// server's own; those it can hold read as `Decimal` with their scale.
/// None is rounded or turned into bytes. Bound back, each is the same value.
#[tokio::test]
async fn every_numeric_reads_exactly() {
    use reservoir::Value;
    let engine = Db::postgres().engine().await;
    for literal in [
        "1e29",
        "-123456789012345678901234567890.5",
        "1e-40",
        "0.1234567890123456789012345678901",
        "'NaN'",
        "'Infinity'",
        "'-Infinity'",
        "1e1000",
        "12.50",
        "-0.0005",
        "0",
    ] {
        let row = engine
            .fetch_one(
                &format!("SELECT {literal}::numeric AS n, ({literal}::numeric)::text AS t"),
                (),
            )
            .await
            .unwrap();
        let server: String = row.get("t").unwrap();
        let value: Value = row.get("n").unwrap();
        let ours: String = row.get("n").unwrap();
        match &value {
            Value::Decimal(_) | Value::Numeric(_) => {}
            other => panic!("{literal} read as {other:?}"),
        }
        // The exact text, unless it is long enough to be written with an
        // exponent, which is then the same number.
        if ours.contains('e') {
            assert_eq!(ours, "1e+1000", "{literal}");
        } else {
            assert_eq!(ours, server, "{literal}");
        }
        let same: bool = engine
            .fetch_scalar(
                &format!("SELECT $1::numeric = {literal}::numeric"),
                (value.clone(),),
            )
            .await
            .unwrap();
        assert!(same, "{literal} bound back as {value:?}");
    }
    let row = engine
        .fetch_one("SELECT ARRAY[1e29, 2.5, NULL]::numeric[] AS a", ())
        .await
        .unwrap();
    assert_eq!(
        row.get::<Value>("a").unwrap(),
        Value::Array(vec![
            Value::Numeric("100000000000000000000000000000".into()),
            Value::Decimal("2.5".parse().unwrap()),
            Value::Null,
        ])
    );
    engine.close().await;
}

/// A fake server that asks for the password in cleartext: what the client
/// sends it, as bytes (the server then hangs up).
async fn cleartext_asker() -> (u16, tokio::task::JoinHandle<Vec<u8>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let heard = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        // The startup message: a length, then the rest.
        let mut len = [0u8; 4];
        socket.read_exact(&mut len).await.unwrap();
        let mut startup = vec![0u8; u32::from_be_bytes(len) as usize - 4];
        socket.read_exact(&mut startup).await.unwrap();
        // AuthenticationCleartextPassword.
        socket.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3]).await.unwrap();
        let mut heard = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), socket.read_to_end(&mut heard)).await;
        heard
    });
    (port, heard)
}

/// `channel_binding=require` (libpq's setting) never hands the password to
/// a server that asks for it in cleartext, as a fake one behind a TLS
/// downgrade would; without it the password goes (which the fake server
/// sees, so the check below can tell).
#[tokio::test]
async fn channel_binding_require_never_sends_the_password_in_cleartext() {
    for (setting, sends) in [("", true), ("&channel_binding=require", false)] {
        let (port, heard) = cleartext_asker().await;
        let url = format!("postgres://app:n0t-f0r-fakes@127.0.0.1:{port}/test?sslmode=disable{setting}");
        let err = Engine::builder(url).build().await.unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Connect, "{err:?}");
        assert!(!err.to_string().contains("n0t-f0r-fakes"), "{err}");
        let heard = heard.await.unwrap();
        let sent = heard.windows(13).any(|w| w == b"n0t-f0r-fakes");
        assert_eq!(sent, sends, "{setting:?}: the client sent {heard:?}");
        if !sends {
            assert!(err.to_string().contains("channel binding"), "{err}");
        }
    }
    for bad in ["channel_binding=always", "require_auth=scram-sha-256"] {
        let err = Engine::builder(format!("postgres://h/db?{bad}"))
            .build()
            .await
            .unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Url, "{bad}: {err:?}");
    }
}
