//! Reservoir: an async SQL engine for Rust.
//!
//! The [`pool`] module is a generic, SQL-free async connection pool with
//! SQLAlchemy's settings: fair FIFO waiting, a bounded backlog that rejects
//! at once when overloaded, overflow connections, recycle, pre-ping,
//! LIFO, `min_size` kept with backoff, and cancel-safe acquire.

#![warn(missing_docs)]

pub mod error;
pub mod pool;

pub use error::{Error, ErrorKind, Result};
