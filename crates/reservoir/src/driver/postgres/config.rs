//! The connection settings a PostgreSQL URL describes, in libpq's terms.

use super::tls::{self, SslMode};
use crate::driver::DriverOptions;
use crate::error::{Error, ErrorKind, Result};
use crate::url::DatabaseUrl;

/// The URL parameters this driver understands (besides the engine's).
const DRIVER_KEYS: &[&str] = &[
    "sslmode",
    "sslrootcert",
    "application_name",
    "connect_timeout",
    "options",
];

/// What a connection needs: tokio-postgres's settings and the TLS connector
/// (`None` when `sslmode=disable`).
pub(super) struct Settings {
    pub(super) config: tokio_postgres::Config,
    pub(super) tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

/// Reads `url` (and the engine's statement timeout) into [`Settings`].
pub(super) fn settings(url: &DatabaseUrl, options: &DriverOptions) -> Result<Settings> {
    let mut config = tokio_postgres::Config::new();
    // libpq's default: TLS when the server offers it, plain otherwise.
    let mut mode = SslMode::Prefer;
    let mut root_cert = None;
    for (key, value) in url.query() {
        match key.as_str() {
            "sslmode" => mode = SslMode::parse(value)?,
            "sslrootcert" => root_cert = Some(value.as_str()),
            "application_name" => {
                config.application_name(value);
            }
            "options" => {
                config.options(value);
            }
            "connect_timeout" => {
                config.connect_timeout(crate::driver::seconds(key, value)?);
            }
            k => {
                return Err(Error::new(
                    ErrorKind::Url,
                    format!(
                        "unknown PostgreSQL URL parameter '{k}' (known: {})",
                        DRIVER_KEYS.join(", ")
                    ),
                ));
            }
        }
    }
    if let Some(timeout) = options.statement_timeout {
        // Set at session start: no extra round trip, and it survives ROLLBACK.
        let setting = format!("-c statement_timeout={}", timeout.as_millis().max(1));
        let options = match config.get_options() {
            Some(existing) => format!("{existing} {setting}"),
            None => setting,
        };
        config.options(&options);
    }
    if url.hosts().is_empty() {
        config.host("localhost").port(5432);
    }
    for (host, port) in url.hosts() {
        config.host(host).port(port.unwrap_or(5432));
    }
    config.user(url.user().unwrap_or("postgres"));
    if let Some(password) = url.password() {
        config.password(password);
    }
    if let Some(db) = url.database() {
        config.dbname(db);
    }
    config.ssl_mode(mode.transport());
    let tls = tls::connector(mode, root_cert)?;
    Ok(Settings { config, tls })
}
