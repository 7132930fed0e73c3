//! The codec-server HTTP API: encode/decode, routing, bad input, CORS, and the real CLI.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{
    TestProxy, dev_server, post_payloads, random_key, repo_root, run_demo_workflow, run_program, temporal_cli, unique,
};

/// `"secret-codec"` as a json/plain payload in the protobuf JSON mapping.
fn plaintext_payload(text: &str) -> Value {
    use base64::Engine as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    json!({"metadata": {"encoding": b64(b"json/plain")}, "data": b64(format!("\"{text}\"").as_bytes())})
}

async fn post(url: &str, body: &Value) -> (StatusCode, Value) {
    post_payloads(url, "default", body).await
}

fn encoding_of(payload: &Value) -> String {
    use base64::Engine as _;
    let encoded = payload["metadata"]["encoding"].as_str().unwrap();
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encode_then_decode_round_trips_on_every_route_form() {
    let proxy = TestProxy::start("127.0.0.1:1", &[("codec-key", random_key())]).await;
    let base = proxy.codec_url();
    let originals = json!({"payloads": [plaintext_payload("secret-a"), plaintext_payload("secret-b"), plaintext_payload("secret-c")]});
    let (status, encoded) = post(&format!("{base}/encode"), &originals).await;
    assert_eq!(status, StatusCode::OK, "{encoded}");
    let payloads = encoded["payloads"].as_array().unwrap();
    assert_eq!(payloads.len(), 3);
    for payload in payloads {
        assert_eq!(encoding_of(payload), "binary/encrypted");
        assert!(!payload.to_string().contains("secret"));
    }
    for route in [
        "/decode",
        "/default/decode",
        "/decode?preserveStorageRefs=true",
        "/api/v1/default/decode/",
    ] {
        let (status, decoded) = post(&format!("{base}{route}"), &encoded).await;
        assert_eq!(status, StatusCode::OK, "{route}: {decoded}");
        assert_eq!(decoded, originals, "{route}");
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_json_errors_with_the_right_status() {
    let proxy = TestProxy::start("127.0.0.1:1", &[("held-key", random_key())]).await;
    let base = proxy.codec_url();
    let client = reqwest::Client::new();
    let check = |status: StatusCode, body: Value, expected: StatusCode, what: &str| {
        assert_eq!(status, expected, "{what}: {body}");
        assert_eq!(body["error"]["status"], expected.as_u16(), "{what}: {body}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty(), "{what}");
    };

    let response = client
        .post(format!("{base}/decode"))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    check(
        response.status(),
        response.json().await.unwrap(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "text/plain",
    );

    let response = client
        .post(format!("{base}/decode"))
        .header("content-type", "application/json")
        .body("{\"payloads\": [")
        .send()
        .await
        .unwrap();
    check(
        response.status(),
        response.json().await.unwrap(),
        StatusCode::BAD_REQUEST,
        "truncated JSON",
    );

    let (status, body) = post(
        &format!("{base}/decode"),
        &json!({"payloads": [{"data": "!!not base64!!"}]}),
    )
    .await;
    check(status, body, StatusCode::BAD_REQUEST, "bad base64");

    let big = json!({"payloads": [plaintext_payload(&"x".repeat(2 * 1024 * 1024))]});
    let (status, body) = post(&format!("{base}/encode"), &big).await;
    check(status, body, StatusCode::PAYLOAD_TOO_LARGE, "over the body limit");

    let (_, mut encoded) = post(
        &format!("{base}/encode"),
        &json!({"payloads": [plaintext_payload("secret-t")]}),
    )
    .await;
    let data = encoded["payloads"][0]["data"].as_str().unwrap().to_owned();
    let tampered = format!("{}{}", if data.starts_with('A') { "B" } else { "A" }, &data[1..]);
    encoded["payloads"][0]["data"] = json!(tampered);
    let (status, body) = post(&format!("{base}/decode"), &encoded).await;
    check(status, body.clone(), StatusCode::UNPROCESSABLE_ENTITY, "tampered");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("held-key"),
        "{body}"
    );

    let foreign_writer = TestProxy::start("127.0.0.1:1", &[("other-key", random_key())]).await;
    let (_, foreign) = post(
        &format!("{}/encode", foreign_writer.codec_url()),
        &json!({"payloads": [plaintext_payload("theirs")]}),
    )
    .await;
    foreign_writer.stop().await;
    let (status, passed) = post(&format!("{base}/decode"), &foreign).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        passed, foreign,
        "payloads under keys the server does not hold come back unchanged"
    );

    let response = client.get(format!("{base}/decode")).send().await.unwrap();
    check(
        response.status(),
        response.json().await.unwrap(),
        StatusCode::METHOD_NOT_ALLOWED,
        "GET",
    );
    let response = client.post(format!("{base}/other")).send().await.unwrap();
    check(
        response.status(),
        response.json().await.unwrap(),
        StatusCode::NOT_FOUND,
        "unknown path",
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_allowed_origins_only_including_on_errors() {
    let proxy = TestProxy::start("127.0.0.1:1", &[("k", random_key())]).await;
    let url = format!("{}/decode?preserveStorageRefs=true", proxy.codec_url());
    let client = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        client
            .request(reqwest::Method::OPTIONS, &url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type,x-namespace,authorization,authorization-extras",
            )
            .send()
    };
    let allowed = preflight("http://ui.example.test").await.unwrap();
    assert!(allowed.status().is_success(), "{allowed:?}");
    let headers = allowed.headers();
    assert_eq!(headers["access-control-allow-origin"], "http://ui.example.test");
    assert_eq!(headers["access-control-allow-credentials"], "true");
    let allowed_headers = headers["access-control-allow-headers"].to_str().unwrap().to_lowercase();
    for header in ["content-type", "x-namespace", "authorization", "authorization-extras"] {
        assert!(allowed_headers.contains(header), "{allowed_headers}");
    }
    assert!(
        headers["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );

    let refused = preflight("https://evil.example.com").await.unwrap();
    assert!(
        refused.headers().get("access-control-allow-origin").is_none(),
        "{refused:?}"
    );

    let body = json!({"payloads": [plaintext_payload("x")]});
    for (origin, expect_cors) in [("http://localhost:8233", true), ("https://evil.example.com", false)] {
        let actual = client
            .post(&url)
            .header("origin", origin)
            .header("content-type", "application/json")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(actual.status(), StatusCode::OK);
        assert_eq!(
            actual.headers().get("access-control-allow-origin").is_some(),
            expect_cors,
            "{origin}"
        );
        let error = client
            .post(&url)
            .header("origin", origin)
            .header("content-type", "text/plain")
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(error.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(
            error.headers().get("access-control-allow-origin").is_some(),
            expect_cors,
            "error, {origin}"
        );
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporal_cli_shows_plaintext_through_the_codec_endpoint() {
    let server = dev_server();
    let proxy = TestProxy::start(&server.address, &[("cli-key", random_key())]).await;
    let workflow_id = unique("cli");
    run_demo_workflow(proxy.address(), &workflow_id).await;
    let stored = workflow_show_json(&server.address, &workflow_id, None).await;
    assert!(!stored.contains("Ada Lovelace"));
    let decoded = workflow_show_json(&server.address, &workflow_id, Some(proxy.codec_url())).await;
    let payload_text = |event_field: &str, payload_field: &str| {
        let history: Value = serde_json::from_str(&decoded).unwrap();
        let event = history["events"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|event| event.get(event_field))
            .unwrap_or_else(|| panic!("no {event_field} in {decoded}"));
        let data = event[payload_field]["payloads"][0]["data"].as_str().unwrap();
        use base64::Engine as _;
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(data).unwrap()).unwrap()
    };
    assert!(payload_text("workflowExecutionStartedEventAttributes", "input").contains("Ada Lovelace"));
    assert!(payload_text("workflowExecutionCompletedEventAttributes", "result").contains("was charged 42.00 EUR"));
    proxy.stop().await;
}

/// `temporal workflow show --output json`, optionally decoding through a codec endpoint.
async fn workflow_show_json(server: &str, workflow_id: &str, codec_endpoint: Option<String>) -> String {
    let mut args: Vec<String> = [
        "workflow",
        "show",
        "--workflow-id",
        workflow_id,
        "--address",
        server,
        "--output",
        "json",
    ]
    .map(String::from)
    .to_vec();
    if let Some(endpoint) = codec_endpoint {
        args.extend(["--codec-endpoint".to_owned(), endpoint]);
    }
    run_program(&temporal_cli(), &args, &repo_root(), Duration::from_secs(60)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codec_server_serves_https_with_the_configured_certificate() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = std::env::temp_dir().join(unique("codec-tls"));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, certified.cert.pem()).unwrap();
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).unwrap();
    let tls = temporal_codec_proxy::codec_server::tls::server_config(&cert_path, &key_path, None).unwrap();

    let mut proxy = TestProxy::start("127.0.0.1:1", &[("tls-key", random_key())]).await;
    let settings = temporal_codec_proxy::codec_server::CodecServerSettings {
        cors_origins: vec![],
        max_body_bytes: 1024 * 1024,
        body_timeout: Duration::from_secs(30),
        authenticator: None,
        tls: Some(tls),
    };
    proxy
        .replace_codec_server("127.0.0.1:0".parse().unwrap(), settings)
        .await;
    let port = proxy.codec_address.port();
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap()])
        .resolve("localhost", proxy.codec_address)
        .build()
        .unwrap();
    let originals = json!({"payloads": [plaintext_payload("secret-over-tls")]});
    let encoded: Value = client
        .post(format!("https://localhost:{port}/encode"))
        .json(&originals)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let response = client
        .post(format!("https://localhost:{port}/decode"))
        .json(&encoded)
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.json::<Value>().await.unwrap(), originals);
    // Plain HTTP to the TLS port is refused.
    assert!(
        reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/decode"))
            .json(&encoded)
            .send()
            .await
            .is_err()
    );

    let missing = temporal_codec_proxy::codec_server::tls::server_config(&dir.join("absent.pem"), &key_path, None);
    assert!(missing.unwrap_err().to_string().contains("absent.pem"));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_request_head_is_disconnected() {
    use temporal_codec_proxy::codec_server::HEADER_READ_TIMEOUT;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let proxy = TestProxy::start("127.0.0.1:1", &[("codec-key", random_key())]).await;
    let mut trickling = tokio::net::TcpStream::connect(proxy.codec_address).await.unwrap();
    trickling
        .write_all(b"POST /decode HTTP/1.1\r\nHost: codec\r\n")
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(HEADER_READ_TIMEOUT * 2, trickling.read_to_end(&mut answer)).await;
    assert!(
        closed.is_ok(),
        "the connection was still open after {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() >= HEADER_READ_TIMEOUT - Duration::from_secs(1));
    while proxy.codec_connections() > 0 {
        assert!(
            started.elapsed() < HEADER_READ_TIMEOUT * 2,
            "the closed connection is still counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_that_stops_arriving_gets_408_and_its_connection_is_closed() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let proxy =
        crate::operations::ProxyProcess::start(&dev_server().address, &random_key(), &["--codec-body-timeout", "1s"]);
    let mut stalled = tokio::net::TcpStream::connect(&proxy.codec).await.unwrap();
    let head = format!(
        "POST /decode HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"payl",
        proxy.codec
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stalled.read_to_end(&mut answer))
        .await
        .expect("the connection is closed, not left open")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("--codec-body-timeout"), "{answer}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "answered before the timeout"
    );

    let (status, _) = post_payloads(
        &format!("http://{}/encode", proxy.codec),
        "default",
        &json!({"payloads": []}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "well-behaved requests are still served");
}
