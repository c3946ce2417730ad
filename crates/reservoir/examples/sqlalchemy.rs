//! SQLAlchemy's engine document (seed 003) in Rust: explicit,
//! connectionless and implicit execution, and the "threadlocal" strategy
//! where connectionless statements in one task share one transaction
//! (`EngineBuilder::threadlocal`, SQLAlchemy's `strategy="threadlocal"`;
//! without it, the same code runs in an `engine.scope(..)`).
//!
//! ```text
//! cargo run --example sqlalchemy
//! ```

use reservoir::{Engine, MetaData, params};

async fn do_something_implicit(engine: &Engine) -> reservoir::Result<()> {
    engine
        .execute(
            "INSERT INTO users (user_id, name) VALUES (:id, :name)",
            params! {"id" => 1, "name" => "john"},
        )
        .await?;
    Ok(())
}

async fn do_something_transactional(engine: &Engine) -> reservoir::Result<()> {
    // Nested in the task's transaction: a savepoint.
    let tx = engine.begin().await?;
    println!("  do_something_transactional: nested at depth {}", tx.depth());
    engine
        .execute(
            "INSERT INTO users (user_id, name) VALUES (:id, :name)",
            params! {"id" => 2, "name" => "jack"},
        )
        .await?;
    tx.commit().await
}

async fn names(engine: &Engine) -> reservoir::Result<Vec<String>> {
    engine
        .fetch_all("SELECT name FROM users ORDER BY user_id", ())
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::main]
async fn main() -> reservoir::Result<()> {
    let engine = Engine::builder("sqlite::memory:")
        .threadlocal(true)
        .build()
        .await?;
    engine
        .execute("CREATE TABLE users (user_id INTEGER PRIMARY KEY, name TEXT)", ())
        .await?;

    println!("explicit execution, on a Connection:");
    let mut conn = engine.acquire().await?;
    conn.execute("INSERT INTO users VALUES (10, 'explicit')", ())
        .await?;
    drop(conn);

    println!("connectionless execution, on the Engine:");
    engine
        .execute("INSERT INTO users VALUES (11, 'connectionless')", ())
        .await?;

    println!("implicit execution, on a statement of bound metadata:");
    let meta = MetaData::new();
    meta.bind(engine.clone());
    meta.table("users")
        .insert()
        .values([("user_id", 12.into()), ("name", "implicit".into())])
        .execute()
        .await?;
    println!("  rows: {:?}\n", names(&engine).await?);

    println!("the threadlocal example: engine.begin() ... rollback()");
    let tx = engine.begin().await?;
    do_something_implicit(&engine).await?;
    do_something_transactional(&engine).await?;
    println!("  inside the transaction: {:?}", names(&engine).await?);
    tx.rollback().await?;
    println!("  after rollback: {:?}", names(&engine).await?);

    println!("\nand once more, committed:");
    let tx = engine.begin().await?;
    do_something_implicit(&engine).await?;
    do_something_transactional(&engine).await?;
    tx.commit().await?;
    println!("  after commit: {:?}", names(&engine).await?);
    engine.close().await;
    Ok(())
}
