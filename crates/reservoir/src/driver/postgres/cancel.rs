//! Cancel requests, sent the way libpq sends them: on a new connection,
//! then waiting for the other side to close it. tokio-postgres's own
//! `cancel_query` half-closes and hangs up right after writing, and a pooler
//! such as PgBouncer, which forwards the request over a server connection it
//! is still opening, drops a request whose client has already gone. Waiting
//! also means the server has signalled the backend when this returns.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_postgres::config::Host;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{CancelToken, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::pool::{BoxFuture, Interrupt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long to wait for the server (or pooler) to close the cancel connection.
const SETTLE: Duration = Duration::from_secs(5);

/// The whole cancel request (connect, TLS, the request, `SETTLE`): a server
/// that accepts and never answers holds up nobody past it.
const CANCEL_DEADLINE: Duration = Duration::from_secs(10);

/// Cancels the statement running on one connection.
#[derive(Clone)]
pub(super) struct PgCancel {
    pub(super) token: CancelToken,
    pub(super) tls: Option<MakeRustlsConnect>,
    /// The server's address when it is one TCP host; otherwise (several
    /// hosts, Unix sockets) tokio-postgres's own cancel picks the address.
    pub(super) address: Option<(String, u16)>,
}

impl PgCancel {
    /// The single TCP address `config` names, if it names exactly one.
    pub(super) fn address_of(config: &tokio_postgres::Config) -> Option<(String, u16)> {
        match (config.get_hosts(), config.get_ports()) {
            ([Host::Tcp(host)], [port]) => Some((host.clone(), *port)),
            _ => None,
        }
    }

    async fn send(&self) -> Result<(), BoxError> {
        let Some((host, port)) = &self.address else {
            match &self.tls {
                Some(tls) => self.token.cancel_query(tls.clone()).await?,
                None => self.token.cancel_query(NoTls).await?,
            }
            return Ok(());
        };
        let tcp = TcpStream::connect((host.as_str(), *port)).await?;
        let (back, returned) = oneshot::channel();
        let stream = HandBack {
            stream: Some(tcp),
            back: Some(back),
        };
        match &self.tls {
            Some(tls) => {
                let connect = <MakeRustlsConnect as MakeTlsConnect<HandBack>>::make_tls_connect(
                    &mut tls.clone(),
                    host,
                )?;
                self.token.cancel_query_raw(stream, connect).await?;
            }
            None => self.token.cancel_query_raw(stream, NoTls).await?,
        }
        if let Ok(mut tcp) = returned.await {
            let mut sink = [0u8; 64];
            let _ = tokio::time::timeout(SETTLE, async {
                while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
            })
            .await;
        }
        Ok(())
    }
}

impl Interrupt for PgCancel {
    /// Sent from a task of its own, so that it is sent whole even when the
    /// future awaiting it is dropped: a request cut off half way leaves the
    /// statement running, and PgBouncer 1.18 aborts when a cancel client
    /// hangs up while it is still forwarding the request.
    fn interrupt(&self) -> BoxFuture<'_, ()> {
        let cancel = self.clone();
        let send = async move {
            match tokio::time::timeout(CANCEL_DEADLINE, cancel.send()).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::debug!(%error, "cancel request failed"),
                Err(_) => tracing::debug!("cancel request unanswered within {CANCEL_DEADLINE:?}"),
            }
        };
        Box::pin(async move {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    let _ = runtime.spawn(send).await;
                }
                // No runtime, no timer: the request's own waits apply.
                Err(_) => {
                    if let Err(error) = self.send().await {
                        tracing::debug!(%error, "cancel request failed");
                    }
                }
            }
        })
    }
}

/// A TCP stream lent to tokio-postgres for the cancel request and handed
/// back when it is dropped, to wait for the far end to close it.
struct HandBack {
    stream: Option<TcpStream>,
    back: Option<oneshot::Sender<TcpStream>>,
}

impl HandBack {
    fn tcp(&mut self) -> Pin<&mut TcpStream> {
        Pin::new(self.stream.as_mut().expect("present until dropped"))
    }
}

impl Drop for HandBack {
    fn drop(&mut self) {
        if let (Some(stream), Some(back)) = (self.stream.take(), self.back.take()) {
            let _ = back.send(stream);
        }
    }
}

impl AsyncRead for HandBack {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.tcp().poll_read(cx, buf)
    }
}

impl AsyncWrite for HandBack {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.tcp().poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.tcp().poll_flush(cx)
    }

    /// Not passed on: PgBouncer takes a half-closed client for a gone one
    /// and drops its request. The far end closes the connection instead.
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
