//! The accept loop every listener runs, its TLS handshake, and the graceful stop they share.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
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

/// A running listener: its address, the signal that stops its accept loop, and how many
/// connections it is serving.
pub struct RunningServer {
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    connections: Arc<AtomicUsize>,
}

impl RunningServer {
    /// Binds `listen` and, until shut down, serves every connection it accepts with
    /// `serve` on a task of its own. `serve` gets the stream (with `TCP_NODELAY` set), the
    /// peer's address, and a receiver that changes when the server stops.
    pub async fn start<F, Fut>(listen: SocketAddr, serve: F) -> std::io::Result<Self>
    where
        F: Fn(TcpStream, SocketAddr, watch::Receiver<bool>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind(listen).await?;
        let local_addr = listener.local_addr()?;
        let (shutdown, signal) = watch::channel(false);
        let connections = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(accept_loop(listener, signal, serve, Arc::clone(&connections)));
        Ok(Self {
            local_addr,
            shutdown,
            task,
            connections,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Connections accepted and not yet finished.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
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
    connections: Arc<AtomicUsize>,
) where
    F: Fn(TcpStream, SocketAddr, watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listen = listener.local_addr().ok();
    let mut tasks = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => break,
            // A finished task keeps its memory until it is joined, and health probes open a
            // connection each: joining them as they end keeps a long-running listener small.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {
                connections.store(tasks.len(), Ordering::Relaxed);
                continue;
            }
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
        let server = RunningServer::start("127.0.0.1:0".parse().unwrap(), echo_one_byte)
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
        let server = RunningServer::start("127.0.0.1:0".parse().unwrap(), echo_one_byte)
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
    async fn shutdown_stops_accepting() {
        let server = RunningServer::start("127.0.0.1:0".parse().unwrap(), echo_one_byte)
            .await
            .unwrap();
        let address = server.local_addr();
        server.shutdown(Duration::from_secs(1)).await;
        assert!(TcpStream::connect(address).await.is_err());
    }
}
