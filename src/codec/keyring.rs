//! The AES-256 keys the codec holds: one active key for encryption, all of them for decryption.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use aws_lc_rs::aead::{AES_256_GCM, LessSafeKey, UnboundKey};
use zeroize::Zeroizing;

pub const KEY_BYTES: usize = 32;

/// One named AES-256-GCM key. The key schedule lives inside aws-lc, which wipes it on drop.
pub struct DataKey {
    id: String,
    key: LessSafeKey,
}

impl DataKey {
    pub fn new(id: impl Into<String>, material: &[u8]) -> Result<Self, KeyringError> {
        let id = id.into();
        if material.len() != KEY_BYTES {
            return Err(KeyringError::WrongLength {
                id,
                len: material.len(),
            });
        }
        let unbound = UnboundKey::new(&AES_256_GCM, material).map_err(|_| KeyringError::WrongLength {
            id: id.clone(),
            len: material.len(),
        })?;
        Ok(Self {
            id,
            key: LessSafeKey::new(unbound),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn aead(&self) -> &LessSafeKey {
        &self.key
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey").field("id", &self.id).finish_non_exhaustive()
    }
}

/// Keys by id; the first key given is the one new payloads are encrypted with.
#[derive(Debug, Clone)]
pub struct Keyring {
    active: Option<Arc<DataKey>>,
    by_id: HashMap<String, Arc<DataKey>>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("key {id:?} is {len} bytes; AES-256 keys are exactly 32 bytes")]
    WrongLength { id: String, len: usize },
    #[error("key id {0:?} is given more than once")]
    DuplicateId(String),
    #[error("key ids must not be empty")]
    EmptyId,
    #[error("no keys given: pass at least one --key ID=SOURCE (generate one with `temporal-codec-proxy keygen`)")]
    NoKeys,
}

impl Keyring {
    pub fn new(keys: impl IntoIterator<Item = (String, Zeroizing<Vec<u8>>)>) -> Result<Self, KeyringError> {
        let mut active = None;
        let mut by_id = HashMap::new();
        for (id, material) in keys {
            if id.is_empty() {
                return Err(KeyringError::EmptyId);
            }
            let key = Arc::new(DataKey::new(id.clone(), &material)?);
            if by_id.insert(id.clone(), key.clone()).is_some() {
                return Err(KeyringError::DuplicateId(id));
            }
            active.get_or_insert(key);
        }
        let active = Some(active.ok_or(KeyringError::NoKeys)?);
        Ok(Self { active, by_id })
    }

    /// A keyring without static keys, for when KMS provides every key.
    pub fn empty() -> Self {
        Self {
            active: None,
            by_id: HashMap::new(),
        }
    }

    /// The key new payloads are encrypted with, if the keyring has any.
    pub fn active(&self) -> Option<&Arc<DataKey>> {
        self.active.as_ref()
    }

    pub fn get(&self, id: &[u8]) -> Option<&DataKey> {
        std::str::from_utf8(id)
            .ok()
            .and_then(|id| self.by_id.get(id))
            .map(|key| &**key)
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.by_id.keys().map(String::as_str)
    }
}
