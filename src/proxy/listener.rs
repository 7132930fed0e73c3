//! Accepts HTTP/2 (gRPC) connections from workers and hands each call to the forwarder.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::forward::Forwarder;
use crate::running_server::RunningServer;

/// Binds `listen` and serves calls through `forwarder` until shut down.
pub async fn start(listen: SocketAddr, forwarder: Arc<Forwarder>) -> std::io::Result<RunningServer> {
    RunningServer::start(listen, |listener, shutdown| accept_loop(listener, forwarder, shutdown)).await
}

async fn accept_loop(listener: TcpListener, forwarder: Arc<Forwarder>, mut shutdown: watch::Receiver<bool>) {
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
        let mut shutdown = shutdown.clone();
        connections.spawn(async move {
            let service = service_fn(move |request| {
                let forwarder = Arc::clone(&forwarder);
                async move { Ok::<_, std::convert::Infallible>(forwarder.handle(request).await) }
            });
            let connection = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .adaptive_window(true)
                .max_concurrent_streams(4096)
                .max_header_list_size(1 << 20)
                .keep_alive_interval(Duration::from_secs(30))
                .keep_alive_timeout(Duration::from_secs(20))
                .serve_connection(TokioIo::new(stream), service);
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
        });
    }
    while connections.join_next().await.is_some() {}
}
