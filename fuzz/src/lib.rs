//! Set-up shared by the fuzz targets and their seed generator.

use temporal_codec_proxy::codec::{Codec, EncryptionPolicy, Keyring};
use zeroize::Zeroizing;

/// A codec with one fixed key and every optional payload class encrypted, so the walker
/// descends into every field it knows. The key is fixed so that seeds encrypted by the
/// seed generator decrypt in the targets, letting the fuzzer reach the decryption paths.
pub fn codec() -> Codec {
    codec_with_failure_messages(true)
}

/// [`codec`], with failure messages moved into encrypted payloads or left in place. Left in
/// place, a round trip gives back every byte; moved, the texts come back in field order.
pub fn codec_with_failure_messages(failure_messages: bool) -> Codec {
    let keyring = Keyring::new([("fuzz".to_owned(), Zeroizing::new(vec![7u8; 32]))]).expect("valid fixed key");
    Codec::new(
        keyring,
        EncryptionPolicy {
            headers: true,
            user_metadata: true,
            operator_data: true,
            failure_messages,
        },
    )
}
