//! `POST …/encode` and `POST …/decode`: payloads in the protobuf JSON mapping, in and out.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt as _;
use prost::Message as _;
use temporalio_protos::temporal::api::common::v1::Payloads;

use super::error::ApiError;
use crate::auth::{Access, AuthError, Authenticator};
use crate::codec::Codec;
use crate::codec::{BLOCKING_THRESHOLD, KeyError};
use crate::error::key_failure;
use crate::json_nesting;
use crate::memory_budget::{BudgetExhausted, BudgetPermit, MemoryBudget};
use crate::payload::WalkError;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub codec: Arc<Codec>,
    pub max_body_bytes: usize,
    /// How long a request body may take to arrive once its head has.
    pub body_timeout: std::time::Duration,
    /// `None`: every caller may decrypt (loopback or otherwise guarded deployments).
    pub authenticator: Option<Arc<Authenticator>>,
    /// Request bodies and their rewritten payloads are held within it.
    pub budget: Arc<MemoryBudget>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Encode,
    Decode,
}

/// Routes by the last path segment only, as the codec-server protocol asks: `/decode`,
/// `/{namespace}/decode` and `/decode?preserveStorageRefs=true` are the same endpoint.
pub async fn dispatch(State(state): State<ApiState>, request: Request) -> Response {
    let operation = match request.uri().path().trim_end_matches('/').rsplit('/').next() {
        Some("encode") => Operation::Encode,
        Some("decode") => Operation::Decode,
        _ => {
            return ApiError::new(
                StatusCode::NOT_FOUND,
                "not found: the codec server serves POST /encode and POST /decode",
            )
            .into_response();
        }
    };
    if request.method() != Method::POST {
        let mut response = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} is not allowed here; use POST", request.method()),
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("POST, OPTIONS"));
        return response;
    }
    match handle(&state, operation, request).await {
        Ok(payloads) => json_response(&payloads),
        Err(error) => error.into_response(),
    }
}

/// Deepest JSON nesting a request body may have. A `Payloads` body needs five levels
/// (`{"payloads":[{"externalPayloads":[{…}]}]}`); the parser recurses once per level, so a
/// limit far below what a thread's stack holds keeps a body of brackets from aborting the
/// process.
const MAX_JSON_NESTING: usize = 32;

async fn handle(state: &ApiState, operation: Operation, request: Request) -> Result<Payloads, ApiError> {
    let (parts, body) = request.into_parts();
    require_json(&parts.headers)?;
    let namespace = parts
        .headers
        .get("x-namespace")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let access = match &state.authenticator {
        None => Access::Decrypt,
        Some(authenticator) => authenticator
            .authorize(&parts.headers, namespace)
            .await
            .map_err(auth_error)?,
    };
    let mut permit = state.budget.permit();
    let body = read_body(body, &parts.headers, state, &mut permit).await?;
    json_nesting::check(&body, MAX_JSON_NESTING).map_err(|error| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("request body is not a Payloads JSON object: {error}"),
        )
    })?;
    let payloads: Payloads = sonic_rs::from_slice(&body).map_err(|error| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("request body is not a Payloads JSON object: {error}"),
        )
    })?;
    if operation == Operation::Decode && access == Access::Encrypted {
        // As Temporal's own codec server does: an authenticated user without a role on the
        // namespace gets the payloads back as they are, still encrypted.
        tracing::debug!(
            namespace,
            "caller may not decrypt in this namespace; payloads left encrypted"
        );
        return Ok(payloads);
    }
    let count = payloads.payloads.len();
    // The answer holds about as many bytes as the request.
    permit.grow(body.len()).await.map_err(budget_error)?;
    let result = match operation {
        Operation::Encode => encode(&state.codec, namespace, payloads).await,
        Operation::Decode => decode(&state.codec, namespace, payloads, body.len()).await,
    };
    tracing::debug!(
        ?operation,
        namespace,
        payloads = count,
        ok = result.is_ok(),
        "codec request"
    );
    result
}

/// Encrypts all payloads of the request as one `Payloads` message: one walk, same order.
async fn encode(codec: &Arc<Codec>, namespace: &str, payloads: Payloads) -> Result<Payloads, ApiError> {
    let key = codec.encryption_key(namespace).await.map_err(key_error)?;
    let message = payloads.encode_to_vec();
    let size = message.len();
    let codec = Arc::clone(codec);
    off_the_reactor_if_large(size, move || {
        let encrypted = codec
            .encode_with(&key, codec.schema().payloads_type, &message)
            .map_err(codec_error)?;
        Payloads::decode(encrypted.as_slice()).map_err(|error| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("an encrypted payload could not be read back: {error}"),
            )
        })
    })
    .await
}

/// Decrypts the payloads as they came from JSON, each on its own, in the same order, with
/// the namespace's keys only: a payload under another namespace's key stays encrypted,
/// whoever asks.
async fn decode(codec: &Arc<Codec>, namespace: &str, payloads: Payloads, size: usize) -> Result<Payloads, ApiError> {
    let keys = codec
        .payload_decryption_keys(namespace, &payloads.payloads)
        .await
        .map_err(key_error)?;
    let codec = Arc::clone(codec);
    off_the_reactor_if_large(size, move || {
        let payloads = codec.decode_payloads(&keys, payloads.payloads).map_err(codec_error)?;
        Ok(Payloads { payloads })
    })
    .await
}

/// Typical requests take well under a millisecond of CPU: a hop to the blocking pool
/// would cost more than it saves. Large ones go there so they do not stall the reactor.
async fn off_the_reactor_if_large(
    size: usize,
    work: impl FnOnce() -> Result<Payloads, ApiError> + Send + 'static,
) -> Result<Payloads, ApiError> {
    if size < BLOCKING_THRESHOLD {
        return work();
    }
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "payload processing was interrupted"))?
}

fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content type must be application/json, not {content_type:?}"),
        ))
    }
}

async fn read_body(
    mut body: Body,
    headers: &HeaderMap,
    state: &ApiState,
    permit: &mut BudgetPermit,
) -> Result<bytes::Bytes, ApiError> {
    let limit = state.max_body_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than the limit of {limit} bytes (--codec-max-body-bytes)"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|declared| declared > limit) {
        return Err(too_large());
    }
    // A body that trickles in, or stops, would otherwise hold its connection and buffer for
    // as long as the client likes; answering closes the connection, as the body is unread.
    let deadline = tokio::time::Instant::now() + state.body_timeout;
    let timed_out = || {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "request body did not arrive within {:?} (--codec-body-timeout)",
                state.body_timeout
            ),
        )
    };
    // The declared size is taken from the budget before any of the body is read.
    if let Some(declared) = declared {
        tokio::time::timeout_at(deadline, permit.hold_at_least(declared))
            .await
            .map_err(|_| timed_out())?
            .map_err(budget_error)?;
    }
    let mut collected = bytes::BytesMut::with_capacity(declared.unwrap_or(0));
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(timed_out()),
            Ok(None) => break,
            Ok(Some(frame)) => frame.map_err(|error| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("request body could not be read: {error}"),
                )
            })?,
        };
        let Ok(data) = frame.into_data() else { continue };
        let total = collected.len() + data.len();
        if total > limit {
            return Err(too_large());
        }
        tokio::time::timeout_at(deadline, permit.hold_at_least(total))
            .await
            .map_err(|_| timed_out())?
            .map_err(budget_error)?;
        collected.extend_from_slice(&data);
    }
    Ok(collected.freeze())
}

fn budget_error(error: BudgetExhausted) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, error.to_string())
}

fn key_error(error: KeyError) -> ApiError {
    match key_failure(error) {
        Ok(answer) => ApiError::new(answer.http, answer.message),
        Err(error) => codec_error(error),
    }
}

fn auth_error(error: AuthError) -> ApiError {
    match error {
        AuthError::Token(error) => ApiError::new(StatusCode::UNAUTHORIZED, error.to_string()),
        AuthError::Roles(error) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("permissions could not be checked: {error}"),
        ),
    }
}

fn codec_error(error: WalkError) -> ApiError {
    match error {
        WalkError::Authentication { .. } => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, error.to_string()),
        WalkError::Encryption => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
        WalkError::TooLarge { .. } => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, error.to_string()),
        WalkError::Opaque(_) | WalkError::UnknownPayloadField { .. } => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, error.to_string())
        }
        WalkError::Malformed(_) | WalkError::TooDeep { .. } | WalkError::UserMetadataTooLarge { .. } => {
            ApiError::new(StatusCode::BAD_REQUEST, error.to_string())
        }
    }
}

/// Payloads as JSON, serialized with the pbjson mapping.
fn json_response(payloads: &Payloads) -> Response {
    // Sized up front: growing a buffer of a hundred kilobytes by doubling copies it again
    // and again.
    let mut body = Vec::with_capacity(json_size_estimate(payloads));
    match sonic_rs::to_writer(&mut body, payloads) {
        Ok(()) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(error) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("payloads could not be written as JSON: {error}"),
        )
        .into_response(),
    }
}

/// About how long the JSON of `payloads` is: bytes as base64, plus the punctuation around them.
fn json_size_estimate(payloads: &Payloads) -> usize {
    const BRACES_AND_NAMES: usize = 48;
    let base64_len = |bytes: usize| bytes.div_ceil(3) * 4;
    payloads
        .payloads
        .iter()
        .map(|payload| {
            let metadata: usize = payload
                .metadata
                .iter()
                .map(|(key, value)| key.len() + base64_len(value.len()) + 6)
                .sum();
            metadata + base64_len(payload.data.len()) + BRACES_AND_NAMES
        })
        .sum::<usize>()
        + BRACES_AND_NAMES
}

#[cfg(test)]
mod tests {
    use temporalio_protos::temporal::api::common::v1::Payload;

    use super::*;

    #[test]
    fn the_json_size_estimate_covers_the_answer_without_wasting_much() {
        for (count, size) in [(0, 0), (1, 3), (1, 1024), (100, 1024), (3, 70_000)] {
            let payload = Payload {
                metadata: [
                    ("encoding".to_owned(), b"json/plain".to_vec()),
                    ("encryption-key-id".to_owned(), b"prod-2026".to_vec()),
                ]
                .into(),
                data: vec![b'x'; size],
                external_payloads: vec![],
            };
            let payloads = Payloads {
                payloads: vec![payload; count],
            };
            let actual = sonic_rs::to_vec(&payloads).unwrap().len();
            let estimate = json_size_estimate(&payloads);
            assert!(
                actual <= estimate && estimate <= actual + actual / 4 + 64,
                "{count} x {size} bytes: {actual} bytes of JSON, estimated {estimate}"
            );
        }
    }
}
