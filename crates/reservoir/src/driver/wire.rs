//! The TCP settings of every server driver, with libpq's URL names:
//! `connect_timeout` (seconds, the whole connect: TCP, TLS, startup and
//! authentication), `keepalives` (1/0), `keepalives_idle`,
//! `keepalives_interval` (seconds), `keepalives_count` and
//! `tcp_user_timeout` (milliseconds). The defaults find a dead peer within
//! about a minute, where the operating system's take hours: a failover, a
//! NAT or load balancer that dropped the flow, or a hung server otherwise
//! leave a connection that nobody answers.
//!
//! Also the client's own deadline on a statement's answer: with
//! `statement_timeout` set the server cancels a statement itself and says
//! so; no answer a little after that means nobody is answering.

use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};

/// The URL keys read here.
pub(crate) const WIRE_KEYS: &[&str] = &[
    "connect_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
];

/// A server connection's TCP settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Wire {
    /// The whole connect; `None` (`connect_timeout=0`, as in libpq) waits
    /// as long as the pool's timeout lets it.
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) keepalives: bool,
    /// Idle time before the first probe.
    pub(crate) keepalives_idle: Duration,
    pub(crate) keepalives_interval: Duration,
    /// Probes unanswered before the connection is dropped.
    pub(crate) keepalives_count: u32,
    /// How long sent data may stay unacknowledged (a statement sent to a
    /// dead peer: keepalives do not probe while data is in flight).
    pub(crate) tcp_user_timeout: Option<Duration>,
}

impl Default for Wire {
    /// 30 s idle, then 3 probes 10 s apart: a dead idle peer is found in
    /// about a minute; a statement's bytes unacknowledged for a minute end
    /// the connection; a connect gets 10 s, as libpq users commonly set.
    fn default() -> Self {
        Wire {
            connect_timeout: Some(Duration::from_secs(10)),
            keepalives: true,
            keepalives_idle: Duration::from_secs(30),
            keepalives_interval: Duration::from_secs(10),
            keepalives_count: 3,
            tcp_user_timeout: Some(Duration::from_secs(60)),
        }
    }
}

impl Wire {
    /// Takes `key=value` if it is one of [`WIRE_KEYS`]; `Ok(false)` if not.
    pub(crate) fn take(&mut self, key: &str, value: &str) -> Result<bool> {
        let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
        match key {
            "connect_timeout" => self.connect_timeout = nonzero(super::seconds(key, value)?),
            "keepalives" => {
                self.keepalives = match value {
                    "1" => true,
                    "0" => false,
                    _ => return Err(bad(key, value, "1 or 0")),
                }
            }
            "keepalives_idle" => self.keepalives_idle = at_least_a_second(key, value)?,
            "keepalives_interval" => self.keepalives_interval = at_least_a_second(key, value)?,
            "keepalives_count" => {
                self.keepalives_count = value
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| bad(key, value, "a count of at least 1"))?
            }
            "tcp_user_timeout" => {
                let ms: u64 = value
                    .parse()
                    .map_err(|_| bad(key, value, "a number of milliseconds"))?;
                self.tcp_user_timeout = nonzero(Duration::from_millis(ms));
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Runs `connect` within `connect_timeout`; past it, a `Connect` error
    /// naming `server` and the limit.
    pub(crate) async fn bounded<T>(
        &self,
        server: &str,
        connect: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        match self.connect_timeout {
            None => connect.await,
            Some(limit) => tokio::time::timeout(limit, connect).await.map_err(|_| {
                Error::new(
                    ErrorKind::Connect,
                    format!("cannot connect to {server}: not connected and authenticated within connect_timeout ({limit:?})"),
                )
            })?,
        }
    }
}

/// How long after `statement_timeout` the client stops waiting: time for
/// the server's own cancel and its answer to arrive.
fn grace(timeout: Duration) -> Duration {
    (timeout / 10).max(Duration::from_secs(2))
}

/// The client-side limit on a statement's answer: `statement_timeout`
/// plus a grace; none without a statement timeout.
pub(crate) fn statement_deadline(statement_timeout: Option<Duration>) -> Option<Duration> {
    statement_timeout.map(|t| t + grace(t))
}

/// Awaits `op` within `deadline`; past it, `op` is dropped and the answer
/// is [`no_answer`]'s `Timeout` (a lost answer: `Error::is_lost_answer`),
/// after which the caller gives the connection up.
pub(crate) async fn within<T>(deadline: Option<Duration>, op: impl Future<Output = Result<T>>) -> Result<T> {
    match deadline {
        None => op.await,
        Some(limit) => tokio::time::timeout(limit, op)
            .await
            .unwrap_or_else(|_| Err(no_answer(limit))),
    }
}

/// The error of a statement whose answer never came within `limit`.
fn no_answer(limit: Duration) -> Error {
    Error::new(
        ErrorKind::Timeout,
        format!(
            "no answer from the server within {limit:?} (statement_timeout and a grace): \
             the connection is given up"
        ),
    )
}

fn at_least_a_second(key: &str, value: &str) -> Result<Duration> {
    let d = super::seconds(key, value)?;
    if d < Duration::from_secs(1) {
        return Err(bad(key, value, "at least 1 second"));
    }
    Ok(d)
}

fn bad(key: &str, value: &str, wanted: &str) -> Error {
    Error::new(ErrorKind::Url, format!("{key}={value:?}: expected {wanted}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_keys_and_their_errors() {
        let mut wire = Wire::default();
        for (k, v) in [
            ("connect_timeout", "0"),
            ("keepalives_idle", "5"),
            ("keepalives_interval", "2"),
            ("keepalives_count", "4"),
            ("tcp_user_timeout", "1500"),
            ("keepalives", "0"),
        ] {
            assert!(wire.take(k, v).unwrap(), "{k}");
        }
        assert_eq!(
            wire,
            Wire {
                connect_timeout: None,
                keepalives: false,
                keepalives_idle: Duration::from_secs(5),
                keepalives_interval: Duration::from_secs(2),
                keepalives_count: 4,
                tcp_user_timeout: Some(Duration::from_millis(1500)),
            }
        );
        assert!(!wire.take("sslmode", "disable").unwrap());
        for (k, v) in [
            ("keepalives", "yes"),
            ("keepalives_idle", "0.5"),
            ("keepalives_count", "0"),
            ("tcp_user_timeout", "-1"),
            ("connect_timeout", "soon"),
        ] {
            let err = wire.take(k, v).unwrap_err();
            assert_eq!(err.kind(), &ErrorKind::Url, "{k}");
            assert!(err.to_string().contains(k), "{err}");
        }
    }
}
