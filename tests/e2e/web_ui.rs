//! The Temporal Web UI in headless Chromium shows plaintext decoded by the codec server.

use std::time::Duration;

use base64::Engine as _;

use crate::support::{
    TestProxy, dev_server_with_ui, free_port, last_json_line, random_key, repo_root, run_demo_workflow, run_program,
    unique, workflow_started,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_ui_shows_the_decoded_input() {
    let codec_listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let server = tokio::task::spawn_blocking(move || dev_server_with_ui(&format!("http://{codec_listen}")))
        .await
        .unwrap();
    let ui_url = format!("http://{}", server.ui_address.as_ref().unwrap());
    let proxy = TestProxy::start_for_ui(&server.address, &[("ui-key", random_key())], codec_listen, &ui_url).await;
    let workflow_id = unique("ui");
    run_demo_workflow(proxy.address(), &workflow_id).await;

    // The run id, and a piece of the ciphertext the UI must not show, straight from the server.
    let started = workflow_started(&server.address, "default", &workflow_id)
        .await
        .unwrap();
    let stored = &started.input.unwrap().payloads[0];
    assert_eq!(stored.metadata["encoding"], b"binary/encrypted");
    let ciphertext = base64::engine::general_purpose::STANDARD.encode(&stored.data);
    let run_id = started.original_execution_run_id;

    let artifacts = repo_root().join("target/e2e-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("web-ui-decoded-input.png");
    let stdout = run_program(
        "node".as_ref(),
        &[
            "ui_decode.js".into(),
            "--ui-url".into(),
            ui_url,
            "--namespace".into(),
            "default".into(),
            "--workflow-id".into(),
            workflow_id,
            "--run-id".into(),
            run_id,
            "--expect".into(),
            "Ada Lovelace".into(),
            "--reject".into(),
            ciphertext[..24].to_owned(),
            "--screenshot".into(),
            screenshot.display().to_string(),
        ],
        &repo_root().join("tests/e2e/browser"),
        Duration::from_secs(120),
    )
    .await;
    let report = last_json_line(&stdout);
    assert_eq!(report["ok"], true, "{report}");
    assert!(report["codec_requests"].as_u64().unwrap() > 0, "{report}");
    assert!(screenshot.exists());
    proxy.stop().await;
}
