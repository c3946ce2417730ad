//! `Engine`: URL -> driver -> pool, plus connectionless execution.

use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::connection::{Connection, Link, deserialize_all, first_row};
use crate::context::Contexts;
use crate::driver::{self, Driver, DriverOptions};
use crate::error::{Error, ErrorKind, Result};
use crate::manager::DriverManager;
use crate::params::{IntoParams, Params};
use crate::pipeline::Pipeline;
use crate::pool::{Checkout, CloseOptions, Pool, PoolConfig, PoolStats, PoolStatus};
use crate::row::Row;
use crate::transaction::{Transaction, TxOptions};
use crate::url::{DatabaseUrl, Dialect};
use crate::value::FromValue;

pub(crate) struct EngineInner {
    pub pool: Pool<DriverManager>,
    pub contexts: Contexts,
    pub driver: Arc<dyn Driver>,
    pub url: DatabaseUrl,
    pub echo: bool,
    pub pipeline_reads: bool,
    pub pipeline: Pipeline,
}

/// The entry point: a dialect chosen by URL, owning a pool of connections.
/// Cheap to clone; clones share the pool.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> reservoir::Result<()> {
/// use reservoir::Engine;
/// let engine = Engine::connect("sqlite::memory:").await?;
/// engine.execute("CREATE TABLE employee (id INTEGER PRIMARY KEY, department_id INTEGER)", ()).await?;
/// engine.execute_many(
///     "INSERT INTO employee (id, department_id) VALUES (:a, 1)",
///     (0..10).map(|a| reservoir::params!{"a" => a}),
/// ).await?;
/// let n: i64 = engine.fetch_scalar("SELECT count(*) FROM employee", ()).await?;
/// assert_eq!(n, 10);
/// engine.close().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("url", &self.inner.url)
            .field("status", &self.status())
            .finish()
    }
}

impl Engine {
    /// An engine for `url` with every setting at its default.
    pub async fn connect(url: &str) -> Result<Engine> {
        Engine::builder(url).build().await
    }

    /// Starts configuring an engine for `url` (a string, [`DatabaseUrl`] or
    /// [`ConnectOptions`](crate::ConnectOptions)).
    pub fn builder(url: impl IntoUrl) -> EngineBuilder {
        EngineBuilder {
            url: url.into_url(),
            overrides: Overrides::default(),
        }
    }

    /// Checks out a connection; it returns to the pool when dropped. While it
    /// is alive it sits on the current task's stack, where
    /// `acquire().reuse(true)` finds it.
    #[track_caller]
    pub fn acquire(&self) -> Acquire<'_> {
        Acquire {
            engine: self,
            reuse: false,
            lazy: false,
            caller: Location::caller(),
        }
    }

    fn connection(
        &self,
        reuse: bool,
        lazy: bool,
        reusable: bool,
        caller: &'static Location<'static>,
    ) -> Connecting<'_> {
        Connecting {
            engine: self,
            reuse,
            lazy,
            reusable,
            caller,
            checkout: None,
        }
    }

    /// What connectionless execution runs on: the task's current connection
    /// (joining its transaction) or a lazily checked-out one of its own.
    #[track_caller]
    fn contextual(&self) -> impl Future<Output = Result<Connection>> + Send + '_ {
        self.connection(true, true, false, Location::caller())
    }

    /// Begins a transaction on a connection of its own or, inside a task
    /// that already holds a transaction, a savepoint on that one.
    #[track_caller]
    pub fn begin(&self) -> impl Future<Output = Result<Transaction<'static>>> + Send + '_ {
        self.begin_with(TxOptions::new())
    }

    /// [`begin`](Self::begin) with an isolation level or read-only mode.
    #[track_caller]
    pub fn begin_with(
        &self,
        options: TxOptions,
    ) -> impl Future<Output = Result<Transaction<'static>>> + Send + '_ {
        // A transaction's connection is reusable: connectionless statements
        // of this task join it.
        let contextual = self.connection(true, true, true, Location::caller());
        async move {
            let mut conn = contextual.await?;
            let depth = conn.begin_at(options).await?;
            Ok(Transaction::owned(conn, depth))
        }
    }

    /// Runs a statement (connectionless: on the task's current connection,
    /// else on a pooled one); returns the rows affected.
    pub async fn execute(&self, sql: &str, params: impl IntoParams) -> Result<u64> {
        self.contextual().await?.execute(sql, params).await
    }

    /// [`Connection::execute_many`], connectionless.
    pub async fn execute_many<P: IntoParams>(
        &self,
        sql: &str,
        params: impl IntoIterator<Item = P>,
    ) -> Result<u64> {
        self.contextual().await?.execute_many(sql, params).await
    }

    /// The first row (an error if there is none), connectionless.
    pub async fn fetch_one(&self, sql: &str, params: impl IntoParams) -> Result<Row> {
        first_row(self.read(sql, params.into_params(), Some(1)).await?)
    }

    /// The first row, if any, connectionless.
    pub async fn fetch_optional(&self, sql: &str, params: impl IntoParams) -> Result<Option<Row>> {
        Ok(self.read(sql, params.into_params(), Some(1)).await?.pop())
    }

    /// Every row, buffered, connectionless.
    pub async fn fetch_all(&self, sql: &str, params: impl IntoParams) -> Result<Vec<Row>> {
        self.read(sql, params.into_params(), None).await
    }

    /// The first column of the first row, connectionless.
    pub async fn fetch_scalar<T: FromValue>(&self, sql: &str, params: impl IntoParams) -> Result<T> {
        self.fetch_one(sql, params).await?.get(0)
    }

    /// Every row deserialized into `T`, connectionless.
    pub async fn fetch_all_as<T: DeserializeOwned>(
        &self,
        sql: &str,
        params: impl IntoParams,
    ) -> Result<Vec<T>> {
        deserialize_all(&self.fetch_all(sql, params).await?)
    }

    /// A connectionless query: on the task's current connection if it has
    /// one; else pipelined (with `pipeline_reads`, when the pool is busy and
    /// the statement is a plain read); else on a connection of its own.
    async fn read(&self, sql: &str, params: Params, limit: Option<usize>) -> Result<Vec<Row>> {
        let inner = &self.inner;
        if inner.pipeline_reads && crate::sql::is_plain_read(sql) && inner.contexts.top().is_none() {
            if let Some(first) = inner.pipeline.enter(inner) {
                let (sql, params) = params.bind(sql, inner.driver.placeholder())?;
                return inner.pipeline.read(inner, first, &sql, params, limit).await;
            }
        }
        self.contextual().await?.query(sql, params, limit).await
    }

    /// How many tasks currently hold a stack of reusable connections.
    #[doc(hidden)]
    pub fn context_tasks(&self) -> usize {
        self.inner.contexts.tasks()
    }

    /// The pool's occupancy.
    pub fn status(&self) -> PoolStatus {
        self.inner.pool.status()
    }

    /// The pool's counters.
    pub fn stats(&self) -> PoolStats {
        self.inner.pool.stats()
    }

    /// The pool settings in force.
    pub fn pool_config(&self) -> &PoolConfig {
        self.inner.pool.config()
    }

    /// The URL (its password shows as `***` when printed).
    pub fn url(&self) -> &DatabaseUrl {
        &self.inner.url
    }

    /// The database family.
    pub fn dialect(&self) -> Dialect {
        self.inner.driver.dialect()
    }

    /// Replaces every connection: idle ones close now, checked-out ones when
    /// they come back; the engine keeps serving.
    pub fn dispose(&self) {
        self.inner.pool.dispose();
    }

    /// Refuses new work, closes idle connections and returns when every
    /// checked-out connection has come back and been closed.
    pub async fn close(&self) {
        self.inner.pool.close().await;
    }

    /// [`close`](Self::close) with `force` (do not wait) and `interrupt`
    /// (cancel running statements first).
    pub async fn close_with(&self, options: CloseOptions) {
        self.inner.pool.close_with(options).await;
    }
}

/// A pending [`Engine::acquire`]: `.reuse(true)` shares the raw connection
/// of the task's newest reusable connection (GINO's `reuse=True`);
/// `.lazy(true)` checks nothing out until the first statement or `begin()`.
/// Await it to get the [`Connection`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> reservoir::Result<()> {
/// let engine = reservoir::Engine::connect("sqlite::memory:").await?;
/// let outer = engine.acquire().await?;
/// let inner = engine.acquire().reuse(true).await?;      // the same raw connection
/// assert_eq!(inner.id(), outer.id());
/// let lazy = engine.acquire().lazy(true).await?;        // nothing checked out yet
/// assert_eq!(lazy.id(), 0);
/// # Ok(()) }
/// ```
#[must_use = "an Acquire does nothing until awaited"]
pub struct Acquire<'e> {
    engine: &'e Engine,
    reuse: bool,
    lazy: bool,
    caller: &'static Location<'static>,
}

impl Acquire<'_> {
    /// Reuse the task's current connection if there is one.
    pub fn reuse(mut self, reuse: bool) -> Self {
        self.reuse = reuse;
        self
    }

    /// Check out a raw connection only when first needed.
    pub fn lazy(mut self, lazy: bool) -> Self {
        self.lazy = lazy;
        self
    }
}

impl<'e> std::future::IntoFuture for Acquire<'e> {
    type Output = Result<Connection>;
    type IntoFuture = Connecting<'e>;

    fn into_future(self) -> Connecting<'e> {
        self.engine.connection(self.reuse, self.lazy, true, self.caller)
    }
}

/// The future of an awaited [`Acquire`]: the task's current connection
/// (with `reuse`), a handle that checks out later (with `lazy`), or a
/// pooled connection, awaited in place (no allocation of its own).
#[must_use = "a Connecting does nothing until awaited"]
pub struct Connecting<'e> {
    engine: &'e Engine,
    reuse: bool,
    lazy: bool,
    /// The connection goes on the task's stack (not for a connectionless
    /// statement's private one).
    reusable: bool,
    caller: &'static Location<'static>,
    /// Started at the first poll, unless reuse or lazy made it unneeded.
    checkout: Option<Checkout<'e, DriverManager>>,
}

impl Future for Connecting<'_> {
    type Output = Result<Connection>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Connection>> {
        let this = &mut *self;
        let inner = &this.engine.inner;
        let checkout = match &mut this.checkout {
            Some(checkout) => checkout,
            None => {
                if this.reuse {
                    if let Some(link) = inner.contexts.top() {
                        return Poll::Ready(Ok(Connection::reusing(Arc::clone(inner), link)));
                    }
                }
                if this.lazy {
                    let link = Arc::new(Link::new(this.caller, None));
                    return Poll::Ready(Ok(Connection::root(Arc::clone(inner), link, this.reusable)));
                }
                this.checkout.insert(inner.pool.acquire_from(this.caller))
            }
        };
        let pooled = ready!(Pin::new(checkout).poll(cx))?;
        let link = Arc::new(Link::new(this.caller, Some(pooled)));
        Poll::Ready(Ok(Connection::root(Arc::clone(inner), link, this.reusable)))
    }
}

/// Anything an engine can be built from.
pub trait IntoUrl {
    /// The parsed URL, or why it is not one.
    fn into_url(self) -> Result<DatabaseUrl>;
}

impl IntoUrl for &str {
    fn into_url(self) -> Result<DatabaseUrl> {
        self.parse()
    }
}

impl IntoUrl for String {
    fn into_url(self) -> Result<DatabaseUrl> {
        self.parse()
    }
}

impl IntoUrl for DatabaseUrl {
    fn into_url(self) -> Result<DatabaseUrl> {
        Ok(self)
    }
}

impl IntoUrl for crate::url::ConnectOptions {
    fn into_url(self) -> Result<DatabaseUrl> {
        Ok(self.build())
    }
}

/// Settings given by builder calls; they override the URL's.
#[derive(Default)]
struct Overrides {
    pool_size: Option<usize>,
    max_overflow: Option<usize>,
    min_size: Option<usize>,
    pool_timeout: Option<Option<Duration>>,
    pool_recycle: Option<Option<Duration>>,
    idle_timeout: Option<Option<Duration>>,
    pool_use_lifo: Option<bool>,
    pool_pre_ping: Option<bool>,
    max_waiting: Option<Option<usize>>,
    leak_threshold: Option<Option<Duration>>,
    echo: Option<bool>,
    statement_cache_size: Option<usize>,
    statement_timeout: Option<Duration>,
    pipeline_reads: Option<bool>,
}

/// Configures an [`Engine`]. Settings may also come as URL query parameters
/// (`?pool_size=5&pool_timeout=1.5`); builder calls override them.
#[must_use]
pub struct EngineBuilder {
    url: Result<DatabaseUrl>,
    overrides: Overrides,
}

macro_rules! setter {
    ($(#[$doc:meta] $name:ident: $t:ty),* $(,)?) => {$(
        #[$doc]
        pub fn $name(mut self, value: $t) -> Self {
            self.overrides.$name = Some(value.into());
            self
        }
    )*};
}

impl EngineBuilder {
    setter! {
        /// Connections kept open when idle (default 5).
        pool_size: usize,
        /// Extra connections beyond `pool_size` (default 10).
        max_overflow: usize,
        /// Connections opened at build and kept (default 0).
        min_size: usize,
        /// Longest wait in acquire (default 30 s).
        pool_timeout: Duration,
        /// Replace connections older than this (default none).
        pool_recycle: Duration,
        /// Close idle connections above `min_size` after this long (default none).
        idle_timeout: Duration,
        /// Hand out the most recently returned connection first (default false).
        pool_use_lifo: bool,
        /// Ping connections before handing them out (default false).
        pool_pre_ping: bool,
        /// Backlog bound; `None` unbounded (default 5 x capacity).
        max_waiting: Option<usize>,
        /// Warn about connections held longer than this (default none).
        leak_threshold: Duration,
        /// Log every statement at INFO through `tracing` (default false).
        echo: bool,
        /// Prepared statements cached per connection (default 128).
        statement_cache_size: usize,
        /// Cancel statements running longer (`ErrorKind::Timeout`; the connection stays usable).
        statement_timeout: Duration,
        /// When the pool is busy, pipeline connectionless reads over connections serving such reads (default false).
        pipeline_reads: bool,
    }

    /// Opens the pool and one connection (or `min_size`), so that a wrong
    /// URL, password or path fails here with [`ErrorKind::Connect`], not at
    /// the first statement.
    pub async fn build(self) -> Result<Engine> {
        let url = self.url?;
        let settings = Settings::from_url(&url)?.overridden_by(self.overrides);
        let driver = driver::for_url(&url, &settings.driver)?;
        let pool = Pool::builder(DriverManager {
            driver: Arc::clone(&driver),
        })
        .config(settings.pool)
        .build()
        .await?;
        if pool.config().min_size == 0 {
            drop(pool.acquire().await?);
        }
        Ok(Engine {
            inner: Arc::new(EngineInner {
                pool,
                contexts: Contexts::default(),
                driver,
                url,
                echo: settings.echo,
                pipeline_reads: settings.pipeline_reads,
                pipeline: Pipeline::default(),
            }),
        })
    }
}

/// The query parameters the engine itself reads; drivers reject any other
/// parameter they do not know.
pub(crate) const ENGINE_KEYS: &[&str] = &[
    "pool_size",
    "max_overflow",
    "min_size",
    "pool_timeout",
    "pool_recycle",
    "idle_timeout",
    "pool_use_lifo",
    "pool_pre_ping",
    "max_waiting",
    "leak_threshold",
    "echo",
    "statement_cache_size",
    "statement_timeout",
    "pipeline_reads",
];

struct Settings {
    pool: PoolConfig,
    max_waiting_given: bool,
    echo: bool,
    pipeline_reads: bool,
    driver: DriverOptions,
}

fn bad_setting(key: &str, value: &str, expected: &str) -> Error {
    Error::new(
        ErrorKind::Url,
        format!("URL parameter {key}={value:?} is not {expected}"),
    )
}

impl Settings {
    fn from_url(url: &DatabaseUrl) -> Result<Settings> {
        let count = |key: &str| -> Result<Option<usize>> {
            url.param(key)
                .map(|v| v.parse().map_err(|_| bad_setting(key, v, "a whole number")))
                .transpose()
        };
        let seconds = |key: &str| -> Result<Option<Duration>> {
            url.param(key)
                .map(|v| {
                    v.parse::<f64>()
                        .ok()
                        .and_then(|s| Duration::try_from_secs_f64(s).ok())
                        .ok_or_else(|| bad_setting(key, v, "a number of seconds"))
                })
                .transpose()
        };
        let flag = |key: &str| -> Result<Option<bool>> {
            url.param(key)
                .map(|v| match v {
                    "true" | "1" | "yes" | "on" => Ok(true),
                    "false" | "0" | "no" | "off" => Ok(false),
                    _ => Err(bad_setting(key, v, "true or false")),
                })
                .transpose()
        };
        let mut pool = PoolConfig::default();
        if let Some(v) = count("pool_size")? {
            pool.pool_size = v;
        }
        if let Some(v) = count("max_overflow")? {
            pool.max_overflow = v;
        }
        if let Some(v) = count("min_size")? {
            pool.min_size = v;
        }
        if let Some(v) = seconds("pool_timeout")? {
            pool.pool_timeout = Some(v);
        }
        pool.pool_recycle = seconds("pool_recycle")?.or(pool.pool_recycle);
        pool.idle_timeout = seconds("idle_timeout")?.or(pool.idle_timeout);
        pool.leak_threshold = seconds("leak_threshold")?.or(pool.leak_threshold);
        pool.pool_use_lifo = flag("pool_use_lifo")?.unwrap_or(pool.pool_use_lifo);
        pool.pool_pre_ping = flag("pool_pre_ping")?.unwrap_or(pool.pool_pre_ping);
        let mut max_waiting_given = false;
        if let Some(v) = url.param("max_waiting") {
            max_waiting_given = true;
            pool.max_waiting = match v {
                "none" | "unbounded" => None,
                v => Some(
                    v.parse()
                        .map_err(|_| bad_setting("max_waiting", v, "a whole number or none"))?,
                ),
            };
        }
        Ok(Settings {
            pool,
            max_waiting_given,
            echo: flag("echo")?.unwrap_or(false),
            pipeline_reads: flag("pipeline_reads")?.unwrap_or(false),
            driver: DriverOptions {
                statement_cache_size: count("statement_cache_size")?
                    .unwrap_or(DriverOptions::default().statement_cache_size),
                statement_timeout: seconds("statement_timeout")?,
            },
        })
    }

    fn overridden_by(mut self, o: Overrides) -> Settings {
        let p = &mut self.pool;
        p.pool_size = o.pool_size.unwrap_or(p.pool_size);
        p.max_overflow = o.max_overflow.unwrap_or(p.max_overflow);
        p.min_size = o.min_size.unwrap_or(p.min_size);
        p.pool_timeout = o.pool_timeout.unwrap_or(p.pool_timeout);
        p.pool_recycle = o.pool_recycle.unwrap_or(p.pool_recycle);
        p.idle_timeout = o.idle_timeout.unwrap_or(p.idle_timeout);
        p.pool_use_lifo = o.pool_use_lifo.unwrap_or(p.pool_use_lifo);
        p.pool_pre_ping = o.pool_pre_ping.unwrap_or(p.pool_pre_ping);
        p.leak_threshold = o.leak_threshold.unwrap_or(p.leak_threshold);
        if let Some(max) = o.max_waiting {
            p.max_waiting = max;
            self.max_waiting_given = true;
        }
        if !self.max_waiting_given {
            p.max_waiting = Some(PoolConfig::default_max_waiting(p.pool_size, p.max_overflow));
        }
        self.echo = o.echo.unwrap_or(self.echo);
        self.pipeline_reads = o.pipeline_reads.unwrap_or(self.pipeline_reads);
        let d = &mut self.driver;
        d.statement_cache_size = o.statement_cache_size.unwrap_or(d.statement_cache_size);
        d.statement_timeout = o.statement_timeout.or(d.statement_timeout);
        self
    }
}
