//! Reservoir's side of the server point-select tables, the same for every
//! server dialect: connectionless, a checkout per select, and connectionless
//! with `pipeline_reads`, each on `connections` connections and no backlog
//! bound. They run interleaved with the peers (`harness::interleaved`).

use reservoir::Engine;
use reservoir::value::ToValue;

use crate::harness::Contender;

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

fn connectionless<K: ToValue + Send + 'static>(
    name: &'static str,
    engine: &Engine,
    tasks: usize,
    sql: &'static str,
    key: fn() -> K,
) -> Contender {
    let e = engine.clone();
    Contender::looping(name, true, tasks, move || {
        let engine = e.clone();
        async move {
            std::hint::black_box(engine.fetch_one(sql, (key(),)).await.expect("select"));
        }
    })
}

/// The three Reservoir contenders of a point-select table: `sql` takes one
/// key, `key` gives the next. Two engines of `connections` each: one
/// plain, one with `pipeline_reads`.
pub async fn point_selects<K: ToValue + Send + 'static>(
    url: &str,
    connections: usize,
    tasks: usize,
    sql: &'static str,
    key: fn() -> K,
) -> Vec<Contender> {
    let plain = engine(url, connections, false).await;
    let piped = engine(url, connections, true).await;
    let e = plain.clone();
    vec![
        connectionless(
            "reservoir engine.fetch_one (connectionless)",
            &plain,
            tasks,
            sql,
            key,
        ),
        Contender::looping("reservoir acquire + conn.fetch_one", true, tasks, move || {
            let engine = e.clone();
            async move {
                let mut conn = engine.acquire().await.expect("acquire");
                std::hint::black_box(conn.fetch_one(sql, (key(),)).await.expect("select"));
            }
        }),
        connectionless(
            "reservoir engine.fetch_one, pipeline_reads",
            &piped,
            tasks,
            sql,
            key,
        ),
    ]
}
