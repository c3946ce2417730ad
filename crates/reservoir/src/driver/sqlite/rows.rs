//! Result shapes (cached by SQL text) and reading rows into values.

use std::sync::Arc;

use rusqlite::types::ValueRef;

use super::*;
use crate::error::Result;
use crate::row::{Column, Row};
use crate::value::Value;

/// How a column's values are read: SQLite stores booleans as integers, so a
/// column declared BOOLEAN reads back as `Value::Bool`.
#[derive(Clone, Copy)]
pub(super) enum Hint {
    Plain,
    Bool,
}

/// A statement's result columns and how to read them.
#[derive(Clone)]
pub(super) struct Shape {
    pub(super) columns: Arc<[Column]>,
    pub(super) hints: Arc<[Hint]>,
}

/// Result shapes by SQL text, so a repeated query builds its columns once
/// (a point select spent more on column names than on the lookup itself).
pub(super) struct Shapes(lru::LruCache<Box<str>, Shape>);

impl Shapes {
    pub(super) fn new(capacity: usize) -> Self {
        Shapes(lru::LruCache::new(
            std::num::NonZeroUsize::new(capacity.max(1)).expect("at least 1"),
        ))
    }

    pub(super) fn of(&mut self, sql: &str, stmt: &rusqlite::Statement<'_>) -> Shape {
        if let Some(shape) = self.0.get(sql) {
            // The schema may have changed under the same SQL (SELECT *).
            let same = shape.columns.len() == stmt.column_count()
                && shape
                    .columns
                    .iter()
                    .enumerate()
                    .all(|(i, c)| stmt.column_name(i).is_ok_and(|n| n == c.name()));
            if same {
                return shape.clone();
            }
        }
        let columns: Arc<[Column]> = stmt
            .columns()
            .iter()
            .map(|c| Column::new(c.name(), c.decl_type().map(str::to_string)))
            .collect();
        let hints = columns
            .iter()
            .map(|c| match c.decl_type().map(str::to_ascii_uppercase).as_deref() {
                Some("BOOLEAN" | "BOOL") => Hint::Bool,
                _ => Hint::Plain,
            })
            .collect();
        let shape = Shape { columns, hints };
        self.0.put(sql.into(), shape.clone());
        shape
    }
}

pub(super) fn read_row(row: &rusqlite::Row<'_>, columns: &Arc<[Column]>, hints: &[Hint]) -> Result<Row> {
    let mut values = Vec::with_capacity(hints.len());
    for (i, hint) in hints.iter().enumerate() {
        let value = match (row.get_ref(i).map_err(map_error)?, hint) {
            (ValueRef::Null, _) => Value::Null,
            (ValueRef::Integer(v), Hint::Bool) => Value::Bool(v != 0),
            (ValueRef::Integer(v), Hint::Plain) => Value::I64(v),
            (ValueRef::Real(v), _) => Value::F64(v),
            // Text that is not UTF-8 is kept as its bytes, never altered:
            // read as a String it is a type error naming the column.
            (ValueRef::Text(t), _) => match std::str::from_utf8(t) {
                Ok(text) => Value::Text(text.to_owned()),
                Err(_) => Value::Bytes(t.to_vec()),
            },
            (ValueRef::Blob(b), _) => Value::Bytes(b.to_vec()),
        };
        values.push(value);
    }
    Ok(Row::new(Arc::clone(columns), values))
}
