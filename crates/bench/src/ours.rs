//! Reservoir's side of the server point-select tables, the same for every
//! server dialect: connectionless, a checkout per select, and connectionless
//! with `pipeline_reads`, each on `connections` connections and no backlog
//! bound.

use reservoir::Engine;
use reservoir::value::ToValue;

use crate::harness::{Rate, Row, throughput};

async fn engine(url: &str, connections: usize, pipeline_reads: bool) -> Engine {
    Engine::builder(url)
        .pool_size(connections)
        .max_overflow(0)
        .max_waiting(None)
        .pipeline_reads(pipeline_reads)
        .build()
        .await
        .expect("reservoir engine")
}

async fn connectionless<K: ToValue + Send + 'static>(
    engine: &Engine,
    tasks: usize,
    sql: &'static str,
    key: fn() -> K,
) -> Rate {
    let e = engine.clone();
    throughput(tasks, move || {
        let engine = e.clone();
        async move {
            std::hint::black_box(engine.fetch_one(sql, (key(),)).await.expect("select"));
        }
    })
    .await
}

/// The three Reservoir rows of a point-select table: `sql` takes one key, `key` gives the next.
pub async fn point_selects<K: ToValue + Send + 'static>(
    url: &str,
    connections: usize,
    tasks: usize,
    sql: &'static str,
    key: fn() -> K,
) -> Vec<Row> {
    let plain = engine(url, connections, false).await;
    let ours = connectionless(&plain, tasks, sql, key).await;
    let e = plain.clone();
    let checkout = throughput(tasks, move || {
        let engine = e.clone();
        async move {
            let mut conn = engine.acquire().await.expect("acquire");
            std::hint::black_box(conn.fetch_one(sql, (key(),)).await.expect("select"));
        }
    })
    .await;
    plain.close().await;
    let piped = engine(url, connections, true).await;
    let pipelined = connectionless(&piped, tasks, sql, key).await;
    piped.close().await;
    vec![
        Row {
            name: "reservoir engine.fetch_one (connectionless)",
            rate: ours,
        },
        Row {
            name: "reservoir acquire + conn.fetch_one",
            rate: checkout,
        },
        Row {
            name: "reservoir engine.fetch_one, pipeline_reads",
            rate: pipelined,
        },
    ]
}
