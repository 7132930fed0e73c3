//! The accept loop every listener runs, its connection cap, its TLS handshake, and the graceful stop they share.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client may take to finish its TLS handshake, so that slow or stalled clients
/// cannot hold a connection slot forever before speaking.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long accepting pauses after it failed (out of file descriptors, most often): the
/// condition is transient, and retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// How long a refused connection is given to read why before it is closed.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);
/// Refusals being written at once; past this, further connections are closed without one.
const MAX_REFUSALS_IN_FLIGHT: usize = 64;
/// At most one warning per this interval about refused connections.
const REFUSAL_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// What a listener says to a connection past its cap before closing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// HTTP/2 with prior knowledge (gRPC without TLS): the server's SETTINGS, then GOAWAY
    /// with ENHANCE_YOUR_CALM and the reason, which gRPC clients report.
    Http2GoAway,
    /// HTTP/1.1: `503 Service Unavailable` with a JSON body.
    Http1Unavailable,
    /// A TLS listener: nothing can be said before a handshake the cap exists to avoid.
    Close,
}

impl Refusal {
    /// This refusal on a plaintext listener; on a TLS one, a close.
    pub fn unless_tls(self, tls: bool) -> Self {
        if tls { Self::Close } else { self }
    }
}

/// A listener's cap on connections and what it counts about them.
#[derive(Debug)]
pub struct ConnectionCap {
    listener: &'static str,
    flag: &'static str,
    max: usize,
    refusal: Refusal,
    open: AtomicUsize,
    refused: AtomicU64,
}

impl ConnectionCap {
    /// A cap of `max` connections for the listener called `listener`, raised by `flag`.
    pub fn new(listener: &'static str, flag: &'static str, max: usize, refusal: Refusal) -> Arc<Self> {
        Arc::new(Self {
            listener,
            flag,
            max,
            refusal,
            open: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
        })
    }

    pub fn listener(&self) -> &'static str {
        self.listener
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Connections being served now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections turned away because the cap was reached.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    fn reason(&self) -> String {
        format!(
            "the {} listener is serving its limit of {} connections ({}); try again or another instance",
            self.listener, self.max, self.flag
        )
    }
}

/// A running listener: its address, the signal that stops its accept loop, and its cap.
pub struct RunningServer {
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    cap: Arc<ConnectionCap>,
}

impl RunningServer {
    /// Binds `listen` and, until shut down, serves every connection it accepts with
    /// `serve` on a task of its own, up to `cap` at once. `serve` gets the stream (with
    /// `TCP_NODELAY` set), the peer's address, and a receiver that changes when the server stops.
    pub async fn start<F, Fut>(listen: SocketAddr, cap: Arc<ConnectionCap>, serve: F) -> std::io::Result<Self>
    where
        F: Fn(TcpStream, SocketAddr, watch::Receiver<bool>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind(listen).await?;
        let local_addr = listener.local_addr()?;
        let (shutdown, signal) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, signal, serve, Arc::clone(&cap)));
        Ok(Self {
            local_addr,
            shutdown,
            task,
            cap,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Connections accepted and not yet finished.
    pub fn connections(&self) -> usize {
        self.cap.open()
    }

    /// Stops accepting and lets open connections finish for up to `grace`; what is still
    /// running after that (long polls, watches) is cut.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.shutdown.send(true);
        let mut task = self.task;
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            tracing::warn!(?grace, "connections still open after the grace period; closing them");
            task.abort();
        }
    }
}

async fn accept_loop<F, Fut>(
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
    serve: F,
    cap: Arc<ConnectionCap>,
) where
    F: Fn(TcpStream, SocketAddr, watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let connections = &cap.open;
    let listen = listener.local_addr().ok();
    let mut tasks = JoinSet::new();
    let mut refusals = JoinSet::new();
    let mut last_warning: Option<tokio::time::Instant> = None;
    let mut refused_since_warning = 0u64;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => break,
            // A finished task keeps its memory until it is joined, and health probes open a
            // connection each: joining them as they end keeps a long-running listener small.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {
                connections.store(tasks.len(), Ordering::Relaxed);
                continue;
            }
            Some(_) = refusals.join_next(), if !refusals.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, ?listen, "accepting a connection failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        if tasks.len() >= cap.max {
            cap.refused.fetch_add(1, Ordering::Relaxed);
            refused_since_warning += 1;
            if last_warning.is_none_or(|at| at.elapsed() >= REFUSAL_WARNING_INTERVAL) {
                tracing::warn!(
                    listener = cap.listener,
                    max_connections = cap.max,
                    refused = refused_since_warning,
                    flag = cap.flag,
                    "refusing connections: the listener is at its connection limit"
                );
                last_warning = Some(tokio::time::Instant::now());
                refused_since_warning = 0;
            }
            if refusals.len() < MAX_REFUSALS_IN_FLIGHT {
                refusals.spawn(refuse(stream, cap.refusal, cap.reason()));
            }
            continue;
        }
        tasks.spawn(serve(stream, peer, shutdown.clone()));
        connections.store(tasks.len(), Ordering::Relaxed);
    }
    // Closed before the connections drain: a client that connects now is refused at once and
    // tries elsewhere, instead of sitting in a backlog that is never accepted.
    drop(listener);
    while tasks.join_next().await.is_some() {
        connections.store(tasks.len(), Ordering::Relaxed);
    }
}

/// Tells a connection past the cap why it is being closed, then closes it.
async fn refuse(mut stream: TcpStream, refusal: Refusal, reason: String) {
    let said = match refusal {
        Refusal::Close => return,
        Refusal::Http2GoAway => http2_goaway(&reason),
        Refusal::Http1Unavailable => {
            let body = serde_json::json!({ "error": reason }).to_string();
            format!(
                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                 connection: close\r\nretry-after: 1\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        }
    };
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        stream.write_all(&said).await?;
        stream.shutdown().await?;
        // Read what the peer already sent: closing with it unread would reset the
        // connection, and the peer could lose the refusal before reading it.
        let mut discard = [0u8; 4096];
        while stream.read(&mut discard).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// The server preface (an empty SETTINGS frame) and a GOAWAY with ENHANCE_YOUR_CALM, whose
/// debug data carries `reason` (RFC 9113 §3.4, §6.8).
fn http2_goaway(reason: &str) -> Vec<u8> {
    const SETTINGS: u8 = 0x4;
    const GOAWAY: u8 = 0x7;
    const ENHANCE_YOUR_CALM: u32 = 0xb;
    let frame_header = |length: usize, kind: u8| {
        let length = u32::try_from(length).unwrap_or(0).to_be_bytes();
        [length[1], length[2], length[3], kind, 0, 0, 0, 0, 0]
    };
    let mut bytes = frame_header(0, SETTINGS).to_vec();
    bytes.extend_from_slice(&frame_header(8 + reason.len(), GOAWAY));
    bytes.extend_from_slice(&0u32.to_be_bytes());
    bytes.extend_from_slice(&ENHANCE_YOUR_CALM.to_be_bytes());
    bytes.extend_from_slice(reason.as_bytes());
    bytes
}

/// Completes the server side of a TLS handshake on `io`. A failed or stalled handshake is
/// logged and gives `None`.
pub async fn tls_handshake<IO>(acceptor: &TlsAcceptor, io: IO, peer: SocketAddr) -> Option<TlsStream<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// Serves a connection by echoing one byte, then waiting for the peer to close.
    async fn echo_one_byte(mut stream: TcpStream, _peer: SocketAddr, _shutdown: watch::Receiver<bool>) {
        let mut byte = [0u8; 1];
        if stream.read_exact(&mut byte).await.is_ok() && stream.write_all(&byte).await.is_ok() {
            let _ = stream.read(&mut byte).await;
        }
    }

    fn unlimited() -> Arc<ConnectionCap> {
        ConnectionCap::new("test", "--max-connections", usize::MAX, Refusal::Close)
    }

    async fn connections_become(server: &RunningServer, expected: usize) {
        let waited = tokio::time::Instant::now();
        while server.connections() != expected {
            assert!(
                waited.elapsed() < Duration::from_secs(10),
                "{} connections counted, {expected} expected",
                server.connections()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn finished_connections_are_let_go_while_the_listener_runs() {
        let server = RunningServer::start("127.0.0.1:0".parse().unwrap(), unlimited(), echo_one_byte)
            .await
            .unwrap();
        let mut open = Vec::new();
        for _ in 0..3 {
            let mut client = TcpStream::connect(server.local_addr()).await.unwrap();
            client.write_all(b"x").await.unwrap();
            let mut echoed = [0u8; 1];
            client.read_exact(&mut echoed).await.unwrap();
            open.push(client);
        }
        connections_become(&server, 3).await;
        for _ in 0..200 {
            let mut client = TcpStream::connect(server.local_addr()).await.unwrap();
            client.write_all(b"x").await.unwrap();
            let mut echoed = [0u8; 1];
            client.read_exact(&mut echoed).await.unwrap();
        }
        connections_become(&server, 3).await;
        drop(open);
        connections_become(&server, 0).await;
        server.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn the_listening_socket_closes_as_soon_as_shutdown_begins() {
        let server = RunningServer::start("127.0.0.1:0".parse().unwrap(), unlimited(), echo_one_byte)
            .await
            .unwrap();
        let address = server.local_addr();
        let mut open = TcpStream::connect(address).await.unwrap();
        open.write_all(b"x").await.unwrap();
        let mut echoed = [0u8; 1];
        open.read_exact(&mut echoed).await.unwrap();
        let shutdown = tokio::spawn(server.shutdown(Duration::from_secs(10)));
        let refused_by = tokio::time::Instant::now() + Duration::from_secs(2);
        while TcpStream::connect(address).await.is_ok() {
            assert!(
                tokio::time::Instant::now() < refused_by,
                "still accepting while a connection drains"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!shutdown.is_finished(), "the open connection should still be draining");
        drop(open);
        shutdown.await.unwrap();
    }

    #[tokio::test]
    async fn connections_past_the_cap_are_told_why_and_closed() {
        let cap = ConnectionCap::new("codec-server", "--codec-max-connections", 2, Refusal::Http1Unavailable);
        let server = RunningServer::start("127.0.0.1:0".parse().unwrap(), Arc::clone(&cap), echo_one_byte)
            .await
            .unwrap();
        let mut open = Vec::new();
        for _ in 0..2 {
            let mut client = TcpStream::connect(server.local_addr()).await.unwrap();
            client.write_all(b"x").await.unwrap();
            let mut echoed = [0u8; 1];
            client.read_exact(&mut echoed).await.unwrap();
            open.push(client);
        }
        let mut refused = TcpStream::connect(server.local_addr()).await.unwrap();
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(5), refused.read_to_string(&mut answer))
            .await
            .unwrap()
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(
            answer.contains("limit of 2 connections (--codec-max-connections)"),
            "{answer}"
        );
        assert_eq!(cap.refused(), 1);
        drop(open);
        connections_become(&server, 0).await;
        let mut admitted = TcpStream::connect(server.local_addr()).await.unwrap();
        admitted.write_all(b"y").await.unwrap();
        let mut echoed = [0u8; 1];
        admitted.read_exact(&mut echoed).await.unwrap();
        assert_eq!(&echoed, b"y");
        server.shutdown(Duration::from_secs(1)).await;
    }

    #[test]
    fn the_http2_refusal_is_a_settings_frame_then_a_goaway_carrying_the_reason() {
        let bytes = http2_goaway("full");
        assert_eq!(&bytes[..9], &[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        assert_eq!(&bytes[9..18], &[0, 0, 12, 7, 0, 0, 0, 0, 0]);
        assert_eq!(&bytes[18..26], &[0, 0, 0, 0, 0, 0, 0, 0xb]);
        assert_eq!(&bytes[26..], b"full");
    }

    #[tokio::test]
    async fn shutdown_stops_accepting() {
        let server = RunningServer::start("127.0.0.1:0".parse().unwrap(), unlimited(), echo_one_byte)
            .await
            .unwrap();
        let address = server.local_addr();
        server.shutdown(Duration::from_secs(1)).await;
        assert!(TcpStream::connect(address).await.is_err());
    }
}
