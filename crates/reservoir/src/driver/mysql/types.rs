//! Values to and from MySQL's protocol values, read by column type (the
//! text protocol sends every value as bytes; the binary one types them).

use std::sync::Arc;

use chrono::{Datelike, NaiveDate, NaiveTime, Timelike};
use mysql_async::Value as My;
use mysql_async::consts::{ColumnFlags, ColumnType};

use crate::error::{Error, ErrorKind, Result};
use crate::row::{Column, Row};
use crate::value::{Value, to_json};

/// MySQL's "binary" character set: BLOB and BINARY columns.
const BINARY_CHARSET: u16 = 63;

/// A parameter as MySQL takes it.
pub(super) fn to_mysql(v: &Value) -> My {
    match v {
        Value::Null => My::NULL,
        Value::Bool(b) => My::Int(i64::from(*b)),
        Value::I16(x) => My::Int((*x).into()),
        Value::I32(x) => My::Int((*x).into()),
        Value::I64(x) => My::Int(*x),
        Value::F32(x) => My::Float(*x),
        Value::F64(x) => My::Double(*x),
        Value::Text(s) | Value::Numeric(s) => My::Bytes(s.as_bytes().to_vec()),
        Value::Bytes(b) => My::Bytes(b.clone()),
        Value::Decimal(d) => My::Bytes(d.to_string().into_bytes()),
        // As text: MySQL's binary date value is a DATETIME, which a bare
        // `SELECT ?` would give back as one.
        Value::Date(d) => My::Bytes(d.to_string().into_bytes()),
        Value::Time(t) => My::Time(
            false,
            0,
            t.hour() as u8,
            t.minute() as u8,
            t.second() as u8,
            micros(t),
        ),
        Value::Timestamp(ts) => datetime(ts),
        Value::TimestampTz(ts) => datetime(&ts.naive_utc()),
        Value::Uuid(u) => My::Bytes(u.to_string().into_bytes()),
        Value::Json(j) => My::Bytes(j.to_string().into_bytes()),
        // No array type: stored as JSON text, as on SQLite.
        Value::Array(_) => My::Bytes(to_json(v).to_string().into_bytes()),
    }
}

fn micros(t: &NaiveTime) -> u32 {
    t.nanosecond() / 1000
}

fn datetime(ts: &chrono::NaiveDateTime) -> My {
    My::Date(
        ts.year() as u16,
        ts.month() as u8,
        ts.day() as u8,
        ts.hour() as u8,
        ts.minute() as u8,
        ts.second() as u8,
        micros(&ts.time()),
    )
}

/// A result's columns with what is needed to read each value.
#[derive(Clone)]
pub(super) struct Shape {
    columns: Arc<[Column]>,
    kinds: Arc<[(ColumnType, bool)]>,
}

impl Shape {
    pub(super) fn of(columns: &[mysql_async::Column]) -> Shape {
        Shape {
            columns: columns
                .iter()
                .map(|c| Column::new(c.name_str(), Some(type_name(c.column_type()).to_string())))
                .collect(),
            kinds: columns
                .iter()
                .map(|c| {
                    let binary = c.character_set() == BINARY_CHARSET
                        && !c.flags().contains(ColumnFlags::NUM_FLAG)
                        && !matches!(
                            c.column_type(),
                            ColumnType::MYSQL_TYPE_DATE
                                | ColumnType::MYSQL_TYPE_TIME
                                | ColumnType::MYSQL_TYPE_DATETIME
                                | ColumnType::MYSQL_TYPE_TIMESTAMP
                                | ColumnType::MYSQL_TYPE_JSON
                        );
                    (c.column_type(), binary)
                })
                .collect(),
        }
    }

    pub(super) fn read(&self, row: mysql_async::Row) -> Result<Row> {
        let values = row
            .unwrap()
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                let (ty, binary) = self.kinds[i];
                from_mysql(v, ty, binary).map_err(|why| {
                    Error::new(
                        ErrorKind::Decode,
                        format!(
                            "column '{}' of type {}: {why}",
                            self.columns[i].name(),
                            type_name(ty)
                        ),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Row::new(Arc::clone(&self.columns), values))
    }
}

fn type_name(ty: ColumnType) -> &'static str {
    use ColumnType::*;
    match ty {
        MYSQL_TYPE_TINY => "TINYINT",
        MYSQL_TYPE_SHORT => "SMALLINT",
        MYSQL_TYPE_INT24 => "MEDIUMINT",
        MYSQL_TYPE_LONG => "INT",
        MYSQL_TYPE_LONGLONG => "BIGINT",
        MYSQL_TYPE_YEAR => "YEAR",
        MYSQL_TYPE_FLOAT => "FLOAT",
        MYSQL_TYPE_DOUBLE => "DOUBLE",
        MYSQL_TYPE_DECIMAL | MYSQL_TYPE_NEWDECIMAL => "DECIMAL",
        MYSQL_TYPE_DATE => "DATE",
        MYSQL_TYPE_TIME => "TIME",
        MYSQL_TYPE_DATETIME => "DATETIME",
        MYSQL_TYPE_TIMESTAMP => "TIMESTAMP",
        MYSQL_TYPE_JSON => "JSON",
        MYSQL_TYPE_BIT => "BIT",
        MYSQL_TYPE_NULL => "NULL",
        MYSQL_TYPE_BLOB | MYSQL_TYPE_TINY_BLOB | MYSQL_TYPE_MEDIUM_BLOB | MYSQL_TYPE_LONG_BLOB => "BLOB",
        _ => "VARCHAR",
    }
}

/// Reads `raw` as a text-protocol value of the column type `ty`: the fuzz
/// targets' way in.
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_read(ty: u8, raw: &[u8]) {
    if let Ok(ty) = ColumnType::try_from(ty) {
        let _ = from_mysql(My::Bytes(raw.to_vec()), ty, false);
    }
}

/// A value as reservoir shows it. Integers keep their width (as on
/// PostgreSQL); text-protocol bytes are parsed by the column's type.
fn from_mysql(v: My, ty: ColumnType, binary: bool) -> std::result::Result<Value, String> {
    use ColumnType::*;
    let text = |b: Vec<u8>| String::from_utf8(b).map_err(|e| format!("not UTF-8: {e}"));
    Ok(match (v, ty) {
        (My::NULL, _) => Value::Null,
        // Widened when the value needs it (an UNSIGNED column's top half),
        // never cut to fit.
        (My::Int(i), MYSQL_TYPE_TINY | MYSQL_TYPE_SHORT | MYSQL_TYPE_YEAR) => match i16::try_from(i) {
            Ok(v) => Value::I16(v),
            Err(_) => i32::try_from(i).map_or(Value::I64(i), Value::I32),
        },
        (My::Int(i), MYSQL_TYPE_LONG | MYSQL_TYPE_INT24) => {
            i32::try_from(i).map_or(Value::I64(i), Value::I32)
        }
        (My::Int(i), _) => Value::I64(i),
        (My::UInt(u), _) => match i64::try_from(u) {
            Ok(i) => Value::I64(i),
            Err(_) => Value::Decimal(u.into()),
        },
        (My::Float(f), _) => Value::F32(f),
        (My::Double(d), _) => Value::F64(d),
        (My::Date(y, m, d, ..), MYSQL_TYPE_DATE) => Value::Date(date(y, m, d)?),
        (My::Date(y, m, d, h, mi, s, us), _) => {
            Value::Timestamp(date(y, m, d)?.and_time(time(h, mi, s, us)?))
        }
        (My::Time(false, 0, h, m, s, us), _) => Value::Time(time(h, m, s, us)?),
        (My::Time(neg, days, h, m, s, us), _) => Value::Text(format!(
            "{}{:02}:{m:02}:{s:02}.{us:06}",
            if neg { "-" } else { "" },
            u32::from(h) + days * 24
        )),
        (My::Bytes(b), MYSQL_TYPE_TINY | MYSQL_TYPE_SHORT | MYSQL_TYPE_YEAR) => Value::I16(parse(&text(b)?)?),
        (My::Bytes(b), MYSQL_TYPE_LONG | MYSQL_TYPE_INT24) => Value::I32(parse(&text(b)?)?),
        (My::Bytes(b), MYSQL_TYPE_LONGLONG) => Value::I64(parse(&text(b)?)?),
        (My::Bytes(b), MYSQL_TYPE_FLOAT) => Value::F32(parse(&text(b)?)?),
        (My::Bytes(b), MYSQL_TYPE_DOUBLE) => Value::F64(parse(&text(b)?)?),
        (My::Bytes(b), MYSQL_TYPE_DECIMAL | MYSQL_TYPE_NEWDECIMAL) => Value::Decimal(parse(&text(b)?)?),
        (My::Bytes(b), MYSQL_TYPE_DATE) => Value::Date(parse(&text(b)?)?),
        (My::Bytes(b), MYSQL_TYPE_TIME) => Value::Time(parse(&text(b)?)?),
        (My::Bytes(b), MYSQL_TYPE_DATETIME | MYSQL_TYPE_TIMESTAMP) => {
            let s = text(b)?;
            Value::Timestamp(
                chrono::NaiveDateTime::parse_from_str(&s, "%Y-%m-%d %H:%M:%S%.f")
                    .map_err(|e| format!("{s:?}: {e}"))?,
            )
        }
        (My::Bytes(b), MYSQL_TYPE_JSON) => {
            Value::Json(serde_json::from_slice(&b).map_err(|e| format!("not JSON: {e}"))?)
        }
        (My::Bytes(b), _) if binary => Value::Bytes(b),
        // A string column holding bytes that are not text (a bytes
        // parameter selected back comes as a string): kept as bytes.
        (My::Bytes(b), _) => match String::from_utf8(b) {
            Ok(s) => Value::Text(s),
            Err(e) => Value::Bytes(e.into_bytes()),
        },
    })
}

fn parse<T: std::str::FromStr>(s: &str) -> std::result::Result<T, String>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e| format!("{s:?}: {e}"))
}

fn date(y: u16, m: u8, d: u8) -> std::result::Result<NaiveDate, String> {
    NaiveDate::from_ymd_opt(y.into(), m.into(), d.into()).ok_or_else(|| format!("no such date {y}-{m}-{d}"))
}

fn time(h: u8, m: u8, s: u8, us: u32) -> std::result::Result<NaiveTime, String> {
    NaiveTime::from_hms_micro_opt(h.into(), m.into(), s.into(), us)
        .ok_or_else(|| format!("no such time {h}:{m}:{s}"))
}
