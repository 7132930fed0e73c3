//! TLS for the codec server (the Web UI only sends a user's token to an HTTPS endpoint)
//! and for the gRPC listener in gateway mode, with certificates reloaded from disk.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
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
/// HTTP/2 and HTTP/1.1. With `reload`, the files are read again at that interval and new
/// connections get the new certificate once they change.
pub fn server_config(
    cert_path: &Path,
    key_path: &Path,
    reload: Option<Duration>,
) -> Result<Arc<ServerConfig>, TlsError> {
    build_server_config(
        cert_path,
        key_path,
        None,
        vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        reload,
    )
}

/// A server configuration for the gRPC listener (HTTP/2 only). With `client_ca`, client
/// certificates signed by it are verified; a caller without one still completes the
/// handshake, so that it can be refused with a gRPC status rather than a TLS alert.
pub fn grpc_server_config(
    cert_path: &Path,
    key_path: &Path,
    client_ca: Option<&Path>,
    reload: Option<Duration>,
) -> Result<Arc<ServerConfig>, TlsError> {
    build_server_config(cert_path, key_path, client_ca, vec![b"h2".to_vec()], reload)
}

fn build_server_config(
    cert_path: &Path,
    key_path: &Path,
    client_ca: Option<&Path>,
    alpn: Vec<Vec<u8>>,
    reload: Option<Duration>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let files = CertificateFiles {
        cert: cert_path.to_owned(),
        key: key_path.to_owned(),
    };
    let (contents, certified) = files.load(&provider)?;
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
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                    .allow_unauthenticated()
                    .build()
                    .map_err(|error| TlsError::Config(error.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let resolver = Arc::new(CurrentCertificate(RwLock::new(certified)));
    // check-config builds configurations without a runtime, and needs no reloading.
    if let (Some(interval), Ok(runtime)) = (reload, tokio::runtime::Handle::try_current()) {
        runtime.spawn(reload_certificate(
            files,
            contents,
            interval,
            provider,
            Arc::clone(&resolver),
        ));
    }
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = alpn;
    Ok(Arc::new(config))
}

/// A listener's certificate and key files.
struct CertificateFiles {
    cert: PathBuf,
    key: PathBuf,
}

impl CertificateFiles {
    /// Reads both files; returns their bytes, to notice changes, and the certified key.
    fn load(&self, provider: &CryptoProvider) -> Result<(Vec<u8>, Arc<CertifiedKey>), TlsError> {
        let cert_path = self.cert.display().to_string();
        let key_path = self.key.display().to_string();
        let cert_pem = std::fs::read(&self.cert).map_err(|error| TlsError::Certificates {
            path: cert_path.clone(),
            reason: error.to_string(),
        })?;
        let key_pem = std::fs::read(&self.key).map_err(|error| TlsError::Key {
            path: key_path.clone(),
            reason: error.to_string(),
        })?;
        let certificates = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| TlsError::Certificates {
                path: cert_path.clone(),
                reason: error.to_string(),
            })?;
        if certificates.is_empty() {
            return Err(TlsError::Certificates {
                path: cert_path,
                reason: "no PEM certificate found".into(),
            });
        }
        // The key error never includes the key's contents.
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|error| TlsError::Key {
            path: key_path,
            reason: error.to_string(),
        })?;
        let certified =
            CertifiedKey::from_der(certificates, key, provider).map_err(|error| TlsError::Config(error.to_string()))?;
        let mut contents = cert_pem;
        contents.extend_from_slice(&key_pem);
        Ok((contents, Arc::new(certified)))
    }
}

/// The certificate handed to every new connection.
#[derive(Debug)]
struct CurrentCertificate(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for CurrentCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.0.read().unwrap_or_else(|poisoned| poisoned.into_inner()),
        ))
    }
}

/// Re-reads the files every `interval`; a changed pair that loads replaces the certificate,
/// one that does not is logged and the current certificate kept.
async fn reload_certificate(
    files: CertificateFiles,
    mut contents: Vec<u8>,
    interval: Duration,
    provider: Arc<CryptoProvider>,
    current: Arc<CurrentCertificate>,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let changed = match (std::fs::read(&files.cert), std::fs::read(&files.key)) {
            (Ok(mut cert), Ok(key)) => {
                cert.extend_from_slice(&key);
                cert != contents
            }
            _ => false,
        };
        if !changed {
            continue;
        }
        match files.load(&provider) {
            Ok((loaded, certified)) => {
                *current.0.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = certified;
                contents = loaded;
                tracing::info!(cert = %files.cert.display(), "reloaded a listener certificate");
            }
            Err(error) => tracing::warn!(%error, "changed certificate files do not load; keeping the current ones"),
        }
    }
}
