//! Fuzzes gRPC body framing and gzip decompression with arbitrary bodies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use temporal_codec_proxy::proxy::grpc_frame::{MessageEncoding, decode_messages, encode_frame};

/// Small enough that decompression bombs stay cheap to try.
const LIMIT: usize = 1 << 20;

fuzz_target!(|body: &[u8]| {
    if let Ok(messages) = decode_messages(body, MessageEncoding::Identity, LIMIT) {
        // Identity accepts only uncompressed frames, so framing the messages again must give
        // back the body byte for byte.
        let reframed: Vec<u8> = messages.iter().flat_map(|message| encode_frame(message)).collect();
        assert_eq!(reframed, body, "re-framing the decoded messages changed the body");
    }
    let _ = decode_messages(body, MessageEncoding::Gzip, LIMIT);
});
