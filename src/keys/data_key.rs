//! The AES-256 keys the codec holds: one active key for encryption, all of them for decryption.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_lc_rs::aead::{AES_256_GCM, LessSafeKey, UnboundKey};
use zeroize::Zeroizing;

pub const KEY_BYTES: usize = 32;

/// Encryptions by one key past which a warning is logged, and again at each further multiple:
/// with random 96-bit nonces a key should encrypt at most 2^32 payloads in all, and a fleet
/// sharing a static key reaches that together.
pub const ENCRYPTIONS_WARNING_STEP: u64 = 1 << 30;

/// One named AES-256-GCM key. The key schedule lives inside aws-lc, which wipes it on drop.
pub struct DataKey {
    id: String,
    key: LessSafeKey,
    /// Payloads this process has encrypted with the key.
    encryptions: AtomicU64,
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
            encryptions: AtomicU64::new(0),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Payloads this process has encrypted with the key.
    pub fn encryptions(&self) -> u64 {
        self.encryptions.load(Ordering::Relaxed)
    }

    /// Counts `payloads` more encryptions; true when the total has just passed a multiple of
    /// [`ENCRYPTIONS_WARNING_STEP`].
    pub(crate) fn count_encryptions(&self, payloads: u64) -> bool {
        let before = self.encryptions.fetch_add(payloads, Ordering::Relaxed);
        passes_a_warning_step(before, before.saturating_add(payloads))
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

fn passes_a_warning_step(before: u64, after: u64) -> bool {
    before / ENCRYPTIONS_WARNING_STEP != after / ENCRYPTIONS_WARNING_STEP
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

    /// A keyring of keys already loaded, shared with other keyrings; the first is active.
    pub fn from_shared(keys: impl IntoIterator<Item = Arc<DataKey>>) -> Result<Self, KeyringError> {
        let mut active = None;
        let mut by_id = HashMap::new();
        for key in keys {
            if by_id.insert(key.id().to_owned(), Arc::clone(&key)).is_some() {
                return Err(KeyringError::DuplicateId(key.id().to_owned()));
            }
            active.get_or_insert(key);
        }
        let active = Some(active.ok_or(KeyringError::NoKeys)?);
        Ok(Self { active, by_id })
    }

    /// The key with this id, to share with another keyring.
    pub fn shared(&self, id: &str) -> Option<Arc<DataKey>> {
        self.by_id.get(id).cloned()
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

    /// Every key held, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &DataKey> {
        self.by_id.values().map(|key| &**key)
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.by_id.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_warning_is_due_each_time_the_count_passes_a_step() {
        assert!(!passes_a_warning_step(0, ENCRYPTIONS_WARNING_STEP - 1));
        assert!(passes_a_warning_step(
            ENCRYPTIONS_WARNING_STEP - 1,
            ENCRYPTIONS_WARNING_STEP
        ));
        assert!(!passes_a_warning_step(
            ENCRYPTIONS_WARNING_STEP,
            2 * ENCRYPTIONS_WARNING_STEP - 1
        ));
        assert!(passes_a_warning_step(
            2 * ENCRYPTIONS_WARNING_STEP - 3,
            2 * ENCRYPTIONS_WARNING_STEP + 5
        ));
    }
}
