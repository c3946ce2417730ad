//! Running statements on the worker thread: binding values, executing,
//! querying, serving the pulls of a row stream.

use std::sync::mpsc as std_mpsc;

use rusqlite::Connection as Sqlite;
use rusqlite::types::{ToSqlOutput, ValueRef};

use super::*;
use crate::error::{Error, Result};
use crate::row::Row;
use crate::value::Value;

pub(super) struct Bind<'a>(&'a Value);

impl rusqlite::ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        use rusqlite::types::Value as S;
        Ok(match self.0 {
            Value::Null => ToSqlOutput::Owned(S::Null),
            Value::Bool(b) => ToSqlOutput::Owned(S::Integer((*b).into())),
            Value::I16(v) => ToSqlOutput::Owned(S::Integer((*v).into())),
            Value::I32(v) => ToSqlOutput::Owned(S::Integer((*v).into())),
            Value::I64(v) => ToSqlOutput::Owned(S::Integer(*v)),
            Value::F32(v) => ToSqlOutput::Owned(S::Real((*v).into())),
            Value::F64(v) => ToSqlOutput::Owned(S::Real(*v)),
            Value::Text(s) | Value::Numeric(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Bytes(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            Value::Decimal(d) => ToSqlOutput::Owned(S::Text(d.to_string())),
            Value::Date(d) => ToSqlOutput::Owned(S::Text(d.format("%Y-%m-%d").to_string())),
            Value::Time(t) => ToSqlOutput::Owned(S::Text(t.format("%H:%M:%S%.f").to_string())),
            Value::Timestamp(t) => ToSqlOutput::Owned(S::Text(t.format("%Y-%m-%d %H:%M:%S%.f").to_string())),
            Value::TimestampTz(t) => ToSqlOutput::Owned(S::Text(t.to_rfc3339())),
            Value::Uuid(u) => ToSqlOutput::Owned(S::Text(u.hyphenated().to_string())),
            Value::Json(j) => ToSqlOutput::Owned(S::Text(j.to_string())),
            // SQLite has no arrays: stored as JSON text, read back by `Array<T>`.
            Value::Array(_) => ToSqlOutput::Owned(S::Text(crate::value::to_json(self.0).to_string())),
        })
    }
}

pub(super) fn bind_all(stmt: &mut rusqlite::Statement<'_>, params: &[Value]) -> Result<()> {
    let expected = stmt.parameter_count();
    if expected != params.len() {
        return Err(crate::driver::param_count_error(expected, params.len()));
    }
    for (i, value) in params.iter().enumerate() {
        stmt.raw_bind_parameter(i + 1, Bind(value)).map_err(map_error)?;
    }
    Ok(())
}

pub(super) fn execute(conn: &Sqlite, sql: &str, params: &[Value]) -> Result<u64> {
    let mut stmt = conn.prepare_cached(sql).map_err(map_error)?;
    bind_all(&mut stmt, params)?;
    // raw_execute refuses statements that return rows; step through them instead.
    if stmt.column_count() > 0 {
        // Rows produced, as the other dialects count a SELECT (a statement
        // with RETURNING produces one row per row it changed).
        let mut rows = stmt.raw_query();
        let mut produced = 0;
        while rows.next().map_err(map_error)?.is_some() {
            produced += 1;
        }
        return Ok(produced);
    }
    Ok(stmt.raw_execute().map_err(map_error)? as u64)
}

pub(super) fn execute_many(conn: &Sqlite, sql: &str, sets: &[Vec<Value>]) -> Result<u64> {
    // Atomic: outside a transaction the whole batch runs in one.
    let own_tx = conn.is_autocommit();
    if own_tx {
        conn.execute_batch("BEGIN IMMEDIATE").map_err(map_error)?;
    }
    let run = || -> Result<u64> {
        let mut stmt = conn.prepare_cached(sql).map_err(map_error)?;
        let mut total = 0u64;
        for params in sets {
            bind_all(&mut stmt, params)?;
            total += stmt.raw_execute().map_err(map_error)? as u64;
        }
        Ok(total)
    };
    let result = run();
    if own_tx {
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        if let Err(e) = conn.execute_batch(end) {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(map_error(e));
        }
    }
    result
}

pub(super) fn query(
    conn: &Sqlite,
    shapes: &mut Shapes,
    sql: &str,
    params: &[Value],
    limit: usize,
) -> Result<Vec<Row>> {
    let mut stmt = conn.prepare_cached(sql).map_err(map_error)?;
    bind_all(&mut stmt, params)?;
    read_rows(&mut stmt, shapes, sql, limit).map_err(map_error)?
}

/// Steps a bound statement for up to `limit` rows. Stepping errors stay
/// raw (the inline path decides on them whether to hand the read over); a
/// row that cannot be read is the inner error.
pub(super) fn read_rows(
    stmt: &mut rusqlite::Statement<'_>,
    shapes: &mut Shapes,
    sql: &str,
    limit: usize,
) -> rusqlite::Result<Result<Vec<Row>>> {
    let Shape { columns, hints } = shapes.of(sql, stmt);
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while out.len() < limit {
        match rows.next()? {
            Some(row) => match read_row(row, &columns, &hints) {
                Ok(row) => out.push(row),
                Err(e) => return Ok(Err(e)),
            },
            None => break,
        }
    }
    Ok(Ok(out))
}

/// Serves pulls on one query until the puller hangs up. Rows are stepped
/// only as they are asked for, so memory stays flat for any result size.
pub(super) fn serve_rows(
    conn: &Sqlite,
    shapes: &mut Shapes,
    sql: &str,
    params: &[Value],
    pulls: &std_mpsc::Receiver<Pull>,
) -> bool {
    let mut stmt = match conn.prepare_cached(sql).map_err(map_error) {
        Ok(stmt) => stmt,
        Err(e) => {
            fail_pulls(pulls, &e);
            return true;
        }
    };
    if let Err(e) = bind_all(&mut stmt, params) {
        fail_pulls(pulls, &e);
        return true;
    }
    let mut failed = false;
    let Shape { columns, hints } = shapes.of(sql, &stmt);
    let mut rows = stmt.raw_query();
    let mut exhausted = false;
    while let Ok(pull) = pulls.recv() {
        match pull {
            Pull::Fetch(n, reply) => {
                let mut batch = Vec::with_capacity(n.min(1024));
                let mut result = Ok(());
                while !exhausted && batch.len() < n {
                    match rows.next() {
                        Ok(Some(row)) => match read_row(row, &columns, &hints) {
                            Ok(r) => batch.push(r),
                            Err(e) => {
                                result = Err(e);
                                break;
                            }
                        },
                        Ok(None) => exhausted = true,
                        Err(e) => {
                            result = Err(map_error(e));
                            exhausted = true;
                            failed = true;
                        }
                    }
                }
                let _ = reply.send(result.map(|()| batch));
            }
            Pull::Forward(n, reply) => {
                let mut skipped = 0u64;
                let mut result = Ok(());
                while !exhausted && skipped < n {
                    match rows.next() {
                        Ok(Some(_)) => skipped += 1,
                        Ok(None) => exhausted = true,
                        Err(e) => {
                            result = Err(map_error(e));
                            exhausted = true;
                            failed = true;
                        }
                    }
                }
                let _ = reply.send(result.map(|()| skipped));
            }
        }
    }
    failed
}

pub(super) fn fail_pulls(pulls: &std_mpsc::Receiver<Pull>, error: &Error) {
    let again = || Error::new(error.kind().clone(), error.message().to_string());
    while let Ok(pull) = pulls.recv() {
        match pull {
            Pull::Fetch(_, reply) => drop(reply.send(Err(again()))),
            Pull::Forward(_, reply) => drop(reply.send(Err(again()))),
        }
    }
}
