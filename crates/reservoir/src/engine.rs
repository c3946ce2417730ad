//! `Engine`: URL -> driver -> pool, plus connectionless execution.

use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::connection::{Connection, Link};
use crate::context::Contexts;
use crate::driver::session::ResetOnReturn;
use crate::driver::{self, DriverOptions};
use crate::error::{Error, ErrorKind, Result};
use crate::exec::{Core, deserialize_all, first_row};
use crate::manager::DriverManager;
use crate::params::{IntoParams, Params};
use crate::pipeline::Pipeline;
use crate::pool::{Checkout, CloseOptions, Pool, PoolConfig, PoolStats, PoolStatus};
use crate::row::Row;
use crate::transaction::{Transaction, TxOptions};
use crate::url::{DatabaseUrl, Dialect};
use crate::value::FromValue;

/// What an engine's handles share: the execution core, the connection
/// contexts and the pipeline.
pub(crate) struct EngineInner {
    pub core: Core,
    pub contexts: Contexts,
    pub pipeline_reads: bool,
    pub pipeline: Pipeline,
    /// Connectionless statements join the task's context without a scope.
    pub threadlocal: bool,
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
            .field("url", &self.inner.core.url)
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
            wire: Vec::new(),
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

    /// Whether connectionless statements of the current task join its
    /// connection context: inside [`scope`](Self::scope), or everywhere
    /// with the `threadlocal` setting.
    fn contextual_here(&self) -> bool {
        self.inner.threadlocal || crate::context::in_scope()
    }

    /// The context's connection a connectionless statement joins, if any:
    /// the newest reusable connection of the current scope. One whose row
    /// stream is still open is passed over outside a transaction (the
    /// statement takes a connection of its own) and refused inside one.
    fn joined(&self) -> Result<Option<Connection>> {
        if !self.contextual_here() {
            return Ok(None);
        }
        match self.inner.contexts.top() {
            Some(link) if link.joinable()? => Ok(Some(Connection::reusing(Arc::clone(&self.inner), link))),
            _ => Ok(None),
        }
    }

    /// Runs `future` with a connection context of its own (SQLAlchemy's
    /// threadlocal strategy, GINO's context, scoped): inside it, a
    /// connectionless statement joins the transaction `engine.begin()`
    /// opened (or the connection `engine.acquire()` holds) in the same
    /// scope. Outside any scope, connectionless statements always run on a
    /// connection of their own, so futures joined in one task (`join!`,
    /// `select!`) never share a transaction by accident; two scopes joined
    /// in one task are two contexts. A spawned task starts outside any scope.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> reservoir::Result<()> {
    /// let engine = reservoir::Engine::connect("sqlite::memory:").await?;
    /// engine.execute("CREATE TABLE t (x INTEGER)", ()).await?;
    /// engine.scope(async {
    ///     let tx = engine.begin().await?;
    ///     engine.execute("INSERT INTO t VALUES (1)", ()).await?;   // joins tx
    ///     tx.rollback().await                                       // and goes with it
    /// }).await?;
    /// assert_eq!(engine.fetch_scalar::<i64>("SELECT count(*) FROM t", ()).await?, 0);
    /// # Ok(()) }
    /// ```
    pub fn scope<F: Future>(&self, future: F) -> impl Future<Output = F::Output> {
        crate::context::scoped(future)
    }

    /// Begins a transaction on a connection of its own or, inside a scope
    /// (see [`scope`](Self::scope)) that already holds a transaction, a
    /// savepoint on that one.
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
        // of this scope join it.
        let contextual = self.connection(self.contextual_here(), true, true, Location::caller());
        async move {
            let mut conn = contextual.await?;
            let level = conn.begin_at(options).await?;
            Ok(Transaction::owned(conn, level))
        }
    }

    /// Runs a statement (connectionless: in a [`scope`](Self::scope), on
    /// the scope's current connection; else on a pooled one); returns the
    /// rows affected.
    #[track_caller]
    pub fn execute<'a>(
        &'a self,
        sql: &'a str,
        params: impl IntoParams,
    ) -> impl Future<Output = Result<u64>> + Send + 'a {
        let (params, caller) = (params.into_params(), Location::caller());
        async move {
            match self.joined()? {
                Some(mut conn) => conn.execute(sql, params).await,
                None => self.inner.core.execute(caller, sql, params).await,
            }
        }
    }

    /// [`Connection::execute_many`], connectionless.
    #[track_caller]
    pub fn execute_many<'a, P: IntoParams + 'a>(
        &'a self,
        sql: &'a str,
        params: impl IntoIterator<Item = P> + 'a,
    ) -> impl Future<Output = Result<u64>> + Send + 'a {
        let sets: Vec<Params> = params.into_iter().map(IntoParams::into_params).collect();
        let caller = Location::caller();
        async move {
            let mut conn = match self.joined()? {
                Some(conn) => conn,
                None => self.connection(false, true, false, caller).await?,
            };
            conn.execute_many(sql, sets).await
        }
    }

    /// The first row (an error if there is none), connectionless.
    #[track_caller]
    pub fn fetch_one<'a>(
        &'a self,
        sql: &'a str,
        params: impl IntoParams,
    ) -> impl Future<Output = Result<Row>> + Send + 'a {
        let read = self.read(sql, params.into_params(), Some(1), Location::caller());
        async move { first_row(read.await?) }
    }

    /// The first row, if any, connectionless.
    #[track_caller]
    pub fn fetch_optional<'a>(
        &'a self,
        sql: &'a str,
        params: impl IntoParams,
    ) -> impl Future<Output = Result<Option<Row>>> + Send + 'a {
        let read = self.read(sql, params.into_params(), Some(1), Location::caller());
        async move { Ok(read.await?.pop()) }
    }

    /// Every row, buffered, connectionless.
    #[track_caller]
    pub fn fetch_all<'a>(
        &'a self,
        sql: &'a str,
        params: impl IntoParams,
    ) -> impl Future<Output = Result<Vec<Row>>> + Send + 'a {
        self.read(sql, params.into_params(), None, Location::caller())
    }

    /// The first column of the first row, connectionless.
    #[track_caller]
    pub fn fetch_scalar<'a, T: FromValue + 'a>(
        &'a self,
        sql: &'a str,
        params: impl IntoParams,
    ) -> impl Future<Output = Result<T>> + Send + 'a {
        let one = self.fetch_one(sql, params);
        async move { one.await?.get(0) }
    }

    /// Every row deserialized into `T`, connectionless.
    #[track_caller]
    pub fn fetch_all_as<'a, T: DeserializeOwned + 'a>(
        &'a self,
        sql: &'a str,
        params: impl IntoParams,
    ) -> impl Future<Output = Result<Vec<T>>> + Send + 'a {
        let all = self.fetch_all(sql, params);
        async move { deserialize_all(&all.await?) }
    }

    /// A connectionless query: on the scope's current connection if it has
    /// one; else pipelined (with `pipeline_reads`, when the pool is busy and
    /// the statement is a plain read); else on a connection of its own.
    async fn read(
        &self,
        sql: &str,
        params: Params,
        limit: Option<usize>,
        caller: &'static Location<'static>,
    ) -> Result<Vec<Row>> {
        if let Some(mut conn) = self.joined()? {
            return conn.query(sql, params, limit).await;
        }
        let inner = &self.inner;
        if inner.pipeline_reads && crate::sql::is_plain_read(sql) {
            if let Some(first) = inner.pipeline.enter(inner) {
                let (sql, params) = inner.core.bind(sql, params)?;
                return inner.pipeline.read(inner, first, &sql, params, limit).await;
            }
        }
        inner.core.query(caller, sql, params, limit).await
    }

    /// How many tasks currently hold a stack of reusable connections.
    #[doc(hidden)]
    pub fn context_tasks(&self) -> usize {
        self.inner.contexts.tasks()
    }

    /// The pool's occupancy.
    pub fn status(&self) -> PoolStatus {
        self.inner.core.pool.status()
    }

    /// The pool's counters.
    pub fn stats(&self) -> PoolStats {
        self.inner.core.pool.stats()
    }

    /// The pool settings in force.
    pub fn pool_config(&self) -> &PoolConfig {
        self.inner.core.pool.config()
    }

    /// The URL (its password shows as `***` when printed).
    pub fn url(&self) -> &DatabaseUrl {
        &self.inner.core.url
    }

    /// The database family.
    pub fn dialect(&self) -> Dialect {
        self.inner.core.driver.dialect()
    }

    /// Replaces every connection: idle ones close now, checked-out ones when
    /// they come back; the engine keeps serving.
    pub fn dispose(&self) {
        self.inner.core.pool.dispose();
    }

    /// Refuses new work, closes idle connections and returns when every
    /// checked-out connection has come back and been closed.
    pub async fn close(&self) {
        self.inner.core.pool.close().await;
    }

    /// [`close`](Self::close) with `force` (do not wait) and `interrupt`
    /// (cancel running statements first).
    pub async fn close_with(&self, options: CloseOptions) {
        self.inner.core.pool.close_with(options).await;
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
                        match link.joinable() {
                            Ok(true) => return Poll::Ready(Ok(Connection::reusing(Arc::clone(inner), link))),
                            Ok(false) => {}
                            Err(e) => return Poll::Ready(Err(e)),
                        }
                    }
                }
                if this.lazy {
                    let link = Arc::new(Link::new(this.caller, None));
                    return Poll::Ready(Ok(Connection::root(Arc::clone(inner), link, this.reusable)));
                }
                this.checkout.insert(inner.core.pool.acquire_from(this.caller))
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
    threadlocal: Option<bool>,
    reset_on_return: Option<ResetOnReturn>,
}

/// Configures an [`Engine`]. Settings may also come as URL query parameters
/// (`?pool_size=5&pool_timeout=1.5`); builder calls override them.
#[must_use]
pub struct EngineBuilder {
    url: Result<DatabaseUrl>,
    overrides: Overrides,
    /// TCP settings for the driver, as its URL keys (they override the URL's).
    wire: Vec<(&'static str, String)>,
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
        /// Connectionless statements join the task's transaction without a [`scope`](Engine::scope) (SQLAlchemy's `strategy="threadlocal"`; default false); futures joined in one task then share it.
        threadlocal: bool,
        /// What a connection's reset does when it goes back to the pool (default `Auto`: see [`ResetOnReturn`]).
        reset_on_return: ResetOnReturn,
    }

    /// Bounds a whole connect: TCP, TLS, startup and authentication
    /// (libpq's `connect_timeout`; default 10 s; zero: no limit but
    /// `pool_timeout`). Like every TCP setting below, it overrides the URL's
    /// key and is ignored on SQLite, which has no network.
    pub fn connect_timeout(self, limit: Duration) -> Self {
        self.wire("connect_timeout", limit.as_secs_f64().to_string())
    }

    /// TCP keepalive on server connections (default on).
    pub fn keepalives(self, on: bool) -> Self {
        self.wire("keepalives", if on { "1" } else { "0" }.into())
    }

    /// Idle time before the first keepalive probe (default 30 s).
    pub fn keepalives_idle(self, idle: Duration) -> Self {
        self.wire("keepalives_idle", idle.as_secs_f64().to_string())
    }

    /// Time between keepalive probes (default 10 s; PostgreSQL only:
    /// mysql_async sets the idle time alone).
    pub fn keepalives_interval(self, interval: Duration) -> Self {
        self.wire("keepalives_interval", interval.as_secs_f64().to_string())
    }

    /// Unanswered probes before the connection is dropped (default 3;
    /// PostgreSQL only).
    pub fn keepalives_count(self, count: u32) -> Self {
        self.wire("keepalives_count", count.to_string())
    }

    /// How long sent data may go unacknowledged before the connection is
    /// dropped (default 60 s; PostgreSQL only; zero: the system's).
    pub fn tcp_user_timeout(self, limit: Duration) -> Self {
        self.wire("tcp_user_timeout", limit.as_millis().to_string())
    }

    fn wire(mut self, key: &'static str, value: String) -> Self {
        self.wire.push((key, value));
        self
    }

    /// Opens the pool and one connection (or `min_size`), so that a wrong
    /// URL, password or path fails here with [`ErrorKind::Connect`], not at
    /// the first statement.
    pub async fn build(self) -> Result<Engine> {
        let url = self.url?;
        let settings = Settings::from_url(&url)?.overridden_by(self.overrides);
        // Drivers see only their own URL keys (the engine's are in `settings`),
        // with the builder's TCP settings over the URL's where there is TCP.
        let mut driver_url = url.without_params(ENGINE_KEYS);
        if url.dialect() != Dialect::Sqlite {
            for (key, value) in &self.wire {
                driver_url = driver_url.with_param(key, value);
            }
        }
        let driver = driver::for_url(&driver_url, &settings.driver)?;
        let pool = Pool::builder(DriverManager {
            driver: Arc::clone(&driver),
            reset_on_return: settings.reset_on_return,
        })
        .config(settings.pool)
        .build()
        .await?;
        if pool.config().min_size == 0 {
            drop(pool.acquire().await?);
        }
        Ok(Engine {
            inner: Arc::new(EngineInner {
                core: Core {
                    pool,
                    driver,
                    url,
                    echo: settings.echo,
                },
                contexts: Contexts::default(),
                pipeline_reads: settings.pipeline_reads,
                pipeline: Pipeline::default(),
                threadlocal: settings.threadlocal,
            }),
        })
    }
}

/// The query parameters the engine itself reads (a driver is given the URL
/// without them, and rejects any parameter it does not know).
const ENGINE_KEYS: &[&str] = &[
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
    "threadlocal",
    "reset_on_return",
];

struct Settings {
    pool: PoolConfig,
    max_waiting_given: bool,
    echo: bool,
    pipeline_reads: bool,
    threadlocal: bool,
    reset_on_return: ResetOnReturn,
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
            threadlocal: flag("threadlocal")?.unwrap_or(false),
            reset_on_return: url
                .param("reset_on_return")
                .map(|v| {
                    ResetOnReturn::parse(v)
                        .ok_or_else(|| bad_setting("reset_on_return", v, "auto, rollback, discard or none"))
                })
                .transpose()?
                .unwrap_or_default(),
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
        self.threadlocal = o.threadlocal.unwrap_or(self.threadlocal);
        self.reset_on_return = o.reset_on_return.unwrap_or(self.reset_on_return);
        let d = &mut self.driver;
        d.statement_cache_size = o.statement_cache_size.unwrap_or(d.statement_cache_size);
        d.statement_timeout = o.statement_timeout.or(d.statement_timeout);
        self
    }
}
