//! The seam every key service sits behind: generate a data key under a named key, unwrap one.

use futures_util::future::BoxFuture;
use zeroize::Zeroizing;

/// What went wrong with a key service, in terms both listeners can answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderErrorKind {
    /// The service could not be reached, timed out, or is throttling: try again later.
    Unavailable,
    /// The proxy's credentials may not use the key.
    Denied,
    /// The key does not exist (or is disabled).
    NotFound,
    /// The service refused the request or answered with something unusable.
    Invalid,
    /// The wrapped key is not under the key the call named: it belongs to someone else.
    OtherKey,
}

/// A key service's failure. Names the service, the operation and the service's own
/// words, never key material.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{provider} {operation}: {message}")]
pub struct ProviderError {
    pub provider: &'static str,
    pub operation: &'static str,
    pub kind: ProviderErrorKind,
    pub message: String,
}

/// A new data key: its plaintext for encrypting, and the wrapped form that goes into
/// every payload it encrypts.
pub struct GeneratedKey {
    pub plaintext: Zeroizing<Vec<u8>>,
    pub wrapped: Vec<u8>,
    /// The key service's own name for the key that wrapped it (an ARN, a versioned name),
    /// written as the payload's key id.
    pub key_id: String,
}

/// An unwrapped data key and the name of the key that had wrapped it.
pub struct UnwrappedKey {
    pub plaintext: Zeroizing<Vec<u8>>,
    pub key_id: String,
}

/// The two operations for metrics, in the service's own names.
#[derive(Debug, Clone, Copy)]
pub struct OperationNames {
    pub generate: &'static str,
    pub unwrap: &'static str,
}

/// A key service that makes and unwraps AES-256 data keys. Caching and reuse limits sit
/// above it and serve every implementation alike.
pub trait KeyProvider: Send + Sync {
    /// The service's name in metrics, logs and errors (`aws-kms`).
    fn name(&self) -> &'static str;

    fn operations(&self) -> OperationNames;

    /// A new data key wrapped under `key_name`.
    fn generate<'a>(&'a self, key_name: &'a str) -> BoxFuture<'a, Result<GeneratedKey, ProviderError>>;

    /// The data key in `wrapped`. With `expected_key`, the service itself refuses a key
    /// wrapped under any other ([`ProviderErrorKind::OtherKey`]).
    fn unwrap<'a>(
        &'a self,
        expected_key: Option<&'a str>,
        wrapped: &'a [u8],
    ) -> BoxFuture<'a, Result<UnwrappedKey, ProviderError>>;
}
