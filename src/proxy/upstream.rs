//! The HTTP/2 channel to the Temporal frontend that every proxied call shares, with TLS,
//! client certificates reloaded from disk, and the Temporal Cloud API key.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};

use super::coalescing_io::CoalescingIo;
use crate::reloading::Reloading;

/// HTTP/2 flow-control windows of the upstream connection.
pub const CONNECTION_WINDOW: u32 = 16 << 20;
pub const STREAM_WINDOW: u32 = 4 << 20;

/// Where the upstream is and how to reach it.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// `HOST:PORT`, `http://HOST:PORT` or `https://HOST:PORT`.
    pub address: String,
    pub tls: Option<UpstreamTls>,
}

/// TLS to the upstream. Certificate and key files are read again every `reload_interval`
/// and used for new connections when they change; open connections carry on.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    /// CA certificates (PEM) to trust instead of the system's roots.
    pub ca: Option<PathBuf>,
    /// Name to verify the server certificate against, when it is not the address's host.
    pub server_name: Option<String>,
    /// Client certificate chain and key (PEM) for mTLS.
    pub client_identity: Option<(PathBuf, PathBuf)>,
    pub reload_interval: Duration,
}

impl UpstreamSettings {
    pub fn plaintext(address: &str) -> Self {
        Self {
            address: address.to_owned(),
            tls: None,
        }
    }

    /// `HOST:PORT` without a scheme.
    fn host_and_port(&self) -> &str {
        let address = self.address.as_str();
        address
            .strip_prefix("http://")
            .or_else(|| address.strip_prefix("https://"))
            .unwrap_or(address)
            .trim_end_matches('/')
    }
}

/// Makes a lazily connecting channel to the upstream.
///
/// The channel reconnects by itself, so calls succeed again as soon as the upstream
/// is back. No request timeout is set: each call carries its own `grpc-timeout`, and
/// long polls run for 70 seconds and more.
pub fn connect_lazy(settings: &UpstreamSettings) -> Result<Channel, UpstreamError> {
    let host_and_port = settings.host_and_port().to_owned();
    let address_error = || UpstreamError::Address(settings.address.clone());
    let plain_uri: Uri = format!("http://{host_and_port}").parse().map_err(|_| address_error())?;
    let host = plain_uri.host().ok_or_else(address_error)?.to_owned();
    plain_uri.port_u16().ok_or_else(address_error)?;
    let endpoint = Endpoint::from(plain_uri)
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        // Fixed, large windows rather than adaptive ones: h2 allows a burst of small DATA
        // frames (a thousand long polls answered at once) up to half the connection
        // window, and an adaptive window starts at 64 KiB.
        .initial_connection_window_size(CONNECTION_WINDOW)
        .initial_stream_window_size(STREAM_WINDOW)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true);
    let Some(tls) = &settings.tls else {
        if settings.address.starts_with("https://") {
            return Err(UpstreamError::Tls(format!(
                "{} names https but TLS is switched off",
                settings.address
            )));
        }
        return Ok(endpoint.connect_with_connector_lazy(Connector {
            address: host_and_port,
            tls: None,
        }));
    };
    let server_name = tls
        .server_name
        .clone()
        .unwrap_or(host.trim_matches(['[', ']']).to_owned());
    let server_name = ServerName::try_from(server_name.clone())
        .map_err(|_| UpstreamError::Tls(format!("invalid server name {server_name:?}")))?;
    let reload = tls.clone();
    let config = Reloading::load(
        files(tls),
        Some(tls.reload_interval),
        "reloaded the upstream TLS files; new connections use them",
        |path, error| UpstreamError::Tls(format!("cannot read {}: {error}", path.display())),
        move |contents| client_config(&reload, contents),
    )?;
    // Requests carry the https origin; the connector below makes the TLS connection.
    let origin: Uri = format!("https://{host_and_port}")
        .parse()
        .map_err(|_| address_error())?;
    let connector = Connector {
        address: host_and_port,
        tls: Some(ConnectorTls { server_name, config }),
    };
    Ok(endpoint.origin(origin).connect_with_connector_lazy(connector))
}

/// The upstream TLS configuration from its files, in the order `files` lists them.
fn client_config(tls: &UpstreamTls, contents: &[Vec<u8>]) -> Result<ClientConfig, UpstreamError> {
    let mut contents = contents.iter();
    let mut roots = rustls::RootCertStore::empty();
    let ca = if tls.ca.is_some() { contents.next() } else { None };
    match (&tls.ca, ca) {
        (Some(path), Some(pem)) => {
            let certificates = CertificateDer::pem_slice_iter(pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| UpstreamError::Tls(format!("{}: {error}", path.display())))?;
            if certificates.is_empty() {
                return Err(UpstreamError::Tls(format!(
                    "{}: no PEM certificate found",
                    path.display()
                )));
            }
            for certificate in certificates {
                roots
                    .add(certificate)
                    .map_err(|error| UpstreamError::Tls(format!("{}: {error}", path.display())))?;
            }
        }
        _ => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
        }
    }
    let builder = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|error| UpstreamError::Tls(error.to_string()))?
        .with_root_certificates(roots);
    let mut config = match (&tls.client_identity, contents.next(), contents.next()) {
        (Some((cert_path, key_path)), Some(cert_pem), Some(key_pem)) => {
            let chain = CertificateDer::pem_slice_iter(cert_pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| UpstreamError::Tls(format!("{}: {error}", cert_path.display())))?;
            // The key's own error never shows its contents.
            let key = PrivateKeyDer::from_pem_slice(key_pem)
                .map_err(|error| UpstreamError::Tls(format!("{}: {error}", key_path.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|error| UpstreamError::Tls(format!("client certificate and key: {error}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The files the upstream TLS configuration is built from: CA, then certificate and key.
fn files(tls: &UpstreamTls) -> Vec<PathBuf> {
    let identity = tls.client_identity.iter().flat_map(|(cert, key)| [cert, key]);
    tls.ca.iter().chain(identity).cloned().collect()
}

/// A connection to the upstream, plain or TLS, that coalesces its writes.
trait UpstreamIo: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> UpstreamIo for T {}

/// Opens TCP connections to the upstream, speaking TLS (ALPN h2) over them when configured.
#[derive(Clone)]
struct Connector {
    address: String,
    tls: Option<ConnectorTls>,
}

#[derive(Clone)]
struct ConnectorTls {
    server_name: ServerName<'static>,
    config: Arc<Reloading<ClientConfig>>,
}

impl tower::Service<Uri> for Connector {
    type Response = TokioIo<Box<dyn UpstreamIo>>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let address = self.address.clone();
        let tls = self
            .tls
            .as_ref()
            .map(|tls| (tls.server_name.clone(), tls.config.current()));
        Box::pin(async move {
            let tcp = TcpStream::connect(&address).await?;
            tcp.set_nodelay(true)?;
            let tcp = CoalescingIo::new(tcp);
            let Some((server_name, config)) = tls else {
                return Ok(TokioIo::new(Box::new(tcp) as Box<dyn UpstreamIo>));
            };
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(server_name, tcp)
                .await?;
            if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
                return Err(std::io::Error::other(format!(
                    "upstream {address} did not agree to HTTP/2 over TLS (ALPN h2)"
                )));
            }
            Ok(TokioIo::new(Box::new(tls) as Box<dyn UpstreamIo>))
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream address {0:?} is not HOST:PORT, http://HOST:PORT or https://HOST:PORT")]
    Address(String),
    #[error("upstream TLS: {0}")]
    Tls(String),
}
