//! `Value`: every type a statement parameter or a result column can carry,
//! and the conversions to and from Rust types.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::error::{Error, ErrorKind};

/// One SQL value.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// SQL NULL.
    Null,
    /// BOOLEAN.
    Bool(bool),
    /// SMALLINT.
    I16(i16),
    /// INTEGER.
    I32(i32),
    /// BIGINT (and every SQLite integer).
    I64(i64),
    /// REAL.
    F32(f32),
    /// DOUBLE PRECISION.
    F64(f64),
    /// TEXT, VARCHAR.
    Text(String),
    /// BYTEA, BLOB.
    Bytes(Vec<u8>),
    /// NUMERIC, DECIMAL.
    Decimal(Decimal),
    /// A NUMERIC that [`Decimal`] cannot hold exactly (above 7.9e28, more
    /// than 28 digits after the point, `NaN`, `Infinity`), in its exact
    /// text form: never rounded to fit. Reads as a `String` or an `f64`
    /// (rounding there is the caller's choice), not as a `Decimal`.
    Numeric(String),
    /// DATE.
    Date(NaiveDate),
    /// TIME.
    Time(NaiveTime),
    /// TIMESTAMP without time zone.
    Timestamp(NaiveDateTime),
    /// TIMESTAMP WITH TIME ZONE.
    TimestampTz(DateTime<Utc>),
    /// UUID.
    Uuid(Uuid),
    /// JSON, JSONB.
    Json(serde_json::Value),
    /// An array (PostgreSQL arrays; JSON text on SQLite). See [`Array`].
    Array(Vec<Value>),
}

impl Value {
    /// The SQL-ish name of this value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Bool(_) => "BOOLEAN",
            Value::I16(_) => "SMALLINT",
            Value::I32(_) => "INTEGER",
            Value::I64(_) => "BIGINT",
            Value::F32(_) => "REAL",
            Value::F64(_) => "DOUBLE",
            Value::Text(_) => "TEXT",
            Value::Bytes(_) => "BYTES",
            Value::Decimal(_) | Value::Numeric(_) => "DECIMAL",
            Value::Date(_) => "DATE",
            Value::Time(_) => "TIME",
            Value::Timestamp(_) => "TIMESTAMP",
            Value::TimestampTz(_) => "TIMESTAMPTZ",
            Value::Uuid(_) => "UUID",
            Value::Json(_) => "JSON",
            Value::Array(_) => "ARRAY",
        }
    }

    /// Whether this is NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::I16(v) => Some(v.into()),
            Value::I32(v) => Some(v.into()),
            Value::I64(v) => Some(v),
            Value::Bool(v) => Some(v.into()),
            _ => None,
        }
    }
}

/// Converts a Rust value into a [`Value`] for binding.
pub trait ToValue {
    /// The value to bind.
    fn to_value(&self) -> Value;
}

/// Converts a [`Value`] read from a row into a Rust type.
pub trait FromValue: Sized {
    /// The Rust type's name, for error messages.
    const RUST_TYPE: &'static str;
    /// Converts, or returns `None` if the value does not fit this type.
    fn from_value(value: &Value) -> Option<Self>;
    /// Like [`from_value`](Self::from_value), taking the value (text and
    /// bytes move instead of being copied).
    fn from_owned(value: Value) -> Option<Self> {
        Self::from_value(&value)
    }
}

/// The error for a value that does not fit the requested type.
pub(crate) fn mismatch(column: &str, value: &Value, rust_type: &str) -> Error {
    mismatch_of(column, value.type_name(), rust_type)
}

/// [`mismatch`] from the value's type name (when the value itself has moved).
pub(crate) fn mismatch_of(column: &str, value_type: &str, rust_type: &str) -> Error {
    Error::new(
        ErrorKind::Decode,
        format!("column '{column}': cannot read {value_type} value as {rust_type}"),
    )
}

impl ToValue for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
}

impl FromValue for Value {
    const RUST_TYPE: &'static str = "Value";
    fn from_value(value: &Value) -> Option<Self> {
        Some(value.clone())
    }
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}

impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToValue::to_value)
    }
}

impl<T: FromValue> FromValue for Option<T> {
    const RUST_TYPE: &'static str = T::RUST_TYPE;
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Null => Some(None),
            v => T::from_value(v).map(Some),
        }
    }
    fn from_owned(value: Value) -> Option<Self> {
        match value {
            Value::Null => Some(None),
            v => T::from_owned(v).map(Some),
        }
    }
}

macro_rules! integer {
    ($($t:ty => $variant:ident),*) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> Value { Value::$variant((*self).into()) }
        }
        impl FromValue for $t {
            const RUST_TYPE: &'static str = stringify!($t);
            #[inline]
            fn from_owned(value: Value) -> Option<Self> {
                // The common case without a call to drop the value.
                match value {
                    Value::$variant(i) => <$t>::try_from(i).ok(),
                    other => Self::from_value(&other),
                }
            }
            fn from_value(value: &Value) -> Option<Self> {
                match value {
                    Value::$variant(i) => <$t>::try_from(*i).ok(),
                    Value::Text(s) | Value::Numeric(s) => s.trim().parse().ok(),
                    Value::Decimal(d) => d.to_string().parse().ok(),
                    v => v.as_i64().and_then(|i| <$t>::try_from(i).ok()),
                }
            }
        }
    )*};
}
integer!(i8 => I16, i16 => I16, i32 => I32, i64 => I64, u8 => I16, u16 => I32, u32 => I64);

impl ToValue for bool {
    fn to_value(&self) -> Value {
        Value::Bool(*self)
    }
}
impl FromValue for bool {
    const RUST_TYPE: &'static str = "bool";
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Bool(b) => Some(*b),
            Value::Text(s) => match s.as_str() {
                "t" | "true" | "TRUE" | "1" => Some(true),
                "f" | "false" | "FALSE" | "0" => Some(false),
                _ => None,
            },
            v => match v.as_i64()? {
                0 => Some(false),
                1 => Some(true),
                _ => None,
            },
        }
    }
}

impl ToValue for f32 {
    fn to_value(&self) -> Value {
        Value::F32(*self)
    }
}
impl ToValue for f64 {
    fn to_value(&self) -> Value {
        Value::F64(*self)
    }
}
impl FromValue for f64 {
    const RUST_TYPE: &'static str = "f64";
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::F64(v) => Some(*v),
            Value::F32(v) => Some((*v).into()),
            Value::Decimal(d) => d.to_string().parse().ok(),
            Value::Text(s) | Value::Numeric(s) => s.trim().parse().ok(),
            v => v.as_i64().map(|i| i as f64),
        }
    }
}
impl FromValue for f32 {
    const RUST_TYPE: &'static str = "f32";
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::F32(v) => Some(*v),
            v => f64::from_value(v).map(|f| f as f32),
        }
    }
}

impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_owned())
    }
}
impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}
impl FromValue for String {
    const RUST_TYPE: &'static str = "String";
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Text(s) | Value::Numeric(s) => Some(s.clone()),
            Value::Json(j) => Some(j.to_string()),
            Value::Uuid(u) => Some(u.to_string()),
            Value::Decimal(d) => Some(d.to_string()),
            _ => None,
        }
    }
    #[inline]
    fn from_owned(value: Value) -> Option<Self> {
        match value {
            Value::Text(s) => Some(s),
            v => Self::from_value(&v),
        }
    }
}

impl ToValue for [u8] {
    fn to_value(&self) -> Value {
        Value::Bytes(self.to_vec())
    }
}
impl ToValue for Vec<u8> {
    fn to_value(&self) -> Value {
        Value::Bytes(self.clone())
    }
}
impl FromValue for Vec<u8> {
    const RUST_TYPE: &'static str = "Vec<u8>";
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Bytes(b) => Some(b.clone()),
            _ => None,
        }
    }
    fn from_owned(value: Value) -> Option<Self> {
        match value {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

impl ToValue for Decimal {
    fn to_value(&self) -> Value {
        Value::Decimal(*self)
    }
}
impl FromValue for Decimal {
    const RUST_TYPE: &'static str = "Decimal";
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Decimal(d) => Some(*d),
            Value::Text(s) => s.trim().parse().ok(),
            Value::F64(f) => Decimal::try_from(*f).ok(),
            Value::F32(f) => Decimal::try_from(*f).ok(),
            v => v.as_i64().map(Decimal::from),
        }
    }
}

/// Text forms accepted for timestamps stored as text (SQLite's convention).
const TIMESTAMP_FORMATS: [&str; 2] = ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"];

macro_rules! via_text {
    ($t:ty, $variant:ident, $parse:expr) => {
        impl ToValue for $t {
            fn to_value(&self) -> Value {
                Value::$variant(*self)
            }
        }
        impl FromValue for $t {
            const RUST_TYPE: &'static str = stringify!($t);
            fn from_value(value: &Value) -> Option<Self> {
                match value {
                    Value::$variant(v) => Some(*v),
                    Value::Text(s) => ($parse)(s.as_str()),
                    _ => None,
                }
            }
        }
    };
}
via_text!(NaiveDate, Date, |s: &str| s.parse().ok());
via_text!(NaiveTime, Time, |s: &str| s.parse().ok());
via_text!(NaiveDateTime, Timestamp, |s: &str| TIMESTAMP_FORMATS
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok()));
impl ToValue for DateTime<Utc> {
    fn to_value(&self) -> Value {
        Value::TimestampTz(*self)
    }
}
/// Naive timestamps (text on SQLite, DATETIME on MySQL: dialects without a
/// zoned type) are read as UTC.
impl FromValue for DateTime<Utc> {
    const RUST_TYPE: &'static str = "DateTime<Utc>";
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::TimestampTz(v) => Some(*v),
            Value::Timestamp(v) => Some(v.and_utc()),
            Value::Text(s) => DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|d| d.with_timezone(&Utc))
                .or_else(|| {
                    TIMESTAMP_FORMATS
                        .iter()
                        .find_map(|f| NaiveDateTime::parse_from_str(s.trim_end_matches("+00:00"), f).ok())
                        .map(|n| n.and_utc())
                }),
            _ => None,
        }
    }
}

impl ToValue for Uuid {
    fn to_value(&self) -> Value {
        Value::Uuid(*self)
    }
}
impl FromValue for Uuid {
    const RUST_TYPE: &'static str = "Uuid";
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Uuid(u) => Some(*u),
            Value::Text(s) => s.parse().ok(),
            Value::Bytes(b) => Uuid::from_slice(b).ok(),
            _ => None,
        }
    }
}

impl ToValue for serde_json::Value {
    fn to_value(&self) -> Value {
        Value::Json(self.clone())
    }
}
impl FromValue for serde_json::Value {
    const RUST_TYPE: &'static str = "serde_json::Value";
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Json(j) => Some(j.clone()),
            Value::Text(s) => serde_json::from_str(s).ok(),
            _ => None,
        }
    }
    fn from_owned(value: Value) -> Option<Self> {
        match value {
            Value::Json(j) => Some(j),
            v => Self::from_value(&v),
        }
    }
}

macro_rules! from_into_value {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Value { v.to_value() }
        }
    )*};
}
from_into_value!(
    bool,
    i8,
    i16,
    i32,
    i64,
    u8,
    u16,
    u32,
    f32,
    f64,
    String,
    &str,
    Vec<u8>,
    Decimal,
    NaiveDate,
    NaiveTime,
    NaiveDateTime,
    DateTime<Utc>,
    Uuid,
    serde_json::Value
);

impl<T: ToValue> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.to_value()
    }
}

/// Converts to JSON for serde-based row deserialization.
pub(crate) fn to_json(value: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::I16(v) => (*v).into(),
        Value::I32(v) => (*v).into(),
        Value::I64(v) => (*v).into(),
        Value::F32(v) => serde_json::Number::from_f64((*v).into()).map_or(J::Null, J::Number),
        Value::F64(v) => serde_json::Number::from_f64(*v).map_or(J::Null, J::Number),
        Value::Text(s) => J::String(s.clone()),
        Value::Bytes(b) => J::Array(b.iter().map(|x| (*x).into()).collect()),
        Value::Decimal(d) => J::String(d.to_string()),
        Value::Numeric(s) => J::String(s.clone()),
        Value::Date(d) => J::String(d.to_string()),
        Value::Time(t) => J::String(t.to_string()),
        Value::Timestamp(t) => J::String(t.format("%Y-%m-%dT%H:%M:%S%.f").to_string()),
        Value::TimestampTz(t) => J::String(t.to_rfc3339()),
        Value::Uuid(u) => J::String(u.to_string()),
        Value::Json(j) => j.clone(),
        Value::Array(items) => J::Array(items.iter().map(to_json).collect()),
    }
}

/// A SQL array of `T`, for binding and reading arrays (a plain `Vec<T>`
/// cannot be one: `Vec<u8>` already means bytes).
///
/// ```
/// use reservoir::value::{Array, FromValue, ToValue, Value};
/// let v = Array(vec![1i32, 2, 3]).to_value();
/// assert_eq!(Array::<i64>::from_value(&v), Some(Array(vec![1, 2, 3])));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Array<T>(pub Vec<T>);

impl<T: ToValue> ToValue for Array<T> {
    fn to_value(&self) -> Value {
        Value::Array(self.0.iter().map(ToValue::to_value).collect())
    }
}

impl<T: FromValue> FromValue for Array<T> {
    const RUST_TYPE: &'static str = "Array";
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Array(items) => items
                .iter()
                .map(T::from_value)
                .collect::<Option<Vec<_>>>()
                .map(Array),
            // SQLite keeps arrays as JSON text.
            Value::Text(s) => match serde_json::from_str::<serde_json::Value>(s).ok()? {
                serde_json::Value::Array(items) => items
                    .into_iter()
                    .map(|j| T::from_value(&from_json(j)))
                    .collect::<Option<Vec<_>>>()
                    .map(Array),
                _ => None,
            },
            _ => None,
        }
    }
}

impl<T: ToValue> From<Array<T>> for Value {
    fn from(a: Array<T>) -> Value {
        a.to_value()
    }
}

/// Converts a JSON value (from a serde-serialized parameter struct) to a `Value`.
pub(crate) fn from_json(json: serde_json::Value) -> Value {
    use serde_json::Value as J;
    match json {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(b),
        J::Number(n) => n
            .as_i64()
            .map(Value::I64)
            .or_else(|| n.as_f64().map(Value::F64))
            .unwrap_or(Value::Null),
        J::String(s) => Value::Text(s),
        other => Value::Json(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_check_their_range() {
        assert_eq!(i32::from_value(&Value::I64(7)), Some(7));
        assert_eq!(i32::from_value(&Value::I64(i64::MAX)), None);
        assert_eq!(u8::from_value(&Value::I64(-1)), None);
        assert_eq!(bool::from_value(&Value::I64(1)), Some(true));
        assert_eq!(bool::from_value(&Value::I64(2)), None);
    }

    #[test]
    fn text_forms_of_dates_and_uuids() {
        let d: NaiveDate = FromValue::from_value(&Value::Text("2024-02-29".into())).unwrap();
        assert_eq!(d, NaiveDate::from_ymd_opt(2024, 2, 29).unwrap());
        let ts: NaiveDateTime = FromValue::from_value(&Value::Text("2024-02-29 10:11:12.5".into())).unwrap();
        assert_eq!(ts.to_string(), "2024-02-29 10:11:12.500");
        let u = Uuid::from_u128(42 << 64 | 7);
        assert_eq!(Uuid::from_value(&Value::Text(u.to_string())), Some(u));
        assert_eq!(Uuid::from_value(&Value::Bytes(u.as_bytes().to_vec())), Some(u));
        assert_eq!(Option::<i64>::from_value(&Value::Null), Some(None));
    }
}
