//! The payload codec: encrypts request payloads and decrypts response payloads of whole messages.

pub mod keyring;
pub mod samples_format;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::payload::schema::{FieldClass, MessageIndex};
use crate::payload::view::PayloadView;
use crate::payload::{PayloadTransformer, WalkError, rewrite};
pub use keyring::{DataKey, Keyring, KeyringError};

/// Which optional payload classes are encrypted.
#[derive(Debug, Clone, Copy)]
pub struct EncryptionPolicy {
    pub headers: bool,
    pub user_metadata: bool,
    pub operator_data: bool,
}

impl Default for EncryptionPolicy {
    fn default() -> Self {
        Self {
            headers: true,
            user_metadata: true,
            operator_data: false,
        }
    }
}

impl EncryptionPolicy {
    fn encrypts(&self, class: FieldClass) -> bool {
        match class {
            FieldClass::Always | FieldClass::NexusOperationInput => true,
            FieldClass::Header => self.headers,
            FieldClass::UserMetadataSummary | FieldClass::UserMetadataDetails => self.user_metadata,
            FieldClass::OperatorData => self.operator_data,
        }
    }
}

/// Running totals of the codec's work.
#[derive(Debug, Default)]
pub struct CodecStats {
    pub payloads_encrypted: AtomicU64,
    pub payloads_decrypted: AtomicU64,
    pub plaintext_bytes_encrypted: AtomicU64,
    pub plaintext_bytes_decrypted: AtomicU64,
    /// Encrypted payloads under a key this codec does not hold, passed through as they are.
    pub payloads_unknown_key: AtomicU64,
    /// Encrypted payloads under a held key that failed authentication.
    pub payloads_failed_authentication: AtomicU64,
}

/// Encrypts and decrypts every payload of a message with one keyring.
#[derive(Debug)]
pub struct Codec {
    keyring: Keyring,
    policy: EncryptionPolicy,
    stats: CodecStats,
}

impl Codec {
    pub fn new(keyring: Keyring, policy: EncryptionPolicy) -> Self {
        Self {
            keyring,
            policy,
            stats: CodecStats::default(),
        }
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    pub fn stats(&self) -> &CodecStats {
        &self.stats
    }

    /// Encrypts every payload of `message` (of type `message_type`) that policy selects.
    pub fn encode(&self, message_type: MessageIndex, message: &[u8]) -> Result<Vec<u8>, WalkError> {
        let mut encryptor = Encryptor {
            key: self.keyring.active(),
            policy: self.policy,
            payloads: 0,
            bytes: 0,
        };
        let out = rewrite(message, message_type, &mut encryptor)?;
        self.stats
            .payloads_encrypted
            .fetch_add(encryptor.payloads, Ordering::Relaxed);
        self.stats
            .plaintext_bytes_encrypted
            .fetch_add(encryptor.bytes, Ordering::Relaxed);
        Ok(out)
    }

    /// Decrypts every payload of `message` encrypted under a key this codec holds.
    pub fn decode(&self, message_type: MessageIndex, message: &[u8]) -> Result<Vec<u8>, WalkError> {
        let mut decryptor = Decryptor {
            keyring: &self.keyring,
            payloads: 0,
            bytes: 0,
            unknown_keys: 0,
            unknown_key_ids: BTreeSet::new(),
        };
        let result = rewrite(message, message_type, &mut decryptor);
        self.stats
            .payloads_decrypted
            .fetch_add(decryptor.payloads, Ordering::Relaxed);
        self.stats
            .plaintext_bytes_decrypted
            .fetch_add(decryptor.bytes, Ordering::Relaxed);
        if decryptor.unknown_keys > 0 {
            self.stats
                .payloads_unknown_key
                .fetch_add(decryptor.unknown_keys, Ordering::Relaxed);
            tracing::warn!(
                payloads = decryptor.unknown_keys,
                key_ids = ?decryptor.unknown_key_ids,
                "passing through encrypted payloads under keys this proxy does not hold"
            );
        }
        if let Err(WalkError::Authentication { key_id }) = &result {
            self.stats
                .payloads_failed_authentication
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(key_id, "encrypted payload failed authentication");
        }
        result
    }
}

struct Encryptor<'k> {
    key: &'k DataKey,
    policy: EncryptionPolicy,
    payloads: u64,
    bytes: u64,
}

impl PayloadTransformer for Encryptor<'_> {
    fn enters(&self, class: FieldClass) -> bool {
        self.policy.encrypts(class)
    }

    fn transform(&mut self, payload: &[u8], view: &PayloadView<'_>, out: &mut Vec<u8>) -> Result<(), WalkError> {
        // Empty metadata marks server-made Nexus task payloads; SDK converters always set an
        // encoding. An already-encrypted payload is never wrapped twice.
        if view.metadata_entries == 0 || view.is_encrypted() {
            out.extend_from_slice(payload);
            return Ok(());
        }
        samples_format::encrypt_payload(self.key, payload, out)?;
        self.payloads += 1;
        self.bytes += payload.len() as u64;
        Ok(())
    }
}

struct Decryptor<'k> {
    keyring: &'k Keyring,
    payloads: u64,
    bytes: u64,
    unknown_keys: u64,
    unknown_key_ids: BTreeSet<String>,
}

impl PayloadTransformer for Decryptor<'_> {
    fn enters(&self, _class: FieldClass) -> bool {
        true
    }

    fn transform(&mut self, payload: &[u8], view: &PayloadView<'_>, out: &mut Vec<u8>) -> Result<(), WalkError> {
        if !view.is_encrypted() {
            out.extend_from_slice(payload);
            return Ok(());
        }
        let key_id = view.key_id.unwrap_or_default();
        let Some(key) = self.keyring.get(key_id) else {
            self.unknown_keys += 1;
            if self.unknown_key_ids.len() < 8 {
                self.unknown_key_ids
                    .insert(String::from_utf8_lossy(key_id).into_owned());
            }
            out.extend_from_slice(payload);
            return Ok(());
        };
        let start = out.len();
        samples_format::decrypt_payload(key, view.data, out)?;
        self.payloads += 1;
        self.bytes += (out.len() - start) as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
