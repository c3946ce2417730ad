//! DESIGN.md §7 on every dialect: reusable and lazy connections, per-task
//! stacks, connectionless execution joining the task's transaction.

mod common;

use common::{Db, fresh_table};
use reservoir::{Connection, Engine, ErrorKind, params};

/// Which server-side connection this is: the backend pid on PostgreSQL, the
/// pool's connection number on SQLite (whose "server" is in-process) and
/// behind PgBouncer (whose server sessions change between transactions).
async fn server_id(db: &Db, conn: &mut Connection) -> i64 {
    match db.dialect {
        reservoir::Dialect::Postgres if db.route != common::Route::PgBouncer => {
            conn.fetch_scalar("SELECT pg_backend_pid()", ()).await.unwrap()
        }
        _ => {
            conn.fetch_scalar::<i64>("SELECT 1", ()).await.unwrap();
            conn.id() as i64
        }
    }
}

per_dialect!(
    nested_acquires_get_two_connections_and_reuse_gets_the_outer,
    reuse_without_an_outer_connection_becomes_reusable_itself,
    releasing_the_root_returns_the_raw_connection_even_with_reusers_alive,
    the_newest_root_is_reused,
    lazy_connections_check_out_on_first_use_and_chains_check_out_once,
    spawned_tasks_do_not_inherit_the_stack,
    connectionless_execution_joins_the_tasks_transaction,
    engine_begin_inside_a_contextual_transaction_is_a_savepoint,
    short_tasks_leave_no_stacks_behind,
);

async fn nested_acquires_get_two_connections_and_reuse_gets_the_outer(db: Db) {
    let engine = db.engine().await;
    let mut outer = engine.acquire().await.unwrap();
    let outer_id = server_id(&db, &mut outer).await;
    {
        let mut second = engine.acquire().await.unwrap();
        assert_ne!(
            server_id(&db, &mut second).await,
            outer_id,
            "a plain acquire is a new connection"
        );
        assert_eq!(engine.status().in_use, 2);
    }
    // A function called while `outer` is alive.
    async fn helper(engine: &Engine, db: &Db) -> i64 {
        let mut conn = engine.acquire().reuse(true).await.unwrap();
        assert!(!conn.is_root());
        server_id(db, &mut conn).await
    }
    assert_eq!(helper(&engine, &db).await, outer_id);
    assert_eq!(engine.status().in_use, 1, "reuse checked nothing out");
}

async fn reuse_without_an_outer_connection_becomes_reusable_itself(db: Db) {
    let engine = db.engine().await;
    let mut first = engine.acquire().reuse(true).await.unwrap();
    assert!(first.is_root());
    let id = server_id(&db, &mut first).await;
    let mut second = engine.acquire().reuse(true).await.unwrap();
    assert_eq!(server_id(&db, &mut second).await, id);
    drop(second); // a reuser's release keeps the raw connection with its root
    assert_eq!(server_id(&db, &mut first).await, id);
    assert_eq!(engine.status().in_use, 1);
}

async fn releasing_the_root_returns_the_raw_connection_even_with_reusers_alive(db: Db) {
    let engine = db.engine().await;
    let root = engine.acquire().await.unwrap();
    let mut reuser = engine.acquire().reuse(true).await.unwrap();
    reuser.fetch_one("SELECT 1", ()).await.unwrap();
    drop(root);
    assert_eq!(engine.status().in_use, 0, "back in the pool");
    let err = reuser.fetch_one("SELECT 1", ()).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Usage);
    assert!(err.to_string().contains("released"), "{err}");
}

async fn the_newest_root_is_reused(db: Db) {
    // GINO's diagram: reusers take the newest root on the task's stack.
    let engine = db.engine().await;
    let mut root1 = engine.acquire().await.unwrap();
    let id1 = server_id(&db, &mut root1).await;
    let mut r1 = engine.acquire().reuse(true).await.unwrap();
    assert_eq!(server_id(&db, &mut r1).await, id1);
    let mut root2 = engine.acquire().await.unwrap();
    let id2 = server_id(&db, &mut root2).await;
    assert_ne!(id1, id2);
    let mut r2 = engine.acquire().reuse(true).await.unwrap();
    assert_eq!(server_id(&db, &mut r2).await, id2);
    drop(r2);
    drop(root2);
    let mut r3 = engine.acquire().reuse(true).await.unwrap();
    assert_eq!(server_id(&db, &mut r3).await, id1, "back to the older root");
}

async fn lazy_connections_check_out_on_first_use_and_chains_check_out_once(db: Db) {
    let engine = db.engine().await;
    let base = engine.status().in_use;
    let mut lazy = engine.acquire().lazy(true).await.unwrap();
    assert_eq!(lazy.id(), 0);
    assert_eq!(engine.status().in_use, base, "nothing checked out yet");
    let mut reuser = engine.acquire().reuse(true).lazy(true).await.unwrap();
    assert_eq!(engine.status().in_use, base);
    // The reuser runs first: the chain checks out one raw connection.
    let id = server_id(&db, &mut reuser).await;
    assert_eq!(engine.status().in_use, base + 1);
    assert_eq!(server_id(&db, &mut lazy).await, id);
    assert_eq!(engine.status().in_use, base + 1);
    drop(reuser);
    drop(lazy);
    assert_eq!(engine.status().in_use, base);
    // begin() also checks out.
    let mut lazy = engine.acquire().lazy(true).await.unwrap();
    let tx = lazy.begin().await.unwrap();
    assert_eq!(engine.status().in_use, base + 1);
    tx.rollback().await.unwrap();
}

async fn spawned_tasks_do_not_inherit_the_stack(db: Db) {
    let engine = db.engine().await;
    let mut parent = engine.acquire().await.unwrap();
    let parent_id = server_id(&db, &mut parent).await;
    let child = {
        let (engine, db) = (engine.clone(), db);
        tokio::spawn(async move {
            let mut conn = engine.acquire().reuse(true).await.unwrap();
            (conn.is_root(), server_id(&db, &mut conn).await)
        })
    };
    let (child_is_root, child_id) = child.await.unwrap();
    assert!(child_is_root, "the child had nothing to reuse");
    assert_ne!(child_id, parent_id);
}

/// SQLAlchemy's threadlocal example: a function that executes connectionless,
/// called inside `engine.begin()` ... `rollback()`.
async fn connectionless_execution_joins_the_tasks_transaction(db: Db) {
    let engine = db.engine().await;
    let t = fresh_table(&db, &engine, "ctx_join", "id INTEGER PRIMARY KEY").await;
    async fn add(engine: &Engine, t: &str, id: i64) {
        engine
            .execute(
                &format!("INSERT INTO {t} (id) VALUES (:id)"),
                params! {"id" => id},
            )
            .await
            .unwrap();
    }
    // Inside a scope, connectionless statements join the scope's transaction.
    engine
        .scope(async {
            let tx = engine.begin().await.unwrap();
            add(&engine, &t, 1).await;
            add(&engine, &t, 2).await;
            let seen: i64 = engine
                .fetch_scalar(&format!("SELECT count(*) FROM {t}"), ())
                .await
                .unwrap();
            assert_eq!(seen, 2, "connectionless reads see the transaction's rows");
            tx.rollback().await.unwrap();
        })
        .await;
    let kept: i64 = engine
        .fetch_scalar(&format!("SELECT count(*) FROM {t}"), ())
        .await
        .unwrap();
    assert_eq!(kept, 0, "the rollback took the connectionless inserts with it");
    // Outside any context each statement is its own unit.
    add(&engine, &t, 3).await;
    let other = engine.clone();
    let t2 = t.clone();
    let n: i64 = tokio::spawn(async move {
        other
            .fetch_scalar(&format!("SELECT count(*) FROM {t2}"), ())
            .await
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(n, 1, "autocommitted, visible to another task");
}

async fn engine_begin_inside_a_contextual_transaction_is_a_savepoint(db: Db) {
    let engine = db.engine().await;
    let t = fresh_table(&db, &engine, "ctx_savepoint", "id INTEGER PRIMARY KEY").await;
    let insert = format!("INSERT INTO {t} (id) VALUES (:id)");
    engine
        .scope(async {
            let outer = engine.begin().await.unwrap();
            engine.execute(&insert, params! {"id" => 1}).await.unwrap();
            {
                let inner = engine.begin().await.unwrap();
                assert_eq!(inner.depth(), 2, "a savepoint on the scope's transaction");
                engine.execute(&insert, params! {"id" => 2}).await.unwrap();
                inner.rollback().await.unwrap();
            }
            let inner = engine.begin().await.unwrap();
            engine.execute(&insert, params! {"id" => 3}).await.unwrap();
            inner.commit().await.unwrap();
            outer.commit().await.unwrap();
        })
        .await;
    let ids = common::ids(
        &engine
            .fetch_all(&format!("SELECT id FROM {t} ORDER BY id"), ())
            .await
            .unwrap(),
    );
    assert_eq!(ids, [1, 3]);
}

async fn short_tasks_leave_no_stacks_behind(db: Db) {
    let engine = db.engine().await;
    let n = 100_000;
    let mut handles = Vec::with_capacity(1000);
    for i in 0..n {
        let engine = engine.clone();
        handles.push(tokio::spawn(async move {
            let _conn = engine.acquire().lazy(true).await.unwrap();
            if i % 1000 == 0 {
                engine.fetch_one("SELECT 1", ()).await.unwrap();
            }
        }));
        if handles.len() == 1000 {
            for h in handles.drain(..) {
                h.await.unwrap();
            }
        }
    }
    for h in handles {
        h.await.unwrap();
    }
    assert_eq!(engine.context_tasks(), 0);
    assert_eq!(engine.status().in_use, 0);
}

#[test]
fn the_current_task_works_in_a_plain_block_on() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let engine = Engine::connect("sqlite::memory:").await.unwrap();
        let root = engine.acquire().await.unwrap();
        let reuser = engine.acquire().reuse(true).await.unwrap();
        assert!(!reuser.is_root());
        assert_eq!(reuser.id(), root.id());
    });
}
