//! An in-process gRPC upstream that echoes request metadata back and can fail on demand,
//! for what a real server does not show: which headers arrived, and crafted error details.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// Request header asking the upstream to fail with the configured status details.
pub const FAIL_HEADER: &str = "x-echo-fail";
/// Prefix of the response headers that echo request headers.
pub const ECHO_PREFIX: &str = "x-echoed-";

pub struct EchoUpstream {
    pub address: SocketAddr,
}

impl EchoUpstream {
    /// Starts the upstream; failing calls carry `status_details` as `grpc-status-details-bin`.
    pub async fn start(status_details: Bytes) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let status_details = Arc::new(status_details);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let status_details = Arc::clone(&status_details);
                tokio::spawn(async move {
                    let service = service_fn(move |request| respond(request, Arc::clone(&status_details)));
                    let _ = http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { address }
    }
}

async fn respond(
    request: http::Request<hyper::body::Incoming>,
    status_details: Arc<Bytes>,
) -> Result<http::Response<tonic::body::Body>, Infallible> {
    use base64::Engine as _;
    let (parts, body) = request.into_parts();
    let _ = body.collect().await;
    let mut response = http::Response::builder().header("content-type", "application/grpc");
    for (name, value) in &parts.headers {
        response = response.header(format!("{ECHO_PREFIX}{name}"), value.clone());
    }
    let response = if parts.headers.contains_key(FAIL_HEADER) {
        response
            .header("grpc-status", "9")
            .header("grpc-message", "query failed")
            .header(
                "grpc-status-details-bin",
                base64::engine::general_purpose::STANDARD_NO_PAD.encode(&*status_details),
            )
            .body(tonic::body::Body::empty())
    } else {
        // An empty message is a valid instance of every response type.
        let frame = Bytes::from_static(&[0, 0, 0, 0, 0]);
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        let body = Full::new(frame).with_trailers(async move { Some(Ok(trailers)) });
        response.body(tonic::body::Body::new(body))
    };
    Ok(response.unwrap())
}
