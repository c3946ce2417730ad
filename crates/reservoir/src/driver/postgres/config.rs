//! The connection settings a PostgreSQL URL describes, in libpq's terms.

use super::tls::{self, SslMode};
use crate::driver::DriverOptions;
use crate::driver::wire::{WIRE_KEYS, Wire};
use crate::error::{Error, ErrorKind, Result};
use crate::url::DatabaseUrl;

/// The URL parameters this driver understands (besides the engine's).
const DRIVER_KEYS: &[&str] = &[
    "sslmode",
    "sslrootcert",
    "channel_binding",
    "application_name",
    "options",
];

/// What a connection needs: tokio-postgres's settings and the TLS connector
/// (`None` when `sslmode=disable`).
pub(super) struct Settings {
    pub(super) config: tokio_postgres::Config,
    pub(super) tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    /// The whole connect's limit (tokio-postgres's own covers TCP only).
    pub(super) wire: Wire,
}

/// Reads `url` (and the engine's statement timeout) into [`Settings`].
pub(super) fn settings(url: &DatabaseUrl, options: &DriverOptions) -> Result<Settings> {
    let mut config = tokio_postgres::Config::new();
    // libpq's default: TLS when the server offers it, plain otherwise.
    let mut mode = SslMode::Prefer;
    let mut root_cert = None;
    let mut wire = Wire::default();
    for (key, value) in url.query() {
        if wire.take(key, value)? {
            continue;
        }
        match key.as_str() {
            "sslmode" => mode = SslMode::parse(value)?,
            "sslrootcert" => root_cert = Some(value.as_str()),
            // libpq's: `require` refuses cleartext and MD5 password
            // authentication, and SCRAM without channel binding (so TLS),
            // so that no downgrade hands the password to a fake server.
            "channel_binding" => {
                use tokio_postgres::config::ChannelBinding;
                config.channel_binding(match value.as_str() {
                    "disable" => ChannelBinding::Disable,
                    "prefer" => ChannelBinding::Prefer,
                    "require" => ChannelBinding::Require,
                    other => {
                        return Err(Error::new(
                            ErrorKind::Url,
                            format!("channel_binding={other:?}: expected disable, prefer or require"),
                        ));
                    }
                });
            }
            "require_auth" => {
                return Err(Error::new(
                    ErrorKind::Url,
                    "require_auth is not supported: channel_binding=require refuses cleartext and MD5 \
                     password authentication",
                ));
            }
            "application_name" => {
                config.application_name(value);
            }
            "options" => {
                config.options(value);
            }
            k => {
                return Err(Error::new(
                    ErrorKind::Url,
                    format!(
                        "unknown PostgreSQL URL parameter '{k}' (known: {}, {})",
                        DRIVER_KEYS.join(", "),
                        WIRE_KEYS.join(", ")
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
    if let Some(limit) = wire.connect_timeout {
        config.connect_timeout(limit);
    }
    config
        .keepalives(wire.keepalives)
        .keepalives_idle(wire.keepalives_idle)
        .keepalives_interval(wire.keepalives_interval)
        .keepalives_retries(wire.keepalives_count);
    if let Some(limit) = wire.tcp_user_timeout {
        config.tcp_user_timeout(limit);
    }
    let tls = tls::connector(mode, root_cert)?;
    Ok(Settings { config, tls, wire })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_of(url: &str) -> tokio_postgres::Config {
        let options = DriverOptions {
            statement_cache_size: 0,
            statement_timeout: None,
        };
        settings(&url.parse().unwrap(), &options).unwrap().config
    }

    #[test]
    fn keepalives_find_a_dead_peer_within_a_minute_unless_told_otherwise() {
        use std::time::Duration;
        let c = config_of("postgres://h/db");
        assert!(c.get_keepalives());
        let detect = c.get_keepalives_idle()
            + c.get_keepalives_interval().unwrap() * c.get_keepalives_retries().unwrap();
        assert!(detect <= Duration::from_secs(60), "{detect:?}");
        assert_eq!(c.get_tcp_user_timeout(), Some(&Duration::from_secs(60)));
        let c = config_of(
            "postgres://h/db?keepalives_idle=7&keepalives_count=2&tcp_user_timeout=2500&keepalives=0",
        );
        assert!(!c.get_keepalives());
        assert_eq!(c.get_keepalives_idle(), Duration::from_secs(7));
        assert_eq!(c.get_keepalives_retries(), Some(2));
        assert_eq!(c.get_tcp_user_timeout(), Some(&Duration::from_millis(2500)));
    }
}
