//! Values to and from PostgreSQL's binary formats.

use std::sync::Arc;

use tokio_postgres::Statement;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use crate::error::{Error, ErrorKind, Result};
use crate::row::{Column, Row};
use crate::value::{FromValue, Value};

/// A prepared statement and its result columns, built once.
#[derive(Clone)]
pub(super) struct Prepared {
    pub(super) stmt: Statement,
    pub(super) columns: Arc<[Column]>,
}

impl Prepared {
    pub(super) fn new(stmt: Statement) -> Self {
        let columns = columns_of(&stmt);
        Prepared { stmt, columns }
    }
}

pub(super) fn binds(params: &[Value]) -> Vec<PgBind<'_>> {
    params.iter().map(PgBind).collect()
}

pub(super) fn as_refs<'a>(binds: &'a [PgBind<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    binds.iter().map(|b| b as &(dyn ToSql + Sync)).collect()
}

// ---- values --------------------------------------------------------------

pub(super) fn columns_of(stmt: &Statement) -> Arc<[Column]> {
    stmt.columns()
        .iter()
        .map(|c| Column::new(c.name(), Some(c.type_().name().to_string())))
        .collect()
}

pub(super) fn read_row(row: &tokio_postgres::Row, columns: &Arc<[Column]>) -> Result<Row> {
    let mut values = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        values.push(read_value(row, i, column.type_()).map_err(|e| {
            Error::new(
                ErrorKind::Decode,
                format!("column '{}' of type {}: {e}", column.name(), column.type_()),
            )
        })?);
    }
    Ok(Row::new(Arc::clone(columns), values))
}

fn read_value(
    row: &tokio_postgres::Row,
    i: usize,
    ty: &Type,
) -> std::result::Result<Value, tokio_postgres::Error> {
    fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
        row: &'a tokio_postgres::Row,
        i: usize,
        wrap: impl FnOnce(T) -> Value,
    ) -> std::result::Result<Value, tokio_postgres::Error> {
        Ok(row.try_get::<_, Option<T>>(i)?.map_or(Value::Null, wrap))
    }
    match *ty {
        Type::BOOL => get(row, i, Value::Bool),
        Type::INT2 => get(row, i, Value::I16),
        Type::INT4 => get(row, i, Value::I32),
        Type::INT8 => get(row, i, Value::I64),
        Type::OID => get(row, i, |v: u32| Value::I64(v.into())),
        Type::FLOAT4 => get(row, i, Value::F32),
        Type::FLOAT8 => get(row, i, Value::F64),
        Type::NUMERIC => get(row, i, Value::Decimal),
        Type::BYTEA => get(row, i, Value::Bytes),
        Type::DATE => get(row, i, Value::Date),
        Type::TIME => get(row, i, Value::Time),
        Type::TIMESTAMP => get(row, i, Value::Timestamp),
        Type::TIMESTAMPTZ => get(row, i, Value::TimestampTz),
        Type::UUID => get(row, i, Value::Uuid),
        Type::JSON | Type::JSONB => get(row, i, Value::Json),
        _ => match ty.kind() {
            tokio_postgres::types::Kind::Array(member) => read_array(row, i, member),
            _ => get(row, i, Value::Text),
        },
    }
}

/// Arrays of the scalar types, read element by element (NULL elements kept).
fn read_array(
    row: &tokio_postgres::Row,
    i: usize,
    member: &Type,
) -> std::result::Result<Value, tokio_postgres::Error> {
    fn items<'a, T: tokio_postgres::types::FromSql<'a>>(
        row: &'a tokio_postgres::Row,
        i: usize,
        wrap: impl Fn(T) -> Value,
    ) -> std::result::Result<Value, tokio_postgres::Error> {
        Ok(match row.try_get::<_, Option<Vec<Option<T>>>>(i)? {
            None => Value::Null,
            Some(v) => Value::Array(v.into_iter().map(|x| x.map_or(Value::Null, &wrap)).collect()),
        })
    }
    match *member {
        Type::BOOL => items(row, i, Value::Bool),
        Type::INT2 => items(row, i, Value::I16),
        Type::INT4 => items(row, i, Value::I32),
        Type::INT8 => items(row, i, Value::I64),
        Type::FLOAT4 => items(row, i, Value::F32),
        Type::FLOAT8 => items(row, i, Value::F64),
        Type::NUMERIC => items(row, i, Value::Decimal),
        Type::BYTEA => items(row, i, Value::Bytes),
        Type::DATE => items(row, i, Value::Date),
        Type::TIME => items(row, i, Value::Time),
        Type::TIMESTAMP => items(row, i, Value::Timestamp),
        Type::TIMESTAMPTZ => items(row, i, Value::TimestampTz),
        Type::UUID => items(row, i, Value::Uuid),
        Type::JSON | Type::JSONB => items(row, i, Value::Json),
        _ => items(row, i, Value::Text),
    }
}

/// A `Value` bound to a parameter of whatever type the server inferred:
/// converted (with range checks) to that type, or sent as text.
#[derive(Debug)]
pub(super) struct PgBind<'a>(&'a Value);

type BoxError = Box<dyn std::error::Error + Sync + Send>;

fn cannot(value: &Value, ty: &Type) -> BoxError {
    format!(
        "cannot bind a {} value to a parameter of type {ty}",
        value.type_name()
    )
    .into()
}

impl ToSql for PgBind<'_> {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> std::result::Result<IsNull, BoxError> {
        let v = self.0;
        if v.is_null() {
            return Ok(IsNull::Yes);
        }
        match *ty {
            Type::BOOL => bool::from_value(v).ok_or_else(|| cannot(v, ty))?.to_sql(ty, out),
            Type::INT2 => i16::from_value(v).ok_or_else(|| cannot(v, ty))?.to_sql(ty, out),
            Type::INT4 => i32::from_value(v).ok_or_else(|| cannot(v, ty))?.to_sql(ty, out),
            Type::INT8 => i64::from_value(v).ok_or_else(|| cannot(v, ty))?.to_sql(ty, out),
            Type::OID => u32::from_value(v).ok_or_else(|| cannot(v, ty))?.to_sql(ty, out),
            Type::FLOAT4 => f32::from_value(v).ok_or_else(|| cannot(v, ty))?.to_sql(ty, out),
            Type::FLOAT8 => f64::from_value(v).ok_or_else(|| cannot(v, ty))?.to_sql(ty, out),
            Type::NUMERIC => rust_decimal::Decimal::from_value(v)
                .ok_or_else(|| cannot(v, ty))?
                .to_sql(ty, out),
            Type::BYTEA => match v {
                Value::Bytes(b) => b.as_slice().to_sql(ty, out),
                _ => Err(cannot(v, ty)),
            },
            Type::DATE => chrono::NaiveDate::from_value(v)
                .ok_or_else(|| cannot(v, ty))?
                .to_sql(ty, out),
            Type::TIME => chrono::NaiveTime::from_value(v)
                .ok_or_else(|| cannot(v, ty))?
                .to_sql(ty, out),
            Type::TIMESTAMP => chrono::NaiveDateTime::from_value(v)
                .ok_or_else(|| cannot(v, ty))?
                .to_sql(ty, out),
            Type::TIMESTAMPTZ => match v {
                Value::Timestamp(t) => t.and_utc().to_sql(ty, out),
                _ => chrono::DateTime::<chrono::Utc>::from_value(v)
                    .ok_or_else(|| cannot(v, ty))?
                    .to_sql(ty, out),
            },
            Type::UUID => uuid::Uuid::from_value(v)
                .ok_or_else(|| cannot(v, ty))?
                .to_sql(ty, out),
            Type::JSON | Type::JSONB => match v {
                Value::Json(j) => j.to_sql(ty, out),
                Value::Text(s) => serde_json::from_str::<serde_json::Value>(s)?.to_sql(ty, out),
                other => crate::value::to_json(other).to_sql(ty, out),
            },
            _ if matches!(ty.kind(), tokio_postgres::types::Kind::Array(_)) => match v {
                // Each element is bound to the array's member type.
                Value::Array(items) => items.iter().map(PgBind).collect::<Vec<_>>().to_sql(ty, out),
                _ => Err(cannot(v, ty)),
            },
            // Text and every type we do not know: the value's text form,
            // which the server parses as it would a literal.
            _ => text_form(v)
                .ok_or_else(|| cannot(v, ty))?
                .as_str()
                .to_sql(&Type::TEXT, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn text_form(v: &Value) -> Option<String> {
    Some(match v {
        Value::Null => return None,
        Value::Bool(b) => b.to_string(),
        Value::I16(x) => x.to_string(),
        Value::I32(x) => x.to_string(),
        Value::I64(x) => x.to_string(),
        Value::F32(x) => x.to_string(),
        Value::F64(x) => x.to_string(),
        Value::Text(s) => s.clone(),
        Value::Bytes(b) => {
            let mut s = String::from("\\x");
            for byte in b {
                s.push_str(&format!("{byte:02x}"));
            }
            s
        }
        Value::Decimal(d) => d.to_string(),
        Value::Date(d) => d.to_string(),
        Value::Time(t) => t.to_string(),
        Value::Timestamp(t) => t.to_string(),
        Value::TimestampTz(t) => t.to_rfc3339(),
        Value::Uuid(u) => u.to_string(),
        Value::Json(j) => j.to_string(),
        Value::Array(_) => return None,
    })
}
