//! `echo(true)` logs every statement at INFO; parameter values and passwords
//! never appear in any log line. Alone in its binary: it installs a global
//! tracing subscriber.

mod common;

use common::LogCapture;
use reservoir::{Engine, params};

#[tokio::test]
async fn echo_logs_statements_without_values_or_passwords() {
    let captured = LogCapture::default();
    // `try_init` also routes the `log` crate's records here (tokio-postgres
    // logs each statement's parameters through it at DEBUG).
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(captured.clone())
        .try_init()
        .unwrap();

    let engine = Engine::builder("sqlite::memory:")
        .echo(true)
        .build()
        .await
        .unwrap();
    engine.execute("CREATE TABLE secrets (v TEXT)", ()).await.unwrap();
    engine
        .execute("INSERT INTO secrets VALUES (:v)", params! {"v" => "s3cr3t-value"})
        .await
        .unwrap();
    #[cfg(feature = "postgres")]
    {
        let url = "postgres://postgres:hunter2-password@127.0.0.1:5432/test";
        let pg = Engine::builder(url).echo(true).build().await.unwrap();
        pg.fetch_one("SELECT $1::text", ("another-s3cr3t",))
            .await
            .unwrap();
        let shown = format!("{pg:?} {}", pg.url());
        assert!(!shown.contains("hunter2"), "{shown}");

        // An ordinary statement error costs nothing afterwards: only a
        // statement abandoned mid-flight is settled (cancel and sentinel).
        let mut conn = pg.acquire().await.unwrap();
        for _ in 0..3 {
            let err = conn
                .execute("SELECT no_such_column FROM pg_class", ())
                .await
                .unwrap_err();
            assert_eq!(err.code(), Some("42703"), "{err:?}");
            conn.fetch_one("SELECT 1", ()).await.unwrap();
        }
        let settling = "settling a statement abandoned";
        assert!(
            !captured.text().contains(settling),
            "an ordinary error was settled"
        );
        let abandoned = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            conn.fetch_one("SELECT pg_sleep(5)", ()),
        )
        .await;
        assert!(abandoned.is_err());
        conn.fetch_one("SELECT 1", ()).await.unwrap();
        assert!(
            captured.text().contains(settling),
            "the abandoned statement was settled"
        );
    }
    // A connectionless statement held past leak_threshold is reported
    // with the caller's own line, not the engine's.
    let leaky = Engine::builder("sqlite::memory:")
        .leak_threshold(std::time::Duration::from_millis(1))
        .build()
        .await
        .unwrap();
    let slow = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 300000) SELECT count(*) FROM c";
    let line = line!() + 1;
    leaky.fetch_one(slow, ()).await.unwrap();
    let log = captured.text();
    assert!(
        log.contains(&format!("tests/echo.rs:{line}")),
        "the leak warning names the call site: {log}"
    );
    let log = captured.text();
    assert!(
        log.contains("INSERT INTO secrets VALUES (?)"),
        "the statement is logged: {log}"
    );
    assert!(log.contains(" INFO "), "at INFO: {log}");
    #[cfg(feature = "postgres")]
    assert!(
        log.contains("executing statement"),
        "tokio-postgres's own DEBUG lines are captured too: {log}"
    );
    assert!(!log.contains("s3cr3t"), "no parameter value in the log: {log}");
    assert!(!log.contains("hunter2"), "no password in the log: {log}");
}
