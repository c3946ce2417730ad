//! Values to and from PostgreSQL's binary formats.

use std::sync::Arc;

use tokio_postgres::Statement;
use tokio_postgres::types::{Format, IsNull, Kind, ToSql, Type, to_sql_checked};

use crate::driver::LazyRow;
use crate::error::{Error, ErrorKind, Result};
use crate::row::{Column, Row};
use crate::value::{FromValue, Value};

/// A prepared statement and its result columns, built once.
#[derive(Clone)]
pub(super) struct Prepared {
    pub(super) stmt: Statement,
    pub(super) shape: Shape,
}

impl Prepared {
    pub(super) fn new(stmt: Statement) -> Self {
        let shape = Shape::of(stmt.columns());
        Prepared { stmt, shape }
    }
}

/// The parameters as tokio-postgres binds them, without collecting them
/// first (`query_raw` and `execute_raw` take an iterator).
pub(super) fn bound(params: &[Value]) -> impl ExactSizeIterator<Item = PgBind<'_>> {
    params.iter().map(PgBind)
}

/// Parameters typed by their values, for statements sent unnamed (no
/// prepare round trip to learn the server's types). Text and NULL go
/// untyped, as text, so the server infers their type from the statement as
/// it would for a literal: a string binds to a date or uuid column too.
pub(super) fn typed(params: &[Value]) -> impl ExactSizeIterator<Item = (PgBind<'_>, Type)> {
    params.iter().map(|v| (PgBind(v), value_type(v)))
}

fn value_type(v: &Value) -> Type {
    match v {
        Value::Bool(_) => Type::BOOL,
        Value::I16(_) => Type::INT2,
        Value::I32(_) => Type::INT4,
        Value::I64(_) => Type::INT8,
        Value::F32(_) => Type::FLOAT4,
        Value::F64(_) => Type::FLOAT8,
        Value::Decimal(_) => Type::NUMERIC,
        Value::Bytes(_) => Type::BYTEA,
        Value::Date(_) => Type::DATE,
        Value::Time(_) => Type::TIME,
        Value::Timestamp(_) => Type::TIMESTAMP,
        Value::TimestampTz(_) => Type::TIMESTAMPTZ,
        Value::Uuid(_) => Type::UUID,
        Value::Json(_) => Type::JSONB,
        Value::Array(items) => match items.iter().find(|i| !i.is_null()).map(value_type) {
            Some(member) => array_of(&member),
            None => Type::UNKNOWN,
        },
        // An out-of-range NUMERIC goes as text too: the server parses it.
        Value::Null | Value::Text(_) | Value::Numeric(_) => Type::UNKNOWN,
    }
}

fn array_of(member: &Type) -> Type {
    match *member {
        Type::BOOL => Type::BOOL_ARRAY,
        Type::INT2 => Type::INT2_ARRAY,
        Type::INT4 => Type::INT4_ARRAY,
        Type::INT8 => Type::INT8_ARRAY,
        Type::FLOAT4 => Type::FLOAT4_ARRAY,
        Type::FLOAT8 => Type::FLOAT8_ARRAY,
        Type::NUMERIC => Type::NUMERIC_ARRAY,
        Type::BYTEA => Type::BYTEA_ARRAY,
        Type::DATE => Type::DATE_ARRAY,
        Type::TIME => Type::TIME_ARRAY,
        Type::TIMESTAMP => Type::TIMESTAMP_ARRAY,
        Type::TIMESTAMPTZ => Type::TIMESTAMPTZ_ARRAY,
        Type::UUID => Type::UUID_ARRAY,
        Type::JSONB => Type::JSONB_ARRAY,
        _ => Type::UNKNOWN,
    }
}

/// Whether values of `ty` are sent in binary; every other type gets the
/// value's text form in text format, which the server parses like a literal.
fn is_binary(ty: &Type) -> bool {
    match *ty {
        Type::BOOL
        | Type::INT2
        | Type::INT4
        | Type::INT8
        | Type::OID
        | Type::FLOAT4
        | Type::FLOAT8
        | Type::NUMERIC
        | Type::BYTEA
        | Type::DATE
        | Type::TIME
        | Type::TIMESTAMP
        | Type::TIMESTAMPTZ
        | Type::UUID
        | Type::JSON
        | Type::JSONB => true,
        _ => matches!(ty.kind(), Kind::Array(member) if is_binary(member)),
    }
}

// ---- values --------------------------------------------------------------

/// A result's columns, and whether each can be read, worked out once per
/// result (per prepared statement) rather than per row.
#[derive(Clone)]
pub(super) struct Shape {
    pub(super) columns: Arc<[Column]>,
    /// A column whose type cannot be read (checked once, reported on the
    /// first row, so that rows themselves decode without failing).
    unreadable: Option<Arc<str>>,
}

impl Shape {
    pub(super) fn of(columns: &[tokio_postgres::Column]) -> Shape {
        let unreadable = columns
            .iter()
            .find(|c| !Decoder::of(c.type_()).reads(c.type_()))
            .map(|c| {
                Arc::from(format!(
                    "column '{}' of type {} cannot be read (cast it to text in the query)",
                    c.name(),
                    c.type_()
                ))
            });
        Shape {
            columns: columns
                .iter()
                .map(|c| Column::new(c.name(), Some(c.type_().name().to_string())))
                .collect(),
            unreadable,
        }
    }
}

/// A row, decoded when first read (see [`LazyRow`]).
pub(super) fn read_row(row: tokio_postgres::Row, shape: &Shape) -> Result<Row> {
    if let Some(why) = &shape.unreadable {
        return Err(Error::new(ErrorKind::Decode, why.to_string()));
    }
    Ok(Row::lazy(
        Arc::clone(&shape.columns),
        LazyRow::Postgres(PgRow(row)),
    ))
}

/// tokio-postgres's row, which keeps the values as the server sent them.
pub(crate) struct PgRow(tokio_postgres::Row);

impl PgRow {
    /// Column `i`, decoded.
    pub(crate) fn value(&self, i: usize) -> Value {
        // The column's bytes, read by the decoder for its type (`Shape::of`
        // checked there is one), without tokio-postgres checking the type
        // again per value.
        let Some(raw) = self.0.try_get::<_, Option<RawBytes<'_>>>(i).ok().flatten() else {
            return Value::Null;
        };
        let ty = self.0.columns()[i].type_();
        // What is left to fail is malformed data from the server, kept as
        // its bytes. Every reader checks its bytes first; catching a panic
        // is the last defence (a field crate's reader may still have one).
        let read = std::panic::catch_unwind(|| Decoder::of(ty).read(ty, raw.0));
        match read {
            Ok(Ok(value)) => value,
            Ok(Err(_)) | Err(_) => Value::Bytes(raw.0.to_vec()),
        }
    }
}

/// A value's bytes as the server sent them, whatever its type.
struct RawBytes<'a>(&'a [u8]);

impl<'a> tokio_postgres::types::FromSql<'a> for RawBytes<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> std::result::Result<Self, BoxError> {
        Ok(RawBytes(raw))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// How one column's values are read into `Value`s.
#[derive(Clone, Copy)]
enum Decoder {
    Bool,
    I16,
    I32,
    I64,
    Oid,
    F32,
    F64,
    Numeric,
    Bytes,
    Date,
    Time,
    Timestamp,
    TimestampTz,
    Uuid,
    Json,
    Array,
    /// Text, and every type without a mapping (its text form).
    Text,
}

impl Decoder {
    fn of(ty: &Type) -> Decoder {
        match *ty {
            Type::BOOL => Decoder::Bool,
            Type::INT2 => Decoder::I16,
            Type::INT4 => Decoder::I32,
            Type::INT8 => Decoder::I64,
            Type::OID => Decoder::Oid,
            Type::FLOAT4 => Decoder::F32,
            Type::FLOAT8 => Decoder::F64,
            Type::NUMERIC => Decoder::Numeric,
            Type::BYTEA => Decoder::Bytes,
            Type::DATE => Decoder::Date,
            Type::TIME => Decoder::Time,
            Type::TIMESTAMP => Decoder::Timestamp,
            Type::TIMESTAMPTZ => Decoder::TimestampTz,
            Type::UUID => Decoder::Uuid,
            Type::JSON | Type::JSONB => Decoder::Json,
            _ if matches!(ty.kind(), Kind::Array(_)) => Decoder::Array,
            _ => Decoder::Text,
        }
    }

    /// Whether this decoder can read values of `ty` (the text fallback
    /// reads only text-like types; arrays only of members it reads).
    fn reads(self, ty: &Type) -> bool {
        use tokio_postgres::types::FromSql;
        match (self, ty.kind()) {
            (Decoder::Text, _) => <String as FromSql>::accepts(ty),
            (Decoder::Array, Kind::Array(member)) => {
                let member_decoder = Decoder::of(member);
                !matches!(member_decoder, Decoder::Array) && member_decoder.reads(member)
            }
            _ => true,
        }
    }

    /// A non-NULL value of type `ty` from its bytes.
    fn read(self, ty: &Type, raw: &[u8]) -> std::result::Result<Value, BoxError> {
        use tokio_postgres::types::FromSql;
        Ok(match self {
            Decoder::Bool => Value::Bool(FromSql::from_sql(ty, raw)?),
            Decoder::I16 => Value::I16(FromSql::from_sql(ty, raw)?),
            Decoder::I32 => Value::I32(FromSql::from_sql(ty, raw)?),
            Decoder::I64 => Value::I64(FromSql::from_sql(ty, raw)?),
            Decoder::Oid => Value::I64(<u32 as FromSql>::from_sql(ty, raw)?.into()),
            Decoder::F32 => Value::F32(FromSql::from_sql(ty, raw)?),
            Decoder::F64 => Value::F64(FromSql::from_sql(ty, raw)?),
            Decoder::Numeric => super::numeric::read(raw)?,
            Decoder::Bytes => Value::Bytes(FromSql::from_sql(ty, raw)?),
            Decoder::Date => Value::Date(FromSql::from_sql(ty, raw)?),
            Decoder::Time => Value::Time(FromSql::from_sql(ty, raw)?),
            Decoder::Timestamp => Value::Timestamp(FromSql::from_sql(ty, raw)?),
            Decoder::TimestampTz => Value::TimestampTz(FromSql::from_sql(ty, raw)?),
            Decoder::Uuid => Value::Uuid(FromSql::from_sql(ty, raw)?),
            Decoder::Json => Value::Json(FromSql::from_sql(ty, raw)?),
            Decoder::Array => match ty.kind() {
                Kind::Array(member) => read_array(member, raw)?,
                _ => Value::Text(FromSql::from_sql(ty, raw)?),
            },
            Decoder::Text => Value::Text(FromSql::from_sql(ty, raw)?),
        })
    }
}

/// Reads `raw` as a value of the type `oid` names, as a row would: the
/// fuzz targets' way in (the reader must never panic on any bytes).
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_read(oid: u32, raw: &[u8]) {
    if let Some(ty) = Type::from_oid(oid) {
        let _ = Decoder::of(&ty).read(&ty, raw);
    }
}

/// A one-dimensional array of a scalar type, element by element (NULL
/// elements kept). The header's element count is checked against the bytes
/// present before anything is built, and elements are collected one by
/// one: a header claiming 2^31 elements costs nothing.
fn read_array(member: &Type, raw: &[u8]) -> std::result::Result<Value, BoxError> {
    check_array_header(raw)?;
    let array = postgres_protocol::types::array_from_sql(raw)?;
    if fallible_iterator::FallibleIterator::count(array.dimensions())? > 1 {
        return Err("arrays of more than one dimension are not read (cast to text)".into());
    }
    let decoder = Decoder::of(member);
    let mut items = Vec::new();
    let mut values = array.values();
    while let Some(item) = fallible_iterator::FallibleIterator::next(&mut values)? {
        items.push(match item {
            None => Value::Null,
            Some(bytes) => decoder.read(member, bytes)?,
        });
    }
    Ok(Value::Array(items))
}

/// An array header's claims against the bytes that follow it: at most six
/// dimensions (PostgreSQL's limit), non-negative lengths, and at least the
/// four length bytes of every element it counts.
fn check_array_header(raw: &[u8]) -> std::result::Result<(), BoxError> {
    let int = |at: usize| -> std::result::Result<i32, BoxError> {
        raw.get(at..at + 4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| "an array header cut short".into())
    };
    let ndim = int(0)?;
    if !(0..=6).contains(&ndim) {
        return Err(format!("an array header with {ndim} dimensions").into());
    }
    let mut count: u64 = if ndim == 0 { 0 } else { 1 };
    for d in 0..ndim as usize {
        let len = int(12 + 8 * d)?;
        count = count.saturating_mul(u64::try_from(len).map_err(|_| "a negative array length")?);
    }
    let body = raw.len().saturating_sub(12 + 8 * ndim as usize) as u64;
    if count.saturating_mul(4) > body {
        return Err(format!("an array header claiming {count} elements in {body} bytes").into());
    }
    Ok(())
}

/// A `Value` bound to a parameter of whatever type the server inferred:
/// converted (with range checks) to that type, or sent as text.
pub(super) struct PgBind<'a>(pub(super) &'a Value);

/// Shows the value's type, never the value: tokio-postgres logs every
/// statement's parameters at DEBUG through this.
impl std::fmt::Debug for PgBind<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} value>", self.0.type_name())
    }
}

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
        if matches!(self.encode_format(ty), Format::Text) {
            // Text format (see `encode_format`): the bytes of the text form.
            let text = text_form(v).ok_or_else(|| cannot(v, ty))?;
            out.extend_from_slice(text.as_bytes());
            return Ok(IsNull::No);
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
            _ => match v {
                // An array type whose members are binary (`is_binary`): each
                // element is bound to the member type.
                Value::Array(items) => items.iter().map(PgBind).collect::<Vec<_>>().to_sql(ty, out),
                _ => Err(cannot(v, ty)),
            },
        }
    }

    fn encode_format(&self, ty: &Type) -> Format {
        // A NUMERIC beyond `Decimal` has no binary form here: the server
        // parses its exact text.
        if is_binary(ty) && !matches!(self.0, Value::Numeric(_)) {
            Format::Binary
        } else {
            Format::Text
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
        Value::Text(s) | Value::Numeric(s) => s.clone(),
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
        Value::Array(items) => array_literal(items)?,
    })
}

/// `{1,NULL,"a b"}`: every element quoted (with `"` and `\` escaped), so
/// the server parses each as a literal of the member type.
fn array_literal(items: &[Value]) -> Option<String> {
    let mut out = String::from("{");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match item {
            Value::Null => out.push_str("NULL"),
            Value::Array(_) => out.push_str(&text_form(item)?),
            _ => {
                out.push('"');
                for c in text_form(item)?.chars() {
                    if c == '"' || c == '\\' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push('"');
            }
        }
    }
    out.push('}');
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An array's binary form: its header, then each element (`None`: NULL).
    fn array(dims: &[(i32, i32)], member: u32, items: &[Option<&[u8]>]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(dims.len() as i32).to_be_bytes());
        out.extend_from_slice(&(items.iter().any(Option::is_none) as i32).to_be_bytes());
        out.extend_from_slice(&member.to_be_bytes());
        for (len, lower) in dims {
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&lower.to_be_bytes());
        }
        for item in items {
            match item {
                None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(b) => {
                    out.extend_from_slice(&(b.len() as i32).to_be_bytes());
                    out.extend_from_slice(b);
                }
            }
        }
        out
    }

    fn read_int8s(raw: &[u8]) -> std::result::Result<Value, BoxError> {
        Decoder::of(&Type::INT8_ARRAY).read(&Type::INT8_ARRAY, raw)
    }

    #[test]
    fn arrays_are_read_element_by_element() {
        let seven = 7i64.to_be_bytes();
        let raw = array(&[(2, 1)], Type::INT8.oid(), &[Some(&seven), None]);
        assert_eq!(
            read_int8s(&raw).unwrap(),
            Value::Array(vec![Value::I64(7), Value::Null])
        );
        assert_eq!(
            read_int8s(&array(&[], Type::INT8.oid(), &[])).unwrap(),
            Value::Array(vec![])
        );
    }

    /// A header claiming 2^31-1 elements once made `row.get` allocate
    /// 34 GB and abort the process: now it is an error, at once.
    #[test]
    fn a_hostile_array_header_is_an_error_not_an_allocation() {
        let seven = 7i64.to_be_bytes();
        for raw in [
            array(&[(i32::MAX, 1)], Type::INT8.oid(), &[Some(&seven)]),
            array(&[(-1, 1)], Type::INT8.oid(), &[]),
            array(&[(65_536, 1), (65_536, 1)], Type::INT8.oid(), &[Some(&seven)]),
            array(&[(1, 1); 7], Type::INT8.oid(), &[Some(&seven)]),
            array(&[(2, 1)], Type::INT8.oid(), &[Some(&seven), Some(&[1, 2])]),
            array(&[(1, 1), (1, 1)], Type::INT8.oid(), &[Some(&seven)]),
            vec![0, 0, 0, 1, 0, 0],
        ] {
            assert!(read_int8s(&raw).is_err(), "{raw:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn no_array_bytes_panic(raw in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            for ty in [Type::INT8_ARRAY, Type::NUMERIC_ARRAY, Type::TEXT_ARRAY, Type::UUID_ARRAY] {
                let _ = Decoder::of(&ty).read(&ty, &raw);
            }
        }
    }
}
