//! The HTTP/2 channel to the Temporal frontend that every proxied call shares.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

/// Parses `HOST:PORT` or `http://HOST:PORT` into a lazily connecting channel.
///
/// The channel reconnects by itself, so calls succeed again as soon as the upstream
/// is back. No request timeout is set: each call carries its own `grpc-timeout`, and
/// long polls run for 70 seconds and more.
pub fn connect_lazy(upstream: &str) -> Result<Channel, UpstreamError> {
    let uri = if upstream.contains("://") {
        upstream.to_owned()
    } else {
        format!("http://{upstream}")
    };
    if uri.starts_with("https://") {
        return Err(UpstreamError::Tls(upstream.to_owned()));
    }
    let endpoint = Endpoint::from_shared(uri).map_err(|_| UpstreamError::Address(upstream.to_owned()))?;
    Ok(endpoint
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_adaptive_window(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true)
        .connect_lazy())
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream address {0:?} is not HOST:PORT or http://HOST:PORT")]
    Address(String),
    #[error("upstream {0:?}: TLS to the upstream is not supported yet; connect over plaintext HTTP/2")]
    Tls(String),
}
