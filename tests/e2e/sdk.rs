//! Unmodified Python and TypeScript SDK workers and clients, connected only to the proxy.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use std::sync::atomic::Ordering;

use crate::support::{TestProxy, dev_server, last_json_line, python, random_key, repo_root, run_program, unique};

const SCENARIO_TIMEOUT: Duration = Duration::from_secs(180);

/// Reads every history and schedule in `default` straight from the server and fails on
/// any user payload that is not encrypted or any marker that appears in plaintext.
async fn assert_server_holds_only_ciphertext(markers: &[String]) -> serde_json::Value {
    let mut args = vec![
        "inspect_server.py".to_owned(),
        "--address".to_owned(),
        dev_server().address.clone(),
        "--namespace".to_owned(),
        "default".to_owned(),
    ];
    for marker in markers {
        args.push("--marker".to_owned());
        args.push(marker.clone());
    }
    let report = last_json_line(
        &run_program(
            &python(),
            &args,
            &repo_root().join("tests/e2e/python"),
            SCENARIO_TIMEOUT,
        )
        .await,
    );
    assert_eq!(report["ok"], true, "{report}");
    assert!(report["encrypted"].as_u64().unwrap() > 0, "{report}");
    report
}

/// The scenario's plaintext markers: those in payloads, and those in failure messages,
/// which the proxy moves into encrypted payloads too.
fn markers(summary: &serde_json::Value) -> Vec<String> {
    let in_payloads = summary["markers"]
        .as_array()
        .unwrap_or_else(|| panic!("no markers in {summary}"));
    assert!(!in_payloads.is_empty());
    let in_failure_messages = summary["failure_message_markers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    in_payloads
        .iter()
        .chain(&in_failure_messages)
        .map(|m| m.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_runs_everything_through_the_proxy_and_the_server_stores_only_ciphertext() {
    let server = dev_server();
    let proxy = TestProxy::start(&server.address, &[("python-e2e", random_key())]).await;
    let stdout = run_program(
        &python(),
        &[
            "scenario.py".into(),
            "--address".into(),
            proxy.address(),
            "--namespace".into(),
            "default".into(),
            "--task-queue".into(),
            unique("py-tq"),
            "--id-prefix".into(),
            unique("py"),
        ],
        &repo_root().join("tests/e2e/python"),
        SCENARIO_TIMEOUT,
    )
    .await;
    let summary = last_json_line(&stdout);
    assert_eq!(summary["ok"], true, "{summary}");
    assert!(!summary["schedule_ids"].as_array().unwrap().is_empty(), "{summary}");
    let stats = proxy.codec.stats();
    assert!(stats.payloads_encrypted.load(Ordering::Relaxed) > 10);
    assert!(stats.payloads_decrypted.load(Ordering::Relaxed) > 10);
    let report = assert_server_holds_only_ciphertext(&markers(&summary)).await;
    assert!(report["plaintext_search_attributes"].as_u64().unwrap() > 0, "{report}");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_sdk_runs_through_the_proxy_and_the_server_stores_only_ciphertext() {
    let server = dev_server();
    let proxy = TestProxy::start(&server.address, &[("typescript-e2e", random_key())]).await;
    let stdout = run_program(
        "node".as_ref(),
        &[
            "scenario.js".into(),
            "--address".into(),
            proxy.address(),
            "--namespace".into(),
            "default".into(),
            "--task-queue".into(),
            unique("ts-tq"),
            "--id-prefix".into(),
            unique("ts"),
        ],
        &repo_root().join("tests/e2e/typescript"),
        SCENARIO_TIMEOUT,
    )
    .await;
    let summary = last_json_line(&stdout);
    assert_eq!(summary["ok"], true, "{summary}");
    assert!(proxy.codec.stats().payloads_encrypted.load(Ordering::Relaxed) > 5);
    assert_server_holds_only_ciphertext(&markers(&summary)).await;
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_encrypting_in_process_interoperates_with_a_worker_behind_the_proxy() {
    let server = dev_server();
    let key = random_key();
    let proxy = TestProxy::start(&server.address, &[("interop-key", key)]).await;
    let task_queue = unique("interop-tq");
    let python_dir = repo_root().join("tests/e2e/python");
    let _worker = tokio::process::Command::new(python())
        .args([
            "scenario.py",
            "--address",
            &proxy.address(),
            "--namespace",
            "default",
            "--task-queue",
            &task_queue,
            "--interop-worker-only",
            "--run-seconds",
            "120",
        ])
        .current_dir(&python_dir)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = run_program(
        &python(),
        &[
            "interop_client.py".into(),
            "--address".into(),
            server.address.clone(),
            "--namespace".into(),
            "default".into(),
            "--task-queue".into(),
            task_queue,
            "--key-id".into(),
            "interop-key".into(),
            "--key-base64".into(),
            STANDARD.encode(key),
        ],
        &python_dir,
        SCENARIO_TIMEOUT,
    )
    .await;
    let summary = last_json_line(&stdout);
    assert_eq!(summary["ok"], true, "{summary}");
    assert!(proxy.codec.stats().payloads_decrypted.load(Ordering::Relaxed) > 0);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_process_samples_codec_used_for_interop_matches_the_vectors() {
    // The interop test trusts this independent Python codec; it must agree with Temporal's
    // own sample on every vector, byte for byte on the known-answer ones.
    let stdout = run_program(
        &python(),
        &["test_vectors.py".into()],
        &repo_root().join("tests/e2e/python"),
        SCENARIO_TIMEOUT,
    )
    .await;
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}
