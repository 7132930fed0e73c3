//! TLS for the codec server (the Web UI only sends a user's token to an HTTPS endpoint)
//! and for the gRPC listener in gateway mode.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificates from {path}: {reason}")]
    Certificates { path: String, reason: String },
    #[error("cannot read a private key from {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("certificate and key do not work together: {0}")]
    Config(String),
}

/// Loads a PEM certificate chain and private key into a server configuration offering
/// HTTP/2 and HTTP/1.1.
pub fn server_config(cert_path: &Path, key_path: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    build_server_config(cert_path, key_path, None, vec![b"h2".to_vec(), b"http/1.1".to_vec()])
}

/// A server configuration for the gRPC listener (HTTP/2 only). With `client_ca`, client
/// certificates signed by it are verified; a caller without one still completes the
/// handshake, so that it can be refused with a gRPC status rather than a TLS alert.
pub fn grpc_server_config(
    cert_path: &Path,
    key_path: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, TlsError> {
    build_server_config(cert_path, key_path, client_ca, vec![b"h2".to_vec()])
}

fn build_server_config(
    cert_path: &Path,
    key_path: &Path,
    client_ca: Option<&Path>,
    alpn: Vec<Vec<u8>>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let certificates = CertificateDer::pem_file_iter(cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|error| TlsError::Certificates {
            path: cert_path.display().to_string(),
            reason: error.to_string(),
        })?;
    if certificates.is_empty() {
        return Err(TlsError::Certificates {
            path: cert_path.display().to_string(),
            reason: "no PEM certificate found".into(),
        });
    }
    // The key error never includes the key's contents.
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|error| TlsError::Key {
        path: key_path.display().to_string(),
        reason: error.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError::Config(error.to_string()))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca_path) => {
            let certificates_error = |reason: String| TlsError::Certificates {
                path: ca_path.display().to_string(),
                reason,
            };
            let mut roots = rustls::RootCertStore::empty();
            for certificate in
                CertificateDer::pem_file_iter(ca_path).map_err(|error| certificates_error(error.to_string()))?
            {
                let certificate = certificate.map_err(|error| certificates_error(error.to_string()))?;
                roots
                    .add(certificate)
                    .map_err(|error| certificates_error(error.to_string()))?;
            }
            if roots.is_empty() {
                return Err(certificates_error("no PEM certificate found".into()));
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|error| TlsError::Config(error.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certificates, key)
        .map_err(|error| TlsError::Config(error.to_string()))?;
    config.alpn_protocols = alpn;
    Ok(Arc::new(config))
}
