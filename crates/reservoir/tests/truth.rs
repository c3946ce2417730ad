//! A connection never lies (issue "one owner of session state"), on every
//! dialect: commits report what the server kept, transactions ended out of
//! order end what is inside them, abandoned statements never hand their
//! answer to the next one, cursors and streams say when they cannot serve,
//! and futures joined in one task keep their transactions apart.

mod common;

use std::future::Future;
use std::task::Poll;
use std::time::{Duration, Instant};

use common::{Db, fresh_table, ids};
use reservoir::{Dialect, Engine, ErrorKind, TxOptions, params};

per_dialect!(
    commit_reports_what_the_server_kept,
    ending_a_middle_level_ends_the_levels_inside_it,
    ending_the_outer_level_from_the_innermost_ends_them_all,
    an_abandoned_statement_never_answers_the_next,
    an_abandoned_long_statement_frees_the_connection_quickly,
    an_abandoned_statement_in_a_transaction_fails_what_follows_or_is_harmless,
    an_abandoned_cursor_call_poisons_the_cursor,
    a_cursor_dropped_early_is_closed_before_the_next_statement,
    an_open_stream_does_not_hang_connectionless_statements,
    scoped_jobs_joined_in_one_task_keep_their_transactions_apart,
    connectionless_statements_outside_a_scope_join_nothing,
    begin_after_a_raw_begin_is_refused_and_leaves_it_alone,
    execute_of_a_select_counts_its_rows,
    a_cursor_needs_a_transaction,
    read_only_transactions_refuse_writes,
    session_state_does_not_leak_to_the_next_borrower,
    after_a_disconnect_older_idle_connections_are_checked,
    a_deadlock_victims_commit_reports_the_rollback,
);

fn raw_begin(db: &Db) -> &'static str {
    match db.dialect {
        Dialect::Mysql => "START TRANSACTION",
        _ => "BEGIN",
    }
}

/// A statement that answers `:n` after a few milliseconds of work.
fn slow_echo(db: &Db) -> String {
    match db.dialect {
        Dialect::Postgres => "SELECT CAST(:n AS BIGINT) AS n FROM pg_sleep(0.003)".into(),
        Dialect::Mysql => "SELECT :n + 0 * SLEEP(0.003) AS n".into(),
        _ => "SELECT :n + 0 * (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c \
              WHERE x < 30000) SELECT count(*) FROM c) AS n"
            .into(),
    }
}

/// Polls `op` once and drops it if it is not done: `true` if it was
/// abandoned mid-flight (it had returned `Pending`).
async fn abandon_after_first_poll<F: Future>(op: F) -> bool {
    let mut op = std::pin::pin!(op);
    std::future::poll_fn(|cx| Poll::Ready(op.as_mut().poll(cx).is_pending())).await
}

async fn commit_reports_what_the_server_kept(db: Db) {
    let engine = db.engine().await;
    let t = fresh_table(&db, &engine, "truth_commit", "id INTEGER PRIMARY KEY").await;
    let insert = format!("INSERT INTO {t} (id) VALUES (:id)");
    let mut conn = engine.acquire().await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    tx.execute(&insert, params! {"id" => 1}).await.unwrap();
    let dup = tx.execute(&insert, params! {"id" => 1}).await.unwrap_err();
    assert!(dup.is_unique_violation(), "{dup:?}");
    let committed = tx.commit().await;
    let kept = ids(&conn.fetch_all(&format!("SELECT id FROM {t}"), ()).await.unwrap());
    // PostgreSQL aborts the transaction at the error; the others keep it.
    match &committed {
        Ok(()) => assert_eq!(kept, [1], "Ok means the work was kept"),
        Err(e) => {
            assert_eq!(e.kind(), &ErrorKind::RolledBack, "{e:?}");
            assert!(kept.is_empty(), "an error means nothing was kept: {kept:?}");
        }
    }
    if db.dialect == Dialect::Postgres {
        assert!(
            committed.is_err(),
            "PostgreSQL rolled the failed transaction back"
        );
    }
    assert_eq!(conn.transaction_depth(), 0);
    // The connection goes on as if nothing happened.
    let n: i64 = conn.fetch_scalar(&db.echo(), params! {"n" => 7}).await.unwrap();
    assert_eq!(n, 7);

    // A failed savepoint commits as a rollback to it; the outer goes on.
    let mut tx = conn.begin().await.unwrap();
    tx.execute(&insert, params! {"id" => 10}).await.unwrap();
    {
        let mut sp = tx.begin().await.unwrap();
        sp.execute(&insert, params! {"id" => 11}).await.unwrap();
        let _ = sp.execute(&insert, params! {"id" => 11}).await.unwrap_err();
        match sp.commit().await {
            Ok(()) => assert_ne!(db.dialect, Dialect::Postgres),
            Err(e) => assert_eq!(e.kind(), &ErrorKind::RolledBack, "{e:?}"),
        }
    }
    assert_eq!(tx.transaction_depth(), 1);
    tx.execute(&insert, params! {"id" => 12}).await.unwrap();
    tx.commit().await.unwrap();
    let kept = ids(&conn
        .fetch_all(&format!("SELECT id FROM {t} WHERE id >= 10 ORDER BY id"), ())
        .await
        .unwrap());
    if db.dialect == Dialect::Postgres {
        assert_eq!(kept, [10, 12]);
    } else {
        assert_eq!(kept, [10, 11, 12]);
    }
}

/// Three nested `engine.begin()` levels in a scope; the middle one ends
/// (committed or rolled back), then the inner one is dropped.
async fn ending_a_middle_level_ends_the_levels_inside_it(db: Db) {
    let engine = db.engine().await;
    for commit_middle in [true, false] {
        let t = fresh_table(&db, &engine, "truth_middle", "id INTEGER PRIMARY KEY").await;
        let insert = format!("INSERT INTO {t} (id) VALUES (:id)");
        engine
            .scope(async {
                let outer = engine.begin().await.unwrap();
                engine.execute(&insert, params! {"id" => 1}).await.unwrap();
                let middle = engine.begin().await.unwrap();
                engine.execute(&insert, params! {"id" => 2}).await.unwrap();
                let inner = engine.begin().await.unwrap();
                engine.execute(&insert, params! {"id" => 3}).await.unwrap();
                assert_eq!(outer.transaction_depth(), 3);
                if commit_middle {
                    middle.commit().await.unwrap();
                } else {
                    middle.rollback().await.unwrap();
                }
                assert_eq!(
                    outer.transaction_depth(),
                    1,
                    "the middle level took the inner with it"
                );
                assert!(!inner.is_active() && outer.is_active());
                drop(inner); // does nothing: its level has ended
                assert_eq!(outer.transaction_depth(), 1);
                engine.execute(&insert, params! {"id" => 4}).await.unwrap();
                outer.commit().await.expect("the outer transaction carries on");
            })
            .await;
        let kept = ids_in(&engine, &t).await;
        let expected: &[i64] = if commit_middle { &[1, 2, 3, 4] } else { &[1, 4] };
        assert_eq!(kept, expected, "middle committed: {commit_middle}");
    }
}

async fn ending_the_outer_level_from_the_innermost_ends_them_all(db: Db) {
    let engine = db.engine().await;
    for commit in [true, false] {
        let t = fresh_table(&db, &engine, "truth_outer", "id INTEGER PRIMARY KEY").await;
        let insert = format!("INSERT INTO {t} (id) VALUES (:id)");
        engine
            .scope(async {
                let outer = engine.begin().await.unwrap();
                engine.execute(&insert, params! {"id" => 1}).await.unwrap();
                let middle = engine.begin().await.unwrap();
                let mut inner = engine.begin().await.unwrap();
                engine.execute(&insert, params! {"id" => 2}).await.unwrap();
                if commit {
                    outer.commit().await.unwrap();
                } else {
                    outer.rollback().await.unwrap();
                }
                assert!(!middle.is_active() && !inner.is_active());
                assert_eq!(inner.transaction_depth(), 0);
                // Its statements are refused, not run outside any transaction.
                let refused = inner.execute(&insert, params! {"id" => 9}).await.unwrap_err();
                assert_eq!(refused.kind(), &ErrorKind::Usage, "{refused:?}");
                let again = inner.commit().await.unwrap_err();
                assert_eq!(again.kind(), &ErrorKind::Usage, "{again:?}");
                drop(middle);
                // Outside any transaction now: this one commits on its own.
                engine.execute(&insert, params! {"id" => 3}).await.unwrap();
            })
            .await;
        let kept = ids_in(&engine, &t).await;
        let expected: &[i64] = if commit { &[1, 2, 3] } else { &[3] };
        assert_eq!(kept, expected, "outer committed: {commit}");
    }
}

/// A caller's `timeout` drops a statement mid-flight; the next statement on
/// the same `Connection` answers with its own answer or fails, never with
/// the abandoned one's, and the one after that works.
async fn an_abandoned_statement_never_answers_the_next(db: Db) {
    let engine = db.builder().pool_size(2).build().await.unwrap();
    let mut conn = engine.acquire().await.unwrap();
    let (slow, echo) = (slow_echo(&db), db.echo());
    let mut abandoned = 0;
    for round in 0..40i64 {
        let limit = Duration::from_micros(500 + 100 * (round as u64 % 30));
        let first =
            tokio::time::timeout(limit, conn.fetch_scalar::<i64>(&slow, params! {"n" => round})).await;
        match first {
            Ok(answer) => assert_eq!(answer.unwrap(), round),
            Err(_) => abandoned += 1,
        }
        let mine = 1000 + round;
        match conn.fetch_scalar::<i64>(&echo, params! {"n" => mine}).await {
            Ok(n) => assert_eq!(n, mine, "round {round}: another statement's answer"),
            Err(e) => {
                assert!(e.is_disconnect(), "round {round}: {e:?}");
                let n: i64 = conn.fetch_scalar(&echo, params! {"n" => mine}).await.unwrap();
                assert_eq!(n, mine, "round {round}: usable again after the error");
            }
        }
    }
    eprintln!("{abandoned} of 40 statements abandoned");
    drop(conn);
    all_back(&engine).await;
}

async fn an_abandoned_long_statement_frees_the_connection_quickly(db: Db) {
    let engine = db.builder().pool_size(1).max_overflow(0).build().await.unwrap();
    let mut conn = engine.acquire().await.unwrap();
    let endless = db.endless_query();
    let gave_up = tokio::time::timeout(Duration::from_millis(100), conn.fetch_one(endless, ())).await;
    assert!(gave_up.is_err(), "the statement runs for 30 s");
    let started = Instant::now();
    let answer = match conn.fetch_scalar::<i64>(&db.echo(), params! {"n" => 5}).await {
        Ok(n) => n,
        Err(e) => {
            assert!(e.is_disconnect(), "{e:?}");
            conn.fetch_scalar::<i64>(&db.echo(), params! {"n" => 5})
                .await
                .unwrap()
        }
    };
    assert_eq!(answer, 5);
    let took = started.elapsed();
    // Well under the 30 s the statement would run (half a second on a quiet
    // machine; the bound leaves room for a loaded CI run).
    assert!(took < Duration::from_secs(3), "usable again after {took:?}");
    // And once given back, the pool's connection serves at once too.
    let gave_up = tokio::time::timeout(Duration::from_millis(100), conn.fetch_one(endless, ())).await;
    assert!(gave_up.is_err());
    drop(conn);
    let started = Instant::now();
    let n: i64 = engine.fetch_scalar(&db.echo(), params! {"n" => 6}).await.unwrap();
    assert_eq!(n, 6);
    // (As above: well under the 30 s, with room for a loaded machine.)
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

async fn an_abandoned_statement_in_a_transaction_fails_what_follows_or_is_harmless(db: Db) {
    let engine = db.engine().await;
    let t = fresh_table(&db, &engine, "truth_abandon_tx", "id INTEGER PRIMARY KEY").await;
    let mut conn = engine.acquire().await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    tx.execute(&format!("INSERT INTO {t} (id) VALUES (1)"), ())
        .await
        .unwrap();
    let endless = db.endless_query();
    let gave_up = tokio::time::timeout(Duration::from_millis(100), tx.fetch_one(endless, ())).await;
    assert!(gave_up.is_err());
    let started = Instant::now();
    let next = tx.fetch_scalar::<i64>(&db.echo(), params! {"n" => 8}).await;
    // (As above: well under the 30 s, with room for a loaded machine.)
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    match next {
        Ok(n) => assert_eq!(n, 8, "never another statement's answer"),
        Err(e) => assert_ne!(e.kind(), &ErrorKind::NoRows, "a clear error: {e:?}"),
    }
    let committed = tx.commit().await;
    drop(conn);
    let kept = ids_in(&engine, &t).await;
    assert_eq!(committed.is_ok(), kept == [1], "{committed:?} with {kept:?} kept");
    all_back(&engine).await;
}

async fn an_abandoned_cursor_call_poisons_the_cursor(db: Db) {
    let engine = db.engine().await;
    let mut conn = engine.acquire().await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    let series = db.series(200_000);
    let mut poisoned = false;
    for _ in 0..20 {
        let mut cur = tx.cursor(&series, ()).await.unwrap();
        if !abandon_after_first_poll(cur.fetch(50_000)).await {
            continue; // answered at its first poll: nothing was abandoned
        }
        let next = cur.fetch(1).await.unwrap_err();
        assert_eq!(next.kind(), &ErrorKind::Usage, "{next:?}");
        assert_eq!(cur.forward(1).await.unwrap_err().kind(), &ErrorKind::Usage);
        assert_eq!(cur.fetch_one().await.unwrap_err().kind(), &ErrorKind::Usage);
        poisoned = true;
        break;
    }
    assert!(
        poisoned,
        "a fetch of 50,000 rows was never pending at its first poll"
    );
    let n: i64 = tx.fetch_scalar(&db.echo(), params! {"n" => 3}).await.unwrap();
    assert_eq!(n, 3);
}

async fn a_cursor_dropped_early_is_closed_before_the_next_statement(db: Db) {
    let engine = db.engine().await;
    let t = fresh_table(&db, &engine, "truth_cursor_drop", "id INTEGER PRIMARY KEY").await;
    engine
        .execute_many(
            &format!("INSERT INTO {t} (id) VALUES (:id)"),
            (0..50).map(|id| params! {"id" => id}),
        )
        .await
        .unwrap();
    let mut conn = engine.acquire().await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    {
        let mut cur = tx.cursor(&format!("SELECT id FROM {t}"), ()).await.unwrap();
        assert_eq!(cur.fetch(5).await.unwrap().len(), 5);
    }
    // PostgreSQL refuses to drop a table an open cursor reads (55006),
    // SQLite one an unfinished statement reads; MySQL would wait for good
    // if the stream still held the connection.
    let drop_table = format!("DROP TABLE {t}");
    let dropped = tokio::time::timeout(Duration::from_secs(10), tx.execute(&drop_table, ()));
    dropped.await.expect("no wait behind the dropped cursor").unwrap();
    drop(tx);
}

async fn an_open_stream_does_not_hang_connectionless_statements(db: Db) {
    let engine = db.engine().await;
    let series = db.series(100_000);
    let echo = db.echo();
    let limit = Duration::from_secs(10);
    // Outside a transaction: a connection of its own.
    {
        let mut conn = engine.acquire().await.unwrap();
        let mut rows = conn.fetch(&series, ());
        rows.next().await.unwrap().unwrap();
        let n = tokio::time::timeout(limit, engine.fetch_scalar::<i64>(&echo, params! {"n" => 1}))
            .await
            .expect("no hang");
        assert_eq!(n.unwrap(), 1);
    }
    // In a scope, outside a transaction: the same.
    engine
        .scope(async {
            let mut conn = engine.acquire().await.unwrap();
            let mut rows = conn.fetch(&series, ());
            rows.next().await.unwrap().unwrap();
            let n = tokio::time::timeout(limit, engine.fetch_scalar::<i64>(&echo, params! {"n" => 2}))
                .await
                .expect("no hang");
            assert_eq!(n.unwrap(), 2);
            let done = tokio::time::timeout(limit, engine.execute(&echo, params! {"n" => 2})).await;
            assert_eq!(done.expect("no hang").unwrap(), 1);
        })
        .await;
    // In a scope's transaction: refused at once.
    engine
        .scope(async {
            let mut tx = engine.begin().await.unwrap();
            let mut rows = tx.fetch(&series, ());
            rows.next().await.unwrap().unwrap();
            let refused = tokio::time::timeout(limit, engine.fetch_one(&echo, params! {"n" => 3}))
                .await
                .expect("no hang")
                .unwrap_err();
            assert_eq!(refused.kind(), &ErrorKind::Usage, "{refused:?}");
            let refused = tokio::time::timeout(limit, engine.execute(&echo, params! {"n" => 3}))
                .await
                .expect("no hang")
                .unwrap_err();
            assert_eq!(refused.kind(), &ErrorKind::Usage, "{refused:?}");
            drop(rows);
            // Served once the stream is dropped. PostgreSQL may have
            // failed the transaction: the dropped stream was cancelled.
            match engine.fetch_scalar::<i64>(&echo, params! {"n" => 4}).await {
                Ok(n) => assert_eq!(n, 4),
                Err(e) => assert_eq!(
                    (db.dialect, e.code()),
                    (Dialect::Postgres, Some("25P02")),
                    "{e:?}"
                ),
            }
        })
        .await;
    all_back(&engine).await;
}

/// The ids in table `t`, in order.
async fn ids_in(engine: &Engine, t: &str) -> Vec<i64> {
    let rows = engine
        .fetch_all(&format!("SELECT id FROM {t} ORDER BY id"), ())
        .await;
    ids(&rows.unwrap())
}

/// Waits (a little) until every connection is back in the pool: a
/// connection given back mid-work is reset on a task of its own.
async fn all_back(engine: &Engine) {
    let started = Instant::now();
    while engine.status().in_use > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            engine.status()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `job(id, commit)`: `engine.begin()`, a connectionless insert, commit or
/// roll back, in a scope of its own.
async fn job(engine: &Engine, t: &str, id: i64, commit: bool) -> reservoir::Result<()> {
    engine
        .scope(async {
            let tx = engine.begin().await?;
            engine
                .execute(
                    &format!("INSERT INTO {t} (id) VALUES (:id)"),
                    params! {"id" => id},
                )
                .await?;
            tokio::task::yield_now().await;
            engine
                .execute(
                    &format!("INSERT INTO {t} (id) VALUES (:id)"),
                    params! {"id" => id + 100},
                )
                .await?;
            if commit {
                tx.commit().await
            } else {
                tx.rollback().await
            }
        })
        .await
}

async fn scoped_jobs_joined_in_one_task_keep_their_transactions_apart(db: Db) {
    let engine = db.engine().await;
    let t = fresh_table(&db, &engine, "truth_join", "id INTEGER PRIMARY KEY").await;
    let (a, b) = tokio::join!(job(&engine, &t, 1, true), job(&engine, &t, 2, false));
    a.unwrap();
    b.unwrap();
    // Eight at once, through FuturesUnordered.
    let jobs: futures_util::stream::FuturesUnordered<_> =
        (10..18).map(|id| job(&engine, &t, id, id % 2 == 0)).collect();
    let results: Vec<_> = futures_util::StreamExt::collect(jobs).await;
    for r in results {
        r.unwrap();
    }
    let kept = ids_in(&engine, &t).await;
    assert_eq!(kept, [1, 10, 12, 14, 16, 101, 110, 112, 114, 116]);
    all_back(&engine).await;
}

async fn connectionless_statements_outside_a_scope_join_nothing(db: Db) {
    // SQLite: a file in WAL mode, where a reader is not blocked by the
    // writer's open transaction (the shared memory database's would be).
    let dir = tempfile::tempdir().unwrap();
    let engine = match db.dialect {
        Dialect::Sqlite => {
            let path = dir.path().join("noscope.db");
            Engine::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap()
        }
        _ => db.engine().await,
    };
    let t = fresh_table(&db, &engine, "truth_noscope", "id INTEGER PRIMARY KEY").await;
    let count = format!("SELECT count(*) FROM {t}");
    let mut tx = engine.begin().await.unwrap();
    assert_eq!(tx.depth(), 1);
    tx.execute(&format!("INSERT INTO {t} (id) VALUES (1)"), ())
        .await
        .unwrap();
    let seen: i64 = engine.fetch_scalar(&count, ()).await.unwrap();
    assert_eq!(seen, 0, "outside a scope, a read on a connection of its own");
    // (Read-only: SQLite's writers would queue behind the first one.)
    let nested = engine.begin_with(TxOptions::new().read_only(true)).await.unwrap();
    assert_eq!(nested.depth(), 1, "outside a scope, a new transaction of its own");
    nested.rollback().await.unwrap();
    tx.rollback().await.unwrap();
    let seen: i64 = engine.fetch_scalar(&count, ()).await.unwrap();
    assert_eq!(seen, 0);
}

async fn begin_after_a_raw_begin_is_refused_and_leaves_it_alone(db: Db) {
    let engine = db.engine().await;
    let t = fresh_table(&db, &engine, "truth_raw_begin", "id INTEGER PRIMARY KEY").await;
    let mut conn = engine.acquire().await.unwrap();
    conn.execute(raw_begin(&db), ()).await.unwrap();
    conn.execute(&format!("INSERT INTO {t} (id) VALUES (1)"), ())
        .await
        .unwrap();
    let refused = conn.begin().await.unwrap_err();
    assert_eq!(refused.kind(), &ErrorKind::Usage, "{refused:?}");
    assert_eq!(conn.transaction_depth(), 0);
    conn.execute("ROLLBACK", ()).await.unwrap();
    let kept = ids(&conn.fetch_all(&format!("SELECT id FROM {t}"), ()).await.unwrap());
    assert!(
        kept.is_empty(),
        "the raw transaction was left as it was, then rolled back: {kept:?}"
    );
    // With the raw transaction ended, begin() works again.
    let tx = conn.begin().await.unwrap();
    tx.commit().await.unwrap();
    // A nested level asking for the level the outer one has is accepted.
    let serializable = TxOptions::new().isolation(reservoir::Isolation::Serializable);
    let mut tx = conn.begin_with(serializable).await.unwrap();
    let sp = tx.begin_with(serializable).await.unwrap();
    sp.commit().await.unwrap();
    tx.commit().await.unwrap();
    // Outer at the database's default: a nested level asking for the level
    // the server actually runs is accepted, another one is refused.
    use reservoir::Isolation::{ReadCommitted, RepeatableRead, Serializable};
    let (actual, other) = match db.dialect {
        Dialect::Postgres => (ReadCommitted, Serializable),
        Dialect::Mysql => (RepeatableRead, Serializable),
        _ => (Serializable, ReadCommitted),
    };
    let mut tx = conn.begin().await.unwrap();
    let sp = tx.begin_with(TxOptions::new().isolation(actual)).await.unwrap();
    assert_eq!(sp.depth(), 2);
    drop(sp);
    let refused = tx
        .begin_with(TxOptions::new().isolation(other))
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), &ErrorKind::Usage, "{refused:?}");
    tx.commit().await.unwrap();
}

async fn execute_of_a_select_counts_its_rows(db: Db) {
    let engine = db.engine().await;
    let mut conn = engine.acquire().await.unwrap();
    assert_eq!(conn.execute(&db.series(5), ()).await.unwrap(), 5);
    assert_eq!(engine.execute(&db.series(3), ()).await.unwrap(), 3);
}

async fn a_cursor_needs_a_transaction(db: Db) {
    let engine = db.engine().await;
    let mut conn = engine.acquire().await.unwrap();
    let refused = conn.cursor(&db.series(3), ()).await.unwrap_err();
    assert_eq!(refused.kind(), &ErrorKind::Usage, "{refused:?}");
    let n: i64 = conn.fetch_scalar(&db.echo(), params! {"n" => 1}).await.unwrap();
    assert_eq!(n, 1);
}

async fn read_only_transactions_refuse_writes(db: Db) {
    let engine = db.engine().await;
    let t = fresh_table(&db, &engine, "truth_read_only", "id INTEGER PRIMARY KEY").await;
    let insert = format!("INSERT INTO {t} (id) VALUES (:id)");
    let mut conn = engine.acquire().await.unwrap();
    let mut tx = conn.begin_with(TxOptions::new().read_only(true)).await.unwrap();
    let refused = tx.execute(&insert, params! {"id" => 1}).await.unwrap_err();
    assert!(
        matches!(refused.kind(), ErrorKind::Database { .. }),
        "{refused:?}"
    );
    drop(tx);
    // Writes work again once it has ended.
    conn.execute(&insert, params! {"id" => 2}).await.unwrap();
    let tx = conn.begin().await.unwrap();
    tx.commit().await.unwrap();
    conn.execute(&insert, params! {"id" => 3}).await.unwrap();
    let kept = ids(&conn
        .fetch_all(&format!("SELECT id FROM {t} ORDER BY id"), ())
        .await
        .unwrap());
    assert_eq!(kept, [2, 3]);
}

/// A setting and a temp table made by one borrower are gone for the next
/// (`reset_on_return` auto); with `rollback` the setting stays, as it does
/// in SQLAlchemy and sqlx. SQLite has no server session to leak; behind
/// PgBouncer in transaction mode session state is the pooler's to share.
async fn session_state_does_not_leak_to_the_next_borrower(db: Db) {
    if db.dialect == Dialect::Sqlite || db.route == common::Route::PgBouncer {
        return;
    }
    // (what changes session state, a query that is true while it lasts)
    let states: &[(&str, &str)] = match db.dialect {
        Dialect::Postgres => &[
            (
                "SET application_name = 'rsv_leak'",
                "SELECT current_setting('application_name') = 'rsv_leak'",
            ),
            (
                "LISTEN rsv_leak",
                "SELECT count(*) = 1 FROM pg_listening_channels() AS c WHERE c = 'rsv_leak'",
            ),
            (
                "PREPARE rsv_leak_p AS SELECT 1",
                "SELECT count(*) = 1 FROM pg_prepared_statements WHERE name = 'rsv_leak_p'",
            ),
        ],
        _ => &[("SET @rsv_leak = 1", "SELECT COALESCE(@rsv_leak, 0) = 1")],
    };
    for (mode, leaks) in [("auto", false), ("discard", false), ("rollback", true)] {
        let engine = Engine::builder(db.url_with(&format!("reset_on_return={mode}")))
            .pool_size(1)
            .max_overflow(0)
            .build()
            .await
            .unwrap();
        let mut conn = engine.acquire().await.unwrap();
        let id = conn.id();
        for (change, _) in states {
            conn.execute(change, ()).await.unwrap();
        }
        conn.execute("CREATE TEMPORARY TABLE rsv_leak_tmp (x INTEGER)", ())
            .await
            .unwrap();
        for (_, present) in states {
            assert!(conn.fetch_scalar::<bool>(present, ()).await.unwrap(), "{present}");
        }
        drop(conn);
        all_back(&engine).await;
        let mut conn = engine.acquire().await.unwrap();
        assert_eq!(conn.id(), id, "the same raw connection, reset");
        for (change, present) in states {
            let seen = conn.fetch_scalar::<bool>(present, ()).await.unwrap();
            let what = if leaks { "stays" } else { "is gone" };
            assert_eq!(seen, leaks, "{mode}: `{change}` {what}");
        }
        let temp = conn.fetch_all("SELECT x FROM rsv_leak_tmp", ()).await;
        assert_eq!(temp.is_ok(), leaks, "{mode}: the temp table: {temp:?}");
        // A statement cached before the reset still runs after it.
        let n: i64 = conn.fetch_scalar(&db.echo(), params! {"n" => 9}).await.unwrap();
        assert_eq!(n, 9);
        drop(conn);
        engine.close().await;
    }
}

/// The server session behind a connection, and how to end it from outside.
fn session_id_and_kill(db: &Db) -> (&'static str, &'static str) {
    match db.dialect {
        Dialect::Postgres => (
            "SELECT CAST(pg_backend_pid() AS BIGINT)",
            "SELECT pg_terminate_backend(CAST(:id AS INTEGER))",
        ),
        _ => ("SELECT CAST(CONNECTION_ID() AS SIGNED)", "KILL :id"),
    }
}

/// Three idle connections whose server sessions were all killed: the
/// first statement to meet one fails as a disconnect, and the pool (no
/// pre-ping) then checks the other two before handing them out, so no
/// later statement fails.
async fn after_a_disconnect_older_idle_connections_are_checked(db: Db) {
    if db.dialect == Dialect::Sqlite || db.route == common::Route::PgBouncer {
        return; // no server sessions of our own to kill
    }
    let engine = db.builder().pool_size(3).max_overflow(0).build().await.unwrap();
    let (whoami, kill) = session_id_and_kill(&db);
    let mut held = Vec::new();
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let mut conn = engine.acquire().await.unwrap();
        sessions.push(conn.fetch_scalar::<i64>(whoami, ()).await.unwrap());
        held.push(conn);
    }
    drop(held);
    all_back(&engine).await;
    let admin = db.engine().await;
    for id in &sessions {
        admin.execute(kill, params! {"id" => *id}).await.unwrap();
    }
    admin.close().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut failures = 0;
    for round in 0..6i64 {
        match engine
            .fetch_scalar::<i64>(&db.echo(), params! {"n" => round})
            .await
        {
            Ok(n) => assert_eq!(n, round),
            Err(e) => {
                assert!(e.is_disconnect(), "{e:?}");
                failures += 1;
            }
        }
    }
    assert!(failures <= 1, "{failures} statements met a killed session");
}

/// Two transactions deadlock (joined in one task, each on its own
/// connection): the server rolls the victim back, and its `commit()` says
/// so instead of `Ok`; the winner's commit keeps its work. SQLite's
/// writers queue instead of deadlocking.
async fn a_deadlock_victims_commit_reports_the_rollback(db: Db) {
    if db.dialect == Dialect::Sqlite {
        return;
    }
    let engine = db.engine().await;
    let t = fresh_table(
        &db,
        &engine,
        "truth_deadlock",
        "id INTEGER PRIMARY KEY, v INTEGER",
    )
    .await;
    engine
        .execute(&format!("INSERT INTO {t} (id, v) VALUES (1, 0), (2, 0)"), ())
        .await
        .unwrap();
    let set = |id: i64, v: i64| format!("UPDATE {t} SET v = {v} WHERE id = {id}");
    let (mut a, mut b) = (engine.acquire().await.unwrap(), engine.acquire().await.unwrap());
    let mut tx_a = a.begin().await.unwrap();
    let mut tx_b = b.begin().await.unwrap();
    tx_a.execute(&set(1, 10), ()).await.unwrap();
    tx_b.execute(&set(2, 20), ()).await.unwrap();
    let (a_second, b_second) = (set(2, 10), set(1, 20));
    let crossed = tokio::time::timeout(Duration::from_secs(20), async {
        tokio::join!(tx_a.execute(&a_second, ()), tx_b.execute(&b_second, ()))
    })
    .await
    .expect("the server detects the deadlock");
    let (victim_a, victim_b) = (crossed.0.is_err(), crossed.1.is_err());
    assert!(victim_a != victim_b, "exactly one victim: {crossed:?}");
    let error = crossed.0.err().or(crossed.1.err()).unwrap();
    assert_eq!(error.code(), Some("40P01"), "{error:?}");
    let (winner, victim, kept) = if victim_a {
        (tx_b, tx_a, 20)
    } else {
        (tx_a, tx_b, 10)
    };
    let refused = victim.commit().await.unwrap_err();
    assert_eq!(refused.kind(), &ErrorKind::RolledBack, "{refused:?}");
    winner.commit().await.unwrap();
    drop((a, b));
    let rows = engine
        .fetch_all(&format!("SELECT v FROM {t} ORDER BY id"), ())
        .await
        .unwrap();
    assert_eq!(ids(&rows), [kept, kept], "only the winner's work was kept");
}
