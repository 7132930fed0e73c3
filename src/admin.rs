//! The admin listener: Prometheus metrics, liveness and readiness for Kubernetes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::codec::Codec;
use crate::memory_budget::MemoryBudget;
use crate::proxy::upstream::UpstreamClient;
use crate::running_server::{ConnectionCap, Refusal, RunningServer};
use crate::telemetry::Metrics;

/// The service the upstream health check asks about.
const FRONTEND_SERVICE: &str = "temporal.api.workflowservice.v1.WorkflowService";
const HEALTH_CHECK_PATH: &str = "/grpc.health.v1.Health/Check";
/// How long `/readyz` waits for the upstream's answer; Kubernetes probes time out at 1 s by default.
const HEALTH_CHECK_TIMEOUT: Duration = Duration::from_millis(900);
/// Connections the admin listener serves at once: probes and scrapes, kept apart from the
/// other listeners' caps so that they answer while those are full.
pub const ADMIN_MAX_CONNECTIONS: usize = 64;
const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone)]
struct AdminState {
    metrics: Arc<Metrics>,
    codec: Arc<Codec>,
    upstream: UpstreamClient,
    budget: Arc<MemoryBudget>,
}

/// `grpc.health.v1.HealthCheckRequest`.
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    service: String,
}

/// `grpc.health.v1.HealthCheckResponse`; status 1 is `SERVING`.
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckResponse {
    #[prost(int32, tag = "1")]
    status: i32,
}

const SERVING: i32 = 1;

/// The admin routes: `/metrics`, `/healthz`, `/readyz`.
pub fn router(metrics: Arc<Metrics>, codec: Arc<Codec>, upstream: UpstreamClient, budget: Arc<MemoryBudget>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readiness))
        .with_state(AdminState {
            metrics,
            codec,
            upstream,
            budget,
        })
}

/// Serves the admin routes over plain HTTP on `listen`.
pub async fn start(listen: SocketAddr, router: Router) -> std::io::Result<RunningServer> {
    let cap = ConnectionCap::new(
        "admin",
        "a fixed limit for probes and scrapes",
        ADMIN_MAX_CONNECTIONS,
        Refusal::Http1Unavailable,
    );
    crate::codec_server::start(listen, router, None, cap).await
}

async fn metrics_text(State(state): State<AdminState>) -> Response {
    (
        [(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response()
}

/// Ready when a key to encrypt with is loaded, the memory budget has room, and the upstream
/// frontend says it is serving.
async fn readiness(State(state): State<AdminState>) -> Response {
    if state.budget.is_exhausted() {
        let message = format!(
            "not ready: {} of {} bytes of messages buffered (--max-buffered-bytes), {} calls waiting\n",
            state.budget.used(),
            state.budget.limit(),
            state.budget.waiting()
        );
        return (StatusCode::SERVICE_UNAVAILABLE, message).into_response();
    }
    let keys_loaded = state.codec.namespace_keys().has_keys();
    if !keys_loaded {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready: no encryption key loaded\n").into_response();
    }
    match tokio::time::timeout(HEALTH_CHECK_TIMEOUT, upstream_serving(state.upstream)).await {
        Ok(Ok(())) => "ready\n".into_response(),
        Ok(Err(reason)) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}\n")).into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the upstream did not answer its health check in time\n",
        )
            .into_response(),
    }
}

async fn upstream_serving(upstream: UpstreamClient) -> Result<(), String> {
    let mut client = tonic::client::Grpc::new(upstream);
    client
        .ready()
        .await
        .map_err(|error| format!("upstream unreachable: {error}"))?;
    let request = tonic::Request::new(HealthCheckRequest {
        service: FRONTEND_SERVICE.to_owned(),
    });
    let response: tonic::Response<HealthCheckResponse> = client
        .unary(
            request,
            http::uri::PathAndQuery::from_static(HEALTH_CHECK_PATH),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .map_err(|status| format!("upstream health check failed: {:?} {}", status.code(), status.message()))?;
    match response.into_inner().status {
        SERVING => Ok(()),
        status => Err(format!("upstream reports health status {status}, not SERVING")),
    }
}
