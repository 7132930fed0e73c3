//! One mapping from key failures to the gRPC status and the HTTP answer a caller gets.

use http::StatusCode;
use tonic::Code;

use crate::codec::KeyError;
use crate::keys::provider::ProviderErrorKind;
use crate::payload::WalkError;

/// How both listeners answer one failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureAnswer {
    pub grpc: Code,
    /// Key services are the gateway's trouble, not the caller's: 503 while one is
    /// unreachable, 502 when it refuses.
    pub http: StatusCode,
    pub message: String,
}

impl FailureAnswer {
    fn new(grpc: Code, http: StatusCode, message: String) -> Self {
        Self { grpc, http, message }
    }
}

/// The answer to a key failure, or the failure of the payload walk behind it, which each
/// listener answers in its own terms.
pub fn key_failure(error: KeyError) -> Result<FailureAnswer, WalkError> {
    let answer = match error {
        KeyError::Provider(error) => {
            let (grpc, http, what) = match error.kind {
                ProviderErrorKind::Unavailable => {
                    (Code::Unavailable, StatusCode::SERVICE_UNAVAILABLE, "is unavailable")
                }
                ProviderErrorKind::Denied => (Code::PermissionDenied, StatusCode::BAD_GATEWAY, "denied access"),
                ProviderErrorKind::NotFound => (
                    Code::FailedPrecondition,
                    StatusCode::BAD_GATEWAY,
                    "does not have the key",
                ),
                ProviderErrorKind::Invalid | ProviderErrorKind::OtherKey => {
                    (Code::FailedPrecondition, StatusCode::BAD_GATEWAY, "refused the request")
                }
            };
            FailureAnswer::new(
                grpc,
                http,
                format!(
                    "key provider {} {what}: {}: {}",
                    error.provider, error.operation, error.message
                ),
            )
        }
        KeyError::NoNamespace(error) => FailureAnswer::new(
            Code::InvalidArgument,
            StatusCode::BAD_REQUEST,
            format!("{error}: name it in the temporal-namespace header, or X-Namespace on the codec server"),
        ),
        KeyError::NoKeyForNamespace(_) => {
            FailureAnswer::new(Code::FailedPrecondition, StatusCode::BAD_REQUEST, error.to_string())
        }
        KeyError::NoKey => FailureAnswer::new(
            Code::Internal,
            StatusCode::INTERNAL_SERVER_ERROR,
            KeyError::NoKey.to_string(),
        ),
        KeyError::Walk(error) => return Err(error),
    };
    Ok(answer)
}
