//! The execution core: the pool, the driver and statement logging, shared
//! by connections, the engine's connectionless path and the pipeline.
//!
//! A connectionless statement that joins no connection context runs here
//! straight on a pooled connection: checked out, run, given back, with no
//! handle or link in between. Every statement, wherever it runs, is logged
//! through [`Timing`] (INFO with `echo`, else DEBUG; never its parameter
//! values) inside a `statement` span, and a connection it found lost is
//! marked for discarding.

use std::panic::Location;
use std::sync::Arc;
use std::time::Instant;

use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::driver::Driver;
use crate::error::{Error, ErrorKind, Result};
use crate::manager::DriverManager;
use crate::params::Params;
use crate::pool::{Pool, Pooled};
use crate::row::Row;
use crate::url::DatabaseUrl;
use crate::value::Value;

/// What every way of running a statement needs.
pub(crate) struct Core {
    pub pool: Pool<DriverManager>,
    pub driver: Arc<dyn Driver>,
    pub url: DatabaseUrl,
    pub echo: bool,
}

impl Core {
    /// Binds parameters: named ones are rewritten to the dialect's placeholders.
    pub(crate) fn bind<'s>(
        &self,
        sql: &'s str,
        params: Params,
    ) -> Result<(std::borrow::Cow<'s, str>, Vec<Value>)> {
        params.bind(sql, self.driver.placeholder())
    }

    /// Starts timing a statement (only when it will be logged).
    pub(crate) fn timing(&self) -> Timing {
        Timing {
            started: statements_logged(self.echo).then(Instant::now),
            echo: self.echo,
        }
    }

    /// Checks out a connection for one statement and runs it there.
    pub(crate) async fn execute(
        &self,
        caller: &'static Location<'static>,
        sql: &str,
        params: Params,
    ) -> Result<u64> {
        let (sql, values) = self.bind(sql, params)?;
        let mut pooled = self.acquire(caller).await?;
        let timing = self.timing();
        let result = pooled
            .execute_in_place(&sql, values)
            .instrument(statement_span(&sql))
            .await;
        timing.finish(&mut pooled, &sql, result)
    }

    /// Checks out a connection for one query and runs it there.
    pub(crate) async fn query(
        &self,
        caller: &'static Location<'static>,
        sql: &str,
        params: Params,
        limit: Option<usize>,
    ) -> Result<Vec<Row>> {
        let (sql, values) = self.bind(sql, params)?;
        let mut pooled = self.acquire(caller).await?;
        let timing = self.timing();
        let result = pooled
            .query_in_place(&sql, values, limit)
            .instrument(statement_span(&sql))
            .await;
        timing.finish(&mut pooled, &sql, result)
    }

    /// A checkout, in an `acquire` span.
    pub(crate) async fn acquire(&self, caller: &'static Location<'static>) -> Result<Pooled<DriverManager>> {
        let span = tracing::debug_span!(target: "reservoir::pool", "acquire", %caller);
        self.pool.acquire_from(caller).instrument(span).await
    }
}

/// The span a statement runs in (its parameter values are never recorded).
pub(crate) fn statement_span(sql: &str) -> tracing::Span {
    tracing::debug_span!(target: "reservoir::sql", "statement", statement = sql)
}

/// Whether `log_statement` would log anything: without it, statements are
/// not timed (two clock reads per statement).
pub(crate) fn statements_logged(echo: bool) -> bool {
    echo || tracing::enabled!(target: "reservoir::sql", tracing::Level::DEBUG)
}

/// Logs a statement: INFO with `echo`, else DEBUG. Parameter values are
/// never logged.
pub(crate) fn log_statement(echo: bool, sql: &str, elapsed: std::time::Duration, ok: bool) {
    if echo {
        tracing::info!(target: "reservoir::sql", statement = sql, ?elapsed, ok);
    } else {
        tracing::debug!(target: "reservoir::sql", statement = sql, ?elapsed, ok);
    }
}

/// One statement's clock, started only when it will be logged.
pub(crate) struct Timing {
    started: Option<Instant>,
    echo: bool,
}

impl Timing {
    /// Logs the statement and marks a lost connection for discarding.
    pub(crate) fn finish<T>(
        self,
        pooled: &mut Pooled<DriverManager>,
        sql: &str,
        result: Result<T>,
    ) -> Result<T> {
        self.log(sql, &result);
        // For the reset on return (see `ResetOnReturn::Auto`).
        pooled.session().note_statement(sql);
        if result.as_ref().is_err_and(Error::is_disconnect) {
            pooled.mark_disconnected();
        }
        result
    }

    /// Logs the statement.
    pub(crate) fn log<T>(self, sql: &str, result: &Result<T>) {
        if let Some(started) = self.started {
            log_statement(self.echo, sql, started.elapsed(), result.is_ok());
        }
    }
}

/// Every row deserialized into `T` (the `fetch_all_as` methods).
pub(crate) fn deserialize_all<T: DeserializeOwned>(rows: &[Row]) -> Result<Vec<T>> {
    rows.iter().map(Row::deserialize).collect()
}

/// The first row, or a `NoRows` error.
pub(crate) fn first_row(mut rows: Vec<Row>) -> Result<Row> {
    if rows.is_empty() {
        return Err(Error::new(ErrorKind::NoRows, "the query returned no rows"));
    }
    Ok(rows.swap_remove(0))
}
