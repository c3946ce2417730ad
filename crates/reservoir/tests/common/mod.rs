//! Behaviour tests are written once and run on every dialect this build
//! has (see `per_dialect!`).

#![allow(dead_code)]

#[cfg(feature = "postgres")]
pub mod pgbouncer;
pub mod proxy;

use reservoir::{Dialect, Engine, EngineBuilder};

/// The environment variable that lets tests restart the local servers or
/// change their configuration (`.ci/run` sets it; a developer opts in).
pub const DISRUPTIVE: &str = "RESERVOIR_DISRUPTIVE_TESTS";

/// Whether a test that restarts or reconfigures a server (`what`) may run:
/// only when [`DISRUPTIVE`] is `1`. Otherwise it says, on stderr, that it
/// was skipped and how to run it.
pub fn disruptive_allowed(what: &str) -> bool {
    let allowed = std::env::var(DISRUPTIVE).is_ok_and(|v| v == "1");
    if !allowed {
        eprintln!("skipped: {what} (set {DISRUPTIVE}=1 to run it; it disturbs the local servers)");
    }
    allowed
}

/// One dialect under test: how to reach it and what its SQL looks like.
#[derive(Clone, Copy, Debug)]
pub struct Db {
    pub dialect: Dialect,
    /// How the server is reached (a dialect may be tested more than one way).
    pub route: Route,
}

/// The ways PostgreSQL is tested.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Direct,
    /// Statement cache off: every statement is sent unnamed.
    Unnamed,
    /// Unnamed statements through PgBouncer in transaction mode.
    PgBouncer,
}

impl Db {
    pub fn sqlite() -> Db {
        Db {
            dialect: Dialect::Sqlite,
            route: Route::Direct,
        }
    }

    pub fn postgres() -> Db {
        Db {
            dialect: Dialect::Postgres,
            route: Route::Direct,
        }
    }

    pub fn mysql() -> Db {
        Db {
            dialect: Dialect::Mysql,
            route: Route::Direct,
        }
    }

    pub fn postgres_unnamed() -> Db {
        Db {
            route: Route::Unnamed,
            ..Db::postgres()
        }
    }

    pub fn pgbouncer() -> Db {
        Db {
            route: Route::PgBouncer,
            ..Db::postgres()
        }
    }

    /// A short name for tables and messages.
    pub fn label(&self) -> &'static str {
        match self.route {
            Route::Direct => self.dialect.name(),
            Route::Unnamed => "pg_unnamed",
            Route::PgBouncer => "pgbouncer",
        }
    }

    /// The n-th (1-based) positional placeholder in this dialect's style.
    pub fn placeholder(&self, n: usize) -> String {
        match self.dialect {
            Dialect::Postgres => format!("${n}"),
            _ => "?".into(),
        }
    }

    /// `:name` with a cast where the dialect cannot infer a parameter's type
    /// from a bare `SELECT :name` (PostgreSQL infers text).
    pub fn typed(&self, name: &str, pg_type: &str) -> String {
        match self.dialect {
            Dialect::Postgres => format!("CAST(:{name} AS {pg_type})"),
            _ => format!(":{name}"),
        }
    }

    /// `SELECT :n AS n`, with `:n` typed BIGINT: answers with the value
    /// bound, so each statement's answer can be told from any other's.
    pub fn echo(&self) -> String {
        format!("SELECT {} AS n", self.typed("n", "BIGINT"))
    }

    /// `name` as a quoted identifier in this dialect.
    pub fn quote(&self, name: &str) -> String {
        match self.dialect {
            Dialect::Mysql => format!("`{name}`"),
            _ => format!("\"{name}\""),
        }
    }

    /// A URL for a database of this dialect that no other test uses at the
    /// same time (SQLite: a private in-memory database).
    pub fn url(&self) -> String {
        match self.dialect {
            Dialect::Sqlite => "sqlite::memory:".into(),
            Dialect::Postgres => {
                let direct = std::env::var("POSTGRES_URL")
                    .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
                let join = if direct.contains('?') { '&' } else { '?' };
                match self.route {
                    Route::Direct => direct,
                    Route::Unnamed => format!("{direct}{join}statement_cache_size=0"),
                    #[cfg(feature = "postgres")]
                    Route::PgBouncer => format!(
                        "postgres://postgres@127.0.0.1:{}/test?statement_cache_size=0",
                        pgbouncer::port()
                    ),
                    #[cfg(not(feature = "postgres"))]
                    Route::PgBouncer => unreachable!("PgBouncer is tested with the postgres feature"),
                }
            }
            Dialect::Mysql => {
                std::env::var("MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
            }
            other => panic!("no test server configured for {other:?}"),
        }
    }

    /// [`url`](Self::url) with more query parameters (`a=1&b=2`).
    pub fn url_with(&self, params: &str) -> String {
        let url = self.url();
        let join = if url.contains('?') { '&' } else { '?' };
        format!("{url}{join}{params}")
    }

    pub fn builder(&self) -> EngineBuilder {
        Engine::builder(self.url())
    }

    /// `connections` connections, `pipeline_reads` on, no backlog bound.
    pub async fn pipelining_engine(&self, connections: usize) -> Engine {
        self.builder()
            .pool_size(connections)
            .max_overflow(0)
            .max_waiting(None)
            .pipeline_reads(true)
            .build()
            .await
            .unwrap()
    }

    pub async fn engine(&self) -> Engine {
        self.builder().build().await.expect("engine")
    }

    /// A statement that runs until interrupted.
    pub fn endless_query(&self) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => {
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
            }
            Dialect::Mysql => "SELECT SLEEP(30)",
            _ => "SELECT pg_sleep(30)",
        }
    }

    /// A query producing the integers 1..=n in column `x`.
    pub fn series(&self, n: u64) -> String {
        match self.dialect {
            // MariaDB stops recursion after 1000 iterations by default: more
            // rows come from a cross join of digits (in no particular order).
            Dialect::Mysql if n > 1000 => format!(
                "WITH RECURSIVE d(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM d WHERE x < 9) \
                 SELECT x FROM (SELECT 1 + a.x + 10 * b.x + 100 * c.x + 1000 * e.x + 10000 * f.x + 100000 * g.x AS x \
                 FROM d a, d b, d c, d e, d f, d g) s WHERE x <= {n}"
            ),
            Dialect::Sqlite | Dialect::Mysql => format!(
                "WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < {n}) SELECT x FROM s"
            ),
            _ => format!("SELECT x FROM generate_series(1, {n}) AS x"),
        }
    }
}

/// A table name no other test uses: `test` names the test, the dialect
/// keeps per-dialect runs of one test apart on a shared server.
pub fn table_name(db: &Db, test: &str) -> String {
    // MySQL allows 64 characters in a name.
    let test = &test[..test.len().min(40)];
    format!("rsv_{test}_{}", db.label())
}

/// A new, empty table named after the test, with the given column list.
pub async fn fresh_table(db: &Db, engine: &Engine, test: &str, columns: &str) -> String {
    let t = table_name(db, test);
    engine
        .execute(&format!("DROP TABLE IF EXISTS {t}"), ())
        .await
        .unwrap();
    engine
        .execute(&format!("CREATE TABLE {t} ({columns})"), ())
        .await
        .unwrap();
    t
}

/// The first column of every row, as integers (for asserting which rows exist).
pub fn ids(rows: &[reservoir::Row]) -> Vec<i64> {
    rows.iter().map(|r| r.get(0).unwrap()).collect()
}

/// Collects what a `tracing` subscriber writes, for assertions on log lines.
#[derive(Clone, Default)]
pub struct LogCapture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl LogCapture {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogCapture {
    type Writer = LogCapture;
    fn make_writer(&'a self) -> LogCapture {
        self.clone()
    }
}

/// Resident memory of this process, in bytes.
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// `per_dialect!(case)` runs `async fn case(db: Db)` once per dialect, as
/// the tests `case::sqlite`, `case::postgres`, ...
#[macro_export]
macro_rules! per_dialect {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$case($crate::common::Db::sqlite()).await;
            }

            #[cfg(feature = "postgres")]
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$case($crate::common::Db::postgres()).await;
            }

            #[cfg(feature = "mysql")]
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn mysql() {
                super::$case($crate::common::Db::mysql()).await;
            }

            #[cfg(feature = "postgres")]
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres_unnamed() {
                super::$case($crate::common::Db::postgres_unnamed()).await;
            }

            #[cfg(feature = "postgres")]
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn pgbouncer() {
                super::$case($crate::common::Db::pgbouncer()).await;
            }
        }
    )*};
}
