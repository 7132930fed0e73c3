//! Forwards one gRPC call upstream, encrypting request payloads and decrypting response payloads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD_NO_PAD};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body_util::{BodyExt as _, Limited};
use tonic::body::Body;
use tonic::{Code, Status};

use super::budgeted_read::{ReadError, read_messages};
use super::call_record::{CallRecord, RecordedBody};
use super::grpc_frame::{
    FrameError, GRPC_ACCEPT_ENCODING, GRPC_ENCODING, MessageEncoding, SUPPORTED_ENCODINGS, frame_pieces,
};
use super::headers::{GRPC_STATUS, carries_protobuf, grpc_timeout, remove_hop_by_hop};
use super::method_policy::{MethodPolicy, UnknownMethodAction, UnknownMethods};
use super::upstream::UpstreamClient;
use crate::auth::jwt::JwtVerifier;
use crate::codec::{BLOCKING_THRESHOLD, Codec, KeyError, MessageKeys};
use crate::error::key_failure;
use crate::memory_budget::{
    BudgetExhausted, BudgetPermit, DEFAULT_BUFFER_WAIT, DEFAULT_MAX_BUFFERED_BYTES, HeldBody, MemoryBudget,
};
use crate::payload::WalkError;
use crate::payload::schema::{MessageIndex, MethodSchema, Schema};
use crate::payload::wire::{FieldReader, WIRE_LEN};
use crate::telemetry::{Metrics, UNKNOWN_METHOD};

const STATUS_DETAILS: HeaderName = HeaderName::from_static("grpc-status-details-bin");
const TEMPORAL_NAMESPACE: HeaderName = HeaderName::from_static("temporal-namespace");
/// How much of a non-gRPC answer is read to explain it.
const NON_GRPC_BODY_LIMIT: usize = 4096;
/// How long a request body may take to arrive unless told otherwise.
pub const DEFAULT_REQUEST_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// gRPC peers may send `-bin` values with or without padding.
const BASE64_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

pub type ProxyResponse = http::Response<Body>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Client to server: encrypt.
    Request,
    /// Server to client: decrypt.
    Response,
}

/// Headers the proxy sets on every upstream call.
#[derive(Debug, Clone, Default)]
pub struct UpstreamCredentials {
    /// `authorization: Bearer <API key>`, replacing the caller's.
    pub authorization: Option<HeaderValue>,
    /// `temporal-namespace` for calls that carry none and name none.
    pub namespace: Option<HeaderValue>,
}

/// What the listener learned about the caller's connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Caller {
    /// The caller presented a client certificate that the listener's CA verified.
    pub client_certificate: bool,
}

/// Who may call through a gateway listener.
#[derive(Default)]
pub struct CallerPolicy {
    /// Calls must come over a connection with a verified client certificate.
    pub require_client_certificate: bool,
    /// Calls must carry a JWT that this verifier accepts, in the headers it reads.
    pub jwt: Option<Arc<JwtVerifier>>,
}

/// Forwards calls to one upstream through one codec.
pub struct Forwarder {
    codec: Arc<Codec>,
    upstream: UpstreamClient,
    upstream_name: String,
    max_message_bytes: usize,
    metrics: Arc<Metrics>,
    credentials: UpstreamCredentials,
    callers: CallerPolicy,
    methods: MethodPolicy,
    budget: Arc<MemoryBudget>,
    request_body_timeout: Duration,
}

impl Forwarder {
    pub fn new(
        codec: Arc<Codec>,
        upstream: UpstreamClient,
        upstream_name: String,
        max_message_bytes: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            upstream,
            upstream_name,
            max_message_bytes,
            metrics,
            credentials: UpstreamCredentials::default(),
            callers: CallerPolicy::default(),
            methods: MethodPolicy::default(),
            budget: MemoryBudget::new(DEFAULT_MAX_BUFFERED_BYTES, DEFAULT_BUFFER_WAIT),
            request_body_timeout: DEFAULT_REQUEST_BODY_TIMEOUT,
            codec,
        }
    }

    /// Buffers messages within `budget`, shared with whatever else draws from it.
    pub fn with_budget(mut self, budget: Arc<MemoryBudget>) -> Self {
        self.budget = budget;
        self
    }

    /// Fails a call whose request body has not arrived `timeout` after its headers.
    pub fn with_request_body_timeout(mut self, timeout: Duration) -> Self {
        self.request_body_timeout = timeout;
        self
    }

    /// Adds `credentials` to every upstream call.
    pub fn with_credentials(mut self, credentials: UpstreamCredentials) -> Self {
        self.credentials = credentials;
        self
    }

    /// Admits only callers that `callers` allows.
    pub fn with_caller_policy(mut self, callers: CallerPolicy) -> Self {
        self.callers = callers;
        self
    }

    /// Treats calls to methods outside the payload schema as `unknown` says.
    pub fn with_unknown_methods(mut self, unknown: UnknownMethods) -> Self {
        self.methods = MethodPolicy::new(unknown);
        self
    }

    /// Refuses a call to a method outside the payload schema unless policy forwards it.
    fn admit_method(&self, path: &str, method: Option<&MethodSchema>) -> Result<(), Status> {
        if method.is_some() {
            return Ok(());
        }
        let decided = self.methods.unknown_method(path, self.codec.schema().source());
        let action = match &decided {
            Ok(action) => *action,
            Err(_) => UnknownMethodAction::Refused,
        };
        self.metrics.record_unknown_method(action);
        decided.map(drop)
    }

    /// Refuses a caller the policy does not admit, before anything goes upstream.
    async fn admit(&self, headers: &HeaderMap, caller: Caller) -> Result<(), Status> {
        if self.callers.require_client_certificate && !caller.client_certificate {
            return Err(Status::unauthenticated(
                "this proxy requires a client certificate signed by its client CA",
            ));
        }
        if let Some(verifier) = &self.callers.jwt {
            // Boxed: a JWKS fetch is a large future that calls without JWT auth need not carry.
            Box::pin(verifier.verify_request(headers))
                .await
                .map_err(|error| Status::unauthenticated(format!("caller not authenticated: {error}")))?;
        }
        Ok(())
    }

    /// Handles one call; every failure becomes a gRPC status for the caller.
    pub async fn handle<B>(self: Arc<Self>, request: http::Request<B>, caller: Caller) -> ProxyResponse
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let started = Instant::now();
        let method = self.codec.schema().method(request.uri().path());
        let uri = request.uri().clone();
        let mut added = Duration::ZERO;
        let admitted = match self.admit(request.headers(), caller).await {
            Ok(()) => self.admit_method(uri.path(), method),
            refused => refused,
        };
        let result = match (admitted, grpc_timeout(request.headers())) {
            (Err(status), _) => Err(status),
            (Ok(()), Some(deadline)) => tokio::time::timeout(deadline, self.forward(request, method, &mut added))
                .await
                .unwrap_or_else(|_| {
                    Err(Status::deadline_exceeded(
                        "deadline exceeded while the call was in the proxy",
                    ))
                }),
            (Ok(()), None) => self.forward(request, method, &mut added).await,
        };
        let response = result.unwrap_or_else(|status| {
            tracing::debug!(method = uri.path(), code = ?status.code(), message = status.message(), "call failed in the proxy");
            added = started.elapsed();
            status.into_http()
        });
        let record = CallRecord {
            metrics: Arc::clone(&self.metrics),
            method: method.map_or(UNKNOWN_METHOD, |method| method.path.as_str()),
            started,
            added,
        };
        let (parts, body) = response.into_parts();
        let body = RecordedBody::new(body, &parts.headers, record);
        http::Response::from_parts(parts, Body::new(body))
    }

    /// Forwards one call; `added` accumulates the time spent on the proxy's own work.
    async fn forward<B>(
        &self,
        request: http::Request<B>,
        method: Option<&'static MethodSchema>,
        added: &mut Duration,
    ) -> Result<ProxyResponse, Status>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let (mut parts, body) = request.into_parts();
        remove_hop_by_hop(&mut parts.headers);
        if let Some(authorization) = &self.credentials.authorization {
            parts.headers.insert(http::header::AUTHORIZATION, authorization.clone());
        }
        let request_type = method.and_then(|m| m.request);
        let response_type = method.and_then(|m| m.response);
        // A response is decrypted with its namespace's keys only, so a call whose answer
        // carries payloads is read for its namespace even when its request carries none.
        let reads_namespace = response_type.is_some() && method.is_some_and(|m| m.namespace_field.is_some());
        let mut namespace = String::new();
        let upstream_body = if request_type.is_none() && !reads_namespace {
            Body::new(body)
        } else {
            if !carries_protobuf(&parts.headers) {
                return Err(unsupported_content_type(&parts.headers));
            }
            let encoding = MessageEncoding::from_headers(&parts.headers)?;
            parts.headers.remove(GRPC_ENCODING);
            parts.headers.remove(http::header::CONTENT_LENGTH);
            let mut permit = self.budget.permit();
            let message = self.read_unary_request(body, encoding, &mut permit).await?;
            let codec_started = Instant::now();
            namespace = request_namespace(&parts.headers, method, &message)?;
            if namespace.is_empty()
                && let Some(default) = &self.credentials.namespace
            {
                namespace = String::from_utf8_lossy(default.as_bytes()).into_owned();
            }
            if !parts.headers.contains_key(TEMPORAL_NAMESPACE)
                && let Ok(value) = HeaderValue::from_str(&namespace)
                && !namespace.is_empty()
            {
                parts.headers.insert(TEMPORAL_NAMESPACE, value);
            }
            let outgoing = match request_type {
                Some(message_type) => {
                    self.run_codec(Direction::Request, message_type, message, &namespace, &mut permit)
                        .await?
                }
                None => message,
            };
            permit.resize_to_held(outgoing.len());
            *added += codec_started.elapsed();
            Body::new(HeldBody::new(frame_pieces(outgoing), None, permit))
        };
        if let Some(namespace) = &self.credentials.namespace
            && !parts.headers.contains_key(TEMPORAL_NAMESPACE)
        {
            parts.headers.insert(TEMPORAL_NAMESPACE, namespace.clone());
        }
        if response_type.is_some() {
            parts
                .headers
                .insert(GRPC_ACCEPT_ENCODING, HeaderValue::from_static(SUPPORTED_ENCODINGS));
        }
        let response = self
            .upstream
            .send(http::Request::from_parts(parts, upstream_body))
            .await
            .map_err(|error| self.upstream_error(&error))?
            .map(Body::new);
        if !is_grpc_response(&response) {
            return Err(self.non_grpc_response(response).await);
        }
        match response_type {
            None => Ok(response),
            Some(message_type) => self.rewrite_response(response, message_type, &namespace, added).await,
        }
    }

    async fn read_unary_request<B>(
        &self,
        body: B,
        encoding: MessageEncoding,
        permit: &mut BudgetPermit,
    ) -> Result<Vec<u8>, Status>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let deadline = tokio::time::Instant::now() + self.request_body_timeout;
        let read = read_messages(body, encoding, self.max_message_bytes, permit, Some(deadline))
            .await
            .map_err(|error| match error {
                ReadError::Frame(error) => self.frame_error(Direction::Request, error),
                ReadError::Budget(error) => budget_status(Direction::Request, error),
                ReadError::Body(error) => Status::cancelled(format!("request body ended early: {error}")),
                ReadError::TimedOut => Status::deadline_exceeded(format!(
                    "the request body did not arrive within {:?} of its headers (--request-body-timeout); \
                     nothing was sent upstream",
                    self.request_body_timeout
                )),
            })?;
        let mut messages = read.messages;
        match messages.len() {
            1 => Ok(messages.pop().expect("one message")),
            count => Err(Status::invalid_argument(format!(
                "a unary call carries exactly one request message, this one carried {count}"
            ))),
        }
    }

    async fn rewrite_response(
        &self,
        response: ProxyResponse,
        message_type: MessageIndex,
        namespace: &str,
        added: &mut Duration,
    ) -> Result<ProxyResponse, Status> {
        let (mut parts, body) = response.into_parts();
        if parts.headers.contains_key(GRPC_STATUS) {
            // A trailers-only answer: the status, and its details, are in the headers.
            self.decode_status_details(namespace, &mut parts.headers).await?;
            return Ok(http::Response::from_parts(parts, body));
        }
        if !carries_protobuf(&parts.headers) {
            return Err(Status::internal(format!(
                "upstream {} answered with content-type {:?}, which the proxy cannot read for payloads",
                self.upstream_name,
                content_type(&parts.headers)
            )));
        }
        let encoding = MessageEncoding::from_headers(&parts.headers)
            .map_err(|status| Status::internal(format!("upstream response: {}", status.message())))?;
        parts.headers.remove(GRPC_ENCODING);
        parts.headers.remove(http::header::CONTENT_LENGTH);
        let mut permit = self.budget.permit();
        let read = read_messages(body, encoding, self.max_message_bytes, &mut permit, None)
            .await
            .map_err(|error| match error {
                ReadError::Frame(error) => self.frame_error(Direction::Response, error),
                ReadError::Budget(error) => budget_status(Direction::Response, error),
                ReadError::Body(error) => match error.downcast::<Status>() {
                    Ok(status) => *status,
                    Err(error) => Status::unavailable(format!("upstream response ended early: {error}")),
                },
                ReadError::TimedOut => Status::unavailable("upstream response stopped arriving"),
            })?;
        let codec_started = Instant::now();
        let mut trailers = read.trailers;
        let mut out = Vec::with_capacity(read.messages.len() * 2);
        let mut held = 0;
        for message in read.messages {
            let decrypted = self
                .run_codec(Direction::Response, message_type, message, namespace, &mut permit)
                .await?;
            held += decrypted.len();
            out.extend(frame_pieces(decrypted));
        }
        permit.resize_to_held(held);
        if let Some(trailers) = trailers.as_mut() {
            self.decode_status_details(namespace, trailers).await?;
        }
        *added += codec_started.elapsed();
        Ok(http::Response::from_parts(
            parts,
            Body::new(HeldBody::new(out, trailers, permit)),
        ))
    }

    /// Resolves the keys the message needs (KMS calls and caches), then rewrites it, taking
    /// budget for the rewritten copy first.
    async fn run_codec(
        &self,
        direction: Direction,
        message_type: MessageIndex,
        message: Vec<u8>,
        namespace: &str,
        permit: &mut BudgetPermit,
    ) -> Result<Vec<u8>, Status> {
        permit
            .grow(message.len())
            .await
            .map_err(|error| budget_status(direction, error))?;
        let keys = match direction {
            Direction::Request => self.codec.encryption_key(namespace).await.map(MessageKeys::Encryption),
            Direction::Response => self
                .codec
                .decryption_keys(namespace, message_type, &message)
                .await
                .map(MessageKeys::Decryption),
        }
        .map_err(|error| key_status(self.codec.schema(), direction, message_type, error))?;
        let codec = Arc::clone(&self.codec);
        let large = message.len() >= BLOCKING_THRESHOLD;
        let work = move || codec.rewrite_with(&keys, message_type, &message);
        let result = if large {
            tokio::task::spawn_blocking(work)
                .await
                .map_err(|_| Status::internal("payload rewriting was interrupted"))?
        } else {
            work()
        };
        result.map_err(|error| codec_status(self.codec.schema(), direction, message_type, error))
    }

    /// Decrypts payloads in `grpc-status-details-bin` (query failures, multi-operation
    /// failures). Details that cannot be decoded fail the call, naming the server's own
    /// status, rather than reach the worker as ciphertext.
    async fn decode_status_details(&self, namespace: &str, headers: &mut HeaderMap) -> Result<(), Status> {
        let Some(value) = headers.get(STATUS_DETAILS) else {
            return Ok(());
        };
        let undecodable = |reason: String| {
            let code = headers
                .get(GRPC_STATUS)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse::<i32>().ok())
                .map_or(Code::Unknown, Code::from_i32);
            let message = headers
                .get("grpc-message")
                .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
                .unwrap_or_default();
            tracing::warn!(server_code = ?code, %reason, "grpc-status-details-bin could not be decoded");
            Status::internal(format!(
                "the server answered {code:?} ({message}), but its status details could not be decoded: {reason}"
            ))
        };
        let status_type = self.codec.schema().status_type;
        let details = BASE64_ANY_PADDING
            .decode(value.as_bytes())
            .map_err(|error| undecodable(format!("not base64: {error}")))?;
        let resolved = self
            .codec
            .decryption_keys(namespace, status_type, &details)
            .await
            .map_err(|error| undecodable(error.to_string()))?;
        let decoded = self
            .codec
            .decode_with(&resolved, status_type, &details)
            .map_err(|error| undecodable(error.to_string()))?;
        if decoded != details {
            let value = HeaderValue::from_str(&STANDARD_NO_PAD.encode(decoded))
                .map_err(|error| undecodable(error.to_string()))?;
            headers.insert(STATUS_DETAILS, value);
        }
        Ok(())
    }

    fn upstream_error(&self, error: &(dyn std::error::Error + 'static)) -> Status {
        let mut detail = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            detail.push_str(": ");
            detail.push_str(&cause.to_string());
            source = cause.source();
        }
        Status::unavailable(format!("upstream {} is unavailable: {detail}", self.upstream_name))
    }

    /// An answer that is not gRPC (a TLS terminator's error page, say), mapped to a status
    /// as gRPC maps HTTP codes, with the page's title when it has one.
    async fn non_grpc_response(&self, response: ProxyResponse) -> Status {
        let http_status = response.status();
        let body = tokio::time::timeout(
            Duration::from_secs(2),
            Limited::new(response.into_body(), NON_GRPC_BODY_LIMIT).collect(),
        )
        .await;
        let text = match body {
            Ok(Ok(collected)) => String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
            _ => String::new(),
        };
        let title = text
            .split_once("<title>")
            .and_then(|(_, rest)| rest.split_once("</title>"))
            .map(|(title, _)| title.trim().to_owned());
        let code = match http_status.as_u16() {
            400 => Code::Internal,
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            404 => Code::Unimplemented,
            429 | 502 | 503 | 504 => Code::Unavailable,
            _ => Code::Unknown,
        };
        let mut message = format!("upstream {} answered HTTP {http_status}, not gRPC", self.upstream_name);
        if let Some(title) = title {
            message.push_str(": ");
            message.push_str(&title);
        }
        Status::new(code, message)
    }

    fn too_large(&self, direction: Direction) -> Status {
        let which = match direction {
            Direction::Request => "request",
            Direction::Response => "response",
        };
        Status::resource_exhausted(format!(
            "{which} message is larger than the proxy's limit of {} bytes (--max-message-bytes)",
            self.max_message_bytes
        ))
    }

    fn frame_error(&self, direction: Direction, error: FrameError) -> Status {
        match (error, direction) {
            (FrameError::TooLarge { .. }, _) => self.too_large(direction),
            (FrameError::Malformed(reason), Direction::Request) => {
                Status::invalid_argument(format!("malformed gRPC request body: {reason}"))
            }
            (FrameError::Malformed(reason), Direction::Response) => {
                Status::internal(format!("malformed gRPC response body from upstream: {reason}"))
            }
        }
    }
}

fn budget_status(direction: Direction, error: BudgetExhausted) -> Status {
    match direction {
        Direction::Request => Status::resource_exhausted(format!("{error}; nothing was sent upstream")),
        Direction::Response => Status::resource_exhausted(format!("{error}; the server's answer was dropped")),
    }
}

fn codec_status(schema: &Schema, direction: Direction, message_type: MessageIndex, error: WalkError) -> Status {
    let type_name = &schema.message(message_type).name;
    match (error, direction) {
        (error @ WalkError::UnknownPayloadField { .. }, Direction::Request) => Status::failed_precondition(format!(
            "{error}; nothing was sent upstream. This proxy knows the Temporal API of {}: use a release built \
             on a newer one, or give it the newer API's descriptors with --descriptors",
            schema.source()
        )),
        (WalkError::TooLarge { limit }, Direction::Request) => Status::resource_exhausted(format!(
            "the request would be larger than the proxy's limit of {limit} bytes once its payloads \
             are encrypted (--max-message-bytes); nothing was sent upstream"
        )),
        (WalkError::TooLarge { limit }, Direction::Response) => Status::resource_exhausted(format!(
            "the response would be larger than the proxy's limit of {limit} bytes once its payloads \
             are decrypted (--max-message-bytes)"
        )),
        (error @ WalkError::Authentication { .. }, _) => Status::new(Code::DataLoss, error.to_string()),
        (error @ WalkError::Opaque(_), Direction::Request) => Status::failed_precondition(format!(
            "{error}; nothing was sent upstream (a proxy release built on a newer Temporal API may know it)"
        )),
        (WalkError::Encryption, _) => {
            Status::internal("payload encryption failed; the call was not forwarded".to_owned())
        }
        (error, Direction::Request) => Status::invalid_argument(format!("request is not a valid {type_name}: {error}")),
        (error, Direction::Response) => {
            Status::internal(format!("upstream response is not a valid {type_name}: {error}"))
        }
    }
}

/// A key failure fails the call; while encrypting, before anything goes upstream.
fn key_status(schema: &Schema, direction: Direction, message_type: MessageIndex, error: KeyError) -> Status {
    match key_failure(error) {
        Ok(answer) => Status::new(answer.grpc, answer.message),
        Err(error) => codec_status(schema, direction, message_type, error),
    }
}

/// The call's namespace: the `temporal-namespace` header current SDKs send, else the
/// request's own `namespace` field. When both name one they must agree: the server acts on
/// the field while keys and credentials may follow the header, so a call naming two
/// namespaces is refused before anything is sent.
fn request_namespace(headers: &HeaderMap, method: Option<&MethodSchema>, message: &[u8]) -> Result<String, Status> {
    let from_field = method.and_then(|m| m.namespace_field).map(|field| {
        let mut reader = FieldReader::new(message);
        let mut namespace = String::new();
        while let Ok(Some(found)) = reader.next_field() {
            if found.number == field && found.wire_type == WIRE_LEN {
                namespace = String::from_utf8_lossy(found.content).into_owned();
            }
        }
        namespace
    });
    let Some(header) = headers.get(TEMPORAL_NAMESPACE) else {
        return Ok(from_field.unwrap_or_default());
    };
    let header = header
        .to_str()
        .map_err(|_| Status::invalid_argument("the temporal-namespace header is not text"))?;
    match from_field {
        Some(field) if !field.is_empty() && field != header => Err(Status::invalid_argument(format!(
            "the temporal-namespace header names namespace {header:?} but the request's namespace \
             field names {field:?}; nothing was sent upstream"
        ))),
        _ => Ok(header.to_owned()),
    }
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(http::header::CONTENT_TYPE)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .unwrap_or_default()
}

/// A call whose messages are not protobuf cannot have its payloads found, so it is refused
/// rather than forwarded with them in plaintext.
fn unsupported_content_type(headers: &HeaderMap) -> Status {
    Status::unimplemented(format!(
        "content-type {:?} is not supported for calls that carry payloads: the proxy reads \
         protobuf messages (application/grpc or application/grpc+proto)",
        content_type(headers)
    ))
}

fn is_grpc_response(response: &ProxyResponse) -> bool {
    response.status() == http::StatusCode::OK
        && response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"))
}
