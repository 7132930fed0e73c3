//! Namespaces kept apart: each namespace's payloads are encrypted under its own keys and
//! decrypted only with them, through the gRPC listener and the codec server alike.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::StatusCode;
use serde_json::{Value, json};
use temporalio_protos::temporal::api::common::v1::{Payload, Payloads, WorkflowType};
use temporalio_protos::temporal::api::taskqueue::v1::TaskQueue;
use temporalio_protos::temporal::api::workflowservice::v1::StartWorkflowExecutionRequest;
use temporalio_protos::temporal::api::workflowservice::v1::workflow_service_client::WorkflowServiceClient;
use tonic::Code;

use crate::identity::{AUDIENCE, ISSUER, IdentityProvider};
use crate::operations::ProxyProcess;
use crate::support::{FAULTS_NAMESPACE, dev_server, random_key, started_input, unique};

/// Namespace A and namespace B of the dev server.
const TENANT_A: &str = "default";
const TENANT_B: &str = FAULTS_NAMESPACE;

pub fn json_payload(text: &str) -> Payload {
    Payload {
        metadata: [("encoding".to_owned(), b"json/plain".to_vec())].into(),
        data: format!("\"{text}\"").into_bytes(),
        external_payloads: vec![],
    }
}

pub fn start_request(namespace: &str, workflow_id: &str, input: Payload) -> StartWorkflowExecutionRequest {
    StartWorkflowExecutionRequest {
        namespace: namespace.into(),
        workflow_id: workflow_id.into(),
        workflow_type: Some(WorkflowType {
            name: "NeverRuns".into(),
        }),
        task_queue: Some(TaskQueue {
            name: unique("tenancy-tq"),
            ..Default::default()
        }),
        input: Some(Payloads { payloads: vec![input] }),
        request_id: unique("request"),
        ..Default::default()
    }
}

async fn client(address: &str) -> WorkflowServiceClient<tonic::transport::Channel> {
    WorkflowServiceClient::connect(format!("http://{address}"))
        .await
        .unwrap()
}

/// A configuration file, removed when the test ends.
pub struct TempConfig {
    path: std::path::PathBuf,
}

impl TempConfig {
    pub fn write(text: &str) -> Self {
        let path = std::env::temp_dir().join(format!("{}.toml", unique("tenancy-config")));
        std::fs::write(&path, text).unwrap();
        Self { path }
    }

    pub fn arg(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A configuration file giving A and B a static key each, and nothing to anyone else.
fn two_tenant_config() -> TempConfig {
    TempConfig::write(&format!(
        "[namespaces.{TENANT_A}]\nkey = [\"tenant-a=base64:{}\"]\n\n[namespaces.{TENANT_B}]\nkey = [\"tenant-b=base64:{}\"]\n",
        STANDARD.encode(random_key()),
        STANDARD.encode(random_key()),
    ))
}

/// A payload in the codec server's JSON form, as a one-payload `Payloads` body.
pub fn payload_json(payload: &Payload) -> Value {
    let metadata: serde_json::Map<String, Value> = payload
        .metadata
        .iter()
        .map(|(key, value)| (key.clone(), json!(STANDARD.encode(value))))
        .collect();
    json!({"payloads": [{"metadata": metadata, "data": STANDARD.encode(&payload.data)}]})
}

async fn decode(codec: &str, token: &str, namespace: &str, body: &Value) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(format!("http://{codec}/decode"))
        .header("content-type", "application/json")
        .header("x-namespace", namespace)
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_namespaces_ciphertext_stays_encrypted_on_both_listeners_whatever_the_caller_claims() {
    let server = dev_server();
    let idp = IdentityProvider::start().await;
    let config = two_tenant_config();
    let proxy = ProxyProcess::start_keyed_by(
        &server.address,
        &[
            "--config",
            config.arg(),
            "--codec-auth",
            "jwt",
            "--codec-roles-from",
            "claims",
            "--codec-jwks-url",
            &idp.jwks_url,
            "--codec-jwt-audience",
            AUDIENCE,
            "--codec-jwt-issuer",
            ISSUER,
        ],
    );
    let mut through_proxy = client(&proxy.grpc).await;

    // B's own workflow: stored under B's key, plaintext for B through the proxy.
    let b_workflow = unique("tenant-b");
    through_proxy
        .start_workflow_execution(start_request(TENANT_B, &b_workflow, json_payload("secret-of-b")))
        .await
        .unwrap();
    let b_ciphertext = started_input(&server.address, TENANT_B, &b_workflow).await.unwrap();
    assert_eq!(b_ciphertext.metadata["encryption-key-id"], b"tenant-b");
    assert_eq!(
        started_input(&proxy.grpc, TENANT_B, &b_workflow).await.unwrap(),
        json_payload("secret-of-b")
    );

    // A's own workflow decrypts for A.
    let a_workflow = unique("tenant-a");
    through_proxy
        .start_workflow_execution(start_request(TENANT_A, &a_workflow, json_payload("secret-of-a")))
        .await
        .unwrap();
    let a_stored = started_input(&server.address, TENANT_A, &a_workflow).await.unwrap();
    assert_eq!(a_stored.metadata["encryption-key-id"], b"tenant-a");
    assert_eq!(
        started_input(&proxy.grpc, TENANT_A, &a_workflow).await.unwrap(),
        json_payload("secret-of-a")
    );

    // B's ciphertext planted into A's workflow by a client talking to the server directly
    // reaches A's workers still encrypted, byte for byte.
    let planted = unique("planted");
    client(&server.address)
        .await
        .start_workflow_execution(start_request(TENANT_A, &planted, b_ciphertext.clone()))
        .await
        .unwrap();
    let seen_by_a = started_input(&proxy.grpc, TENANT_A, &planted).await.unwrap();
    assert_eq!(seen_by_a, b_ciphertext, "B's payload was decrypted for A");
    let (_, metrics) = proxy.get("/metrics").await;
    let counted = metrics
        .lines()
        .find_map(|line| line.strip_prefix("temporal_codec_proxy_payloads_other_namespace_key_total "))
        .and_then(|value| value.trim().parse::<u64>().ok());
    assert!(counted.is_some_and(|count| count >= 1), "{metrics}");

    // A namespace without keys is refused before anything is sent.
    let refused = through_proxy
        .start_workflow_execution(start_request("payments", &unique("keyless"), json_payload("secret")))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("\"payments\""), "{refused:?}");

    // The codec server: a reader of A gets B's payload back encrypted, whichever
    // namespace the request claims; a reader of B gets the plaintext.
    let token_for = |permissions: Value| {
        let mut claims = idp.claims("reader@example.com");
        claims["permissions"] = permissions;
        idp.sign(&claims)
    };
    let a_reader = token_for(json!([format!("{TENANT_A}:read")]));
    let body = payload_json(&b_ciphertext);
    for claimed in [TENANT_A, TENANT_B, ""] {
        let (status, answer) = decode(&proxy.codec, &a_reader, claimed, &body).await;
        assert_eq!(status, StatusCode::OK, "X-Namespace {claimed:?}: {answer}");
        assert_eq!(
            answer, body,
            "X-Namespace {claimed:?}: B's payload was decrypted for A's reader"
        );
    }
    let b_reader = token_for(json!([format!("{TENANT_B}:read")]));
    let (status, answer) = decode(&proxy.codec, &b_reader, TENANT_B, &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer, payload_json(&json_payload("secret-of-b")));
}
