//! MySQL/MariaDB point selects by primary key: Reservoir against
//! mysql_async's own pool and sqlx's MySqlPool, 32 tasks on 8 connections.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use mysql_async::prelude::Queryable;
use reservoir::Engine;

use crate::harness::{Contender, Row, interleaved, print_table, runtime};

const URL: &str = "mysql://root@127.0.0.1:3306/test";
const SELECT: &str = "SELECT id, name, value FROM reservoir_bench_kv WHERE id = ?";
const ROWS: u64 = 100_000;
const TASKS: usize = 32;
const CONNECTIONS: usize = 8;

static NEXT: AtomicU64 = AtomicU64::new(0);

fn next_id() -> i64 {
    (NEXT.fetch_add(7919, Relaxed) % ROWS + 1) as i64
}

pub fn run() {
    let rt = runtime();
    println!("\n## MySQL (MariaDB) point select, {TASKS} tasks, {CONNECTIONS} connections");
    let (ours, peers) = rt.block_on(async {
        prepare().await;
        point_selects().await
    });
    print_table(
        "point select by primary key (contenders interleaved, median of 3 rounds)",
        "selects/s",
        &ours,
        &peers,
    );
}

async fn prepare() {
    let engine = Engine::connect(URL).await.expect("engine");
    let have: i64 = engine
        .fetch_scalar(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'test' AND TABLE_NAME = 'reservoir_bench_kv'",
            (),
        )
        .await
        .expect("catalog");
    let rows: i64 = if have == 1 {
        engine
            .fetch_scalar("SELECT COUNT(*) FROM reservoir_bench_kv", ())
            .await
            .expect("count")
    } else {
        0
    };
    if rows != ROWS as i64 {
        engine
            .execute("DROP TABLE IF EXISTS reservoir_bench_kv", ())
            .await
            .expect("drop");
        engine
            .execute(
                "CREATE TABLE reservoir_bench_kv (id BIGINT PRIMARY KEY, name VARCHAR(40), value BIGINT) ENGINE=InnoDB",
                (),
            )
            .await
            .expect("create");
        let rows: Vec<(i64, String, i64)> = (1..=ROWS as i64)
            .map(|i| (i, format!("name-{i}"), i * 3))
            .collect();
        let mut conn = engine.acquire().await.expect("acquire");
        conn.copy_in("reservoir_bench_kv", &["id", "name", "value"], rows)
            .await
            .expect("load");
    }
    engine.close().await;
}

async fn point_selects() -> (Vec<Row>, Vec<Row>) {
    let mut contenders = crate::ours::point_selects(URL, CONNECTIONS, TASKS, SELECT, next_id).await;

    let constraints = mysql_async::PoolConstraints::new(CONNECTIONS, CONNECTIONS).expect("constraints");
    let opts = mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(URL).expect("url"))
        .pool_opts(mysql_async::PoolOpts::default().with_constraints(constraints));
    let pool = mysql_async::Pool::new(opts);
    let p = pool.clone();
    contenders.push(Contender::looping(
        "mysql_async 0.37 Pool (exec_first)",
        false,
        TASKS,
        move || {
            let pool = p.clone();
            async move {
                let mut conn = pool.get_conn().await.expect("get_conn");
                let row: Option<(i64, String, i64)> =
                    conn.exec_first(SELECT, (next_id(),)).await.expect("select");
                std::hint::black_box(row);
            }
        },
    ));

    let sqlx_pool = sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(CONNECTIONS as u32)
        .connect(URL)
        .await
        .expect("sqlx");
    contenders.push(Contender::looping(
        "sqlx 0.9 MySqlPool",
        false,
        TASKS,
        move || {
            let pool = sqlx_pool.clone();
            async move {
                let row = sqlx::query(SELECT)
                    .bind(next_id())
                    .fetch_one(&pool)
                    .await
                    .expect("select");
                std::hint::black_box(row);
            }
        },
    ));
    let rows = interleaved(&contenders).await;
    drop(contenders);
    pool.disconnect().await.expect("disconnect");
    rows
}
