//! Engine behaviour on a real database, every test run per dialect.

mod common;

use std::time::Duration;

use common::{Db, rss_bytes};
use reservoir::{CloseOptions, Engine, ErrorKind, Isolation, Row, TxOptions, Value, params};
use serde::Deserialize;

/// A fresh employee table named after the test.
async fn employee_table(db: &Db, engine: &Engine, test: &str) -> String {
    let columns = "id INTEGER PRIMARY KEY, department_id INTEGER NOT NULL, name TEXT";
    common::fresh_table(db, engine, test, columns).await
}

async fn count(engine: &Engine, table: &str) -> i64 {
    engine
        .fetch_scalar(&format!("SELECT count(*) FROM {table}"), ())
        .await
        .unwrap()
}

per_dialect!(
    every_fetch_method,
    execute_many_is_atomic,
    fetch_one_without_rows_is_an_error,
    values_round_trip,
    bad_parameters_are_rejected_before_anything_is_sent,
    database_errors_are_classified,
    commit_rollback_and_drop,
    savepoints_three_deep,
    nested_isolation_change_is_an_error,
    a_connection_returned_inside_a_transaction_is_rolled_back,
    a_dropped_query_future_leaves_the_connection_clean,
    streaming_a_million_rows_keeps_memory_flat,
    a_stream_dropped_early_frees_the_connection,
    a_connection_moves_from_task_to_task,
    cursors_forward_and_fetch,
    a_cursor_streams_the_rest_in_batches,
    close_with_interrupt_cancels_a_running_statement,
    close_waits_for_checked_out_connections,
    flood_is_served_up_to_capacity_plus_backlog,
    waiters_time_out_at_pool_timeout_and_the_pool_recovers,
    url_settings_and_builder_overrides,
    statement_timeout_cancels_and_keeps_the_connection,
    copy_in_loads_positional_and_named_rows,
    arrays_round_trip,
);

async fn arrays_round_trip(db: Db) {
    use reservoir::value::Array;
    let engine = db.engine().await;
    let sql = format!(
        "SELECT {} AS ints, {} AS texts, {} AS empty",
        db.typed("ints", "INTEGER[]"),
        db.typed("texts", "TEXT[]"),
        db.typed("empty", "BIGINT[]")
    );
    let row = engine
        .fetch_one(
            &sql,
            params! {
                "ints" => Array(vec![Some(1i32), None, Some(3)]),
                "texts" => Array(vec!["a", "b'c"]),
                "empty" => Array(Vec::<i64>::new()),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<Array<Option<i32>>>("ints").unwrap(),
        Array(vec![Some(1), None, Some(3)])
    );
    assert_eq!(
        row.get::<Array<String>>("texts").unwrap(),
        Array(vec!["a".to_string(), "b'c".to_string()])
    );
    assert_eq!(row.get::<Array<i64>>("empty").unwrap(), Array(vec![]));
    assert_eq!(
        row.get::<Array<i32>>("texts").unwrap_err().kind(),
        &ErrorKind::Decode
    );
}

async fn copy_in_loads_positional_and_named_rows(db: Db) {
    #[derive(serde::Serialize)]
    struct Emp {
        name: Option<String>,
        id: i64,
        department_id: i32,
    }
    let engine = db.engine().await;
    let t = employee_table(&db, &engine, "copy_in").await;
    let mut conn = engine.acquire().await.unwrap();
    let n = conn
        .copy_in(
            &t,
            &["id", "department_id", "name"],
            (1..=1000).map(|i: i64| (i, 7, format!("e{i}"))),
        )
        .await
        .unwrap();
    assert_eq!(n, 1000);
    let named = (1001..=1010).map(|id| {
        reservoir::Params::from_serde(&Emp {
            name: None,
            id,
            department_id: 8,
        })
        .unwrap()
    });
    assert_eq!(
        conn.copy_in(&t, &["id", "department_id", "name"], named)
            .await
            .unwrap(),
        10
    );
    let sum: i64 = conn
        .fetch_scalar(&format!("SELECT sum(department_id) FROM {t}"), ())
        .await
        .unwrap();
    assert_eq!(sum, 7 * 1000 + 8 * 10);
    let nulls: i64 = conn
        .fetch_scalar(&format!("SELECT count(*) FROM {t} WHERE name IS NULL"), ())
        .await
        .unwrap();
    assert_eq!(nulls, 10);
    let err = conn
        .copy_in(&t, &["id", "department_id"], [(1,)])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Param, "{err:?}");
    let err = conn.copy_in(&t, &["id", ""], [(1, 2)]).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Param, "{err:?}");
    drop(conn);
    assert_eq!(
        count(&engine, &t).await,
        1010,
        "nothing of the failed loads was kept"
    );
}

async fn statement_timeout_cancels_and_keeps_the_connection(db: Db) {
    let engine = db
        .builder()
        .pool_size(1)
        .max_overflow(0)
        .statement_timeout(Duration::from_millis(200))
        .build()
        .await;
    if db.route == common::Route::PgBouncer {
        // The timeout is a session setting sent at startup, which a pooler
        // sharing sessions refuses: loudly, naming it.
        let err = engine.unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Connect, "{err}");
        assert!(err.to_string().contains("options"), "{err}");
        return;
    }
    let engine = engine.unwrap();
    let mut conn = engine.acquire().await.unwrap();
    let id = conn.id();
    let started = std::time::Instant::now();
    let err = conn.fetch_one(db.endless_query(), ()).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Timeout, "{err:?}");
    assert!(err.is_timeout());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let n: i64 = conn.fetch_scalar("SELECT 5", ()).await.unwrap();
    assert_eq!(n, 5, "the connection stays usable");
    drop(conn);
    assert_eq!(engine.acquire().await.unwrap().id(), id);
}

async fn every_fetch_method(db: Db) {
    let engine = db.engine().await;
    let t = employee_table(&db, &engine, "every_fetch_method").await;
    let n = engine
        .execute(
            &format!("INSERT INTO {t} (id, department_id, name) VALUES (:id, :d, :n)"),
            params! {"id" => 1, "d" => 10, "n" => "ann"},
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    engine
        .execute_many(
            &format!("INSERT INTO {t} (id, department_id, name) VALUES (:id, :d, :n)"),
            (2..=5).map(|i| params! {"id" => i, "d" => 20, "n" => format!("e{i}")}),
        )
        .await
        .unwrap();
    let mut conn = engine.acquire().await.unwrap();
    let row = conn
        .fetch_one(
            &format!("SELECT id, name FROM {t} WHERE id = :id"),
            params! {"id" => 1},
        )
        .await
        .unwrap();
    assert_eq!(row.get::<i64>("id").unwrap(), 1);
    assert_eq!(row.get::<String>(1).unwrap(), "ann");
    assert_eq!(row.len(), 2);
    assert_eq!(row.columns()[1].name(), "name");
    assert!(
        conn.fetch_optional(&format!("SELECT id FROM {t} WHERE id = 99"), ())
            .await
            .unwrap()
            .is_none()
    );
    let all = conn
        .fetch_all(&format!("SELECT id FROM {t} ORDER BY id"), ())
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|r| r.get::<i64>(0).unwrap()).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    let total: i64 = conn
        .fetch_scalar(&format!("SELECT sum(department_id) FROM {t}"), ())
        .await
        .unwrap();
    assert_eq!(total, 90);

    #[derive(Deserialize, Debug, PartialEq)]
    struct Emp {
        id: i64,
        department_id: i32,
        name: Option<String>,
    }
    let emps: Vec<Emp> = engine
        .fetch_all_as(
            &format!("SELECT id, department_id, name FROM {t} WHERE id <= 2 ORDER BY id"),
            (),
        )
        .await
        .unwrap();
    assert_eq!(
        emps[1],
        Emp {
            id: 2,
            department_id: 20,
            name: Some("e2".into())
        }
    );
    let err = row.get::<Vec<u8>>("name").unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Decode);
    assert!(
        err.to_string().contains("'name'") && err.to_string().contains("TEXT"),
        "{err}"
    );
    assert!(row.get::<i64>("nope").is_err());
    assert_eq!(row.try_get::<i64>("nope"), None);
}

async fn execute_many_is_atomic(db: Db) {
    let engine = db.engine().await;
    let t = employee_table(&db, &engine, "execute_many_is_atomic").await;
    let rows = [(1, 1), (2, 1), (1, 1)]; // the third repeats a primary key
    let err = engine
        .execute_many(
            &format!("INSERT INTO {t} (id, department_id) VALUES (:id, :d)"),
            rows.iter().map(|(id, d)| params! {"id" => *id, "d" => *d}),
        )
        .await
        .unwrap_err();
    assert!(err.is_unique_violation(), "{err}");
    assert_eq!(count(&engine, &t).await, 0, "nothing of a failed batch is kept");
    let none: Vec<reservoir::Params> = Vec::new();
    assert_eq!(
        engine
            .execute_many(
                &format!("INSERT INTO {t} (id, department_id) VALUES (:id, :d)"),
                none
            )
            .await
            .unwrap(),
        0
    );
}

async fn fetch_one_without_rows_is_an_error(db: Db) {
    let engine = db.engine().await;
    let t = employee_table(&db, &engine, "fetch_one_without_rows_is_an_error").await;
    let err = engine
        .fetch_one(&format!("SELECT * FROM {t}"), ())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::NoRows);
    let err = engine
        .fetch_scalar::<i64>(&format!("SELECT id FROM {t}"), ())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::NoRows);
}

async fn values_round_trip(db: Db) {
    use chrono::{NaiveDate, TimeZone, Utc};
    use rust_decimal::Decimal;
    let engine = db.engine().await;
    let uuid = uuid::Uuid::from_u128(0x1234_5678_9abc_def0_0fed_cba9_8765_4321);
    let date = NaiveDate::from_ymd_opt(2024, 2, 29).unwrap();
    let time = chrono::NaiveTime::from_hms_micro_opt(23, 59, 58, 250_000).unwrap();
    let ts = date.and_time(time);
    let tstz = Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap();
    let dec: Decimal = "12345.6789".parse().unwrap();
    let json = serde_json::json!({"a": [1, 2, {"b": null}]});
    let row = engine
        .fetch_one(
            &format!(
                "SELECT {} AS b, {} AS i, {} AS big, {} AS f, {} AS t, {} AS bytes, {} AS num, {} AS date, \
                 {} AS time, {} AS ts, {} AS tstz, {} AS uuid, {} AS json, {} AS null_col",
                db.typed("b", "BOOLEAN"),
                db.typed("i", "INTEGER"),
                db.typed("big", "BIGINT"),
                db.typed("f", "DOUBLE PRECISION"),
                db.typed("t", "TEXT"),
                db.typed("bytes", "BYTEA"),
                db.typed("dec", "NUMERIC"),
                db.typed("date", "DATE"),
                db.typed("time", "TIME"),
                db.typed("ts", "TIMESTAMP"),
                db.typed("tstz", "TIMESTAMPTZ"),
                db.typed("uuid", "UUID"),
                db.typed("json", "JSONB"),
                db.typed("null", "BIGINT"),
            ),
            params! {
                "b" => true, "i" => -7i32, "big" => i64::MAX, "f" => 1.5f64, "t" => "ünïcödé 'q'",
                "bytes" => vec![0u8, 255, 7], "dec" => dec, "date" => date, "time" => time, "ts" => ts,
                "tstz" => tstz, "uuid" => uuid, "json" => json.clone(), "null" => Option::<i64>::None
            },
        )
        .await
        .unwrap();
    assert!(row.get::<bool>("b").unwrap());
    assert_eq!(row.get::<i32>("i").unwrap(), -7);
    assert_eq!(row.get::<i64>("big").unwrap(), i64::MAX);
    assert_eq!(row.get::<f64>("f").unwrap(), 1.5);
    assert_eq!(row.get::<String>("t").unwrap(), "ünïcödé 'q'");
    assert_eq!(row.get::<Vec<u8>>("bytes").unwrap(), vec![0u8, 255, 7]);
    assert_eq!(row.get::<Decimal>("num").unwrap(), dec);
    assert_eq!(row.get::<NaiveDate>("date").unwrap(), date);
    assert_eq!(row.get::<chrono::NaiveTime>("time").unwrap(), time);
    assert_eq!(row.get::<chrono::NaiveDateTime>("ts").unwrap(), ts);
    assert_eq!(row.get::<chrono::DateTime<Utc>>("tstz").unwrap(), tstz);
    assert_eq!(row.get::<uuid::Uuid>("uuid").unwrap(), uuid);
    assert_eq!(row.get::<serde_json::Value>("json").unwrap(), json);
    assert_eq!(row.get::<Option<i64>>("null_col").unwrap(), None);
    assert!(row.value("null_col").unwrap().is_null());
    let err = row.get::<i64>("null_col").unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Decode);
}

async fn bad_parameters_are_rejected_before_anything_is_sent(db: Db) {
    let engine = db.engine().await;
    let t = employee_table(
        &db,
        &engine,
        "bad_parameters_are_rejected_before_anything_is_sent",
    )
    .await;
    let insert = format!("INSERT INTO {t} (id, department_id) VALUES (:id, :dept)");
    let err = engine.execute(&insert, params! {"id" => 1}).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Param);
    assert!(err.to_string().contains(":dept"), "{err}");
    let err = engine
        .execute(&insert, params! {"id" => 1, "dept" => 2, "typo" => 3})
        .await
        .unwrap_err();
    assert!(err.to_string().contains(":typo"), "{err}");
    let one_placeholder = format!("SELECT * FROM {t} WHERE id = {}", db.placeholder(1));
    let err = engine.execute(&one_placeholder, Vec::<Value>::new()).await;
    assert_eq!(err.unwrap_err().kind(), &ErrorKind::Param);
    assert_eq!(count(&engine, &t).await, 0);
    let err = reservoir::Params::from_serde(&[1, 2]).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Param);
}

async fn database_errors_are_classified(db: Db) {
    let engine = db.engine().await;
    let t = employee_table(&db, &engine, "database_errors_are_classified").await;
    let insert = format!("INSERT INTO {t} (id, department_id) VALUES (:id, 1)");
    engine.execute(&insert, params! {"id" => 1}).await.unwrap();
    let err = engine.execute(&insert, params! {"id" => 1}).await.unwrap_err();
    assert!(err.is_unique_violation(), "{err:?}");
    let err = engine
        .execute(&format!("INSERT INTO {t} (id) VALUES (2)"), ())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("23502"), "not null: {err:?}");
    let err = engine.execute("SELEC nonsense", ()).await.unwrap_err();
    assert_eq!(err.code(), Some("42601"), "syntax: {err:?}");
    let err = engine
        .fetch_all("SELECT * FROM no_such_table_here", ())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("42P01"), "{err:?}");
    // The connection that saw the errors is still fine.
    assert_eq!(count(&engine, &t).await, 1);
}

async fn commit_rollback_and_drop(db: Db) {
    let engine = db.engine().await;
    let t = employee_table(&db, &engine, "commit_rollback_and_drop").await;
    let insert = format!("INSERT INTO {t} (id, department_id) VALUES (:id, 1)");
    let mut conn = engine.acquire().await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    tx.execute(&insert, params! {"id" => 1}).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    tx.execute(&insert, params! {"id" => 2}).await.unwrap();
    tx.rollback().await.unwrap();
    {
        let mut tx = conn.begin().await.unwrap();
        tx.execute(&insert, params! {"id" => 3}).await.unwrap();
        // dropped without commit
    }
    let ids = common::ids(&conn.fetch_all(&format!("SELECT id FROM {t}"), ()).await.unwrap());
    assert_eq!(ids, [1]);
    drop(conn);
    // engine.begin() owns its connection.
    let mut tx = engine.begin().await.unwrap();
    tx.execute(&insert, params! {"id" => 4}).await.unwrap();
    tx.commit().await.unwrap();
    let tx = engine.begin_with(TxOptions::new().read_only(true)).await.unwrap();
    drop(tx);
    assert_eq!(count(&engine, &t).await, 2);
}

async fn savepoints_three_deep(db: Db) {
    let engine = db.engine().await;
    let t = employee_table(&db, &engine, "savepoints_three_deep").await;
    let insert = format!("INSERT INTO {t} (id, department_id) VALUES (:id, 1)");
    let mut conn = engine.acquire().await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    tx.execute(&insert, params! {"id" => 1}).await.unwrap();
    {
        let mut sp1 = tx.begin().await.unwrap();
        assert_eq!(sp1.depth(), 2);
        sp1.execute(&insert, params! {"id" => 2}).await.unwrap();
        {
            let mut sp2 = sp1.begin().await.unwrap();
            sp2.execute(&insert, params! {"id" => 3}).await.unwrap();
            {
                let mut sp3 = sp2.begin().await.unwrap();
                assert_eq!(sp3.depth(), 4);
                sp3.execute(&insert, params! {"id" => 4}).await.unwrap();
                sp3.commit().await.unwrap();
            }
            sp2.rollback().await.unwrap(); // undoes 3 and 4
        }
        {
            let mut sp2 = sp1.begin().await.unwrap();
            sp2.execute(&insert, params! {"id" => 5}).await.unwrap();
            // dropped: rolls back to itself
        }
        sp1.execute(&insert, params! {"id" => 6}).await.unwrap();
        sp1.commit().await.unwrap();
    }
    tx.commit().await.unwrap();
    let ids = common::ids(
        &conn
            .fetch_all(&format!("SELECT id FROM {t} ORDER BY id"), ())
            .await
            .unwrap(),
    );
    assert_eq!(ids, [1, 2, 6]);
}

async fn nested_isolation_change_is_an_error(db: Db) {
    let engine = db.engine().await;
    let mut conn = engine.acquire().await.unwrap();
    let mut tx = conn
        .begin_with(TxOptions::new().isolation(Isolation::Serializable))
        .await
        .unwrap();
    let same = tx
        .begin_with(TxOptions::new().isolation(Isolation::Serializable))
        .await;
    assert!(same.is_ok());
    drop(same);
    let err = tx
        .begin_with(TxOptions::new().isolation(Isolation::ReadCommitted))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Usage);
    assert!(err.to_string().contains("READ COMMITTED"), "{err}");
    tx.commit().await.unwrap();
}

async fn a_connection_returned_inside_a_transaction_is_rolled_back(db: Db) {
    let engine = db.builder().pool_size(1).max_overflow(0).build().await.unwrap();
    let t = employee_table(
        &db,
        &engine,
        "a_connection_returned_inside_a_transaction_is_rolled_back",
    )
    .await;
    let mut conn = engine.acquire().await.unwrap();
    let begin = match db.dialect {
        reservoir::Dialect::Sqlite => "BEGIN IMMEDIATE",
        _ => "BEGIN",
    };
    conn.execute(begin, ()).await.unwrap();
    conn.execute(&format!("INSERT INTO {t} (id, department_id) VALUES (1, 1)"), ())
        .await
        .unwrap();
    let id = conn.id();
    drop(conn); // raw BEGIN: the pool must roll it back
    let mut conn = engine.acquire().await.unwrap();
    assert_eq!(conn.id(), id, "same raw connection, reset");
    conn.execute(begin, ())
        .await
        .expect("not inside a transaction any more");
    conn.execute("ROLLBACK", ()).await.unwrap();
    drop(conn);
    assert_eq!(count(&engine, &t).await, 0);
}

async fn a_dropped_query_future_leaves_the_connection_clean(db: Db) {
    let engine = db.builder().pool_size(1).max_overflow(0).build().await.unwrap();
    let t = employee_table(&db, &engine, "a_dropped_query_future_leaves_the_connection_clean").await;
    {
        let mut conn = engine.acquire().await.unwrap();
        let mut tx = conn.begin().await.unwrap();
        tx.execute(&format!("INSERT INTO {t} (id, department_id) VALUES (1, 1)"), ())
            .await
            .unwrap();
        // Drop a slow statement mid-flight, then the transaction, then the connection.
        let sql = db.series(300_000);
        let slow = tx.fetch_all(&sql, ());
        let _ = tokio::time::timeout(Duration::from_millis(1), slow).await;
    }
    let mut conn = engine.acquire().await.unwrap();
    let n: i64 = conn
        .fetch_scalar(&format!("SELECT count(*) FROM {t}"), ())
        .await
        .unwrap();
    assert_eq!(n, 0, "the dropped transaction was rolled back");
    let n: i64 = conn.fetch_scalar("SELECT 41 + 1", ()).await.unwrap();
    assert_eq!(n, 42);
}

async fn streaming_a_million_rows_keeps_memory_flat(db: Db) {
    let engine = db.engine().await;
    let mut conn = engine.acquire().await.unwrap();
    let sql = db.series(1_000_000);
    let mut stream = conn.fetch(&sql, ());
    let before = rss_bytes();
    let mut peak = before;
    let (mut n, mut sum) = (0u64, 0i64);
    while let Some(row) = stream.next().await {
        let x: i64 = row.unwrap().get(0).unwrap();
        n += 1;
        sum += x;
        if n % 50_000 == 0 {
            peak = peak.max(rss_bytes());
        }
    }
    assert_eq!(n, 1_000_000);
    assert_eq!(sum, 500_000_500_000);
    let grew = peak.saturating_sub(before);
    assert!(
        grew < 32 << 20,
        "memory grew by {} MiB while streaming",
        grew >> 20
    );
}

async fn a_stream_dropped_early_frees_the_connection(db: Db) {
    let engine = db.builder().pool_size(1).max_overflow(0).build().await.unwrap();
    let mut conn = engine.acquire().await.unwrap();
    {
        let mut stream = conn.fetch(&db.series(1_000_000), ());
        let first = stream.next().await.unwrap().unwrap();
        // A clone outlives the row it came from, decoded or not.
        let copy = first.clone();
        assert_eq!(copy, first);
        drop(first);
        assert_eq!(copy.get::<i64>(0).unwrap(), 1);
    }
    let n: i64 = conn.fetch_scalar("SELECT 7", ()).await.unwrap();
    assert_eq!(n, 7);
    let mut bad = conn.fetch("SELECT * FROM no_such_table_at_all", ());
    assert!(bad.next().await.unwrap().is_err());
    assert!(bad.next().await.is_none());
}

/// A connection handed on from task to task (the runtime has two worker
/// threads) answers in each, also after the task before it dropped a
/// stream half read: the task running a statement is the one its I/O
/// wakes.
async fn a_connection_moves_from_task_to_task(db: Db) {
    let engine = db.builder().pool_size(1).max_overflow(0).build().await.unwrap();
    let mut conn = engine.acquire().await.unwrap();
    for i in 1..=40u64 {
        let sql = db.series(i);
        conn = tokio::spawn(async move {
            let rows = conn.fetch_all(&sql, ()).await.unwrap();
            assert_eq!(rows.len() as u64, i);
            let mut stream = conn.fetch(&sql, ());
            assert_eq!(stream.next().await.unwrap().unwrap().get::<i64>(0).unwrap(), 1);
            drop(stream);
            conn
        })
        .await
        .unwrap();
    }
    let n: i64 = conn.fetch_scalar("SELECT 41", ()).await.unwrap();
    assert_eq!(n, 41);
    drop(conn);
    assert_eq!(engine.stats().created, 1, "one connection served every task");
}

async fn cursors_forward_and_fetch(db: Db) {
    let engine = db.engine().await;
    let mut conn = engine.acquire().await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    {
        let mut cur = tx.cursor(&db.series(1000), ()).await.unwrap();
        assert_eq!(cur.forward(500).await.unwrap(), 500);
        let batch: Vec<Row> = cur.fetch(100).await.unwrap();
        assert_eq!(batch.len(), 100);
        assert_eq!(batch[0].get::<i64>(0).unwrap(), 501);
        assert!(cur.fetch(0).await.unwrap().is_empty());
        assert_eq!(
            cur.fetch_one().await.unwrap().unwrap().get::<i64>(0).unwrap(),
            601
        );
        assert_eq!(cur.forward(1000).await.unwrap(), 399, "forward stops at the end");
        assert!(cur.fetch(10).await.unwrap().is_empty());
        assert!(cur.fetch_one().await.unwrap().is_none());
    }
    tx.commit().await.unwrap();
}

async fn a_cursor_streams_the_rest_in_batches(db: Db) {
    let engine = db.engine().await;
    let mut conn = engine.acquire().await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    {
        // More rows than one read-ahead batch (512), after a skip and a fetch.
        let mut cur = tx.cursor(&db.series(1000), ()).await.unwrap();
        assert_eq!(cur.forward(10).await.unwrap(), 10);
        assert_eq!(cur.fetch(5).await.unwrap()[4].get::<i64>(0).unwrap(), 15);
        let mut rest = cur.into_stream();
        let (mut n, mut first, mut sum) = (0, None, 0i64);
        while let Some(row) = rest.next().await {
            let x: i64 = row.unwrap().get(0).unwrap();
            first.get_or_insert(x);
            n += 1;
            sum += x;
        }
        assert_eq!((n, first), (985, Some(16)));
        assert_eq!(sum, (16..=1000).sum::<i64>());
    }
    tx.commit().await.unwrap();
}

async fn close_with_interrupt_cancels_a_running_statement(db: Db) {
    let engine = db.engine().await;
    let running = {
        let engine = engine.clone();
        let sql = db.endless_query();
        tokio::spawn(async move { engine.fetch_one(sql, ()).await })
    };
    while engine.status().in_use == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    tokio::time::timeout(
        Duration::from_secs(5),
        engine.close_with(CloseOptions {
            force: false,
            interrupt: true,
        }),
    )
    .await
    .expect("close with interrupt returns quickly");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let err = running.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Interrupted, "{err:?}");
    assert_eq!(engine.acquire().await.unwrap_err().kind(), &ErrorKind::PoolClosed);
}

async fn close_waits_for_checked_out_connections(db: Db) {
    let engine = db.engine().await;
    let conn = engine.acquire().await.unwrap();
    let closing = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.close().await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!closing.is_finished());
    // Another task has no connection to reuse: it is refused.
    let other = engine.clone();
    let refused = tokio::spawn(async move { other.execute("SELECT 1", ()).await })
        .await
        .unwrap();
    assert_eq!(refused.unwrap_err().kind(), &ErrorKind::PoolClosed);
    drop(conn);
    tokio::time::timeout(Duration::from_secs(5), closing)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(engine.status().size, 0);
}

/// Waits for a connection end at pool_timeout, each counted from when it
/// began, with the checked-out connection still usable; once it is back,
/// acquires are served again.
async fn waiters_time_out_at_pool_timeout_and_the_pool_recovers(db: Db) {
    let timeout = Duration::from_millis(300);
    let engine = db
        .builder()
        .pool_size(1)
        .max_overflow(0)
        .pool_timeout(timeout)
        .build()
        .await
        .unwrap();
    let mut held = engine.acquire().await.unwrap();
    // Spawned: connectionless statements of this task would reuse `held`.
    let waits = (0..3u64).map(|i| {
        let engine = engine.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100 * i)).await;
            let started = std::time::Instant::now();
            let err = engine.fetch_one("SELECT 1", ()).await.unwrap_err();
            (err, started.elapsed())
        })
    });
    for waited in futures_util::future::join_all(waits).await {
        let (err, waited) = waited.unwrap();
        assert_eq!(err.kind(), &ErrorKind::PoolTimeout, "{err}");
        assert!(err.is_timeout());
        assert!(waited >= timeout, "{waited:?}");
        assert!(waited < Duration::from_secs(3), "{waited:?}");
    }
    assert_eq!(engine.stats().timed_out, 3);
    assert_eq!(held.fetch_scalar::<i64>("SELECT 1", ()).await.unwrap(), 1);
    drop(held);
    assert_eq!(engine.fetch_scalar::<i64>("SELECT 2", ()).await.unwrap(), 2);
    assert_eq!(engine.status().waiting, 0);
}

async fn flood_is_served_up_to_capacity_plus_backlog(db: Db) {
    let engine = db
        .builder()
        .pool_size(5)
        .max_overflow(5)
        .max_waiting(Some(50))
        .pool_timeout(Duration::from_secs(30))
        .build()
        .await
        .unwrap();
    let results = futures_util::future::join_all((0..1000).map(|_| {
        let engine = engine.clone();
        async move {
            let mut conn = engine.acquire().await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
            conn.fetch_one("SELECT 1", ()).await.map(|_| ())
        }
    }))
    .await;
    let served = results.iter().filter(|r| r.is_ok()).count();
    let rejected = results
        .iter()
        .filter(|r| matches!(r, Err(e) if e.kind() == &ErrorKind::PoolOverloaded))
        .count();
    assert_eq!((served, rejected), (60, 940));
    assert_eq!(engine.stats().rejected, 940);
}

async fn url_settings_and_builder_overrides(db: Db) {
    let url = db.url_with("pool_size=3&max_overflow=1&pool_timeout=1.5&pool_use_lifo=true");
    let engine = Engine::builder(url.as_str())
        .max_overflow(2)
        .build()
        .await
        .unwrap();
    let cfg = engine.pool_config();
    assert_eq!(
        (cfg.pool_size, cfg.max_overflow),
        (3, 2),
        "builder overrides the URL"
    );
    assert_eq!(cfg.pool_timeout, Some(Duration::from_millis(1500)));
    assert!(cfg.pool_use_lifo);
    assert_eq!(cfg.max_waiting, Some(25), "5 x capacity by default");
    let err = Engine::connect(&db.url_with("pool_size=many")).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Url);
    assert!(err.to_string().contains("pool_size"), "{err}");
    let err = Engine::builder(db.url())
        .pool_size(0)
        .max_overflow(0)
        .build()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Config);
}

// ---- SQLite specifics ---------------------------------------------------

#[tokio::test]
async fn sqlite_memory_is_one_database_per_engine_and_outlives_idle_connections() {
    let engine = Engine::builder("sqlite::memory:")
        .pool_size(0)
        .max_overflow(3)
        .build()
        .await
        .unwrap();
    engine.execute("CREATE TABLE kept (x INTEGER)", ()).await.unwrap();
    engine.execute("INSERT INTO kept VALUES (1)", ()).await.unwrap();
    assert_eq!(engine.status().size, 0, "pool_size 0 closed every connection");
    let mut a = engine.acquire().await.unwrap();
    let mut b = engine.acquire().await.unwrap();
    assert_ne!(a.id(), b.id());
    assert_eq!(
        a.fetch_scalar::<i64>("SELECT count(*) FROM kept", ())
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        b.fetch_scalar::<i64>("SELECT count(*) FROM kept", ())
            .await
            .unwrap(),
        1
    );
    drop((a, b));
    let other = Engine::connect("sqlite::memory:").await.unwrap();
    assert!(
        other.fetch_all("SELECT * FROM kept", ()).await.is_err(),
        "engines do not share memory databases"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_database_takes_concurrent_writers() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("writers.db").display());
    let engine = Engine::builder(url.as_str()).pool_size(8).build().await.unwrap();
    engine
        .execute("CREATE TABLE w (task INTEGER, i INTEGER)", ())
        .await
        .unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let engine = engine.clone();
            tokio::spawn(async move {
                for i in 0..25 {
                    let mut tx = engine.begin().await?;
                    tx.execute("INSERT INTO w VALUES (?, ?)", (task, i)).await?;
                    let n: i64 = tx
                        .fetch_scalar("SELECT count(*) FROM w WHERE task = ?", (task,))
                        .await?;
                    assert_eq!(n, i + 1);
                    tx.commit().await?;
                }
                Ok::<_, reservoir::Error>(())
            })
        })
        .collect();
    for t in tasks {
        t.await
            .unwrap()
            .expect("no SQLITE_BUSY: writers wait for each other");
    }
    assert_eq!(
        engine
            .fetch_scalar::<i64>("SELECT count(*) FROM w", ())
            .await
            .unwrap(),
        200
    );
    let mode: String = engine.fetch_scalar("PRAGMA journal_mode", ()).await.unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn bad_urls_are_url_errors() {
    for (url, says) in [
        ("nosuch://x", "unknown scheme"),
        ("sqlite::memory:?frobnicate=1", "frobnicate"),
        ("sqlite::memory:?pool_pre_ping=maybe", "pool_pre_ping"),
    ] {
        let err = Engine::connect(url).await.unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Url, "{url}");
        assert!(err.to_string().contains(says), "{url}: {err}");
    }
    let err = Engine::connect("sqlite:///no/such/dir/x.db").await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Connect, "{err}");
}

/// SQLite text that is not UTF-8 is never silently altered: read as a
/// String it is an error naming the column; read as bytes it is the bytes.
#[tokio::test]
async fn sqlite_text_that_is_not_utf8_is_an_error_or_its_bytes() {
    let engine = Engine::connect("sqlite::memory:").await.unwrap();
    let row = engine
        .fetch_one("SELECT CAST(x'41ff42' AS TEXT) AS t", ())
        .await
        .unwrap();
    let err = row.get::<String>("t").unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Decode, "{err:?}");
    assert!(err.to_string().contains("'t'"), "{err}");
    assert_eq!(row.get::<Vec<u8>>("t").unwrap(), vec![0x41, 0xff, 0x42]);
    engine.close().await;
}
