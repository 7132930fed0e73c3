//! Bad input and failures: each answered with a clear status and no plaintext upstream.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use prost::Message as _;
use temporal_codec_proxy::codec::{Codec, EncryptionPolicy, Keyring};
use temporal_codec_proxy::payload::schema::Schema;
use temporal_codec_proxy::proxy::grpc_frame::{encode_frame, encode_frame_gzip};
use temporalio_protos::temporal::api::common::v1::{Payload, Payloads, WorkflowExecution, WorkflowType};
use temporalio_protos::temporal::api::taskqueue::v1::TaskQueue;
use temporalio_protos::temporal::api::workflowservice::v1::workflow_service_client::WorkflowServiceClient;
use temporalio_protos::temporal::api::workflowservice::v1::{
    DescribeWorkflowExecutionRequest, GetSystemInfoRequest, GetWorkflowExecutionHistoryRequest,
    PollActivityTaskQueueRequest, StartWorkflowExecutionRequest, StartWorkflowExecutionResponse,
};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tower::ServiceExt as _;
use zeroize::Zeroizing;

use crate::relay::Relay;
use crate::support::{
    FAULTS_NAMESPACE, TestProxy, dev_server, random_key, raw_h2_call, raw_history_dev_server, started_input, unique,
};

const START_WORKFLOW: &str = "/temporal.api.workflowservice.v1.WorkflowService/StartWorkflowExecution";

async fn channel(address: &str) -> Channel {
    Endpoint::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

pub async fn client(address: &str) -> WorkflowServiceClient<Channel> {
    WorkflowServiceClient::new(channel(address).await).max_decoding_message_size(64 << 20)
}

pub fn json_payload(text: &str) -> Payload {
    Payload {
        metadata: [("encoding".to_owned(), b"json/plain".to_vec())].into(),
        data: text.as_bytes().to_vec(),
        external_payloads: vec![],
    }
}

pub fn start_request(workflow_id: &str, input: Payload) -> StartWorkflowExecutionRequest {
    StartWorkflowExecutionRequest {
        namespace: FAULTS_NAMESPACE.into(),
        workflow_id: workflow_id.into(),
        workflow_type: Some(WorkflowType {
            name: "NeverRuns".into(),
        }),
        task_queue: Some(TaskQueue {
            name: unique("faults-tq"),
            ..Default::default()
        }),
        input: Some(Payloads { payloads: vec![input] }),
        request_id: unique("request"),
        ..Default::default()
    }
}

/// Sends one raw gRPC request body and returns the status and the response body.
async fn raw_call(address: &str, path: &str, extra_headers: &[(&str, &str)], body: Bytes) -> (Status, Bytes) {
    let mut request = http::Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("temporal-namespace", FAULTS_NAMESPACE);
    for (name, value) in extra_headers {
        request = request.header(*name, *value);
    }
    let request = request.body(tonic::body::Body::new(Full::new(body))).unwrap();
    let response = channel(address).await.oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.unwrap();
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let status = Status::from_header_map(&parts.headers)
        .or_else(|| Status::from_header_map(&trailers))
        .expect("a grpc-status in headers or trailers");
    (status, collected.to_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_request_is_invalid_argument_and_nothing_goes_upstream() {
    let relay = Relay::start(&dev_server().address).await;
    let proxy = TestProxy::start(&relay.address.to_string(), &[("k", random_key())]).await;
    let mut message = start_request(&unique("malformed"), json_payload("\"secret-malformed\"")).encode_to_vec();
    // A length prefix that runs past the end of the message.
    message.extend_from_slice(&[0x2a, 0x7f, 0x0a]);
    let (status, _) = raw_call(&proxy.address(), START_WORKFLOW, &[], encode_frame(&message)).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("StartWorkflowExecutionRequest"), "{status:?}");
    let (status, _) = raw_call(
        &proxy.address(),
        START_WORKFLOW,
        &[],
        Bytes::from_static(&[0, 0, 0, 0, 9, 1]),
    )
    .await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(!relay.sent_upstream(b"secret-malformed"));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_is_resource_exhausted_and_nothing_goes_upstream() {
    let relay = Relay::start(&dev_server().address).await;
    let proxy = TestProxy::start_with_limit(&relay.address.to_string(), &[("k", random_key())], 64 * 1024).await;
    let big = format!("\"secret-oversized-{}\"", "x".repeat(100 * 1024));
    let message = start_request(&unique("oversized"), json_payload(&big)).encode_to_vec();
    let (status, _) = raw_call(&proxy.address(), START_WORKFLOW, &[], encode_frame(&message)).await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("65536"), "{status:?}");
    let (status, _) = raw_call(
        &proxy.address(),
        START_WORKFLOW,
        &[("grpc-encoding", "gzip")],
        encode_frame_gzip(&message),
    )
    .await;
    assert_eq!(status.code(), Code::ResourceExhausted, "compressed: {status:?}");
    assert!(!relay.sent_upstream(b"secret-oversized"));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_requests_are_accepted_and_encrypted() {
    let server = dev_server();
    let relay = Relay::start(&server.address).await;
    let proxy = TestProxy::start(&relay.address.to_string(), &[("gzip-key", random_key())]).await;
    let workflow_id = unique("gzip");
    let message = start_request(&workflow_id, json_payload("\"secret-gzip\"")).encode_to_vec();
    let (status, body) = raw_call(
        &proxy.address(),
        START_WORKFLOW,
        &[("grpc-encoding", "gzip"), ("grpc-accept-encoding", "gzip")],
        encode_frame_gzip(&message),
    )
    .await;
    assert_eq!(status.code(), Code::Ok, "{status:?}");
    let response = StartWorkflowExecutionResponse::decode(&body[5..]).unwrap();
    assert!(!response.run_id.is_empty());
    assert!(!relay.sent_upstream(b"secret-gzip"));
    let stored = started_input(&server.address, FAULTS_NAMESPACE, &workflow_id)
        .await
        .unwrap();
    assert_eq!(stored.metadata["encoding"], b"binary/encrypted");
    assert_eq!(stored.metadata["encryption-key-id"], b"gzip-key");
    let seen = started_input(&proxy.address(), FAULTS_NAMESPACE, &workflow_id)
        .await
        .unwrap();
    assert_eq!(seen, json_payload("\"secret-gzip\""));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_ciphertext_fails_naming_the_key_and_foreign_keys_pass_through() {
    let server = dev_server();
    let key = random_key();
    let proxy = TestProxy::start(&server.address, &[("held-key", key)]).await;
    let writer = Codec::new(
        Keyring::new([("held-key".to_owned(), Zeroizing::new(key.to_vec()))]).unwrap(),
        EncryptionPolicy::default(),
    );
    let mut tampered = Payload::decode(
        writer
            .encode(
                Schema::compiled_in().payload_type,
                &json_payload("\"secret-tampered\"").encode_to_vec(),
            )
            .unwrap()
            .as_slice(),
    )
    .unwrap();
    let last = tampered.data.len() - 1;
    tampered.data[last] ^= 0x55;
    let tampered_id = unique("tampered");
    client(&server.address)
        .await
        .start_workflow_execution(start_request(&tampered_id, tampered))
        .await
        .unwrap();
    let status = started_input(&proxy.address(), FAULTS_NAMESPACE, &tampered_id)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DataLoss, "{status:?}");
    assert!(status.message().contains("held-key"), "{status:?}");

    let other_team = Codec::new(
        Keyring::new([("other-team".to_owned(), Zeroizing::new(random_key().to_vec()))]).unwrap(),
        EncryptionPolicy::default(),
    );
    let foreign = Payload::decode(
        other_team
            .encode(
                Schema::compiled_in().payload_type,
                &json_payload("\"theirs\"").encode_to_vec(),
            )
            .unwrap()
            .as_slice(),
    )
    .unwrap();
    let foreign_id = unique("foreign");
    client(&server.address)
        .await
        .start_workflow_execution(start_request(&foreign_id, foreign.clone()))
        .await
        .unwrap();
    let seen = started_input(&proxy.address(), FAULTS_NAMESPACE, &foreign_id)
        .await
        .unwrap();
    assert_eq!(seen, foreign);
    assert!(
        proxy
            .codec
            .stats()
            .payloads_unknown_key
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_is_unavailable_and_calls_recover_without_a_restart() {
    let mut relay = Relay::start(&dev_server().address).await;
    let proxy = TestProxy::start(&relay.address.to_string(), &[("k", random_key())]).await;
    let mut client = client(&proxy.address()).await;
    client.get_system_info(GetSystemInfoRequest {}).await.unwrap();
    relay.stop().await;
    let status = client.get_system_info(GetSystemInfoRequest {}).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let message = start_request(&unique("down"), json_payload("\"secret-down\"")).encode_to_vec();
    let (status, _) = raw_call(&proxy.address(), START_WORKFLOW, &[], encode_frame(&message)).await;
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    relay.restart().await;
    let started = Instant::now();
    loop {
        match client.get_system_info(GetSystemInfoRequest {}).await {
            Ok(_) => break,
            Err(status) if started.elapsed() < Duration::from_secs(30) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(status) => panic!("upstream did not come back: {status:?}"),
        }
    }
    assert!(!relay.sent_upstream(b"secret-down"));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_come_back_with_status_message_and_details_unchanged() {
    let server = dev_server();
    let proxy = TestProxy::start(&server.address, &[("k", random_key())]).await;
    let request = DescribeWorkflowExecutionRequest {
        namespace: FAULTS_NAMESPACE.into(),
        execution: Some(WorkflowExecution {
            workflow_id: unique("missing"),
            run_id: String::new(),
        }),
    };
    let direct = client(&server.address)
        .await
        .describe_workflow_execution(request.clone())
        .await
        .unwrap_err();
    let proxied = client(&proxy.address())
        .await
        .describe_workflow_execution(request.clone())
        .await
        .unwrap_err();
    assert_eq!(direct.code(), Code::NotFound);
    assert_eq!(proxied.code(), direct.code());
    assert_eq!(proxied.message(), direct.message());
    assert!(!direct.details().is_empty());
    assert_eq!(proxied.details(), direct.details());
    let path = "/temporal.api.workflowservice.v1.WorkflowService/DescribeWorkflowExecution";
    assert!(answer_is_trailers_only(&server.address, path, &request.encode_to_vec()).await);
    assert!(
        answer_is_trailers_only(&proxy.address(), path, &request.encode_to_vec()).await,
        "the server's trailers-only answer came through the proxy as headers, then trailers"
    );
    proxy.stop().await;
}

/// Whether the failed call's answer is trailers-only: one header block that ends the
/// stream, the only place some clients (grpc-go among them) read such a call's status.
async fn answer_is_trailers_only(address: &str, path: &str, message: &[u8]) -> bool {
    let (response, mut request_body) = raw_h2_call(address, path).await;
    request_body.send_data(encode_frame(message), true).unwrap();
    let response = response.await.unwrap();
    assert!(response.headers().contains_key("grpc-status"), "{response:?}");
    response.body().is_end_stream()
}

fn long_poll(seconds: u64) -> tonic::Request<PollActivityTaskQueueRequest> {
    let mut request = tonic::Request::new(PollActivityTaskQueueRequest {
        namespace: FAULTS_NAMESPACE.into(),
        task_queue: Some(TaskQueue {
            name: unique("empty-queue"),
            ..Default::default()
        }),
        identity: "e2e-long-poll".into(),
        ..Default::default()
    });
    request.set_timeout(Duration::from_secs(seconds));
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polls_run_their_full_length_through_the_proxy() {
    let proxy = TestProxy::start(&dev_server().address, &[("k", random_key())]).await;
    let mut client = client(&proxy.address()).await;
    let started = Instant::now();
    let response = client.poll_activity_task_queue(long_poll(90)).await;
    let elapsed = started.elapsed();
    // The server answers an empty poll after its own long-poll interval (about a minute);
    // the proxy must neither cut it short nor turn it into an error.
    let response = response.unwrap_or_else(|status| panic!("after {elapsed:?}: {status:?}"));
    assert!(response.into_inner().task_token.is_empty());
    assert!(elapsed >= Duration::from_secs(50), "poll ended after {elapsed:?}");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_are_honoured_and_cancellation_reaches_the_upstream() {
    let relay = Relay::start(&dev_server().address).await;
    let proxy = TestProxy::start(&relay.address.to_string(), &[("k", random_key())]).await;
    let mut client = client(&proxy.address()).await;
    let started = Instant::now();
    let result = client.poll_activity_task_queue(long_poll(3)).await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(10), "3 s deadline took {elapsed:?}");
    if let Err(status) = result {
        assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    }

    let resets_before = relay.upstream_resets();
    let poll = tokio::spawn(async move { client.poll_activity_task_queue(long_poll(60)).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    poll.abort();
    let started = Instant::now();
    while relay.upstream_resets() == resets_before {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "cancelling the call did not reset the upstream stream"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_history_blobs_are_decrypted() {
    let server = raw_history_dev_server();
    let proxy = TestProxy::start(&server.address, &[("raw-key", random_key())]).await;
    let workflow_id = unique("raw-history");
    client(&proxy.address())
        .await
        .start_workflow_execution(start_request(&workflow_id, json_payload("\"secret-raw\"")))
        .await
        .unwrap();
    let raw = client(&server.address)
        .await
        .get_workflow_execution_history(GetWorkflowExecutionHistoryRequest {
            namespace: FAULTS_NAMESPACE.into(),
            execution: Some(WorkflowExecution {
                workflow_id: workflow_id.clone(),
                run_id: String::new(),
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!raw.raw_history.is_empty(), "the server did not send raw history");
    let stored = started_input(&server.address, FAULTS_NAMESPACE, &workflow_id)
        .await
        .unwrap();
    assert_eq!(stored.metadata["encoding"], b"binary/encrypted");
    let seen = started_input(&proxy.address(), FAULTS_NAMESPACE, &workflow_id)
        .await
        .unwrap();
    assert_eq!(seen, json_payload("\"secret-raw\""));
    proxy.stop().await;
}
