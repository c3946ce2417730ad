//! `Row` and `Column`: one result row, read by index or name, or through serde.

use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::driver::LazyRow;
use crate::error::{Error, ErrorKind, Result};
use crate::value::{FromValue, Value, mismatch, mismatch_of, to_json};

/// A result column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    name: String,
    decl_type: Option<String>,
}

impl Column {
    /// A column named `name` of declared type `decl_type`.
    pub fn new(name: impl Into<String>, decl_type: Option<String>) -> Self {
        Column {
            name: name.into(),
            decl_type,
        }
    }
    /// The column's name (or alias).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The declared type, where the database reports one.
    pub fn decl_type(&self) -> Option<&str> {
        self.decl_type.as_deref()
    }
}

/// Picks a column: by position (`usize`) or by name (`&str`).
pub trait ColumnIndex: fmt::Display + Copy {
    /// The position in `columns`, if there is such a column.
    fn position(self, columns: &[Column]) -> Option<usize>;
}

impl ColumnIndex for usize {
    fn position(self, columns: &[Column]) -> Option<usize> {
        (self < columns.len()).then_some(self)
    }
}

impl ColumnIndex for &str {
    fn position(self, columns: &[Column]) -> Option<usize> {
        columns.iter().position(|c| c.name == self)
    }
}

enum Cells {
    Values(Vec<Value>),
    // Only PostgreSQL makes lazy rows.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    /// Owned rather than shared: a streamed row is created and dropped
    /// without a reference count to update (a clone decodes instead).
    Lazy {
        raw: LazyRow,
        decoded: std::sync::OnceLock<Vec<Value>>,
    },
}

/// One row of a result. Columns are shared by every row of the result.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> reservoir::Result<()> {
/// let engine = reservoir::Engine::connect("sqlite::memory:").await?;
/// let row = engine.fetch_one("SELECT 1 AS id, 'ann' AS name", ()).await?;
/// assert_eq!(row.get::<i64>("id")?, 1);
/// assert_eq!(row.get::<String>(1)?, "ann");
/// # Ok(()) }
/// ```
pub struct Row {
    columns: Arc<[Column]>,
    cells: Cells,
}

impl Clone for Row {
    /// A lazy row's clone holds its decoded values.
    fn clone(&self) -> Row {
        Row::new(Arc::clone(&self.columns), self.values().to_vec())
    }
}

impl PartialEq for Row {
    fn eq(&self, other: &Row) -> bool {
        self.columns == other.columns && self.values() == other.values()
    }
}

impl Row {
    /// A row of `values` under `columns` (same length).
    pub fn new(columns: Arc<[Column]>, values: Vec<Value>) -> Self {
        debug_assert_eq!(columns.len(), values.len());
        Row {
            columns,
            cells: Cells::Values(values),
        }
    }

    /// A row decoded from `raw` when first read.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn lazy(columns: Arc<[Column]>, raw: LazyRow) -> Self {
        Row {
            columns,
            cells: Cells::Lazy {
                raw,
                decoded: std::sync::OnceLock::new(),
            },
        }
    }

    #[inline]
    fn position(&self, index: impl ColumnIndex) -> Result<usize> {
        index.position(&self.columns).ok_or_else(|| {
            Error::new(
                ErrorKind::Decode,
                format!("no column {index} in a row of {} columns", self.columns.len()),
            )
        })
    }

    /// Column `pos` by value: decoded alone from a lazy row not yet decoded
    /// whole (so reading one column decodes only that one).
    #[inline]
    fn owned(&self, pos: usize) -> Value {
        match &self.cells {
            Cells::Lazy { raw, decoded } if decoded.get().is_none() => raw.value(pos),
            _ => self.values()[pos].clone(),
        }
    }

    /// Reads a column as `T`; an error names the column and both types.
    pub fn get<T: FromValue>(&self, index: impl ColumnIndex) -> Result<T> {
        let pos = self.position(index)?;
        if let Cells::Values(values) = &self.cells {
            let value = &values[pos];
            return T::from_value(value)
                .ok_or_else(|| mismatch(self.columns[pos].name(), value, T::RUST_TYPE));
        }
        let value = self.owned(pos);
        let value_type = value.type_name();
        T::from_owned(value).ok_or_else(|| mismatch_of(self.columns[pos].name(), value_type, T::RUST_TYPE))
    }

    /// Like [`get`](Self::get), but `None` for a missing column, NULL or a
    /// value that does not fit `T`.
    pub fn try_get<T: FromValue>(&self, index: impl ColumnIndex) -> Option<T> {
        let pos = index.position(&self.columns)?;
        match self.owned(pos) {
            Value::Null => None,
            v => T::from_owned(v),
        }
    }

    /// The raw value of a column.
    pub fn value(&self, index: impl ColumnIndex) -> Option<&Value> {
        index.position(&self.columns).map(|p| &self.values()[p])
    }

    /// Every value, in column order.
    pub fn values(&self) -> &[Value] {
        match &self.cells {
            Cells::Values(values) => values,
            Cells::Lazy { raw, decoded } => {
                decoded.get_or_init(|| (0..self.columns.len()).map(|i| raw.value(i)).collect())
            }
        }
    }

    /// Takes the values out of the row.
    pub fn into_values(self) -> Vec<Value> {
        match self.cells {
            Cells::Values(values) => values,
            Cells::Lazy { raw, decoded } => decoded
                .into_inner()
                .unwrap_or_else(|| (0..self.columns.len()).map(|i| raw.value(i)).collect()),
        }
    }

    /// The result's columns.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// The number of columns.
    pub fn len(&self) -> usize {
        self.columns.len()
    }

    /// Whether the row has no columns.
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// Deserializes the row into `T` by column name (a struct or a map).
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T> {
        let map: serde_json::Map<String, serde_json::Value> = self
            .columns
            .iter()
            .zip(self.values())
            .map(|(c, v)| (c.name.clone(), to_json(v)))
            .collect();
        serde_json::from_value(serde_json::Value::Object(map)).map_err(|e| {
            Error::new(
                ErrorKind::Decode,
                format!("cannot deserialize row into {}: {e}", std::any::type_name::<T>()),
            )
        })
    }
}

impl fmt::Debug for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (c, v) in self.columns.iter().zip(self.values()) {
            m.entry(&c.name, v);
        }
        m.finish()
    }
}
