//! Database URLs and `makedsn`-style connect options. The password is kept
//! out of every `Debug` and `Display`: it shows as `***`.

use std::fmt;

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

use crate::error::{Error, ErrorKind, Result};

/// The database family a URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dialect {
    /// Embedded SQLite (`sqlite:`).
    Sqlite,
    /// PostgreSQL (`postgres://`, `postgresql://`).
    Postgres,
    /// MySQL or MariaDB (`mysql://`, `mariadb://`).
    Mysql,
}

impl Dialect {
    /// The dialect's canonical URL scheme.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgresql",
            Dialect::Mysql => "mysql",
        }
    }
}

/// A parsed database URL (or the same built from parts with [`ConnectOptions`]).
///
/// ```
/// use reservoir::url::{DatabaseUrl, Dialect};
/// let url: DatabaseUrl = "postgresql+tokio://app:s%40cret@db:5433/shop?pool_size=5".parse()?;
/// assert_eq!(url.dialect(), Dialect::Postgres);
/// assert_eq!(url.password(), Some("s@cret"));
/// assert_eq!(url.to_string(), "postgresql://app:***@db:5433/shop?pool_size=5");
/// # Ok::<(), reservoir::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    dialect: Dialect,
    driver: Option<String>,
    user: Option<String>,
    password: Option<String>,
    hosts: Vec<(String, Option<u16>)>,
    /// Database name; for SQLite the file path, or `:memory:`.
    database: Option<String>,
    query: Vec<(String, String)>,
}

fn url_error(input: &str, why: impl fmt::Display) -> Error {
    Error::new(
        ErrorKind::Url,
        format!("{why} in database URL {}", redact_raw(input)),
    )
}

/// Hides whatever may be a password in a URL that may not even parse, so
/// that an error about it can still show where it went wrong. It cannot
/// know where the password ends in a malformed URL, so it hides more
/// rather than less:
/// - everything between the first `:` after the scheme and the last `@`
///   (a password may hold an unencoded `/`, `?` or `@`; without a known
///   scheme, `u:PW@h` is read as user and password), or the whole of it
///   when the scheme lacks its `//`;
/// - with no `@`, a host's "port" that is not a number (`postgres://u:PW`);
/// - the value of every query key that names a password.
fn redact_raw(input: &str) -> String {
    let start = scheme_len(input);
    let mut out = match input.rfind('@').filter(|&at| at >= start) {
        // `scheme:PW@h`: without `//` the scheme's colon may be the one
        // between a missing user and the password.
        Some(at) if start > 0 && !input[..start].ends_with("//") => {
            format!("{}***{}", &input[..start], &input[at..])
        }
        Some(at) => match input[start..at].find(':') {
            Some(colon) => format!("{}***{}", &input[..start + colon + 1], &input[at..]),
            None => input.to_string(),
        },
        None => hide_wordy_ports(input, start),
    };
    let query_from = out.rfind("***@").map_or(start, |i| i + 4);
    if let Some(q) = out[query_from..].find('?') {
        let q = query_from + q + 1;
        let query: Vec<String> = out[q..]
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.to_ascii_lowercase().contains("password") => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect();
        out = format!("{}{}", &out[..q], query.join("&"));
    }
    format!("'{out}'")
}

/// The length of a known scheme at the start of `input` (`postgres:`,
/// `mysql+x://`), or 0.
fn scheme_len(input: &str) -> usize {
    let Some(colon) = input.find(':') else {
        return 0;
    };
    let (scheme, driver) = input[..colon].split_once('+').unwrap_or((&input[..colon], "x"));
    let known = ["sqlite", "sqlite3", "postgres", "postgresql", "mysql", "mariadb"];
    let word = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !known.contains(&scheme.to_ascii_lowercase().as_str()) || !word(driver) {
        return 0;
    }
    if input[colon + 1..].starts_with("//") {
        colon + 3
    } else {
        colon + 1
    }
}

/// `input` with every `host:port` of its authority whose port is not a
/// number shown as `host:***`: with no `@`, `postgres://u:PW/db` puts the
/// password where the port goes.
fn hide_wordy_ports(input: &str, start: usize) -> String {
    let end = input[start..].find(['/', '?']).map_or(input.len(), |i| start + i);
    let hosts: Vec<String> = input[start..end]
        .split(',')
        .map(|host| match host.rsplit_once(':') {
            Some((name, port)) if !host.starts_with('[') && !port.bytes().all(|b| b.is_ascii_digit()) => {
                format!("{name}:***")
            }
            _ => host.to_string(),
        })
        .collect();
    format!("{}{}{}", &input[..start], hosts.join(","), &input[end..])
}

fn decode(input: &str, part: &str) -> Result<String> {
    percent_decode_str(part)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| url_error(input, "invalid percent-encoding"))
}

impl std::str::FromStr for DatabaseUrl {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self> {
        let colon = input.find(':').ok_or_else(|| {
            url_error(
                input,
                "missing scheme (expected sqlite:, postgres:// or mysql://)",
            )
        })?;
        let (scheme, driver) = match input[..colon].split_once('+') {
            Some((scheme, driver)) => (scheme, Some(driver.to_string())),
            None => (&input[..colon], None),
        };
        let dialect = match scheme.to_ascii_lowercase().as_str() {
            "sqlite" | "sqlite3" => Dialect::Sqlite,
            "postgres" | "postgresql" => Dialect::Postgres,
            "mysql" | "mariadb" => Dialect::Mysql,
            other => return Err(url_error(input, format_args!("unknown scheme '{other}'"))),
        };
        let rest = &input[colon + 1..];
        let (body, query) = match rest.split_once('?') {
            Some((body, query)) => (body, parse_query(input, query)?),
            None => (rest, Vec::new()),
        };
        let mut url = DatabaseUrl {
            dialect,
            driver,
            user: None,
            password: None,
            hosts: Vec::new(),
            database: None,
            query,
        };
        if dialect == Dialect::Sqlite {
            let path = body.strip_prefix("//").unwrap_or(body);
            if path.is_empty() {
                return Err(url_error(
                    input,
                    "missing SQLite path (use sqlite::memory: for an in-memory database)",
                ));
            }
            url.database = Some(decode(input, path)?);
            return Ok(url);
        }
        let body = body
            .strip_prefix("//")
            .ok_or_else(|| url_error(input, "expected '//' after the scheme"))?;
        let (authority, path) = match body.find('/') {
            Some(slash) => (&body[..slash], &body[slash + 1..]),
            None => (body, ""),
        };
        let hosts = match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.split_once(':') {
                    Some((user, password)) => {
                        url.user = Some(decode(input, user)?);
                        url.password = Some(decode(input, password)?);
                    }
                    None => url.user = Some(decode(input, userinfo)?),
                }
                &authority[at + 1..]
            }
            None => authority,
        };
        for host in hosts.split(',').filter(|h| !h.is_empty()) {
            url.hosts.push(parse_host(input, host)?);
        }
        if !path.is_empty() {
            url.database = Some(decode(input, path)?);
        }
        Ok(url)
    }
}

fn parse_host(input: &str, host: &str) -> Result<(String, Option<u16>)> {
    // [::1]:5432, host:5432, host
    let (name, port) = if let Some(v6) = host.strip_prefix('[') {
        let end = v6
            .find(']')
            .ok_or_else(|| url_error(input, "unclosed '[' in host"))?;
        let port = v6[end + 1..].strip_prefix(':');
        (&v6[..end], port)
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    let port = match port {
        // A port that is not a number may be a misplaced password: not shown.
        Some(p) if !p.bytes().all(|b| b.is_ascii_digit()) => {
            return Err(url_error(input, "invalid port (not a number)"));
        }
        Some(p) => Some(
            p.parse::<u16>()
                .map_err(|_| url_error(input, format_args!("invalid port '{p}'")))?,
        ),
        None => None,
    };
    Ok((decode(input, name)?, port))
}

fn parse_query(input: &str, query: &str) -> Result<Vec<(String, String)>> {
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            Ok((decode(input, k)?, decode(input, v)?))
        })
        .collect()
}

impl DatabaseUrl {
    /// Parses a URL (same as `str::parse`).
    pub fn parse(url: &str) -> Result<Self> {
        url.parse()
    }
    /// The database family.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }
    /// The `+driver` suffix of the scheme, if any.
    pub fn driver(&self) -> Option<&str> {
        self.driver.as_deref()
    }
    /// The user name.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }
    /// The password (never shown by `Debug` or `Display`).
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }
    /// Hosts with optional ports, in order.
    pub fn hosts(&self) -> &[(String, Option<u16>)] {
        &self.hosts
    }
    /// The database name; for SQLite the path or `:memory:`.
    pub fn database(&self) -> Option<&str> {
        self.database.as_deref()
    }
    /// Every query parameter, in order.
    pub fn query(&self) -> &[(String, String)] {
        &self.query
    }
    /// The same URL without the query parameters in `keys` (the engine's
    /// own settings, so that a driver sees only its keys).
    pub(crate) fn without_params(&self, keys: &[&str]) -> DatabaseUrl {
        let mut url = self.clone();
        url.query.retain(|(k, _)| !keys.contains(&k.as_str()));
        url
    }
    /// The same URL with query parameter `key` set to `value` alone.
    pub(crate) fn with_param(&self, key: &str, value: &str) -> DatabaseUrl {
        let mut url = self.clone();
        url.query.retain(|(k, _)| k != key);
        url.query.push((key.to_string(), value.to_string()));
        url
    }
    /// The last value of query parameter `key`.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    /// Whether this is SQLite's in-memory database.
    pub fn is_memory(&self) -> bool {
        self.dialect == Dialect::Sqlite && self.database.as_deref() == Some(":memory:")
    }
}

const COMPONENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'%')
    .add(b'@')
    .add(b':')
    .add(b'/')
    .add(b'?')
    .add(b'#')
    .add(b'&')
    .add(b'=');

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.dialect.name())?;
        if self.dialect == Dialect::Sqlite {
            let db = self.database.as_deref().unwrap_or_default();
            if db == ":memory:" {
                write!(f, ":memory:")?;
            } else {
                write!(f, "//{db}")?;
            }
        } else {
            write!(f, "//")?;
            if let Some(user) = &self.user {
                write!(f, "{}", utf8_percent_encode(user, COMPONENT))?;
                if self.password.is_some() {
                    write!(f, ":***")?;
                }
                write!(f, "@")?;
            }
            for (i, (host, port)) in self.hosts.iter().enumerate() {
                if i > 0 {
                    write!(f, ",")?;
                }
                if host.contains(':') {
                    write!(f, "[{host}]")?;
                } else {
                    write!(f, "{host}")?;
                }
                if let Some(port) = port {
                    write!(f, ":{port}")?;
                }
            }
            if let Some(db) = &self.database {
                write!(f, "/{}", utf8_percent_encode(db, COMPONENT))?;
            }
        }
        for (i, (k, v)) in self.query.iter().enumerate() {
            let sep = if i == 0 { '?' } else { '&' };
            let shown = if k.contains("password") { "***" } else { v.as_str() };
            write!(
                f,
                "{sep}{}={}",
                utf8_percent_encode(k, COMPONENT),
                utf8_percent_encode(shown, COMPONENT)
            )?;
        }
        Ok(())
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// Builds a [`DatabaseUrl`] from parts, like cx_Oracle's `makedsn`.
///
/// ```
/// use reservoir::url::{ConnectOptions, Dialect};
/// let url = ConnectOptions::new(Dialect::Postgres)
///     .host("localhost").port(5432).user("app").password("secret").database("shop")
///     .build();
/// assert_eq!(url.to_string(), "postgresql://app:***@localhost:5432/shop");
/// ```
#[derive(Clone)]
pub struct ConnectOptions {
    url: DatabaseUrl,
}

impl ConnectOptions {
    /// Options for `dialect`, with nothing set.
    pub fn new(dialect: Dialect) -> Self {
        ConnectOptions {
            url: DatabaseUrl {
                dialect,
                driver: None,
                user: None,
                password: None,
                hosts: Vec::new(),
                database: None,
                query: Vec::new(),
            },
        }
    }
    /// Adds a host (several make a fail-over list).
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.url.hosts.push((host.into(), None));
        self
    }
    /// Sets the port of the last host added (or of `localhost`).
    pub fn port(mut self, port: u16) -> Self {
        if self.url.hosts.is_empty() {
            self.url.hosts.push(("localhost".into(), None));
        }
        if let Some(last) = self.url.hosts.last_mut() {
            last.1 = Some(port);
        }
        self
    }
    /// The user name.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.url.user = Some(user.into());
        self
    }
    /// The password.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.url.password = Some(password.into());
        self
    }
    /// The database (service) name; for SQLite the file path.
    pub fn database(mut self, database: impl Into<String>) -> Self {
        self.url.database = Some(database.into());
        self
    }
    /// `makedsn`'s `service_name`: the same as [`database`](Self::database).
    pub fn service_name(self, name: impl Into<String>) -> Self {
        self.database(name)
    }
    /// Any other option, as a URL query parameter would give it.
    pub fn option(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.url.query.push((key.into(), value.into()));
        self
    }
    /// The finished URL.
    pub fn build(self) -> DatabaseUrl {
        self.url
    }
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnectOptions({})", self.url)
    }
}

impl From<ConnectOptions> for DatabaseUrl {
    fn from(o: ConnectOptions) -> Self {
        o.url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> DatabaseUrl {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn sqlite_forms() {
        assert!(parse("sqlite::memory:").is_memory());
        assert_eq!(
            parse("sqlite://path/to/file.db").database(),
            Some("path/to/file.db")
        );
        assert_eq!(parse("sqlite:relative.db").database(), Some("relative.db"));
        assert_eq!(parse("sqlite:///abs/x.db").database(), Some("/abs/x.db"));
        assert_eq!(parse("sqlite::memory:?pool_size=3").param("pool_size"), Some("3"));
    }

    #[test]
    fn server_forms() {
        let u = parse("postgresql+tokio://app:p%40ss%3Aword@h1:5433,h2/shop?sslmode=require&pool_size=5");
        assert_eq!(u.dialect(), Dialect::Postgres);
        assert_eq!(u.driver(), Some("tokio"));
        assert_eq!(u.user(), Some("app"));
        assert_eq!(u.password(), Some("p@ss:word"));
        assert_eq!(u.hosts(), &[("h1".into(), Some(5433)), ("h2".into(), None)]);
        assert_eq!(u.database(), Some("shop"));
        assert_eq!(u.param("sslmode"), Some("require"));
        let m = parse("mariadb://root@[::1]:3306/test");
        assert_eq!(m.dialect(), Dialect::Mysql);
        assert_eq!(m.hosts(), &[("::1".into(), Some(3306))]);
        assert_eq!(m.password(), None);
    }

    #[test]
    fn passwords_never_shown() {
        let u = parse("postgres://app:topsecret@db/shop?password=alsosecret");
        for shown in [u.to_string(), format!("{u:?}")] {
            assert!(!shown.contains("secret"), "{shown}");
            assert!(shown.contains("***"));
        }
        let o = ConnectOptions::new(Dialect::Mysql)
            .user("u")
            .password("topsecret");
        assert!(!format!("{o:?}").contains("topsecret"));
    }

    #[test]
    fn bad_urls_are_typed_errors_without_the_password() {
        for (bad, says) in [
            ("nonsense", "missing scheme"),
            ("oracle://x/y", "unknown scheme 'oracle'"),
            ("postgres://u:topsecret@h:99999/db", "invalid port '99999'"),
            ("postgres:db", "expected '//'"),
            ("sqlite:", "missing SQLite path"),
            ("postgres://u:topsecret@h/%FF", "percent"),
        ] {
            let err = DatabaseUrl::parse(bad).unwrap_err();
            assert_eq!(err.kind(), &ErrorKind::Url, "{bad}");
            let text = err.to_string();
            assert!(text.contains(says), "{bad}: {text}");
            assert!(!text.contains("topsecret"), "{text}");
        }
    }

    /// Malformed URLs that each carry the password `Pw0rd`, in every
    /// place a user has put one by mistake: no error shows it, by
    /// `Display`, `Debug` or the error chain.
    #[test]
    fn no_malformed_url_shows_its_password() {
        for bad in [
            "postgres:u:Pw0rd@h/db",
            "u:Pw0rd@h/db",
            "postgres://u:Pw/0rd@h/db",
            "postgres://u:P?w0rd@h/db",
            "postgres://u:Pw@0rd@h:99999/db",
            "postgres://u:Pw0rd/db",
            "postgres://u:Pw0rd",
            "mysql://u:Pw0rd@h:x/db",
            "oracle://u:Pw0rd@h/db",
            "postgres://u@h:99999/db?password=Pw0rd",
            "postgres://u:Pw0rd@h/%FF?password=Pw0rd",
            "postgres://h/db?sslpassword=Pw0rd&x=%FF",
            "mysql//u:Pw0rd@h/db",
            "postgresql+tokio:/u:Pw0rd@h/db",
        ] {
            let err = DatabaseUrl::parse(bad).expect_err(bad);
            assert_eq!(err.kind(), &ErrorKind::Url, "{bad}");
            let mut shown = vec![err.to_string(), format!("{err:?}"), format!("{err:#?}")];
            let mut source = std::error::Error::source(&err);
            while let Some(e) = source {
                shown.push(e.to_string());
                source = e.source();
            }
            for text in shown {
                assert!(!text.contains("Pw0rd") && !text.contains("0rd"), "{bad}: {text}");
            }
        }
    }

    proptest::proptest! {
        /// No input panics the parser.
        #[test]
        fn parsing_never_panics(s in ".*") {
            let _ = DatabaseUrl::parse(&s);
        }

        /// A password written after `user:`, whatever surrounds it, never
        /// shows in an error, nor in the URL when it parses.
        #[test]
        fn a_password_never_shows(
            scheme in "(postgres|postgresql\\+x|mysql|mariadb|oracle|)",
            sep in "(://|:|:/|//|)",
            user in "[a-z]{0,4}",
            secret in "[A-Za-z0-9/?@#%:&=]{0,10}",
            rest in "[a-z0-9:/?=&%@.,\\[\\]]{0,16}",
        ) {
            let password = format!("Zq7{secret}");
            let url = format!("{scheme}{sep}{user}:{password}@{rest}");
            let shown = match DatabaseUrl::parse(&url) {
                Err(e) => format!("{e} {e:?}"),
                Ok(parsed) => format!("{parsed} {parsed:?}"),
            };
            proptest::prop_assert!(!shown.contains("Zq7"), "{} shows {}", url, shown);
        }
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "postgresql://app@h:1/db?a=b",
            "mysql://h/db",
            "sqlite::memory:",
            "sqlite://x.db",
        ] {
            assert_eq!(parse(s).to_string(), s);
        }
    }
}
