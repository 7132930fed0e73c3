//! The codec-server HTTP API (`/encode`, `/decode`) that lets the Temporal Web UI and CLI
//! show plaintext, served with the same codec and keys as the gRPC side.

pub mod error;
pub mod handlers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method, header};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::auth::Authenticator;
use crate::codec::Codec;
pub use handlers::ApiState;

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
    pub authenticator: Option<Arc<Authenticator>>,
}

/// The router: every path goes to the dispatcher, wrapped in CORS so error answers carry
/// CORS headers too and the UI can show them.
pub fn router(codec: Arc<Codec>, settings: &CodecServerSettings) -> Router {
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(settings.cors_origins.iter().cloned()))
        .allow_credentials(true)
        .allow_methods([Method::POST, Method::OPTIONS])
        .allow_headers([
            header::CONTENT_TYPE,
            HeaderName::from_static("x-namespace"),
            header::AUTHORIZATION,
        ])
        .max_age(Duration::from_secs(600));
    Router::new()
        .fallback(handlers::dispatch)
        .with_state(ApiState {
            codec,
            max_body_bytes: settings.max_body_bytes,
            authenticator: settings.authenticator.clone(),
        })
        .layer(cors)
}

/// A running codec-server listener.
pub struct RunningCodecServer {
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningCodecServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting and waits up to `grace` for requests in flight.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.shutdown.send(true);
        let mut task = self.task;
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            task.abort();
        }
    }
}

/// Binds `listen` and serves `router` until shut down.
pub async fn start(listen: SocketAddr, router: Router) -> std::io::Result<RunningCodecServer> {
    let listener = TcpListener::bind(listen).await?;
    let local_addr = listener.local_addr()?;
    let (shutdown, mut shutdown_signal) = watch::channel(false);
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = shutdown_signal.changed().await;
            })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "codec server stopped");
        }
    });
    Ok(RunningCodecServer {
        local_addr,
        shutdown,
        task,
    })
}
