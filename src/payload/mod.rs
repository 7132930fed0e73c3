//! Finds the payloads inside Temporal protobuf messages on the wire and rewrites them.

pub mod descriptors;
pub mod schema;
pub mod view;
pub mod walker;
pub mod wire;

pub use walker::{PayloadTransformer, rewrite};

/// Why a message could not be rewritten.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("malformed protobuf: {0}")]
    Malformed(String),
    #[error("message nesting deeper than {limit} levels")]
    TooDeep { limit: u32 },
    #[error("message would be larger than the limit of {limit} bytes once rewritten")]
    TooLarge { limit: usize },
    #[error(
        "user metadata {field} is {size} bytes once encrypted, over the server's limit of {limit} bytes; \
         shorten it or turn off user metadata encryption"
    )]
    UserMetadataTooLarge {
        field: &'static str,
        size: usize,
        limit: usize,
    },
    #[error("the message holds {0}, so the proxy cannot tell whether it carries payloads to encrypt")]
    Opaque(String),
    #[error(
        "field {field} of {message} is not in this proxy's Temporal API and holds what looks like a payload, \
         which the proxy cannot encrypt where it does not know the field"
    )]
    UnknownPayloadField { message: String, field: u32 },
    #[error("payload under key {key_id:?} failed authentication (tampered or encrypted with a different key)")]
    Authentication { key_id: String },
    #[error("encryption failed")]
    Encryption,
}

impl WalkError {
    pub fn malformed(reason: impl Into<String>) -> Self {
        Self::Malformed(reason.into())
    }
}

#[cfg(test)]
mod tests;
