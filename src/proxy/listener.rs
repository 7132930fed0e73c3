//! Accepts HTTP/2 (gRPC) connections from workers and hands each call to the forwarder.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::rt::{Read, Write};
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::coalescing_io::CoalescingIo;
use super::forward::{Caller, Forwarder};
use crate::running_server::RunningServer;

/// How long a client may take to finish its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds `listen` and serves calls through `forwarder` until shut down, over TLS when
/// `tls` is given.
pub async fn start(
    listen: SocketAddr,
    forwarder: Arc<Forwarder>,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<RunningServer> {
    let acceptor = tls.map(TlsAcceptor::from);
    RunningServer::start(listen, |listener, shutdown| {
        accept_loop(listener, forwarder, acceptor, shutdown)
    })
    .await
}

async fn accept_loop(
    listener: TcpListener,
    forwarder: Arc<Forwarder>,
    acceptor: Option<TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Running out of file descriptors is transient; back off instead of spinning.
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let forwarder = Arc::clone(&forwarder);
        let shutdown = shutdown.clone();
        let acceptor = acceptor.clone();
        connections.spawn(async move {
            match acceptor {
                None => {
                    serve_connection(
                        TokioIo::new(CoalescingIo::new(stream)),
                        Caller::default(),
                        forwarder,
                        shutdown,
                        peer,
                    )
                    .await
                }
                Some(acceptor) => {
                    let tls =
                        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(CoalescingIo::new(stream)))
                            .await
                        {
                            Ok(Ok(tls)) => tls,
                            Ok(Err(error)) => {
                                tracing::debug!(%peer, %error, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                    let caller = Caller {
                        client_certificate: tls
                            .get_ref()
                            .1
                            .peer_certificates()
                            .is_some_and(|certs| !certs.is_empty()),
                    };
                    serve_connection(TokioIo::new(tls), caller, forwarder, shutdown, peer).await;
                }
            }
        });
    }
    while connections.join_next().await.is_some() {}
}

async fn serve_connection<I>(
    io: I,
    caller: Caller,
    forwarder: Arc<Forwarder>,
    mut shutdown: watch::Receiver<bool>,
    peer: SocketAddr,
) where
    I: Read + Write + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let forwarder = Arc::clone(&forwarder);
        async move { Ok::<_, std::convert::Infallible>(forwarder.handle(request, caller).await) }
    });
    let connection = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        // Fixed windows for the same reason as upstream: bursts of small frames from many
        // concurrent calls must fit h2's allowance, which is half the connection window.
        .initial_connection_window_size(super::upstream::CONNECTION_WINDOW)
        .initial_stream_window_size(super::upstream::STREAM_WINDOW)
        .max_concurrent_streams(4096)
        .max_header_list_size(1 << 20)
        .keep_alive_interval(super::upstream::KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(super::upstream::KEEP_ALIVE_TIMEOUT)
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
