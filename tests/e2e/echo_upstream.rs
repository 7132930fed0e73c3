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
use temporal_codec_proxy::proxy::grpc_frame::{encode_frame, encode_frame_gzip};
use tokio::net::TcpListener;

/// Request header asking the upstream to fail with the configured status details.
pub const FAIL_HEADER: &str = "x-echo-fail";
/// Request header asking the upstream to gzip its response message.
pub const GZIP_HEADER: &str = "x-echo-gzip";
/// Prefix of the response headers that echo request headers.
pub const ECHO_PREFIX: &str = "x-echoed-";

pub struct EchoUpstream {
    pub address: SocketAddr,
}

impl EchoUpstream {
    /// Starts the upstream: successful calls answer `response_message`, failing calls carry
    /// `status_details` as `grpc-status-details-bin`.
    pub async fn start(response_message: Bytes, status_details: Bytes) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let canned = Arc::new((response_message, status_details));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let canned = Arc::clone(&canned);
                tokio::spawn(async move {
                    let service = service_fn(move |request| respond(request, Arc::clone(&canned)));
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
    canned: Arc<(Bytes, Bytes)>,
) -> Result<http::Response<tonic::body::Body>, Infallible> {
    let (response_message, status_details) = &*canned;
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
                base64::engine::general_purpose::STANDARD_NO_PAD.encode(status_details),
            )
            .body(tonic::body::Body::empty())
    } else {
        let frame = if parts.headers.contains_key(GZIP_HEADER) {
            response = response.header("grpc-encoding", "gzip");
            encode_frame_gzip(response_message)
        } else {
            encode_frame(response_message)
        };
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        let body = Full::new(frame).with_trailers(async move { Some(Ok(trailers)) });
        response.body(tonic::body::Body::new(body))
    };
    Ok(response.unwrap())
}
