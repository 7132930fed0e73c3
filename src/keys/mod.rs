//! Where keys come from: static keys, and key providers (AWS KMS) behind one cache.

pub mod aws_kms;
pub mod cache;
pub mod data_key;
pub mod namespaces;
pub mod provider;
pub mod static_keys;

pub use data_key::{DataKey, KEY_BYTES, Keyring, KeyringError};
pub use static_keys::{KeySourceError, KeySpec, generate_key_source, load_keyring};

/// Which provider key encrypts a namespace's payloads.
#[derive(Debug, Clone)]
pub enum KeySelector {
    /// One key (for AWS KMS an ARN, id or alias) for every namespace.
    Fixed(String),
    /// A key per namespace: `{namespace}` is replaced by the namespace with `.` as `_`.
    Template(String),
}

/// A key template needs a namespace, and the call names none.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the key depends on the namespace, and the call names none")]
pub struct NoNamespace;

impl KeySelector {
    /// The provider key for a namespace's payloads.
    pub fn key_for_namespace(&self, namespace: &str) -> Result<String, NoNamespace> {
        match self {
            Self::Fixed(key) => Ok(key.clone()),
            Self::Template(_) if namespace.is_empty() => Err(NoNamespace),
            Self::Template(template) => Ok(template.replace("{namespace}", &namespace.replace('.', "_"))),
        }
    }
}
