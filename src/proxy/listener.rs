//! Accepts HTTP/2 (gRPC) connections from workers and hands each call to the forwarder.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::rt::{Read, Write};
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::coalescing_io::CoalescingIo;
use super::forward::{Caller, Forwarder};
use crate::running_server::{ConnectionCap, RunningServer, tls_handshake};

/// HTTP/2 receive windows of callers' connections. They bound what a caller can park in the
/// proxy's memory that the budget does not yet count: bytes of a call still waiting for
/// budget stay in HTTP/2's buffers, at most one connection window per connection.
pub const CALLER_CONNECTION_WINDOW: u32 = 4 << 20;
pub const CALLER_STREAM_WINDOW: u32 = 1 << 20;

/// What each caller connection is allowed and how a dead one is noticed.
#[derive(Debug, Clone, Copy)]
pub struct CallerConnections {
    /// Calls one connection may carry at once, advertised in the listener's SETTINGS.
    pub max_concurrent_streams: u32,
    /// An HTTP/2 PING is sent after the connection has been quiet this long…
    pub keepalive_interval: Duration,
    /// …and the connection is closed when the answer takes longer than this.
    pub keepalive_timeout: Duration,
}

impl Default for CallerConnections {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 1024,
            keepalive_interval: super::upstream::KEEP_ALIVE_INTERVAL,
            keepalive_timeout: super::upstream::KEEP_ALIVE_TIMEOUT,
        }
    }
}

/// Binds `listen` and serves calls through `forwarder` until shut down, over TLS when
/// `tls` is given, with at most `cap` connections at once, each as `connections` says.
pub async fn start(
    listen: SocketAddr,
    forwarder: Arc<Forwarder>,
    tls: Option<Arc<rustls::ServerConfig>>,
    cap: Arc<ConnectionCap>,
    connections: CallerConnections,
) -> std::io::Result<RunningServer> {
    let acceptor = tls.map(TlsAcceptor::from);
    RunningServer::start(listen, cap, move |stream, peer, shutdown| {
        let forwarder = Arc::clone(&forwarder);
        let acceptor = acceptor.clone();
        async move {
            let stream = CoalescingIo::new(stream);
            match acceptor {
                None => {
                    let caller = Caller::default();
                    serve_connection(TokioIo::new(stream), caller, forwarder, shutdown, peer, connections).await;
                }
                Some(acceptor) => {
                    let Some(tls) = tls_handshake(&acceptor, stream, peer).await else {
                        return;
                    };
                    let caller = Caller {
                        client_certificate: tls
                            .get_ref()
                            .1
                            .peer_certificates()
                            .is_some_and(|certs| !certs.is_empty()),
                    };
                    serve_connection(TokioIo::new(tls), caller, forwarder, shutdown, peer, connections).await;
                }
            }
        }
    })
    .await
}

async fn serve_connection<I>(
    io: I,
    caller: Caller,
    forwarder: Arc<Forwarder>,
    mut shutdown: watch::Receiver<bool>,
    peer: SocketAddr,
    connections: CallerConnections,
) where
    I: Read + Write + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let forwarder = Arc::clone(&forwarder);
        // Boxed: hyper and tokio move a call's future several times to spawn and finish
        // it, and this one is large; a pointer is cheaper to move than the whole state.
        Box::pin(async move { Ok::<_, std::convert::Infallible>(forwarder.handle(request, caller).await) })
    });
    let connection = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        // Fixed windows for the same reason as upstream: bursts of small frames from many
        // concurrent calls must fit h2's allowance, which is half the connection window.
        .initial_connection_window_size(CALLER_CONNECTION_WINDOW)
        .initial_stream_window_size(CALLER_STREAM_WINDOW)
        .max_concurrent_streams(connections.max_concurrent_streams)
        .max_header_list_size(super::upstream::MAX_HEADER_LIST_BYTES)
        .keep_alive_interval(connections.keepalive_interval)
        .keep_alive_timeout(connections.keepalive_timeout)
        .serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        }
        _ = shutdown.changed() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}
