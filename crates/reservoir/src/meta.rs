//! Implicit execution (SQLAlchemy's bound metadata, GINO's `db`): statements
//! built with sea-query run on whatever engine the [`MetaData`] is bound to,
//! in that engine's dialect, without naming it.

use std::future::Future;
use std::sync::{Arc, RwLock};

use sea_query::{
    Alias, Asterisk, DeleteStatement, Expr, InsertStatement, MysqlQueryBuilder, Order, PostgresQueryBuilder,
    Query, QueryStatementWriter, SelectStatement, SqliteQueryBuilder, UpdateStatement,
};

use crate::engine::Engine;
use crate::error::{Error, ErrorKind, Result};
use crate::row::Row;
use crate::url::Dialect;
use crate::value::Value;

/// A registry of tables bound (or not) to an engine. Cheap to clone; clones
/// share the binding.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> reservoir::Result<()> {
/// use reservoir::MetaData;
/// let db = MetaData::new();
/// let engine = db.set_bind("sqlite::memory:").await?;
/// engine.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)", ()).await?;
/// let users = db.table("users");
/// users.insert().values([("id", 1.into()), ("name", "ann".into())]).execute().await?;
/// let rows = users.select().filter("id", 1).fetch_all().await?;   // no engine named
/// assert_eq!(rows[0].get::<String>("name")?, "ann");
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct MetaData {
    bind: Arc<RwLock<Option<Engine>>>,
}

impl std::fmt::Debug for MetaData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaData").field("bind", &self.bound()).finish()
    }
}

impl MetaData {
    /// Unbound metadata.
    pub fn new() -> Self {
        MetaData::default()
    }

    /// Builds an engine for `url` and binds it; returns the engine.
    pub async fn set_bind(&self, url: &str) -> Result<Engine> {
        let engine = Engine::connect(url).await?;
        self.bind(engine.clone());
        Ok(engine)
    }

    /// Binds an existing engine (replacing any other binding).
    pub fn bind(&self, engine: Engine) {
        *self.bind.write().unwrap_or_else(|e| e.into_inner()) = Some(engine);
    }

    /// Unbinds and returns the engine, if any.
    pub fn pop_bind(&self) -> Option<Engine> {
        self.bind.write().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// The bound engine, if any.
    pub fn bound(&self) -> Option<Engine> {
        self.bind.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The bound engine, or an [`ErrorKind::Unbound`] error.
    pub fn engine(&self) -> Result<Engine> {
        self.bound().ok_or_else(|| {
            Error::new(
                ErrorKind::Unbound,
                "the metadata is not bound to an engine: call set_bind or bind first",
            )
        })
    }

    /// Binds an engine for `url`, runs `work`, then unbinds and closes the engine.
    pub async fn with_bind<T>(&self, url: &str, work: impl Future<Output = Result<T>>) -> Result<T> {
        let engine = self.set_bind(url).await?;
        let result = work.await;
        self.pop_bind();
        engine.close().await;
        result
    }

    /// A table by name.
    pub fn table(&self, name: &str) -> Table {
        Table {
            meta: self.clone(),
            name: name.to_string(),
        }
    }

    /// Runs any sea-query statement on the bound engine.
    pub async fn execute_stmt<S: QueryStatementWriter>(&self, stmt: &S) -> Result<u64> {
        self.engine()?.execute_stmt(stmt).await
    }

    /// Runs any sea-query query on the bound engine and returns its rows.
    pub async fn fetch_all_stmt<S: QueryStatementWriter>(&self, stmt: &S) -> Result<Vec<Row>> {
        self.engine()?.fetch_all_stmt(stmt).await
    }
}

/// A table of a [`MetaData`]; builds statements against it.
#[derive(Clone, Debug)]
pub struct Table {
    meta: MetaData,
    name: String,
}

impl Table {
    /// The table's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `INSERT INTO table`.
    pub fn insert(&self) -> Insert {
        let mut stmt = Query::insert();
        stmt.into_table(Alias::new(&self.name));
        Insert {
            meta: self.meta.clone(),
            stmt,
            error: None,
        }
    }

    /// `SELECT * FROM table`.
    pub fn select(&self) -> Select {
        let mut stmt = Query::select();
        stmt.column(Asterisk).from(Alias::new(&self.name));
        Select {
            meta: self.meta.clone(),
            stmt,
        }
    }

    /// `UPDATE table SET ...`.
    pub fn update(&self) -> Update {
        let mut stmt = Query::update();
        stmt.table(Alias::new(&self.name));
        Update {
            meta: self.meta.clone(),
            stmt,
        }
    }

    /// `DELETE FROM table`.
    pub fn delete(&self) -> Delete {
        let mut stmt = Query::delete();
        stmt.from_table(Alias::new(&self.name));
        Delete {
            meta: self.meta.clone(),
            stmt,
        }
    }
}

/// An INSERT under construction.
#[derive(Debug)]
pub struct Insert {
    meta: MetaData,
    stmt: InsertStatement,
    error: Option<String>,
}

impl Insert {
    /// One row of `(column, value)` pairs; call again for more rows (same columns).
    pub fn values<'a>(mut self, row: impl IntoIterator<Item = (&'a str, Value)>) -> Self {
        let (columns, values): (Vec<_>, Vec<_>) = row.into_iter().unzip();
        self.stmt.columns(columns.into_iter().map(Alias::new));
        if let Err(e) = self
            .stmt
            .values(values.iter().map(|v| Expr::val(to_sea(v)).into()))
        {
            self.error.get_or_insert(e.to_string());
        }
        self
    }

    /// The sea-query statement, for anything this builder does not cover.
    pub fn statement(&mut self) -> &mut InsertStatement {
        &mut self.stmt
    }

    /// Runs it on the bound engine; returns the rows inserted.
    pub async fn execute(self) -> Result<u64> {
        if let Some(e) = self.error {
            return Err(Error::new(ErrorKind::Param, format!("bad INSERT values: {e}")));
        }
        self.meta.execute_stmt(&self.stmt).await
    }
}

/// A SELECT under construction.
#[derive(Debug)]
pub struct Select {
    meta: MetaData,
    stmt: SelectStatement,
}

impl Select {
    /// `WHERE column = value` (several are joined with AND).
    pub fn filter(mut self, column: &str, value: impl Into<Value>) -> Self {
        self.stmt.and_where(column_is(column, value.into()));
        self
    }

    /// `ORDER BY column` ascending.
    pub fn order_by(mut self, column: &str) -> Self {
        self.stmt.order_by(Alias::new(column), Order::Asc);
        self
    }

    /// `LIMIT n`.
    pub fn limit(mut self, n: u64) -> Self {
        self.stmt.limit(n);
        self
    }

    /// The sea-query statement, for anything this builder does not cover.
    pub fn statement(&mut self) -> &mut SelectStatement {
        &mut self.stmt
    }

    /// Every row, on the bound engine.
    pub async fn fetch_all(self) -> Result<Vec<Row>> {
        self.meta.fetch_all_stmt(&self.stmt).await
    }

    /// The first row, if any.
    pub async fn fetch_optional(mut self) -> Result<Option<Row>> {
        self.stmt.limit(1);
        Ok(self.fetch_all().await?.into_iter().next())
    }
}

/// An UPDATE under construction.
#[derive(Debug)]
pub struct Update {
    meta: MetaData,
    stmt: UpdateStatement,
}

impl Update {
    /// `SET column = value`.
    pub fn set(mut self, column: &str, value: impl Into<Value>) -> Self {
        self.stmt.value(Alias::new(column), to_sea(&value.into()));
        self
    }

    /// `WHERE column = value` (several are joined with AND).
    pub fn filter(mut self, column: &str, value: impl Into<Value>) -> Self {
        self.stmt.and_where(column_is(column, value.into()));
        self
    }

    /// Runs it on the bound engine; returns the rows updated.
    pub async fn execute(self) -> Result<u64> {
        self.meta.execute_stmt(&self.stmt).await
    }
}

/// A DELETE under construction.
#[derive(Debug)]
pub struct Delete {
    meta: MetaData,
    stmt: DeleteStatement,
}

impl Delete {
    /// `WHERE column = value` (several are joined with AND).
    pub fn filter(mut self, column: &str, value: impl Into<Value>) -> Self {
        self.stmt.and_where(column_is(column, value.into()));
        self
    }

    /// Runs it on the bound engine; returns the rows deleted.
    pub async fn execute(self) -> Result<u64> {
        self.meta.execute_stmt(&self.stmt).await
    }
}

impl Engine {
    /// Renders a sea-query statement in this engine's dialect (quoting and
    /// placeholders from sea-query's builder for it) and its values.
    fn render<S: QueryStatementWriter>(&self, stmt: &S) -> Result<(String, Vec<Value>)> {
        let (sql, values) = match self.dialect() {
            Dialect::Sqlite => stmt.build(SqliteQueryBuilder),
            Dialect::Postgres => stmt.build(PostgresQueryBuilder),
            Dialect::Mysql => stmt.build(MysqlQueryBuilder),
        };
        let values = values.into_iter().map(from_sea).collect::<Result<Vec<_>>>()?;
        Ok((sql, values))
    }

    /// Runs a statement built with sea-query; returns the rows affected.
    pub async fn execute_stmt<S: QueryStatementWriter>(&self, stmt: &S) -> Result<u64> {
        let (sql, values) = self.render(stmt)?;
        self.execute(&sql, values).await
    }

    /// Runs a query built with sea-query; returns its rows.
    pub async fn fetch_all_stmt<S: QueryStatementWriter>(&self, stmt: &S) -> Result<Vec<Row>> {
        let (sql, values) = self.render(stmt)?;
        self.fetch_all(&sql, values).await
    }
}

/// `column = value`, the condition every `filter` adds.
fn column_is(column: &str, value: Value) -> sea_query::SimpleExpr {
    Expr::col(Alias::new(column)).eq(to_sea(&value))
}

fn to_sea(value: &Value) -> sea_query::Value {
    use sea_query::Value as S;
    match value {
        Value::Null => S::String(None),
        Value::Bool(v) => S::Bool(Some(*v)),
        Value::I16(v) => S::SmallInt(Some(*v)),
        Value::I32(v) => S::Int(Some(*v)),
        Value::I64(v) => S::BigInt(Some(*v)),
        Value::F32(v) => S::Float(Some(*v)),
        Value::F64(v) => S::Double(Some(*v)),
        Value::Text(v) | Value::Numeric(v) => S::String(Some(Box::new(v.clone()))),
        Value::Bytes(v) => S::Bytes(Some(Box::new(v.clone()))),
        Value::Decimal(v) => S::Decimal(Some(Box::new(*v))),
        Value::Date(v) => S::ChronoDate(Some(Box::new(*v))),
        Value::Time(v) => S::ChronoTime(Some(Box::new(*v))),
        Value::Timestamp(v) => S::ChronoDateTime(Some(Box::new(*v))),
        Value::TimestampTz(v) => S::ChronoDateTimeUtc(Some(Box::new(*v))),
        Value::Uuid(v) => S::Uuid(Some(Box::new(*v))),
        Value::Json(v) => S::Json(Some(Box::new(v.clone()))),
        // sea-query's arrays are PostgreSQL-only; JSON works on every dialect.
        Value::Array(_) => S::Json(Some(Box::new(crate::value::to_json(value)))),
    }
}

fn from_sea(value: sea_query::Value) -> Result<Value> {
    use sea_query::Value as S;
    fn or_null<T>(v: Option<T>, f: impl FnOnce(T) -> Value) -> Value {
        v.map_or(Value::Null, f)
    }
    Ok(match value {
        S::Bool(v) => or_null(v, Value::Bool),
        S::TinyInt(v) => or_null(v, |x| Value::I16(x.into())),
        S::SmallInt(v) => or_null(v, Value::I16),
        S::Int(v) => or_null(v, Value::I32),
        S::BigInt(v) => or_null(v, Value::I64),
        S::TinyUnsigned(v) => or_null(v, |x| Value::I16(x.into())),
        S::SmallUnsigned(v) => or_null(v, |x| Value::I32(x.into())),
        S::Unsigned(v) => or_null(v, |x| Value::I64(x.into())),
        S::BigUnsigned(v) => match v {
            None => Value::Null,
            Some(x) => Value::I64(i64::try_from(x).map_err(|_| {
                Error::new(
                    ErrorKind::Param,
                    format!("{x} does not fit a 64-bit signed integer"),
                )
            })?),
        },
        S::Float(v) => or_null(v, Value::F32),
        S::Double(v) => or_null(v, Value::F64),
        S::String(v) => or_null(v, |s| Value::Text(*s)),
        S::Char(v) => or_null(v, |c| Value::Text(c.to_string())),
        S::Bytes(v) => or_null(v, |b| Value::Bytes(*b)),
        S::Json(v) => or_null(v, |j| Value::Json(*j)),
        S::ChronoDate(v) => or_null(v, |d| Value::Date(*d)),
        S::ChronoTime(v) => or_null(v, |t| Value::Time(*t)),
        S::ChronoDateTime(v) => or_null(v, |t| Value::Timestamp(*t)),
        S::ChronoDateTimeUtc(v) => or_null(v, |t| Value::TimestampTz(*t)),
        S::ChronoDateTimeLocal(v) => or_null(v, |t| Value::TimestampTz(t.with_timezone(&chrono::Utc))),
        S::ChronoDateTimeWithTimeZone(v) => or_null(v, |t| Value::TimestampTz(t.with_timezone(&chrono::Utc))),
        S::Uuid(v) => or_null(v, |u| Value::Uuid(*u)),
        S::Decimal(v) => or_null(v, |d| Value::Decimal(*d)),
        #[allow(unreachable_patterns)]
        other => {
            return Err(Error::new(
                ErrorKind::Param,
                format!("sea-query value {other:?} has no reservoir equivalent"),
            ));
        }
    })
}
