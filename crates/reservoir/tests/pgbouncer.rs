//! PgBouncer in transaction mode: every behaviour test already runs through
//! it (`per_dialect!`'s `pgbouncer` route, statement cache off). This shows
//! the harness really moves clients between server sessions: the same work
//! with named (cached) prepared statements breaks, with unnamed ones it runs.
#![cfg(feature = "postgres")]

mod common;

use common::{Db, pgbouncer};
use reservoir::{Engine, Error};

/// 8 connections over PgBouncer's 2 server sessions, each running many
/// different statements concurrently; returns the errors.
async fn workload(engine: &Engine) -> Vec<Error> {
    let tasks: Vec<_> = (0..8i64)
        .map(|task| {
            let engine = engine.clone();
            tokio::spawn(async move {
                let mut conn = engine.acquire().await.unwrap();
                let mut errors = Vec::new();
                for k in 0..50i64 {
                    let sql = format!("SELECT $1::bigint + {k}");
                    match conn.fetch_scalar::<i64>(sql.as_str(), (task,)).await {
                        Ok(n) => assert_eq!(n, task + k),
                        Err(e) => errors.push(e),
                    }
                }
                errors
            })
        })
        .collect();
    let mut errors = Vec::new();
    for task in tasks {
        errors.extend(task.await.unwrap());
    }
    errors
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unnamed_statements_run_where_named_ones_break() {
    assert_eq!(pgbouncer::SERVER_CONNECTIONS, 2);
    let named = Engine::builder(format!(
        "postgres://postgres@127.0.0.1:{}/test",
        pgbouncer::port()
    ))
    .pool_size(8)
    .build()
    .await
    .unwrap();
    let errors = workload(&named).await;
    assert!(
        errors
            .iter()
            .any(|e| e.to_string().contains("prepared statement")),
        "named statements should break behind a transaction pooler: {errors:?}"
    );
    named.close().await;

    let unnamed = Db::pgbouncer().builder().pool_size(8).build().await.unwrap();
    let errors = workload(&unnamed).await;
    assert!(errors.is_empty(), "{errors:?}");
    unnamed.close().await;
}
