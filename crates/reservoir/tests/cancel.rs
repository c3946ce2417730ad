//! Cancel safety on a real database: each operation is dropped at every
//! await point it reaches, one run per point, and after each drop the
//! engine must have its connection back, answer the next statement
//! correctly on that same connection (no half-read answer left on it) and
//! have kept all or nothing of the dropped work.

mod common;

use std::future::Future;
use std::task::Poll;
use std::time::{Duration, Instant};

use common::Db;
use reservoir::{Engine, params};

per_dialect!(
    a_transaction_dropped_anywhere_keeps_all_or_nothing,
    reads_dropped_anywhere_leave_no_answer_behind,
    bulk_loads_dropped_anywhere_keep_all_or_nothing,
    a_cursor_dropped_anywhere_frees_its_connection,
    pipelined_reads_dropped_anywhere_leave_no_answer_behind,
    contextual_transactions_dropped_anywhere_keep_all_or_nothing,
    lazy_reused_checkouts_dropped_anywhere_leave_nothing_behind,
);

/// Polls `op` as an executor would, but drops it at its `n`-th await
/// point (the `n`-th time it returns `Pending`, from 0) instead of
/// waiting there; `Some` of its output if it finished first.
async fn drop_at<F: Future>(op: F, n: usize) -> Option<F::Output> {
    let mut op = std::pin::pin!(op);
    let mut pending = 0;
    std::future::poll_fn(|cx| match op.as_mut().poll(cx) {
        Poll::Ready(out) => Poll::Ready(Some(out)),
        Poll::Pending if pending == n => Poll::Ready(None),
        Poll::Pending => {
            pending += 1;
            Poll::Pending
        }
    })
    .await
}

/// More await points than any operation here reaches: a loop that gets
/// this far is not finishing.
const MAX_POINTS: usize = 1000;

/// Runs `op(run)` dropped at await point 0, 1, 2, ... until a run
/// finishes (which must succeed), calling `after_drop(run)` after each
/// dropped run. Returns how many runs were dropped. How many await points
/// an operation reaches depends on timing: an answer that is already there
/// when its statement first looks costs no await (SQLite's connection
/// thread often answers that fast, a server on loopback sometimes). So run
/// `n` drops at its own `n`-th await point, and the first run that
/// finishes ends the loop.
async fn at_every_await_point(
    mut op: impl AsyncFnMut(usize) -> reservoir::Result<()>,
    mut after_drop: impl AsyncFnMut(usize),
) -> usize {
    for run in 0..MAX_POINTS {
        match drop_at(op(run), run).await {
            Some(finished) => {
                finished.unwrap_or_else(|e| panic!("run {run} finished with an error: {e:?}"));
                eprintln!("dropped at each of {run} await points");
                return run;
            }
            None => after_drop(run).await,
        }
    }
    panic!("the operation was still reaching new await points after {MAX_POINTS} runs");
}

/// One connection, so that every run after a drop reuses the raw connection
/// the dropped run had.
async fn one_connection_engine(db: &Db) -> Engine {
    db.builder()
        .pool_size(1)
        .max_overflow(0)
        .pool_timeout(Duration::from_secs(20))
        .build()
        .await
        .unwrap()
}

/// The connection is back in the pool (at once, or after the clean-up a
/// dropped statement needs), and answers the next statement with its own
/// rows: `probe` distinct rows, so an answer left over from the dropped
/// run could not pass for them.
async fn healthy(db: &Db, engine: &Engine, probe: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while engine.status().in_use > 0 {
        assert!(
            Instant::now() < deadline,
            "a connection never came back: {:?}",
            engine.status()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(engine.context_tasks(), 0, "a task stack outlived its connections");
    let n = 2 + probe % 7;
    let mut conn = engine.acquire().await.unwrap();
    let rows = conn.fetch_all(&db.series(n as u64), ()).await.unwrap();
    assert_series(&rows, n, &format!("after the drop at point {probe}"));
    let echoed: i64 = conn
        .fetch_scalar(&db.echo(), params! {"n" => probe as i64 + 1000})
        .await
        .unwrap();
    assert_eq!(echoed, probe as i64 + 1000);
}

/// `rows` are the integers 1..=n (in any order), as `Db::series(n)` gives.
fn assert_series(rows: &[reservoir::Row], n: usize, what: &str) {
    let mut got = common::ids(rows);
    got.sort_unstable();
    assert_eq!(got, (1..=n as i64).collect::<Vec<_>>(), "{what}");
}

async fn ids_in(engine: &Engine, table: &str) -> Vec<i64> {
    let rows = engine
        .fetch_all(&format!("SELECT id FROM {table} ORDER BY id"), ())
        .await
        .unwrap();
    common::ids(&rows)
}

/// Runs a transaction test's `op` dropped at every await point. Run `run`
/// inserts ids `10 * run` and `10 * run + 1`, and `10 * run + 5` in a
/// savepoint that it rolls back. After each drop: the engine is healthy
/// and the run kept both of its rows or neither; at the end, no
/// savepoint's row was kept and the run that finished kept both.
async fn transaction_at_every_await_point(
    db: &Db,
    engine: &Engine,
    table: &str,
    op: impl AsyncFnMut(usize) -> reservoir::Result<()>,
) {
    let finished = at_every_await_point(op, async |run| {
        healthy(db, engine, run).await;
        let kept = ids_of_run(engine, table, run).await;
        let base = 10 * run as i64;
        assert!(
            kept.is_empty() || kept == [base, base + 1],
            "dropped at point {run}, the transaction left {kept:?}"
        );
    })
    .await;
    let ids = ids_in(engine, table).await;
    assert!(
        ids.iter().all(|id| id % 10 != 5),
        "a savepoint's row was kept: {ids:?}"
    );
    let kept = ids_of_run(engine, table, finished).await;
    assert_eq!(kept.len(), 2, "the finished run kept {kept:?}");
}

/// The ids run `run` of a transaction test inserted that are there.
async fn ids_of_run(engine: &Engine, table: &str, run: usize) -> Vec<i64> {
    let ids = ids_in(engine, table).await;
    ids.into_iter().filter(|id| id / 10 == run as i64).collect()
}

async fn a_transaction_dropped_anywhere_keeps_all_or_nothing(db: Db) {
    let engine = one_connection_engine(&db).await;
    let t = common::fresh_table(&db, &engine, "cancel_tx", "id INTEGER PRIMARY KEY, v INTEGER").await;
    let insert = format!("INSERT INTO {t} (id, v) VALUES (:id, :v)");
    transaction_at_every_await_point(&db, &engine, &t, async |run| {
        let base = 10 * run as i64;
        let mut conn = engine.acquire().await?;
        let mut tx = conn.begin().await?;
        tx.execute(&insert, params! {"id" => base, "v" => 1}).await?;
        {
            // A savepoint rolled back: its row must never be seen.
            let mut sp = tx.begin().await?;
            sp.execute(&insert, params! {"id" => base + 5, "v" => 2}).await?;
            sp.rollback().await?;
        }
        tx.execute(&insert, params! {"id" => base + 1, "v" => 3}).await?;
        tx.commit().await
    })
    .await;
}

async fn reads_dropped_anywhere_leave_no_answer_behind(db: Db) {
    let engine = one_connection_engine(&db).await;
    at_every_await_point(
        async |run| {
            let mut conn = engine.acquire().await?;
            let all = conn.fetch_all(&db.series(3000), ()).await?;
            assert_eq!(all.len(), 3000);
            // A stream read part way, then dropped, then a query on the same connection.
            {
                let mut rows = conn.fetch(&db.series(100_000), ());
                for _ in 0..100 {
                    rows.next().await.expect("a row")?;
                }
            }
            let n: i64 = conn.fetch_scalar(&db.echo(), params! {"n" => run as i64}).await?;
            assert_eq!(n, run as i64);
            drop(conn);
            // Connectionless: a checkout of its own.
            let one = engine.fetch_one(&db.series(1), ()).await?;
            assert_eq!(one.get::<i64>(0)?, 1);
            Ok(())
        },
        async |run| healthy(&db, &engine, run).await,
    )
    .await;
}

async fn bulk_loads_dropped_anywhere_keep_all_or_nothing(db: Db) {
    let engine = one_connection_engine(&db).await;
    let t = common::fresh_table(&db, &engine, "cancel_bulk", "id INTEGER PRIMARY KEY, v INTEGER").await;
    let insert = format!("INSERT INTO {t} (id, v) VALUES (:id, :v)");
    // MySQL sends each execution of a batch on its own: every row is an await point.
    const BATCH: i64 = 60;
    // Ids of run r: many at 1000 * r + [0, BATCH), copied at 1000 * r + 500 + [0, BATCH).
    let points = at_every_await_point(
        async |run| {
            let base = 1000 * run as i64;
            let mut conn = engine.acquire().await?;
            conn.execute_many(&insert, (0..BATCH).map(|i| params! {"id" => base + i, "v" => i}))
                .await?;
            conn.copy_in(&t, &["id", "v"], (0..BATCH).map(|i| (base + 500 + i, i)))
                .await?;
            Ok(())
        },
        async |run| {
            healthy(&db, &engine, run).await;
            let base = 1000 * run as i64;
            let ids = ids_in(&engine, &t).await;
            let many = ids.iter().filter(|id| (base..base + BATCH).contains(id)).count() as i64;
            let copied = ids
                .iter()
                .filter(|id| (base + 500..base + 500 + BATCH).contains(id))
                .count() as i64;
            assert!(
                many == 0 || many == BATCH,
                "dropped at point {run}, execute_many kept {many} rows"
            );
            assert!(
                copied == 0 || copied == BATCH,
                "dropped at point {run}, copy_in kept {copied} rows"
            );
            assert!(
                copied == 0 || many == BATCH,
                "dropped at point {run}: copied before loading"
            );
        },
    )
    .await;
    let ids = ids_in(&engine, &t).await;
    let last = 1000 * points as i64;
    assert_eq!(ids.iter().filter(|id| **id >= last).count() as i64, 2 * BATCH);
}

async fn a_cursor_dropped_anywhere_frees_its_connection(db: Db) {
    let engine = one_connection_engine(&db).await;
    at_every_await_point(
        async |_| {
            let mut conn = engine.acquire().await?;
            let mut tx = conn.begin().await?;
            let mut cursor = tx.cursor(&db.series(5000), ()).await?;
            assert_eq!(cursor.forward(1000).await?, 1000);
            let batch = cursor.fetch(50).await?;
            assert_eq!(batch.len(), 50);
            drop(cursor);
            tx.commit().await
        },
        async |run| healthy(&db, &engine, run).await,
    )
    .await;
}

/// Many reads at once on two connections, so that reads share them
/// (`pipeline_reads`), all dropped together at each await point.
async fn pipelined_reads_dropped_anywhere_leave_no_answer_behind(db: Db) {
    let engine = db.pipelining_engine(2).await;
    let read = |n: usize| {
        let engine = engine.clone();
        let sql = db.series(n as u64);
        async move {
            let rows = engine.fetch_all(&sql, ()).await?;
            assert_series(&rows, n, "a read got another's rows");
            reservoir::Result::Ok(())
        }
    };
    at_every_await_point(
        async |_| {
            let reads = futures_util::future::join_all((1..=16).map(|i| read(i * 7)));
            reads.await.into_iter().collect()
        },
        async |run| healthy(&db, &engine, run).await,
    )
    .await;
}

/// `engine.begin()` and connectionless statements that join the task's
/// transaction (one connection: a statement that did not join would wait
/// for it until `pool_timeout`).
async fn contextual_transactions_dropped_anywhere_keep_all_or_nothing(db: Db) {
    let engine = one_connection_engine(&db).await;
    let t = common::fresh_table(&db, &engine, "cancel_ctx", "id INTEGER PRIMARY KEY").await;
    let insert = format!("INSERT INTO {t} (id) VALUES (:id)");
    transaction_at_every_await_point(&db, &engine, &t, async |run| {
        let base = 10 * run as i64;
        engine
            .scope(async {
                let tx = engine.begin().await?;
                engine.execute(&insert, params! {"id" => base}).await?;
                {
                    let savepoint = engine.begin().await?;
                    engine.execute(&insert, params! {"id" => base + 5}).await?;
                    drop(savepoint);
                }
                engine.execute(&insert, params! {"id" => base + 1}).await?;
                tx.commit().await
            })
            .await
    })
    .await;
}

/// A lazy connection, a reuser that checks it out (with `pool_pre_ping`,
/// one more await in the checkout), and statements on both.
async fn lazy_reused_checkouts_dropped_anywhere_leave_nothing_behind(db: Db) {
    let engine = db
        .builder()
        .pool_size(1)
        .max_overflow(0)
        .pool_pre_ping(true)
        .pool_timeout(Duration::from_secs(20))
        .build()
        .await
        .unwrap();
    let echo = db.echo();
    at_every_await_point(
        async |run| {
            let mut root = engine.acquire().lazy(true).await?;
            let mut reuser = engine.acquire().reuse(true).await?;
            let n: i64 = reuser.fetch_scalar(&echo, params! {"n" => run as i64}).await?;
            assert_eq!(n, run as i64);
            assert_eq!(root.id(), reuser.id(), "one checkout for the chain");
            drop(reuser);
            let n: i64 = root.fetch_scalar(&echo, params! {"n" => run as i64 + 1}).await?;
            assert_eq!(n, run as i64 + 1);
            Ok(())
        },
        async |run| healthy(&db, &engine, run).await,
    )
    .await;
}
