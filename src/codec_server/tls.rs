//! TLS for the codec server (the Web UI only sends a user's token to an HTTPS endpoint)
//! and for the gRPC listener in gateway mode, with certificates and the client CA
//! reloaded from disk.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

use crate::reloading::Reloading;

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
    let certified = Reloading::load(
        vec![cert_path.to_owned(), key_path.to_owned()],
        reload,
        "reloaded a listener certificate",
        |path, error| {
            let (path, reason) = (path.display().to_string(), error.to_string());
            if path == cert_path.display().to_string() {
                TlsError::Certificates { path, reason }
            } else {
                TlsError::Key { path, reason }
            }
        },
        {
            let (cert_path, key_path, provider) = (cert_path.to_owned(), key_path.to_owned(), Arc::clone(&provider));
            move |contents| certified_key(&cert_path, &key_path, contents, &provider)
        },
    )?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError::Config(error.to_string()))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca_path) => {
            let verifier = Reloading::load(
                vec![ca_path.to_owned()],
                reload,
                "reloaded the listener's client CA",
                |path, error| TlsError::Certificates {
                    path: path.display().to_string(),
                    reason: error.to_string(),
                },
                {
                    let (ca_path, provider) = (ca_path.to_owned(), Arc::clone(&provider));
                    move |contents| client_verifier(&ca_path, contents, &provider)
                },
            )?;
            builder.with_client_cert_verifier(Arc::new(CurrentClientVerifier(verifier)))
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(CurrentCertificate(certified)));
    config.alpn_protocols = alpn;
    Ok(Arc::new(config))
}

/// The CA certificates in a PEM file's contents, as trust anchors. Used for the gRPC
/// listener's client CA and the upstream's CA. The error is the reason, without the path.
pub fn root_store(pem: &[u8]) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(pem) {
        let certificate = certificate.map_err(|error| error.to_string())?;
        roots.add(certificate).map_err(|error| error.to_string())?;
    }
    if roots.is_empty() {
        return Err("no PEM certificate found".into());
    }
    Ok(roots)
}

/// A verifier of client certificates signed by the CAs in the client CA file's contents.
/// Callers without a certificate complete the handshake; the listener refuses them.
fn client_verifier(
    ca_path: &Path,
    contents: &[Vec<u8>],
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let certificates_error = |reason: String| TlsError::Certificates {
        path: ca_path.display().to_string(),
        reason,
    };
    let [ca_pem] = contents else {
        unreachable!("one file is read: the client CA")
    };
    let roots = root_store(ca_pem).map_err(certificates_error)?;
    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
        .allow_unauthenticated()
        .build()
        .map_err(|error| TlsError::Config(error.to_string()))
}

/// The certified key from the certificate chain and key files' contents.
fn certified_key(
    cert_path: &Path,
    key_path: &Path,
    contents: &[Vec<u8>],
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let [cert_pem, key_pem] = contents else {
        unreachable!("two files are read: certificate and key")
    };
    let cert_path = cert_path.display().to_string();
    let certificates = CertificateDer::pem_slice_iter(cert_pem)
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
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|error| TlsError::Key {
        path: key_path.display().to_string(),
        reason: error.to_string(),
    })?;
    CertifiedKey::from_der(certificates, key, provider).map_err(|error| TlsError::Config(error.to_string()))
}

/// The certificate handed to every new connection.
#[derive(Debug)]
struct CurrentCertificate(Arc<Reloading<CertifiedKey>>);

impl ResolvesServerCert for CurrentCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current())
    }
}

/// Verifies client certificates against the client CA file as it is now.
#[derive(Debug)]
struct CurrentClientVerifier(Arc<Reloading<Arc<dyn ClientCertVerifier>>>);

impl ClientCertVerifier for CurrentClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.0.current().offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.0.current().client_auth_mandatory()
    }

    /// No CA names are sent: they would have to outlive a reload. Clients then offer the
    /// one certificate they are configured with, which is what gRPC clients do anyway.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0.current().verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.current().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.current().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.current().supported_verify_schemes()
    }
}
