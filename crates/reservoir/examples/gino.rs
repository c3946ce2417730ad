//! GINO's engine and connection (seed 002) in Rust: reusable and lazy
//! connections, the per-task stack, and implicit execution through bound
//! metadata. Runs on the embedded SQLite default:
//!
//! ```text
//! cargo run --example gino
//! ```

use reservoir::{Connection, Engine, MetaData};

fn show(label: &str, conn: &Connection, engine: &Engine) {
    let raw = match conn.id() {
        0 => "none yet (lazy)".to_string(),
        id => format!("raw connection #{id}"),
    };
    let kind = if conn.is_root() { "reusable" } else { "reusing" };
    println!("  {label}: {kind}, {raw}; pool in_use={}", engine.status().in_use);
}

#[tokio::main]
async fn main() -> reservoir::Result<()> {
    let db = MetaData::new();
    let engine = db.set_bind("sqlite::memory:").await?;
    println!("bound {} to the metadata\n", engine.url());

    println!("nesting two plain acquires gives two raw connections:");
    let conn1 = engine.acquire().await?;
    let conn2 = engine.acquire().await?;
    show("conn1", &conn1, &engine);
    show("conn2", &conn2, &engine);
    drop((conn1, conn2));

    println!("\nthe diagram of the seed, numbered as there:");
    let c1 = engine.acquire().await?; // (1)
    show("(1) acquire()", &c1, &engine);
    let c2 = engine.acquire().reuse(true).await?; // (2): reuses (1), the top of the stack
    show("(2) acquire(reuse)", &c2, &engine);
    let c3 = engine.acquire().reuse(true).await?;
    show("(3) acquire(reuse)", &c3, &engine);
    let mut c5 = engine.acquire().lazy(true).await?; // a new root, lazy
    show("(5) acquire(lazy)", &c5, &engine);
    let mut c6 = engine.acquire().reuse(true).lazy(true).await?;
    show("(6) acquire(reuse, lazy)", &c6, &engine);
    c6.fetch_one("SELECT 1", ()).await?; // the chain (5)-(6) checks out now
    show("(6) after its first statement", &c6, &engine);
    c5.fetch_one("SELECT 1", ()).await?;
    show("(5) shares it", &c5, &engine);
    drop((c6, c5));
    let c7 = engine.acquire().reuse(true).await?;
    show("(7) acquire(reuse) after (5) is gone", &c7, &engine);
    drop((c7, c3, c2, c1));

    println!("\nimplicit execution: no engine named");
    engine
        .execute("CREATE TABLE users (id INTEGER PRIMARY KEY, nickname TEXT)", ())
        .await?;
    let users = db.table("users");
    users
        .insert()
        .values([("id", 1.into()), ("nickname", "fantix".into())])
        .execute()
        .await?;
    users
        .insert()
        .values([("id", 2.into()), ("nickname", "ann".into())])
        .execute()
        .await?;
    for row in users.select().order_by("id").fetch_all().await? {
        println!("  {row:?}");
    }

    println!("\nin a scope, connectionless statements inside engine.begin() join its transaction:");
    engine
        .scope(async {
            let tx = engine.begin().await?;
            users
                .update()
                .set("nickname", "renamed")
                .filter("id", 1)
                .execute()
                .await?;
            let inside: String = engine
                .fetch_scalar("SELECT nickname FROM users WHERE id = 1", ())
                .await?;
            println!("  inside the transaction: {inside}");
            tx.rollback().await
        })
        .await?;
    let after: String = engine
        .fetch_scalar("SELECT nickname FROM users WHERE id = 1", ())
        .await?;
    println!("  after rollback: {after}");

    let engine = db.pop_bind().expect("bound above");
    engine.close().await;
    println!("\nunbound and closed: {:?}", engine.status());
    Ok(())
}
