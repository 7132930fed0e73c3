//! The byte layout of Temporal's encryption samples: AES-256-GCM over the serialized payload.
//!
//! Wrapper metadata `encoding` = `binary/encrypted` and `encryption-key-id` = key id;
//! data = 12-byte random nonce ‖ ciphertext ‖ 16-byte tag, no AAD; the plaintext is the
//! original `Payload` exactly as serialized, so decryption gives back the same bytes.

use std::cell::RefCell;

use aws_lc_rs::aead::{Aad, NONCE_LEN, Nonce};

use crate::keys::DataKey;
use crate::payload::WalkError;
use crate::payload::view::{
    DATA_KEY_ENCRYPTED_KEY, ENCODING_KEY, ENCRYPTED_ENCODING, KEY_ID_KEY, PAYLOAD_DATA, PAYLOAD_EXTERNAL_PAYLOADS,
    write_metadata_entry,
};
use crate::payload::wire::{FieldReader, WIRE_LEN, write_tag, write_varint};

pub const TAG_LEN: usize = 16;
/// Nonces drawn from the system's random generator at once, per thread.
const NONCES_PER_DRAW: usize = 32;

/// Random bytes for nonces, drawn a block at a time: a draw from the generator costs about
/// half as much as sealing a one-kilobyte payload. Each byte is handed out once.
struct NoncePool {
    bytes: [u8; NONCE_LEN * NONCES_PER_DRAW],
    next: usize,
}

thread_local! {
    static NONCE_POOL: RefCell<NoncePool> = const {
        RefCell::new(NoncePool {
            bytes: [0; NONCE_LEN * NONCES_PER_DRAW],
            next: NONCE_LEN * NONCES_PER_DRAW,
        })
    };
}

fn random_nonce() -> Result<[u8; NONCE_LEN], WalkError> {
    NONCE_POOL.with_borrow_mut(|pool| {
        if pool.next == pool.bytes.len() {
            aws_lc_rs::rand::fill(&mut pool.bytes).map_err(|_| WalkError::Encryption)?;
            pool.next = 0;
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&pool.bytes[pool.next..pool.next + NONCE_LEN]);
        pool.next += NONCE_LEN;
        Ok(nonce)
    })
}

/// Writes the encrypted wrapper of `payload` (a serialized `Payload`) to `out`.
///
/// `external_payloads` stay visible on the wrapper too, because the server and SDKs
/// read them to account for payloads stored outside the history.
///
/// With an envelope, `wrapped_key` (base64 of the KMS-encrypted data key) goes to the
/// `data_key_encrypted` metadata, as Temporal's KMS sample writes it.
pub fn encrypt_payload(
    key: &DataKey,
    wrapped_key: Option<&[u8]>,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), WalkError> {
    let nonce = random_nonce()?;
    if let Some(wrapped_key) = wrapped_key {
        write_metadata_entry(out, DATA_KEY_ENCRYPTED_KEY, wrapped_key);
    }
    encrypt_payload_with_nonce(key, nonce, payload, out)
}

/// [`encrypt_payload`] with a caller-chosen nonce, for known-answer tests. A nonce must
/// never be used twice with one key.
pub fn encrypt_payload_with_nonce(
    key: &DataKey,
    nonce: [u8; NONCE_LEN],
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), WalkError> {
    write_metadata_entry(out, ENCODING_KEY, ENCRYPTED_ENCODING);
    write_metadata_entry(out, KEY_ID_KEY, key.id().as_bytes());
    write_tag(out, PAYLOAD_DATA, WIRE_LEN);
    write_varint(out, (NONCE_LEN + payload.len() + TAG_LEN) as u64);
    out.extend_from_slice(&nonce);
    let plaintext_at = out.len();
    out.extend_from_slice(payload);
    let tag = key
        .aead()
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::empty(),
            &mut out[plaintext_at..],
        )
        .map_err(|_| WalkError::Encryption)?;
    out.extend_from_slice(tag.as_ref());
    let mut reader = FieldReader::new(payload);
    while let Some(field) = reader.next_field()? {
        if field.number == PAYLOAD_EXTERNAL_PAYLOADS {
            out.extend_from_slice(&payload[field.start..reader.position()]);
        }
    }
    Ok(())
}

/// Writes the original serialized payload sealed in `data` to `out`.
pub fn decrypt_payload(key: &DataKey, data: &[u8], out: &mut Vec<u8>) -> Result<(), WalkError> {
    let authentication = || WalkError::Authentication {
        key_id: key.id().to_owned(),
    };
    if data.len() < NONCE_LEN + TAG_LEN {
        return Err(authentication());
    }
    let (nonce, sealed) = data.split_at(NONCE_LEN);
    let (ciphertext, tag) = sealed.split_at(sealed.len() - TAG_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| authentication())?;
    // Decrypting straight from the input saves copying the ciphertext first; zeroing the
    // destination costs less than that copy.
    let start = out.len();
    out.resize(start + ciphertext.len(), 0);
    key.aead()
        .open_separate_gather(nonce, Aad::empty(), ciphertext, tag, &mut out[start..])
        .map_err(|_| {
            out.truncate(start);
            authentication()
        })?;
    Ok(())
}
