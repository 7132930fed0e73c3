//! The codec-server HTTP API (`/encode`, `/decode`) that lets the Temporal Web UI and CLI
//! show plaintext, served with the same codec and keys as the gRPC side.

pub mod error;
pub mod handlers;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method, header};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::auth::Authenticator;
use crate::codec::Codec;
use crate::memory_budget::MemoryBudget;
use crate::running_server::{ConnectionCap, RunningServer, tls_handshake};
pub use handlers::ApiState;

/// An HTTP/1 client must send a whole request head within this time, on a new connection
/// and between requests on a kept-alive one; otherwise the connection is closed, so idle
/// and trickling connections do not pile up.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Origins of the Temporal Web UIs people use: self-hosted, the dev server's, and Cloud's.
pub const DEFAULT_CORS_ORIGINS: &[&str] = &[
    "http://localhost:8080",
    "http://localhost:8233",
    "https://cloud.temporal.io",
];

/// Settings of the codec-server listener.
#[derive(Clone)]
pub struct CodecServerSettings {
    pub cors_origins: Vec<HeaderValue>,
    pub max_body_bytes: usize,
    /// How long a request body may take to arrive once its head has.
    pub body_timeout: Duration,
    pub authenticator: Option<Arc<Authenticator>>,
    /// Serve HTTPS with this configuration; plain HTTP when `None`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// The router: every path goes to the dispatcher, wrapped in CORS so error answers carry
/// CORS headers too and the UI can show them. Request bodies draw from `budget`, shared with
/// the gRPC listener.
pub fn router(codec: Arc<Codec>, settings: &CodecServerSettings, budget: Arc<MemoryBudget>) -> Router {
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(settings.cors_origins.iter().cloned()))
        .allow_credentials(true)
        .allow_methods([Method::POST, Method::OPTIONS])
        .allow_headers([
            header::CONTENT_TYPE,
            HeaderName::from_static("x-namespace"),
            header::AUTHORIZATION,
            crate::auth::jwt::AUTHORIZATION_EXTRAS.clone(),
        ])
        .max_age(Duration::from_secs(600));
    Router::new()
        .fallback(handlers::dispatch)
        .with_state(ApiState {
            codec,
            max_body_bytes: settings.max_body_bytes,
            body_timeout: settings.body_timeout,
            authenticator: settings.authenticator.clone(),
            budget,
        })
        .layer(cors)
}

/// Binds `listen` and serves `router`, over TLS when `tls` is given, with at most `cap`
/// connections at once, until shut down.
pub async fn start(
    listen: SocketAddr,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    cap: Arc<ConnectionCap>,
) -> std::io::Result<RunningServer> {
    let acceptor = tls.map(TlsAcceptor::from);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    RunningServer::start(listen, cap, move |stream, peer, mut shutdown| {
        let service = TowerToHyperService::new(router.clone());
        let acceptor = acceptor.clone();
        let builder = builder.clone();
        async move {
            let result = match acceptor {
                None => serve_until_shutdown(&builder, TokioIo::new(stream), service, &mut shutdown).await,
                Some(acceptor) => {
                    let Some(tls) = tls_handshake(&acceptor, stream, peer).await else {
                        return;
                    };
                    serve_until_shutdown(&builder, TokioIo::new(tls), service, &mut shutdown).await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "codec-server connection ended with an error");
            }
        }
    })
    .await
}

async fn serve_until_shutdown<I>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    service: TowerToHyperService<Router>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => result,
        _ = shutdown.changed() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    }
}
