//! Reads the metadata and data of one serialized `Payload` without copying.

use temporalio_protos::temporal::api::common::v1::Payload;

use super::WalkError;
use super::wire::{FieldReader, WIRE_LEN};

pub const PAYLOAD_METADATA: u32 = 1;
pub const PAYLOAD_DATA: u32 = 2;
pub const PAYLOAD_EXTERNAL_PAYLOADS: u32 = 3;

const MAP_KEY: u32 = 1;
const MAP_VALUE: u32 = 2;

pub const ENCODING_KEY: &[u8] = b"encoding";
pub const KEY_ID_KEY: &[u8] = b"encryption-key-id";
pub const DATA_KEY_ENCRYPTED_KEY: &[u8] = b"data_key_encrypted";
pub const ENCRYPTED_ENCODING: &[u8] = b"binary/encrypted";
const SYSTEM_PAYLOAD_KEY: &[u8] = b"__temporal_system_payload";
const MESSAGE_TYPE_KEY: &[u8] = b"messageType";

/// The parts of a payload the codec and the walker decide on.
#[derive(Debug, Default, Clone, Copy)]
pub struct PayloadView<'a> {
    pub metadata_entries: usize,
    pub encoding: Option<&'a [u8]>,
    pub key_id: Option<&'a [u8]>,
    /// Base64 of a KMS-encrypted data key (envelope encryption).
    pub data_key_encrypted: Option<&'a [u8]>,
    pub system: bool,
    pub message_type: Option<&'a [u8]>,
    pub data: &'a [u8],
}

impl<'a> PayloadView<'a> {
    pub fn parse(payload: &'a [u8]) -> Result<Self, WalkError> {
        let mut view = PayloadView::default();
        let mut reader = FieldReader::new(payload);
        while let Some(field) = reader.next_field()? {
            match (field.number, field.wire_type) {
                (PAYLOAD_METADATA, WIRE_LEN) => {
                    view.metadata_entries += 1;
                    let (key, value) = map_entry(field.content)?;
                    view.note_metadata(key, value);
                }
                (PAYLOAD_DATA, WIRE_LEN) => view.data = field.content,
                (PAYLOAD_METADATA | PAYLOAD_DATA, _) => {
                    return Err(WalkError::malformed("payload field has the wrong wire type"));
                }
                _ => {}
            }
        }
        Ok(view)
    }

    /// The same view of a payload already decoded into its message.
    pub fn of_message(payload: &'a Payload) -> Self {
        // One pass over the few entries costs less than hashing each key looked up.
        let mut view = PayloadView {
            metadata_entries: payload.metadata.len(),
            data: &payload.data,
            ..PayloadView::default()
        };
        for (key, value) in &payload.metadata {
            view.note_metadata(key.as_bytes(), value);
        }
        view
    }

    /// Keeps a metadata entry the codec or the walker decides on.
    fn note_metadata(&mut self, key: &[u8], value: &'a [u8]) {
        match key {
            ENCODING_KEY => self.encoding = Some(value),
            KEY_ID_KEY => self.key_id = Some(value),
            DATA_KEY_ENCRYPTED_KEY => self.data_key_encrypted = Some(value),
            SYSTEM_PAYLOAD_KEY => self.system = value == b"true",
            MESSAGE_TYPE_KEY => self.message_type = Some(value),
            _ => {}
        }
    }

    pub fn is_encrypted(&self) -> bool {
        self.encoding == Some(ENCRYPTED_ENCODING)
    }
}

/// How deep [`holds_payload`] looks: a `Payload` itself, a `Payloads`, a map of payloads, or
/// a message holding one of those.
const PAYLOAD_SEARCH_DEPTH: u32 = 3;

/// Whether `bytes`, the content of a field nobody described, is or holds something that
/// parses as a `Payload` with an `encoding`: what a payload field of a newer API would carry.
pub fn holds_payload(bytes: &[u8]) -> bool {
    holds_payload_within(bytes, PAYLOAD_SEARCH_DEPTH)
}

fn holds_payload_within(bytes: &[u8], depth: u32) -> bool {
    if PayloadView::parse(bytes).is_ok_and(|view| view.encoding.is_some()) {
        return true;
    }
    if depth == 0 {
        return false;
    }
    let mut reader = FieldReader::new(bytes);
    while let Ok(Some(field)) = reader.next_field() {
        if field.wire_type == WIRE_LEN && holds_payload_within(field.content, depth - 1) {
            return true;
        }
    }
    false
}

/// Splits a `map<string, bytes>` entry into key and value (absent parts are empty).
pub(super) fn map_entry(entry: &[u8]) -> Result<(&[u8], &[u8]), WalkError> {
    let mut key: &[u8] = &[];
    let mut value: &[u8] = &[];
    let mut reader = FieldReader::new(entry);
    while let Some(field) = reader.next_field()? {
        match (field.number, field.wire_type) {
            (MAP_KEY, WIRE_LEN) => key = field.content,
            (MAP_VALUE, WIRE_LEN) => value = field.content,
            (MAP_KEY | MAP_VALUE, _) => return Err(WalkError::malformed("metadata entry has the wrong wire type")),
            _ => {}
        }
    }
    Ok((key, value))
}

/// Writes one `map<string, bytes>` metadata entry as field 1 of a payload.
pub fn write_metadata_entry(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    use super::wire::{varint_len, write_len_field, write_tag, write_varint};
    let entry_len = 1 + varint_len(key.len() as u64) + key.len() + 1 + varint_len(value.len() as u64) + value.len();
    write_tag(out, PAYLOAD_METADATA, WIRE_LEN);
    write_varint(out, entry_len as u64);
    write_len_field(out, MAP_KEY, key);
    write_len_field(out, MAP_VALUE, value);
}
