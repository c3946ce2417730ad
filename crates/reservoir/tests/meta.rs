//! DESIGN.md §8: implicit execution through bound metadata, on every dialect.

mod common;

use common::{Db, fresh_table, table_name};
use reservoir::{Engine, ErrorKind, MetaData, Value};

per_dialect!(
    bound_statements_run_without_naming_an_engine,
    implicit_statements_join_the_tasks_transaction
);

async fn bound_statements_run_without_naming_an_engine(db: Db) {
    let meta = MetaData::new();
    let err = meta.table("anything").select().fetch_all().await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Unbound);
    let engine = meta.set_bind(&db.url()).await.unwrap();
    // Mixed case: only correct quoting from the dialect's builder finds it.
    let t = format!("Mixed_{}", table_name(&db, "meta"));
    let quoted = db.quote(&t);
    engine
        .execute(&format!("DROP TABLE IF EXISTS {quoted}"), ())
        .await
        .unwrap();
    engine
        .execute(
            &format!("CREATE TABLE {quoted} (id INTEGER PRIMARY KEY, name TEXT)"),
            (),
        )
        .await
        .unwrap();
    let users = meta.table(&t);
    let n = users
        .insert()
        .values([("id", 1.into()), ("name", "ann".into())])
        .values([("id", 2.into()), ("name", "bob".into())])
        .execute()
        .await
        .unwrap();
    assert_eq!(n, 2);
    let rows = users.select().filter("id", 2).fetch_all().await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<String>("name").unwrap(), "bob");
    assert_eq!(
        users
            .update()
            .set("name", "eve")
            .filter("id", 1)
            .execute()
            .await
            .unwrap(),
        1
    );
    let first = users
        .select()
        .order_by("id")
        .fetch_optional()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.get::<String>("name").unwrap(), "eve");
    assert_eq!(users.delete().filter("name", "bob").execute().await.unwrap(), 1);
    assert_eq!(users.select().fetch_all().await.unwrap().len(), 1);
    let popped = meta.pop_bind().expect("was bound");
    assert_eq!(popped.dialect(), db.dialect);
    assert_eq!(
        users.select().fetch_all().await.unwrap_err().kind(),
        &ErrorKind::Unbound
    );
}

async fn implicit_statements_join_the_tasks_transaction(db: Db) {
    let meta = MetaData::new();
    let engine = meta.set_bind(&db.url()).await.unwrap();
    let t = fresh_table(&db, &engine, "meta_tx", "id INTEGER PRIMARY KEY").await;
    let table = meta.table(&t);
    engine
        .scope(async {
            let tx = engine.begin().await.unwrap();
            table
                .insert()
                .values([("id", Value::from(1))])
                .execute()
                .await
                .unwrap();
            tx.rollback().await.unwrap();
        })
        .await;
    assert!(table.select().fetch_all().await.unwrap().is_empty());
}

#[tokio::test]
async fn switching_the_bind_switches_where_statements_go() {
    let meta = MetaData::new();
    let a = Engine::connect("sqlite::memory:").await.unwrap();
    let b = Engine::connect("sqlite::memory:").await.unwrap();
    for engine in [&a, &b] {
        engine.execute("CREATE TABLE t (x INTEGER)", ()).await.unwrap();
    }
    meta.bind(a.clone());
    meta.table("t")
        .insert()
        .values([("x", 1.into())])
        .execute()
        .await
        .unwrap();
    meta.bind(b.clone());
    meta.table("t")
        .insert()
        .values([("x", 2.into())])
        .execute()
        .await
        .unwrap();
    assert_eq!(a.fetch_scalar::<i64>("SELECT x FROM t", ()).await.unwrap(), 1);
    assert_eq!(b.fetch_scalar::<i64>("SELECT x FROM t", ()).await.unwrap(), 2);
}

#[tokio::test]
async fn with_bind_binds_runs_unbinds_and_closes() {
    let meta = MetaData::new();
    let inner = meta.clone();
    let engine = meta
        .with_bind("sqlite::memory:", async move {
            let engine = inner.engine()?;
            engine.execute("CREATE TABLE t (x INTEGER)", ()).await?;
            inner
                .table("t")
                .insert()
                .values([("x", 7.into())])
                .execute()
                .await?;
            Ok(engine)
        })
        .await
        .unwrap();
    assert!(meta.bound().is_none());
    assert_eq!(
        engine.execute("SELECT 1", ()).await.unwrap_err().kind(),
        &ErrorKind::PoolClosed
    );
}
