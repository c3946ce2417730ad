//! Reservoir: an async SQL engine for Rust.
//!
//! - [`Engine`]: a dialect chosen by URL (`sqlite:` is the embedded
//!   default; `postgres:` and `mysql:`/`mariadb:` behind the cargo features
//!   of those names, all on by default) owning a pool; connectionless
//!   execution on the engine itself, optionally pipelined under load
//!   (`pipeline_reads`).
//! - [`Connection`], [`Transaction`] (savepoints when nested), [`RowStream`]
//!   and [`Cursor`]: explicit execution, asyncpg style.
//! - [`pool`]: a generic, SQL-free async connection pool with SQLAlchemy's
//!   settings: fair FIFO waiting, a bounded backlog that rejects at once
//!   when overloaded, overflow, recycle, pre-ping, LIFO, cancel-safe acquire.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> reservoir::Result<()> {
//! use reservoir::{Engine, params};
//!
//! let engine = Engine::builder("sqlite::memory:").pool_size(5).max_overflow(5).build().await?;
//! engine.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)", ()).await?;
//! engine.execute("INSERT INTO users (id, name) VALUES (:id, :name)", params!{"id" => 1, "name" => "ann"}).await?;
//!
//! let mut conn = engine.acquire().await?;
//! let mut tx = conn.begin().await?;
//! tx.execute("UPDATE users SET name = ? WHERE id = ?", ("bob", 1)).await?;
//! tx.rollback().await?;
//!
//! #[derive(serde::Deserialize)]
//! struct User { id: i64, name: String }
//! let users: Vec<User> = conn.fetch_all_as("SELECT id, name FROM users", ()).await?;
//! assert_eq!(users[0].name, "ann");
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod connection;
mod context;
pub mod cursor;
pub mod driver;
mod engine;
pub mod error;
mod exec;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod manager;
pub mod meta;
pub mod params;
mod pipeline;
pub mod pool;
pub mod row;
pub mod sql;
pub mod stream;
pub mod transaction;
pub mod url;
pub mod value;

pub use connection::Connection;
pub use cursor::Cursor;
pub use driver::session::ResetOnReturn;
pub use engine::{Acquire, Connecting, Engine, EngineBuilder, IntoUrl};
pub use error::{Error, ErrorKind, Result};
pub use meta::{MetaData, Table};
pub use params::{IntoParams, Params};
pub use pool::{CloseOptions, PoolStats, PoolStatus};
pub use row::{Column, Row};
pub use stream::RowStream;
pub use transaction::{Isolation, Transaction, TxOptions};
pub use url::{ConnectOptions, DatabaseUrl, Dialect};
pub use value::{FromValue, ToValue, Value};
