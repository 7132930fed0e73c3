//! Input that used to crash the proxy, slip past it, or poison a workflow: each gets a clear
//! error, nothing goes upstream, and the process stays up.

use std::io::Read as _;
use std::time::Duration;

use bytes::Bytes;
use flate2::Compression;
use flate2::read::GzEncoder;
use prost::Message as _;
use temporal_codec_proxy::codec::{Codec, EncryptionPolicy, Keyring};
use temporal_codec_proxy::payload::schema::Schema;
use temporal_codec_proxy::payload::walker::REQUEST_MAX_DEPTH;
use temporal_codec_proxy::proxy::grpc_frame::encode_frame;
use temporalio_protos::google::rpc::Status as RpcStatus;
use temporalio_protos::temporal::api::common::v1::{Payload, Payloads};
use temporalio_protos::temporal::api::failure::v1::Failure;
use temporalio_protos::temporal::api::history::v1::history_event::Attributes;
use temporalio_protos::temporal::api::taskqueue::v1::TaskQueue;
use temporalio_protos::temporal::api::workflowservice::v1::{GetSystemInfoRequest, PollWorkflowTaskQueueRequest};
use tonic::Code;
use zeroize::Zeroizing;

use crate::echo_upstream::{EchoUpstream, FAIL_HEADER};
use crate::faults::{client, json_payload, start_request};
use crate::forwarding::call_with_body;
use crate::operations::ProxyProcess;
use crate::relay::Relay;
use crate::support::{
    FAULTS_NAMESPACE, TestProxy, dev_server, random_key, reached_the_server, started_input, unique, workflow_started,
};

const START_WORKFLOW: &str = "/temporal.api.workflowservice.v1.WorkflowService/StartWorkflowExecution";
const QUERY_WORKFLOW: &str = "/temporal.api.workflowservice.v1.WorkflowService/QueryWorkflow";
/// A method a newer Temporal API might add, with a request that carries a payload.
const NEW_METHOD: &str = "/temporal.api.workflowservice.v1.WorkflowService/NoSuchMethod";
const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";

/// Both listeners of `proxy` still answer: the process did not die.
async fn still_serving(proxy: &mut ProxyProcess) {
    assert!(proxy.child.try_wait().unwrap().is_none(), "the proxy process exited");
    client(&proxy.grpc)
        .await
        .get_system_info(GetSystemInfoRequest::default())
        .await
        .expect("the gRPC listener still answers");
    let encoded = reqwest::Client::new()
        .post(format!("http://{}/encode", proxy.codec))
        .header("content-type", "application/json")
        .body(r#"{"payloads":[]}"#)
        .send()
        .await
        .expect("the codec server still answers");
    assert_eq!(encoded.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_json_bodies_get_400_and_the_process_stays_up() {
    let mut proxy = ProxyProcess::start(&dev_server().address, &random_key(), &[]);
    for levels in [20_000, 1_000_000] {
        let body = format!(r#"{{"payloads":[{{"metadata":{{}},"data":{}"#, "[".repeat(levels));
        let response = reqwest::Client::new()
            .post(format!("http://{}/decode", proxy.codec))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap_or_else(|error| panic!("{levels} levels: no answer ({error}); did the process die?"));
        assert_eq!(response.status(), 400, "{levels} levels");
        let error: serde_json::Value = response.json().await.unwrap();
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .contains("nested deeper than"),
            "{levels} levels: {error}"
        );
        still_serving(&mut proxy).await;
    }
}

/// A chain of `links` failures, each the cause of the one before, every one with a secret
/// message.
fn failure_chain(links: usize) -> Failure {
    let mut failure = Failure {
        message: "innermost-secret".into(),
        ..Default::default()
    };
    for level in 1..links {
        failure = Failure {
            message: format!("secret-level-{level}"),
            cause: Some(Box::new(failure)),
            ..Default::default()
        };
    }
    failure
}

/// The messages of a failure chain, outermost first.
fn chain_messages(failure: &Failure) -> Vec<String> {
    let mut messages = vec![failure.message.clone()];
    let mut cause = failure.cause.as_deref();
    while let Some(failure) = cause {
        messages.push(failure.message.clone());
        cause = failure.cause.as_deref();
    }
    messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_chain_at_the_request_limit_round_trips_and_one_level_deeper_is_refused() {
    let proxy = TestProxy::start(&dev_server().address, &[("depth-key", random_key())]).await;
    let mut workflows = client(&proxy.address()).await;
    // The request is level 0 and its `continued_failure` level 1, so the innermost of
    // `links` failures is at level `links`, and the payload its texts move into one below.
    let at_limit = REQUEST_MAX_DEPTH as usize - 1;
    let chain = failure_chain(at_limit);

    let workflow_id = unique("deep-failure");
    let task_queue = unique("deep-failure-tq");
    let mut request = start_request(&workflow_id, json_payload("\"deep\""));
    request.task_queue = Some(TaskQueue {
        name: task_queue.clone(),
        ..Default::default()
    });
    request.continued_failure = Some(chain.clone());
    workflows.start_workflow_execution(request).await.unwrap();

    // Stored encrypted: the server sees no failure text.
    let stored = workflow_started(&dev_server().address, FAULTS_NAMESPACE, &workflow_id)
        .await
        .unwrap();
    let stored_messages = chain_messages(stored.continued_failure.as_ref().unwrap());
    assert!(stored_messages.iter().all(|message| message == "Encoded failure"));
    // Read back through the proxy: as a history, and as a workflow task.
    let read = workflow_started(&proxy.address(), FAULTS_NAMESPACE, &workflow_id)
        .await
        .unwrap();
    assert_eq!(
        read.continued_failure.as_ref().map(chain_messages),
        Some(chain_messages(&chain))
    );
    let mut poll = tonic::Request::new(PollWorkflowTaskQueueRequest {
        namespace: FAULTS_NAMESPACE.into(),
        task_queue: Some(TaskQueue {
            name: task_queue,
            ..Default::default()
        }),
        identity: "depth-test".into(),
        ..Default::default()
    });
    poll.set_timeout(Duration::from_secs(20));
    let task = workflows
        .poll_workflow_task_queue(poll)
        .await
        .expect("the workflow task of a deep failure chain is readable through the proxy")
        .into_inner();
    let started = match task
        .history
        .unwrap()
        .events
        .into_iter()
        .next()
        .and_then(|event| event.attributes)
    {
        Some(Attributes::WorkflowExecutionStartedEventAttributes(started)) => started,
        other => panic!("first event is not WorkflowExecutionStarted: {other:?}"),
    };
    assert_eq!(
        started.continued_failure.as_ref().map(chain_messages),
        Some(chain_messages(&chain))
    );

    let too_deep_id = unique("too-deep-failure");
    let mut request = start_request(&too_deep_id, json_payload("\"deeper\""));
    request.continued_failure = Some(failure_chain(at_limit + 1));
    let refused = workflows.start_workflow_execution(request).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("nesting deeper than"), "{refused:?}");
    assert!(
        !reached_the_server(&too_deep_id).await,
        "a too-deep request reached the server"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_would_pass_the_message_limit_once_encrypted_is_refused_before_it_is_sent() {
    let limit = 64 * 1024;
    let mut proxy = ProxyProcess::start(
        &dev_server().address,
        &random_key(),
        &["--max-message-bytes", &limit.to_string()],
    );
    let workflow_id = unique("grows-past-limit");
    let mut request = start_request(&workflow_id, json_payload("1"));
    request.input = Some(Payloads {
        payloads: vec![json_payload("1"); 2000],
    });
    let size = request.encoded_len();
    assert!(size < limit, "the request itself ({size} bytes) must fit the limit");
    let refused = client(&proxy.grpc)
        .await
        .start_workflow_execution(request)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("once its payloads are encrypted")
            && refused.message().contains("--max-message-bytes"),
        "{refused:?}"
    );
    assert!(!reached_the_server(&workflow_id).await);
    still_serving(&mut proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_content_type_other_than_protobuf_is_refused_and_nothing_is_sent() {
    let proxy = TestProxy::start(&dev_server().address, &[("content-type-key", random_key())]).await;
    let workflow_id = unique("json-content-type");
    let body = encode_frame(&start_request(&workflow_id, json_payload("\"secret-json\"")).encode_to_vec());
    let (headers, _) = call_with_body(
        &proxy.address(),
        START_WORKFLOW,
        &[
            ("content-type", "application/grpc+json"),
            ("temporal-namespace", FAULTS_NAMESPACE),
        ],
        body,
    )
    .await;
    let status = tonic::Status::from_header_map(&headers).unwrap();
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    assert!(status.message().contains("application/grpc+json"), "{status:?}");
    assert!(!reached_the_server(&workflow_id).await);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_header_and_body_name_different_namespaces_is_refused_and_nothing_is_sent() {
    let proxy = TestProxy::start(&dev_server().address, &[("namespace-key", random_key())]).await;
    let workflow_id = unique("two-namespaces");
    let body = encode_frame(&start_request(&workflow_id, json_payload("\"secret\"")).encode_to_vec());
    let (headers, _) = call_with_body(
        &proxy.address(),
        START_WORKFLOW,
        &[("temporal-namespace", "default")],
        body.clone(),
    )
    .await;
    let status = tonic::Status::from_header_map(&headers).unwrap();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("\"default\"") && status.message().contains(FAULTS_NAMESPACE),
        "{status:?}"
    );
    assert!(!reached_the_server(&workflow_id).await);
    let (headers, _) = call_with_body(
        &proxy.address(),
        START_WORKFLOW,
        &[("temporal-namespace", FAULTS_NAMESPACE)],
        body,
    )
    .await;
    let status = tonic::Status::from_header_map(&headers);
    assert!(
        status.as_ref().is_none_or(|status| status.code() == Code::Ok),
        "{status:?}"
    );
    assert!(
        reached_the_server(&workflow_id).await,
        "a call whose namespaces agree goes through"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_request_of_several_members_is_read_whole_and_encrypted() {
    let proxy = TestProxy::start(&dev_server().address, &[("gzip-members-key", random_key())]).await;
    let workflow_id = unique("gzip-members");
    let message = start_request(&workflow_id, json_payload("\"secret-in-two-gzip-members\"")).encode_to_vec();
    let (first, second) = message.split_at(message.len() / 2);
    let member = |part: &[u8]| {
        let mut compressed = Vec::new();
        GzEncoder::new(part, Compression::fast())
            .read_to_end(&mut compressed)
            .unwrap();
        compressed
    };
    let compressed = [member(first), member(second)].concat();
    let mut frame = vec![1];
    frame.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
    frame.extend_from_slice(&compressed);
    let (headers, _) = call_with_body(
        &proxy.address(),
        START_WORKFLOW,
        &[("grpc-encoding", "gzip"), ("temporal-namespace", FAULTS_NAMESPACE)],
        Bytes::from(frame),
    )
    .await;
    assert_eq!(headers["grpc-status"], "0", "{headers:?}");
    let stored = started_input(&dev_server().address, FAULTS_NAMESPACE, &workflow_id)
        .await
        .unwrap();
    assert_eq!(stored.metadata["encoding"], b"binary/encrypted");
    let read = started_input(&proxy.address(), FAULTS_NAMESPACE, &workflow_id)
        .await
        .unwrap();
    assert_eq!(read.data, b"\"secret-in-two-gzip-members\"");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_details_that_cannot_be_decoded_fail_the_call_naming_the_servers_status() {
    // Not a google.rpc.Status: field 3 (details) claims more bytes than follow.
    let garbage = Bytes::from_static(&[0x1a, 0x7f, 0x01, 0x02]);
    assert!(RpcStatus::decode(garbage.clone()).is_err());
    let upstream = EchoUpstream::start(Bytes::new(), garbage).await;
    let proxy = TestProxy::start(&upstream.address.to_string(), &[("details-key", random_key())]).await;
    let (headers, _) = tokio::time::timeout(
        Duration::from_secs(10),
        call_with_body(
            &proxy.address(),
            QUERY_WORKFLOW,
            &[(FAIL_HEADER, "1")],
            encode_frame(&[]),
        ),
    )
    .await
    .unwrap();
    let status = tonic::Status::from_header_map(&headers).unwrap();
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert!(
        status.message().contains("FailedPrecondition")
            && status.message().contains("status details could not be decoded"),
        "{status:?}"
    );
    assert!(
        status.details().is_empty(),
        "undecodable details were passed on: {status:?}"
    );
    proxy.stop().await;
}

async fn unknown_method_calls(proxy: &ProxyProcess, action: &str) -> String {
    let metrics = reqwest::get(format!("http://{}/metrics", proxy.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = format!("temporal_codec_proxy_unknown_method_calls_total{{action=\"{action}\"}}");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .map(|value| value.trim().to_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_methods_are_refused_unless_told_to_forward_and_health_checks_pass() {
    let relay = Relay::start(&dev_server().address).await;
    let upstream = relay.address.to_string();
    let marker = b"secret-for-a-newer-api";
    let body = encode_frame(
        &start_request(
            &unique("new-method"),
            json_payload(&format!("\"{}\"", String::from_utf8_lossy(marker))),
        )
        .encode_to_vec(),
    );
    let namespace = [("temporal-namespace", FAULTS_NAMESPACE)];

    let refusing = ProxyProcess::start(&upstream, &random_key(), &[]);
    for _ in 0..3 {
        let (headers, _) = call_with_body(&refusing.grpc, NEW_METHOD, &namespace, body.clone()).await;
        let status = tonic::Status::from_header_map(&headers).unwrap();
        assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
        assert!(status.message().contains("--unknown-methods forward"), "{status:?}");
    }
    assert!(
        !relay.sent_upstream(marker),
        "the payload of a refused call went upstream"
    );
    let (headers, _) = call_with_body(&refusing.grpc, HEALTH_CHECK, &[], encode_frame(&[])).await;
    assert_eq!(headers["grpc-status"], "0", "health checks are forwarded: {headers:?}");
    assert_eq!(unknown_method_calls(&refusing, "refused").await, "3");
    let logged = refusing
        .all_logs()
        .matches("refused calls to a method outside the payload schema")
        .count();
    assert_eq!(logged, 1, "logged once per method, not per call");

    let forwarding = ProxyProcess::start(&upstream, &random_key(), &["--unknown-methods", "forward"]);
    let (headers, _) = call_with_body(&forwarding.grpc, NEW_METHOD, &namespace, body).await;
    let status = tonic::Status::from_header_map(&headers).unwrap();
    // The server's own answer, now that the call reached it.
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    assert!(!status.message().contains("--unknown-methods"), "{status:?}");
    assert!(relay.sent_upstream(marker), "forwarded byte for byte");
    assert_eq!(unknown_method_calls(&forwarding, "forwarded").await, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_is_no_proof_foreign_ciphertext_and_disguised_plaintext_are_encrypted_and_come_back_as_sent() {
    let key = random_key();
    let proxy = TestProxy::start(&dev_server().address, &[("held-key", key)]).await;
    let held = Codec::new(
        Keyring::new([("held-key".to_owned(), Zeroizing::new(key.to_vec()))]).unwrap(),
        EncryptionPolicy::default(),
    );
    let other_team = Codec::new(
        Keyring::new([("other-team".to_owned(), Zeroizing::new(random_key().to_vec()))]).unwrap(),
        EncryptionPolicy::default(),
    );
    let encrypt = |codec: &Codec, text: &str| {
        Payload::decode(
            codec
                .encode(Schema::compiled_in().payload_type, &json_payload(text).encode_to_vec())
                .unwrap()
                .as_slice(),
        )
        .unwrap()
    };
    let labelled = |key_id: Option<&str>, data: &[u8]| {
        let mut metadata: std::collections::HashMap<String, Vec<u8>> =
            [("encoding".to_owned(), b"binary/encrypted".to_vec())].into();
        if let Some(key_id) = key_id {
            metadata.insert("encryption-key-id".to_owned(), key_id.as_bytes().to_vec());
        }
        Payload {
            metadata,
            data: data.to_vec(),
            external_payloads: vec![],
        }
    };
    let cases = [
        (
            "a client's own samples codec under a foreign key",
            encrypt(&other_team, "\"theirs\""),
        ),
        (
            "plaintext labelled as under the held key",
            labelled(Some("held-key"), b"\"secret-disguised\""),
        ),
        (
            "plaintext labelled encrypted under no key",
            labelled(None, b"\"secret-unkeyed\""),
        ),
    ];
    let mut workflows = client(&proxy.address()).await;
    for (what, sent) in cases {
        let workflow_id = unique("labelled");
        workflows
            .start_workflow_execution(start_request(&workflow_id, sent.clone()))
            .await
            .unwrap();
        let stored = started_input(&dev_server().address, FAULTS_NAMESPACE, &workflow_id)
            .await
            .unwrap();
        assert_eq!(stored.metadata["encryption-key-id"], b"held-key", "{what}: {stored:?}");
        assert!(
            !String::from_utf8_lossy(&stored.data).contains("secret"),
            "{what}: stored in plaintext"
        );
        let unwrapped = held
            .decode(Schema::compiled_in().payload_type, &stored.encode_to_vec())
            .unwrap();
        assert_eq!(
            Payload::decode(unwrapped.as_slice()).unwrap(),
            sent,
            "{what}: stored doubly encrypted"
        );
        let read = started_input(&proxy.address(), FAULTS_NAMESPACE, &workflow_id)
            .await
            .unwrap();
        assert_eq!(read, sent, "{what}: returned exactly as sent");
    }

    // Ciphertext that a held key authenticates is stored as it is, once.
    let genuine = encrypt(&held, "\"ours\"");
    let workflow_id = unique("labelled-genuine");
    workflows
        .start_workflow_execution(start_request(&workflow_id, genuine.clone()))
        .await
        .unwrap();
    let stored = started_input(&dev_server().address, FAULTS_NAMESPACE, &workflow_id)
        .await
        .unwrap();
    assert_eq!(stored, genuine);
    assert!(
        proxy
            .codec
            .stats()
            .payloads_encrypted_again
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 3
    );
    proxy.stop().await;
}

const SECRET_NOTE_FIELD: u32 = 1000;
const NEWER_METHOD: &str = "/temporal.api.workflowservice.v1.WorkflowService/StartWorkflowExecutionAgain";

/// The compiled-in API with a payload field (`secret_note`, 1000) added to
/// `StartWorkflowExecutionRequest` and an RPC added to `WorkflowService`, as a newer Temporal
/// API might have them, written where `--descriptors` can read it.
fn newer_api_descriptors() -> std::path::PathBuf {
    use prost_types::field_descriptor_proto::{Label, Type};
    use prost_types::{FieldDescriptorProto, FileDescriptorSet, MethodDescriptorProto};
    let mut set = FileDescriptorSet::decode(temporal_codec_proxy::payload::schema::COMPILED_IN_DESCRIPTORS).unwrap();
    let file = set
        .file
        .iter_mut()
        .find(|file| file.package() == "temporal.api.workflowservice.v1" && !file.service.is_empty())
        .unwrap();
    file.service[0].method.push(MethodDescriptorProto {
        name: Some("StartWorkflowExecutionAgain".into()),
        input_type: Some(".temporal.api.workflowservice.v1.StartWorkflowExecutionRequest".into()),
        output_type: Some(".temporal.api.workflowservice.v1.StartWorkflowExecutionResponse".into()),
        ..Default::default()
    });
    let requests = set
        .file
        .iter_mut()
        .flat_map(|file| file.message_type.iter_mut())
        .find(|message| message.name() == "StartWorkflowExecutionRequest")
        .unwrap();
    requests.field.push(FieldDescriptorProto {
        name: Some("secret_note".into()),
        number: Some(SECRET_NOTE_FIELD as i32),
        label: Some(Label::Optional as i32),
        r#type: Some(Type::Message as i32),
        type_name: Some(".temporal.api.common.v1.Payload".into()),
        ..Default::default()
    });
    let path = std::env::temp_dir().join(format!("{}.binpb", unique("newer-api")));
    std::fs::write(&path, set.encode_to_vec()).unwrap();
    path
}

/// A start request with a `secret_note` payload in the newer API's field.
fn start_with_secret_note(workflow_id: &str, note: &str) -> Bytes {
    let mut message = start_request(workflow_id, json_payload("\"newer-api-input\"")).encode_to_vec();
    temporal_codec_proxy::payload::wire::write_len_field(
        &mut message,
        SECRET_NOTE_FIELD,
        &json_payload(&format!("\"{note}\"")).encode_to_vec(),
    );
    encode_frame(&message)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_api_fails_closed_without_its_descriptors_and_is_encrypted_with_them() {
    let relay = Relay::start(&dev_server().address).await;
    let upstream = relay.address.to_string();
    let descriptors = newer_api_descriptors();
    let namespace = [("temporal-namespace", FAULTS_NAMESPACE)];

    let older = ProxyProcess::start(&upstream, &random_key(), &[]);
    let (headers, _) = call_with_body(
        &older.grpc,
        NEWER_METHOD,
        &namespace,
        start_with_secret_note(&unique("newer"), "secret-newer-method"),
    )
    .await;
    let status = tonic::Status::from_header_map(&headers).unwrap();
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    assert!(status.message().contains("--descriptors"), "{status:?}");
    let refused_id = unique("newer-field");
    let (headers, _) = call_with_body(
        &older.grpc,
        START_WORKFLOW,
        &namespace,
        start_with_secret_note(&refused_id, "secret-newer-field"),
    )
    .await;
    let status = tonic::Status::from_header_map(&headers).unwrap();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status
            .message()
            .contains("field 1000 of temporal.api.workflowservice.v1.StartWorkflowExecutionRequest")
            && status.message().contains("--descriptors"),
        "{status:?}"
    );
    assert!(!reached_the_server(&refused_id).await);

    let check = std::process::Command::new(env!("CARGO_BIN_EXE_temporal-codec-proxy"))
        .args([
            "check-config",
            "--upstream",
            &upstream,
            "--key",
            "k=base64:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "--descriptors",
        ])
        .arg(&descriptors)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        report.contains(&format!(
            "# payload schema: descriptors from {}: 220 methods",
            descriptors.display()
        )),
        "{report}"
    );

    let newer = ProxyProcess::start(
        &upstream,
        &random_key(),
        &["--descriptors", descriptors.to_str().unwrap()],
    );
    let accepted_id = unique("newer-field");
    let (headers, _) = call_with_body(
        &newer.grpc,
        START_WORKFLOW,
        &namespace,
        start_with_secret_note(&accepted_id, "secret-newer-field"),
    )
    .await;
    assert_eq!(headers["grpc-status"], "0", "{headers:?}");
    let stored = started_input(&dev_server().address, FAULTS_NAMESPACE, &accepted_id)
        .await
        .unwrap();
    assert_eq!(stored.metadata["encoding"], b"binary/encrypted");
    // The server drops a field it does not know; the bytes the proxy sent show it encrypted.
    let method_id = unique("newer-method");
    let (headers, _) = call_with_body(
        &newer.grpc,
        NEWER_METHOD,
        &namespace,
        start_with_secret_note(&method_id, "secret-newer-method"),
    )
    .await;
    let status = tonic::Status::from_header_map(&headers).unwrap();
    assert_eq!(
        status.code(),
        Code::Unimplemented,
        "the server's own answer: {status:?}"
    );
    assert!(!status.message().contains("--descriptors"), "{status:?}");
    assert!(relay.sent_upstream(accepted_id.as_bytes()) && relay.sent_upstream(method_id.as_bytes()));
    for secret in [&b"secret-newer-field"[..], b"secret-newer-method", b"newer-api-input"] {
        assert!(
            !relay.sent_upstream(secret),
            "{} went upstream in plaintext",
            String::from_utf8_lossy(secret)
        );
    }
    let _ = std::fs::remove_file(&descriptors);
}
