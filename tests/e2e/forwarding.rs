//! What crosses the proxy besides payloads: metadata, error details, streams.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt as _, Full};
use hyper::service::service_fn;
use prost::Message as _;
use temporal_codec_proxy::codec::{Codec, EncryptionPolicy, Keyring};
use temporal_codec_proxy::payload::schema::Schema;
use temporal_codec_proxy::proxy::grpc_frame::encode_frame;
use temporalio_protos::google::rpc::Status as RpcStatus;
use temporalio_protos::grpc::health::v1::HealthCheckRequest;
use temporalio_protos::grpc::health::v1::health_check_response::ServingStatus;
use temporalio_protos::grpc::health::v1::health_client::HealthClient;
use temporalio_protos::temporal::api::common::v1::{Payload, Payloads};
use temporalio_protos::temporal::api::errordetails::v1::QueryFailedFailure;
use temporalio_protos::temporal::api::failure::v1::Failure;
use temporalio_protos::temporal::api::workflowservice::v1::{QueryWorkflowResponse, StartWorkflowExecutionRequest};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tonic::Code;
use tonic::transport::Endpoint;
use tower::ServiceExt as _;
use zeroize::Zeroizing;

use crate::echo_upstream::{ECHO_PREFIX, EchoUpstream, FAIL_HEADER, GZIP_HEADER};
use crate::faults::{client, json_payload, start_request};
use crate::support::{FAULTS_NAMESPACE, TestProxy, dev_server, random_key, raw_h2_call, started_input, unique};

const QUERY_WORKFLOW: &str = "/temporal.api.workflowservice.v1.WorkflowService/QueryWorkflow";
const GET_SYSTEM_INFO: &str = "/temporal.api.workflowservice.v1.WorkflowService/GetSystemInfo";
const START_WORKFLOW: &str = "/temporal.api.workflowservice.v1.WorkflowService/StartWorkflowExecution";

/// Sends one raw call and returns the response headers and trailers together.
async fn call(address: &str, path: &str, headers: &[(&str, &str)], body: Bytes) -> http::HeaderMap {
    call_with_body(address, path, headers, body).await.0
}

/// Sends one raw call and returns the response headers and trailers, and the body; a
/// `content-type` among `headers` replaces the default `application/grpc`.
pub async fn call_with_body(
    address: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> (http::HeaderMap, Bytes) {
    let channel = Endpoint::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut request = http::Request::builder()
        .method("POST")
        .uri(path)
        .header("te", "trailers");
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
    {
        request = request.header("content-type", "application/grpc");
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = channel
        .oneshot(request.body(tonic::body::Body::new(Full::new(body))).unwrap())
        .await
        .unwrap();
    let (mut parts, body) = response.into_parts();
    let collected = body.collect().await.unwrap();
    if let Some(trailers) = collected.trailers() {
        parts.headers.extend(trailers.clone());
    }
    (parts.headers, collected.to_bytes())
}

/// Request bodies above HTTP/2's default stream window of 64 KiB: one small enough for the
/// proxy to hand to HTTP/2 whole, ahead of the window, and one past that limit, which goes
/// out as the window opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_larger_than_the_upstream_window_arrive_whole() {
    let server = dev_server();
    let proxy = TestProxy::start(&server.address, &[("large-key", random_key())]).await;
    let mut workflows = client(&proxy.address()).await;
    for size in [700 << 10, 1536 << 10] {
        let workflow_id = unique("large-request");
        let input = json_payload(&format!("\"secret-large-{}\"", "x".repeat(size)));
        let started = tokio::time::timeout(
            Duration::from_secs(60),
            workflows.start_workflow_execution(start_request(&workflow_id, input.clone())),
        )
        .await
        .unwrap_or_else(|_| panic!("a {size} B request still unanswered after 60 s"));
        assert!(!started.unwrap().into_inner().run_id.is_empty());
        let stored = started_input(&server.address, FAULTS_NAMESPACE, &workflow_id)
            .await
            .unwrap();
        assert_eq!(stored.metadata["encoding"], b"binary/encrypted", "{size} B");
        let seen = started_input(&proxy.address(), FAULTS_NAMESPACE, &workflow_id)
            .await
            .unwrap();
        assert!(seen == input, "a {size} B input came back changed");
    }
    proxy.stop().await;
}

const METADATA: &[(&str, &str)] = &[
    ("temporal-namespace", "orders"),
    ("authorization", "Bearer token-for-the-server"),
    ("client-name", "temporal-python"),
    ("client-version", "1.35.0"),
    ("supported-server-versions", ">=1.0.0 <2.0.0"),
    ("x-request-id", "req-42"),
    ("trace-context-bin", "AAECAwQ"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_request_metadata_reaches_the_upstream() {
    // An empty message is a valid instance of every response type.
    let upstream = EchoUpstream::start(Bytes::new(), Bytes::new()).await;
    let proxy = TestProxy::start(&upstream.address.to_string(), &[("k", random_key())]).await;
    let start = StartWorkflowExecutionRequest {
        input: Some(Payloads {
            payloads: vec![Payload {
                metadata: [("encoding".to_owned(), b"json/plain".to_vec())].into(),
                data: b"1".to_vec(),
                external_payloads: vec![],
            }],
        }),
        ..Default::default()
    }
    .encode_to_vec();
    for (path, body) in [
        (GET_SYSTEM_INFO, encode_frame(&[])),
        (START_WORKFLOW, encode_frame(&start)),
    ] {
        let headers = call(&proxy.address(), path, METADATA, body).await;
        assert_eq!(headers["grpc-status"], "0", "{path}: {headers:?}");
        for (name, value) in METADATA {
            let echoed = headers
                .get(format!("{ECHO_PREFIX}{name}"))
                .unwrap_or_else(|| panic!("{path}: {name} did not reach the upstream: {headers:?}"));
            assert_eq!(echoed, value, "{path}: {name}");
        }
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_in_error_details_are_decrypted_and_the_rest_is_unchanged() {
    let key = random_key();
    let writer = Codec::new(
        Keyring::new([("details-key".to_owned(), Zeroizing::new(key.to_vec()))]).unwrap(),
        EncryptionPolicy::default(),
    );
    let plaintext = Payload {
        metadata: [("encoding".to_owned(), b"json/plain".to_vec())].into(),
        data: br#"{"message":"secret-query-failure"}"#.to_vec(),
        external_payloads: vec![],
    };
    let encrypted = Payload::decode(
        writer
            .encode(Schema::compiled_in().payload_type, &plaintext.encode_to_vec())
            .unwrap()
            .as_slice(),
    )
    .unwrap();
    let failure = |attributes: Payload| QueryFailedFailure {
        failure: Some(Failure {
            message: "Encoded failure".into(),
            encoded_attributes: Some(attributes),
            ..Default::default()
        }),
    };
    let mut status = RpcStatus {
        code: 9,
        message: "query failed".into(),
        details: vec![Default::default()],
    };
    status.details[0].type_url = "type.googleapis.com/temporal.api.errordetails.v1.QueryFailedFailure".into();
    status.details[0].value = failure(encrypted).encode_to_vec();

    let upstream = EchoUpstream::start(Bytes::new(), Bytes::from(status.encode_to_vec())).await;
    let proxy = TestProxy::start(&upstream.address.to_string(), &[("details-key", key)]).await;
    let headers = call(
        &proxy.address(),
        QUERY_WORKFLOW,
        &[(FAIL_HEADER, "1")],
        encode_frame(&[]),
    )
    .await;
    let received = tonic::Status::from_header_map(&headers).unwrap();
    assert_eq!(received.code(), Code::FailedPrecondition);
    assert_eq!(received.message(), "query failed");
    let details = RpcStatus::decode(received.details()).unwrap();
    assert_eq!(details.code, 9);
    assert_eq!(details.details[0].type_url, status.details[0].type_url);
    let seen = QueryFailedFailure::decode(details.details[0].value.as_slice()).unwrap();
    // Decrypted, the encoded attributes go back to being the failure's message.
    let readable = QueryFailedFailure {
        failure: Some(Failure {
            message: "secret-query-failure".into(),
            ..Default::default()
        }),
    };
    assert_eq!(seen, readable);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_streaming_health_watch_passes_through() {
    let proxy = TestProxy::start(&dev_server().address, &[("k", random_key())]).await;
    let channel = Endpoint::from_shared(format!("http://{}", proxy.address()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut stream = HealthClient::new(channel)
        .watch(HealthCheckRequest {
            service: "temporal.api.workflowservice.v1.WorkflowService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().expect("a first health message");
    assert_eq!(first.status(), ServingStatus::Serving);
    drop(stream);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_responses_are_decompressed_and_decrypted() {
    let key = random_key();
    let writer = Codec::new(
        Keyring::new([("gzip-key".to_owned(), Zeroizing::new(key.to_vec()))]).unwrap(),
        EncryptionPolicy::default(),
    );
    let plaintext = QueryWorkflowResponse {
        query_result: Some(Payloads {
            payloads: vec![Payload {
                metadata: [("encoding".to_owned(), b"json/plain".to_vec())].into(),
                data: b"\"secret-gzip-answer\"".to_vec(),
                external_payloads: vec![],
            }],
        }),
        ..Default::default()
    };
    let response_type = Schema::compiled_in().method(QUERY_WORKFLOW).unwrap().response.unwrap();
    let encrypted = writer.encode(response_type, &plaintext.encode_to_vec()).unwrap();
    let upstream = EchoUpstream::start(Bytes::from(encrypted), Bytes::new()).await;
    let proxy = TestProxy::start(&upstream.address.to_string(), &[("gzip-key", key)]).await;
    let (headers, body) = call_with_body(
        &proxy.address(),
        QUERY_WORKFLOW,
        &[(GZIP_HEADER, "1"), ("grpc-accept-encoding", "gzip")],
        encode_frame(&[]),
    )
    .await;
    assert_eq!(headers["grpc-status"], "0", "{headers:?}");
    // The proxy answers identity-encoded, which every client accepts.
    assert!(headers.get("grpc-encoding").is_none(), "{headers:?}");
    assert_eq!(body[0], 0);
    assert_eq!(QueryWorkflowResponse::decode(&body[5..]).unwrap(), plaintext);
    proxy.stop().await;
}

/// Serves one connection of the going-away upstream. On the first connection the first
/// call makes the server send GOAWAY, as a server does when it restarts or ages its
/// connections out, and is answered only once `release` is notified.
async fn serve_going_away(stream: tokio::net::TcpStream, first_connection: bool, events: Arc<GoingAway>) {
    let (go_away, gone_away) = tokio::sync::oneshot::channel::<()>();
    let go_away = std::sync::Mutex::new(Some(go_away));
    let events_for_calls = Arc::clone(&events);
    let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
        let started_go_away = if first_connection {
            go_away.lock().unwrap().take()
        } else {
            None
        };
        let events = Arc::clone(&events_for_calls);
        async move {
            let _ = request.into_body().collect().await;
            if let Some(go_away) = started_go_away {
                go_away.send(()).unwrap();
                events.first_call_arrived.notify_one();
                events.release.notified().await;
            }
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", "0".parse().unwrap());
            let body = Full::new(encode_frame(&[])).with_trailers(async move { Some(Ok(trailers)) });
            Ok::<_, std::convert::Infallible>(
                http::Response::builder()
                    .header("content-type", "application/grpc")
                    .body(body)
                    .unwrap(),
            )
        }
    });
    let connection = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        Ok(()) = gone_away => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

#[derive(Default)]
struct GoingAway {
    connections: AtomicUsize,
    first_call_arrived: Notify,
    release: Notify,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_upstream_goaway_calls_in_flight_finish_and_new_calls_take_a_new_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let events = Arc::new(GoingAway::default());
    tokio::spawn({
        let events = Arc::clone(&events);
        async move {
            while let Ok((stream, _)) = listener.accept().await {
                let first_connection = events.connections.fetch_add(1, Ordering::SeqCst) == 0;
                tokio::spawn(serve_going_away(stream, first_connection, Arc::clone(&events)));
            }
        }
    });
    let proxy = TestProxy::start(&upstream.to_string(), &[("k", random_key())]).await;
    let in_flight = tokio::spawn({
        let address = proxy.address();
        async move { call(&address, GET_SYSTEM_INFO, &[], encode_frame(&[])).await }
    });
    events.first_call_arrived.notified().await;
    // Time for the GOAWAY to reach the proxy before the next call.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let headers = call(&proxy.address(), GET_SYSTEM_INFO, &[], encode_frame(&[])).await;
    assert_eq!(
        headers["grpc-status"], "0",
        "a call after the GOAWAY failed: {headers:?}"
    );
    assert_eq!(
        events.connections.load(Ordering::SeqCst),
        2,
        "the call after the GOAWAY did not go on a new connection"
    );
    events.release.notify_one();
    let headers = in_flight.await.unwrap();
    assert_eq!(
        headers["grpc-status"], "0",
        "the call in flight at the GOAWAY failed: {headers:?}"
    );
    proxy.stop().await;
}

const SERVER_REFLECTION: &str = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads the next gRPC message from `answers`, handing the flow-control window back.
async fn next_message(answers: &mut h2::RecvStream, buffered: &mut BytesMut) -> Bytes {
    loop {
        if buffered.len() >= 5 {
            let length = u32::from_be_bytes(buffered[1..5].try_into().unwrap()) as usize;
            if buffered.len() >= 5 + length {
                let message = buffered.split_to(5 + length);
                return message.freeze().slice(5..);
            }
        }
        let chunk = answers
            .data()
            .await
            .expect("the stream ended before a whole message")
            .unwrap();
        answers.flow_control().release_capacity(chunk.len()).unwrap();
        buffered.extend_from_slice(&chunk);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bidirectional_stream_passes_through_one_message_at_a_time() {
    let proxy = TestProxy::start(&dev_server().address, &[("k", random_key())]).await;
    let (response, mut requests) = raw_h2_call(&proxy.address(), SERVER_REFLECTION).await;
    // ServerReflectionRequest { list_services: "" }: field 7, an empty string.
    let list_services = encode_frame(&[0x3a, 0x00]);
    requests.send_data(list_services.clone(), false).unwrap();
    let response = tokio::time::timeout(ANSWER_TIMEOUT, response)
        .await
        .expect("no response to the first request")
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut answers = response.into_body();
    let mut buffered = BytesMut::new();
    let service = b"temporal.api.workflowservice.v1.WorkflowService";
    let first = tokio::time::timeout(ANSWER_TIMEOUT, next_message(&mut answers, &mut buffered))
        .await
        .expect("no answer to the first request");
    assert!(
        first.windows(service.len()).any(|window| window == service),
        "{first:?}"
    );
    // The request stream is still open: the server answers a second request on it.
    requests.send_data(list_services, true).unwrap();
    let second = tokio::time::timeout(ANSWER_TIMEOUT, next_message(&mut answers, &mut buffered))
        .await
        .expect("no answer to the second request, sent after the first answer");
    assert_eq!(second, first);
    let trailers = answers.trailers().await.unwrap().expect("trailers");
    assert_eq!(trailers["grpc-status"], "0", "{trailers:?}");
    proxy.stop().await;
}
