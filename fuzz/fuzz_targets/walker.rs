//! Fuzzes the payload walker through the codec: arbitrary messages of every payload-bearing type.
//!
//! Input: two bytes (little-endian) pick the message type, modulo the schema table's size;
//! the rest is the serialized message.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use temporal_codec_proxy::codec::Codec;
use temporal_codec_proxy::payload::schema::{FieldClass, MessageIndex, Schema};
use temporal_codec_proxy::payload::view::{ENCRYPTED_ENCODING, PayloadView};
use temporal_codec_proxy::payload::{PayloadTransformer, WalkError, rewrite};

static CODEC: LazyLock<Codec> = LazyLock::new(temporal_codec_proxy_fuzz::codec);
static TEXTS_IN_PLACE: LazyLock<Codec> =
    LazyLock::new(|| temporal_codec_proxy_fuzz::codec_with_failure_messages(false));

fuzz_target!(|data: &[u8]| {
    let Some((selector, message)) = data.split_first_chunk::<2>() else {
        return;
    };
    // The table is indexed by `MessageIndex` (u16), so its length fits one.
    let messages = Schema::compiled_in().messages();
    let message_type = MessageIndex::from_le_bytes(*selector) % messages.len() as MessageIndex;

    // Fuzzed input may carry encrypted payloads, under the fuzz key or any other: decoding
    // them must fail cleanly or pass them through, never panic.
    let _ = CODEC.decode(message_type, message);

    let Ok(encoded) = CODEC.encode(message_type, message) else {
        return;
    };
    // Payloads that claim to be encrypted under the fuzz key are left alone by the encoder
    // and then decrypted (or rejected) by the decoder, so the round trip only holds without
    // them; those under other keys are encrypted again and come back as they were.
    if contains(message, ENCRYPTED_ENCODING) {
        return;
    }
    let mut checker = EverythingEncrypted;
    rewrite(Schema::compiled_in(), &encoded, message_type, &mut checker).expect("the encoder's output walks");
    let decoded = CODEC
        .decode(message_type, &encoded)
        .unwrap_or_else(|e| panic!("decoding what was just encoded failed: {e}"));
    // Untouched fields keep their exact bytes; the length of a rewritten field is written
    // anew in minimal form, so one round trip reaches a fixed point that must then hold.
    let again = CODEC
        .decode(message_type, &CODEC.encode(message_type, &decoded).expect("re-encoding works"))
        .expect("decoding the re-encoded message works");
    assert!(
        again == decoded,
        "round trip is not stable\n  type:    {}\n  input:   {}\n  first:   {}\n  second:  {}",
        messages[usize::from(message_type)].name,
        hex(message),
        hex(&decoded),
        hex(&again),
    );
    // Moving failure texts out and back puts them in field order, so the byte-for-byte
    // property is checked with them left in place.
    let exact = TEXTS_IN_PLACE
        .decode(message_type, &TEXTS_IN_PLACE.encode(message_type, message).expect("encoding works"))
        .expect("decoding what was just encoded works");
    // Payloads inside JSON (Nexus failure details, JSON history blobs) are rewritten by
    // writing the JSON anew, so inputs that hold a JSON object round-trip by meaning only.
    if exact.len() == message.len() && !contains(message, b"{\"") {
        assert!(exact == message, "round trip changed bytes\n  input:   {}\n  decoded: {}", hex(message), hex(&exact));
    }
});

/// Fails on any payload the encoder left readable (every class is on in the fuzz codec;
/// empty-metadata payloads are meant to stay as they are).
struct EverythingEncrypted;

impl PayloadTransformer for EverythingEncrypted {
    fn enters(&self, _class: FieldClass) -> bool {
        true
    }

    fn transform(&mut self, payload: &[u8], view: &PayloadView<'_>, out: &mut Vec<u8>) -> Result<bool, WalkError> {
        assert!(
            view.metadata_entries == 0 || view.is_encrypted(),
            "plaintext payload after encoding: {}",
            hex(payload)
        );
        out.extend_from_slice(payload);
        Ok(false)
    }
}
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
