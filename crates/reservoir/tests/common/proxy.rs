//! A fault proxy on loopback: forwards TCP to a server until frozen, then
//! holds every byte in both directions without closing either side (a
//! server gone silent, a NAT that dropped the flow); or cuts every open
//! flow (a connection lost). Stopped with the test.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running proxy; dropping it stops accepting (open flows end with the runtime).
pub struct Proxy {
    pub port: u16,
    frozen: Arc<AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Forwards `127.0.0.1:<port>` to `upstream` (host:port).
    pub async fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let frozen = Arc::new(AtomicBool::new(false));
        let upstream = upstream.to_string();
        let flag = Arc::clone(&frozen);
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let mut cuts = cuts.clone();
                cuts.mark_unchanged();
                tokio::spawn(pump(cr, sw, Arc::clone(&flag), cuts.clone()));
                tokio::spawn(pump(sr, cw, Arc::clone(&flag), cuts));
            }
        });
        Proxy {
            port,
            frozen,
            cut,
            accept,
        }
    }

    /// Closes every flow open now, both sides (held bytes are dropped);
    /// new connections are forwarded as before.
    pub fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }

    /// Stops forwarding (both sides stay open).
    pub fn freeze(&self) {
        self.frozen.store(true, SeqCst);
    }

    /// Forwards again, held bytes first.
    pub fn thaw(&self) {
        self.frozen.store(false, SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn pump(
    from: tokio::net::tcp::OwnedReadHalf,
    to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
    mut cut: tokio::sync::watch::Receiver<u64>,
) {
    // Dropping both halves closes the socket.
    tokio::select! {
        () = forward(from, to, frozen) => {}
        _ = cut.changed() => {}
    }
}

async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        while frozen.load(SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while frozen.load(SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
