//! AWS KMS envelope encryption against a real KMS API emulator (moto) on loopback, with a
//! relay in front of it that counts the KMS calls and can cut KMS off.

use std::process::{Child, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use prost::Message as _;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use temporal_codec_proxy::codec::{Codec, EncryptionPolicy, Keyring, ProviderKeys};
use temporal_codec_proxy::keys::KeySelector;
use temporal_codec_proxy::keys::aws_kms::{AwsKms, AwsKmsSettings};
use temporal_codec_proxy::keys::cache::{CacheSettings, CachedKeys, DataKeyLimits};
use temporalio_protos::temporal::api::common::v1::{Payload, Payloads, WorkflowType};
use temporalio_protos::temporal::api::taskqueue::v1::TaskQueue;
use temporalio_protos::temporal::api::workflowservice::v1::StartWorkflowExecutionRequest;
use temporalio_protos::temporal::api::workflowservice::v1::workflow_service_client::WorkflowServiceClient;
use tonic::Code;
use zeroize::Zeroizing;

use crate::relay::Relay;
use crate::support::{
    TestProxy, dev_server, free_port, post_payloads, random_key, repo_root, spawn_for_this_test_run, started_input,
    unique,
};
use crate::tenancy;

const GENERATE_DATA_KEY: &[u8] = b"TrentService.GenerateDataKey";
const DECRYPT: &[u8] = b"TrentService.Decrypt";

/// The emulator shared by this binary's KMS tests.
struct Moto {
    endpoint: String,
    _process: Child,
}

fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| {
        // The AWS SDK's default credential chain reads these; the emulator accepts any.
        // SAFETY: set once, before any KMS client exists, and never changed.
        unsafe {
            std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
            std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
            std::env::set_var("AWS_REGION", "us-east-1");
        }
        let port = free_port();
        let tools = std::env::var_os("TEST_TOOLS_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| repo_root().join(".test-tools"));
        let moto_server = tools.join("venv/bin/moto_server");
        assert!(
            moto_server.exists(),
            "{} is missing: run scripts/install-test-tools.sh",
            moto_server.display()
        );
        let process = spawn_for_this_test_run(
            &format!("{} -H 127.0.0.1 -p {port}", moto_server.display()),
            &format!("moto-{port}"),
        );
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(30), "moto_server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto {
            endpoint: format!("127.0.0.1:{port}"),
            _process: process,
        }
    })
}

async fn admin_client() -> aws_sdk_kms::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(format!("http://{}", moto().endpoint))
        .load()
        .await;
    aws_sdk_kms::Client::new(&config)
}

/// Creates a KMS key with an alias; returns its ARN.
async fn create_key(alias: &str) -> String {
    let client = admin_client().await;
    let key = client.create_key().send().await.unwrap().key_metadata.unwrap();
    client
        .create_alias()
        .alias_name(alias)
        .target_key_id(key.key_id())
        .send()
        .await
        .unwrap();
    key.arn.unwrap()
}

fn limits() -> DataKeyLimits {
    DataKeyLimits {
        max_age: Duration::from_secs(300),
        max_payloads: 1_000_000,
        max_bytes: 64 << 30,
    }
}

async fn kms_codec(kms_endpoint: &str, selector: KeySelector, static_keys: &[(&str, [u8; 32])]) -> Codec {
    let client = AwsKms::new(&AwsKmsSettings {
        endpoint: Some(format!("http://{kms_endpoint}")),
        region: Some("us-east-1".to_owned()),
    })
    .await;
    let cache = CachedKeys::new(
        Arc::new(client),
        CacheSettings {
            limits: limits(),
            decrypt_cache_ttl: Duration::from_secs(3600),
            decrypt_cache_capacity: 10_000,
        },
    );
    let keyring = if static_keys.is_empty() {
        Keyring::empty()
    } else {
        Keyring::new(
            static_keys
                .iter()
                .map(|(id, k)| (id.to_string(), Zeroizing::new(k.to_vec()))),
        )
        .unwrap()
    };
    Codec::with_provider(keyring, ProviderKeys { cache, selector }, EncryptionPolicy::default())
}

/// A codec with a KMS key of its own for `default` and for `faults`, by template, reached
/// through `kms_relay`.
async fn per_namespace_codec(kms_relay: &Relay, prefix: &str) -> Codec {
    let suffix = unique(prefix);
    create_key(&format!("alias/{suffix}-default")).await;
    create_key(&format!("alias/{suffix}-faults")).await;
    kms_codec(
        &kms_relay.address.to_string(),
        KeySelector::Template(format!("alias/{suffix}-{{namespace}}")),
        &[],
    )
    .await
}

fn payloads_json(count: usize, marker: &str) -> Value {
    let data = STANDARD.encode(format!("\"{marker}-{}\"", "x".repeat(1000)));
    let encoding = STANDARD.encode(b"json/plain");
    json!({"payloads": vec![json!({"metadata": {"encoding": encoding}, "data": data}); count]})
}

async fn codec_call(proxy: &TestProxy, operation: &str, namespace: &str, body: &Value) -> (StatusCode, Value) {
    post_payloads(&format!("{}/{operation}", proxy.codec_url()), namespace, body).await
}

fn metadata(payload: &Value, key: &str) -> Option<String> {
    payload["metadata"][key]
        .as_str()
        .map(|v| String::from_utf8(STANDARD.decode(v).unwrap()).unwrap())
}

fn start_request(namespace: &str, workflow_id: &str, marker: &str) -> StartWorkflowExecutionRequest {
    StartWorkflowExecutionRequest {
        namespace: namespace.into(),
        workflow_id: workflow_id.into(),
        workflow_type: Some(WorkflowType {
            name: "NeverRuns".into(),
        }),
        task_queue: Some(TaskQueue {
            name: unique("kms-tq"),
            ..Default::default()
        }),
        input: Some(Payloads {
            payloads: vec![Payload {
                metadata: [("encoding".to_owned(), b"json/plain".to_vec())].into(),
                data: format!("\"{marker}\"").into_bytes(),
                external_payloads: vec![],
            }],
        }),
        request_id: unique("request"),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_namespace_kms_keys_through_the_proxy_and_the_codec_server() {
    let server = dev_server();
    let suffix = unique("ns");
    let default_arn = create_key(&format!("alias/{suffix}-default")).await;
    let faults_arn = create_key(&format!("alias/{suffix}-faults")).await;
    let codec = kms_codec(
        &moto().endpoint,
        KeySelector::Template(format!("alias/{suffix}-{{namespace}}")),
        &[],
    )
    .await;
    let proxy = TestProxy::start_with_codec(&server.address, codec).await;
    for (namespace, arn) in [("default", &default_arn), ("faults", &faults_arn)] {
        let workflow_id = unique("kms-wf");
        let marker = unique("secret-kms");
        WorkflowServiceClient::connect(format!("http://{}", proxy.address()))
            .await
            .unwrap()
            .start_workflow_execution(start_request(namespace, &workflow_id, &marker))
            .await
            .unwrap();
        let stored = started_input(&server.address, namespace, &workflow_id).await.unwrap();
        assert_eq!(stored.metadata["encoding"], b"binary/encrypted", "{namespace}");
        assert_eq!(stored.metadata["encryption-key-id"], arn.as_bytes(), "{namespace}");
        assert!(stored.metadata.contains_key("data_key_encrypted"), "{namespace}");
        assert!(!String::from_utf8_lossy(&stored.encode_to_vec()).contains(&marker));
        let seen = started_input(&proxy.address(), namespace, &workflow_id).await.unwrap();
        assert_eq!(seen.data, format!("\"{marker}\"").into_bytes(), "{namespace}");

        let (status, encoded) = codec_call(&proxy, "encode", namespace, &payloads_json(2, "secret-codec")).await;
        assert_eq!(status, StatusCode::OK, "{encoded}");
        assert_eq!(
            metadata(&encoded["payloads"][0], "encryption-key-id").as_deref(),
            Some(arn.as_str())
        );
        let (status, decoded) = codec_call(&proxy, "decode", namespace, &encoded).await;
        assert_eq!(status, StatusCode::OK, "{decoded}");
        assert_eq!(decoded, payloads_json(2, "secret-codec"));
    }
    let (status, body) = codec_call(&proxy, "encode", "", &payloads_json(1, "x")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "no namespace for the template: {body}");
    proxy.stop().await;

    // One key for every namespace.
    let single_alias = format!("alias/{}", unique("single"));
    let single_arn = create_key(&single_alias).await;
    let proxy = TestProxy::start_with_codec(
        &server.address,
        kms_codec(&moto().endpoint, KeySelector::Fixed(single_alias), &[]).await,
    )
    .await;
    for namespace in ["default", "faults"] {
        let workflow_id = unique("kms-single");
        WorkflowServiceClient::connect(format!("http://{}", proxy.address()))
            .await
            .unwrap()
            .start_workflow_execution(start_request(namespace, &workflow_id, "secret-single"))
            .await
            .unwrap();
        let stored = started_input(&server.address, namespace, &workflow_id).await.unwrap();
        assert_eq!(
            stored.metadata["encryption-key-id"],
            single_arn.as_bytes(),
            "{namespace}"
        );
        let seen = started_input(&proxy.address(), namespace, &workflow_id).await.unwrap();
        assert_eq!(seen.data, b"\"secret-single\"".to_vec(), "{namespace}");
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_keys_are_reused_and_unwrapped_once() {
    let kms_relay = Relay::start(&moto().endpoint).await;
    let alias = format!("alias/{}", unique("counting"));
    create_key(&alias).await;
    let kms_endpoint = kms_relay.address.to_string();
    let writer = TestProxy::start_with_codec(
        "127.0.0.1:1",
        kms_codec(&kms_endpoint, KeySelector::Fixed(alias.clone()), &[]).await,
    )
    .await;
    let mut encoded_batches = Vec::new();
    for _ in 0..20 {
        let (status, encoded) = codec_call(&writer, "encode", "default", &payloads_json(500, "secret-count")).await;
        assert_eq!(status, StatusCode::OK, "{encoded}");
        encoded_batches.push(encoded);
    }
    let generated = kms_relay.count_sent(GENERATE_DATA_KEY);
    assert!(
        (1..=2).contains(&generated),
        "10,000 payloads took {generated} GenerateDataKey calls"
    );
    let stats = writer.codec.provider().unwrap().stats();
    assert_eq!(stats.generate_ok.load(Ordering::Relaxed) as usize, generated);
    assert!(stats.encryption_cache_hits.load(Ordering::Relaxed) >= 18);
    let distinct_keys: std::collections::BTreeSet<String> = encoded_batches
        .iter()
        .flat_map(|batch| batch["payloads"].as_array().unwrap().clone())
        .map(|payload| metadata(&payload, "data_key_encrypted").unwrap())
        .collect();

    let reader = TestProxy::start_with_codec(
        "127.0.0.1:1",
        kms_codec(&kms_endpoint, KeySelector::Fixed(alias.clone()), &[]).await,
    )
    .await;
    for batch in &encoded_batches {
        let (status, decoded) = codec_call(&reader, "decode", "default", batch).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(decoded, payloads_json(500, "secret-count"));
    }
    let decrypts = kms_relay.count_sent(DECRYPT);
    assert!(
        decrypts <= distinct_keys.len(),
        "{decrypts} Decrypt calls for {} data keys",
        distinct_keys.len()
    );

    // A third proxy, with cold caches: 100 concurrent decodes of one new blob, one Decrypt.
    let cold = TestProxy::start_with_codec(
        "127.0.0.1:1",
        kms_codec(&kms_endpoint, KeySelector::Fixed(alias), &[]).await,
    )
    .await;
    let single = json!({"payloads": [encoded_batches[0]["payloads"][0].clone()]});
    let before = kms_relay.count_sent(DECRYPT);
    let calls = (0..100).map(|_| codec_call(&cold, "decode", "default", &single));
    for (status, _) in futures_util::future::join_all(calls).await {
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(
        kms_relay.count_sent(DECRYPT) - before,
        1,
        "100 concurrent decodes of one blob"
    );
    for proxy in [writer, reader, cold] {
        proxy.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_outage_fails_closed_while_cached_keys_keep_working() {
    let server = dev_server();
    let mut kms_relay = Relay::start(&moto().endpoint).await;
    let temporal_relay = Relay::start(&server.address).await;
    let codec = per_namespace_codec(&kms_relay, "outage").await;
    let proxy = TestProxy::start_with_codec(&temporal_relay.address.to_string(), codec).await;
    let mut client = WorkflowServiceClient::connect(format!("http://{}", proxy.address()))
        .await
        .unwrap();
    client
        .start_workflow_execution(start_request("default", &unique("cached"), "secret-before"))
        .await
        .unwrap();

    kms_relay.stop().await;
    // The data key for `default` is cached: encryption goes on without KMS.
    client
        .start_workflow_execution(start_request("default", &unique("cached"), "secret-during-cached"))
        .await
        .unwrap();
    // `faults` needs a new data key: the call fails, and nothing reaches the server.
    let status = client
        .start_workflow_execution(start_request("faults", &unique("outage"), "secret-during-outage"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("aws-kms"), "{status:?}");
    assert!(!temporal_relay.sent_upstream(b"secret-during-outage"));
    let (status, body) = codec_call(&proxy, "encode", "faults", &payloads_json(1, "secret-codec-outage")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");

    kms_relay.restart().await;
    let started = Instant::now();
    loop {
        match client
            .start_workflow_execution(start_request("faults", &unique("after"), "secret-after"))
            .await
        {
            Ok(_) => break,
            Err(status) if started.elapsed() < Duration::from_secs(30) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(status) => panic!("KMS did not come back: {status:?}"),
        }
    }
    assert!(
        !temporal_relay.sent_upstream(b"secret-"),
        "plaintext reached the server"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_from_static_keys_to_kms_and_between_kms_keys() {
    let old_static = random_key();
    let first_alias = format!("alias/{}", unique("first"));
    let second_alias = format!("alias/{}", unique("second"));
    let first_arn = create_key(&first_alias).await;
    let second_arn = create_key(&second_alias).await;
    let static_only = TestProxy::start("127.0.0.1:1", &[("static-2025", old_static)]).await;
    let (_, under_static) = codec_call(&static_only, "encode", "default", &payloads_json(1, "secret-static")).await;

    let on_first = TestProxy::start_with_codec(
        "127.0.0.1:1",
        kms_codec(
            &moto().endpoint,
            KeySelector::Fixed(first_alias),
            &[("static-2025", old_static)],
        )
        .await,
    )
    .await;
    let (_, decoded) = codec_call(&on_first, "decode", "default", &under_static).await;
    assert_eq!(
        decoded,
        payloads_json(1, "secret-static"),
        "static payloads stay readable under KMS"
    );
    let (_, under_first) = codec_call(&on_first, "encode", "default", &payloads_json(1, "secret-first")).await;
    assert_eq!(
        metadata(&under_first["payloads"][0], "encryption-key-id").as_deref(),
        Some(first_arn.as_str())
    );

    let on_second = TestProxy::start_with_codec(
        "127.0.0.1:1",
        kms_codec(
            &moto().endpoint,
            KeySelector::Fixed(second_alias),
            &[("static-2025", old_static)],
        )
        .await,
    )
    .await;
    for (old, expected) in [(&under_static, "secret-static"), (&under_first, "secret-first")] {
        let (status, decoded) = codec_call(&on_second, "decode", "default", old).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(decoded, payloads_json(1, expected));
    }
    let (_, under_second) = codec_call(&on_second, "encode", "default", &payloads_json(1, "secret-second")).await;
    assert_eq!(
        metadata(&under_second["payloads"][0], "encryption-key-id").as_deref(),
        Some(second_arn.as_str())
    );
    for proxy in [static_only, on_first, on_second] {
        proxy.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_kms_format_interoperates_both_ways() {
    let alias = format!("alias/{}", unique("sample"));
    let arn = create_key(&alias).await;
    let proxy = TestProxy::start_with_codec(
        "127.0.0.1:1",
        kms_codec(&moto().endpoint, KeySelector::Fixed(alias), &[]).await,
    )
    .await;
    let helper = |operation: &'static str, body: Value| {
        let endpoint = format!("http://{}", moto().endpoint);
        let arn = arn.clone();
        async move {
            let mut child = tokio::process::Command::new(crate::support::python())
                .args([
                    "kms_sample_codec.py",
                    operation,
                    "--endpoint",
                    &endpoint,
                    "--key-id",
                    &arn,
                ])
                .current_dir(repo_root().join("tests/e2e/python"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            use tokio::io::AsyncWriteExt as _;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(body.to_string().as_bytes()).await.unwrap();
            drop(stdin);
            let output = child.wait_with_output().await.unwrap();
            assert!(output.status.success(), "kms_sample_codec.py {operation} failed");
            serde_json::from_slice::<Value>(&output.stdout).unwrap()
        }
    };
    let by_sample = helper("encode", payloads_json(3, "secret-sample")).await;
    assert!(metadata(&by_sample["payloads"][0], "encryption-key-id").is_none());
    let (status, decoded) = codec_call(&proxy, "decode", "default", &by_sample).await;
    assert_eq!(status, StatusCode::OK, "{decoded}");
    assert_eq!(decoded, payloads_json(3, "secret-sample"));

    let (_, by_proxy) = codec_call(&proxy, "encode", "default", &payloads_json(3, "secret-proxy")).await;
    assert_eq!(helper("decode", by_proxy).await, payloads_json(3, "secret-proxy"));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_namespaces_kms_ciphertext_is_refused_by_kms_and_stays_encrypted() {
    let server = dev_server();
    let kms_relay = Relay::start(&moto().endpoint).await;
    let codec = per_namespace_codec(&kms_relay, "tenants").await;
    let proxy = TestProxy::start_with_codec(&server.address, codec).await;
    let b_workflow = unique("kms-b");
    WorkflowServiceClient::connect(format!("http://{}", proxy.address()))
        .await
        .unwrap()
        .start_workflow_execution(start_request("faults", &b_workflow, "secret-of-b"))
        .await
        .unwrap();
    let b_ciphertext = started_input(&server.address, "faults", &b_workflow).await.unwrap();
    assert!(b_ciphertext.metadata.contains_key("data_key_encrypted"));

    let planted_id = unique("kms-planted");
    WorkflowServiceClient::connect(format!("http://{}", server.address))
        .await
        .unwrap()
        .start_workflow_execution(tenancy::start_request("default", &planted_id, b_ciphertext.clone()))
        .await
        .unwrap();
    let decrypts_before = kms_relay.count_sent(DECRYPT);
    for _ in 0..3 {
        let seen = started_input(&proxy.address(), "default", &planted_id).await.unwrap();
        assert_eq!(seen, b_ciphertext, "B's KMS payload was decrypted for A");
    }
    assert_eq!(
        kms_relay.count_sent(DECRYPT) - decrypts_before,
        1,
        "KMS's refusal is remembered, not asked again for every read"
    );
    let stats = proxy.codec.provider().unwrap().stats();
    assert_eq!(stats.unwrap_other_key.load(Ordering::Relaxed), 1);
    assert_eq!(
        proxy.codec.stats().payloads_other_namespace_key.load(Ordering::Relaxed),
        3
    );

    let body = tenancy::payload_json(&b_ciphertext);
    let (status, as_a) = codec_call(&proxy, "decode", "default", &body).await;
    assert_eq!(status, StatusCode::OK, "{as_a}");
    assert_eq!(as_a, body, "the codec server decrypted B's payload for namespace A");
    let (status, as_b) = codec_call(&proxy, "decode", "faults", &body).await;
    assert_eq!(status, StatusCode::OK, "{as_b}");
    assert_eq!(
        metadata(&as_b["payloads"][0], "encoding").as_deref(),
        Some("json/plain")
    );
    proxy.stop().await;
}
