//! Fuzzes the payload walker through the codec: arbitrary messages of every payload-bearing type.
//!
//! Input: two bytes (little-endian) pick the message type, modulo the schema table's size;
//! the rest is the serialized message.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use temporal_codec_proxy::codec::Codec;
use temporal_codec_proxy::payload::schema::{FieldClass, MESSAGES, MessageIndex};
use temporal_codec_proxy::payload::view::{ENCRYPTED_ENCODING, PayloadView};
use temporal_codec_proxy::payload::{PayloadTransformer, WalkError, rewrite};

static CODEC: LazyLock<Codec> = LazyLock::new(temporal_codec_proxy_fuzz::codec);

fuzz_target!(|data: &[u8]| {
    let Some((selector, message)) = data.split_first_chunk::<2>() else {
        return;
    };
    // The table is indexed by `MessageIndex` (u16), so its length fits one.
    let message_type = MessageIndex::from_le_bytes(*selector) % MESSAGES.len() as MessageIndex;

    // Fuzzed input may carry encrypted payloads, under the fuzz key or any other: decoding
    // them must fail cleanly or pass them through, never panic.
    let _ = CODEC.decode(message_type, message);

    let Ok(encoded) = CODEC.encode(message_type, message) else {
        return;
    };
    // Payloads that already claim to be encrypted are left alone by the encoder and then
    // decrypted (or rejected) by the decoder, so the round trip only holds without them.
    if contains(message, ENCRYPTED_ENCODING) {
        return;
    }
    let decoded = CODEC
        .decode(message_type, &encoded)
        .unwrap_or_else(|e| panic!("decoding what was just encoded failed: {e}"));
    // The walker writes the tag and length of every field it descends into in minimal
    // form, so a message with over-long varints there comes back re-encoded. Comparing
    // with the walker's own pass-through output is exactly `decoded == message` for every
    // message the pass-through leaves unchanged, and still checks the rest.
    let expected = rewrite(message, message_type, &mut PassThrough).expect("the encoder walked this message");
    assert!(
        decoded == expected,
        "round trip changed the message\n  type:     {}\n  input:    {}\n  expected: {}\n  decoded:  {}",
        MESSAGES[usize::from(message_type)].name,
        hex(message),
        hex(&expected),
        hex(&decoded),
    );
});

/// Enters every field the encoder enters (all classes are on) and copies payloads as they are.
struct PassThrough;

impl PayloadTransformer for PassThrough {
    fn enters(&self, _class: FieldClass) -> bool {
        true
    }

    fn transform(&mut self, payload: &[u8], _view: &PayloadView<'_>, out: &mut Vec<u8>) -> Result<(), WalkError> {
        out.extend_from_slice(payload);
        Ok(())
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
