//! Bearer tokens against both listeners of one proxy: forged and invalid ones never get
//! plaintext from the codec server nor a call to the server through the gateway, and the
//! Web UI's ID token in `Authorization-Extras` works beside an access token the proxy cannot
//! verify.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tonic::Code;

use crate::faults::{client, json_payload, start_request};
use crate::identity::{AUDIENCE, ISSUER, IdentityProvider, RsaSigner, sign_hs256};
use crate::operations::ProxyProcess;
use crate::support::{
    FAULTS_NAMESPACE, dev_server, free_port, last_json_line, random_key, reached_the_server, repo_root, run_program,
    unique,
};

const REFRESH_INTERVAL: Duration = Duration::from_secs(2);

/// One proxy whose gRPC listener and codec server both take tokens from one JWKS.
struct Listeners {
    proxy: ProxyProcess,
    /// A `/encode` answer for [`SECRET`], to be decoded.
    ciphertext: Value,
}

const SECRET: &str = "\"token-attack-secret\"";

fn secret_payloads() -> Value {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    json!({"payloads": [{"metadata": {"encoding": b64(b"json/plain")}, "data": b64(SECRET.as_bytes())}]})
}

impl Listeners {
    async fn start(idp: &IdentityProvider, valid_token: &str) -> Self {
        Self::start_with(idp, valid_token, &[]).await
    }

    async fn start_with(idp: &IdentityProvider, valid_token: &str, extra_args: &[&str]) -> Self {
        let interval = format!("{}s", REFRESH_INTERVAL.as_secs());
        let mut args = vec![
            "--listen-auth",
            "jwt",
            "--listen-jwks-url",
            &idp.jwks_url,
            "--listen-jwt-audience",
            AUDIENCE,
            "--listen-jwt-issuer",
            ISSUER,
            "--listen-jwks-refresh-interval",
            &interval,
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
            "--codec-jwks-refresh-interval",
            &interval,
        ];
        args.extend_from_slice(extra_args);
        let proxy = ProxyProcess::start(&dev_server().address, &random_key(), &args);
        let mut listeners = Self {
            proxy,
            ciphertext: Value::Null,
        };
        let (status, ciphertext) = listeners.post("encode", Some(valid_token), &secret_payloads()).await;
        assert_eq!(status, StatusCode::OK, "{ciphertext}");
        assert!(!ciphertext.to_string().contains("token-attack-secret"));
        listeners.ciphertext = ciphertext;
        listeners
    }

    async fn post(&self, operation: &str, token: Option<&str>, body: &Value) -> (StatusCode, Value) {
        let headers = token.map(|token| ("authorization", format!("Bearer {token}")));
        self.post_with(operation, headers.as_slice(), body).await
    }

    async fn post_with(&self, operation: &str, headers: &[(&str, String)], body: &Value) -> (StatusCode, Value) {
        let mut request = reqwest::Client::new()
            .post(format!("http://{}/{operation}", self.proxy.codec))
            .header("x-namespace", FAULTS_NAMESPACE)
            .json(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap())
    }

    /// `/decode` of the ciphertext with `token` in `Authorization`.
    async fn decode(&self, token: &str) -> (StatusCode, Value) {
        self.post("decode", Some(token), &self.ciphertext).await
    }

    /// Starts workflow `workflow_id` through the gateway with `token` in `authorization`.
    async fn start_workflow(&self, token: &str, workflow_id: &str) -> Result<(), tonic::Status> {
        self.start_workflow_with(&[("authorization", format!("Bearer {token}"))], workflow_id)
            .await
    }

    async fn start_workflow_with(
        &self,
        headers: &[(&'static str, String)],
        workflow_id: &str,
    ) -> Result<(), tonic::Status> {
        let mut request = tonic::Request::new(start_request(workflow_id, json_payload(SECRET)));
        for (name, value) in headers {
            request.metadata_mut().insert(*name, value.parse().unwrap());
        }
        client(&self.proxy.grpc)
            .await
            .start_workflow_execution(request)
            .await
            .map(drop)
    }
}

fn b64_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_invalid_and_oversized_tokens_are_refused_on_both_listeners() {
    let idp = IdentityProvider::start().await;
    let signer = RsaSigner::generate(&unique("rsa"));
    idp.publish(&signer.jwk);
    let mut claims = idp.claims("ada@example.com");
    claims["permissions"] = json!([format!("{FAULTS_NAMESPACE}:read")]);
    let valid = signer.sign(&claims);
    let listeners = Listeners::start(&idp, &valid).await;

    let now = jsonwebtoken::get_current_timestamp();
    let with = |field: &str, value: Value| {
        let mut claims = claims.clone();
        claims[field] = value;
        claims
    };
    let without = |field: &str| {
        let mut claims = claims.clone();
        claims.as_object_mut().unwrap().remove(field);
        claims
    };
    let kid = signer.kid.as_str();
    let hs256_header = json!({"alg": "HS256", "typ": "JWT", "kid": kid});
    let (signed_part, _) = valid.rsplit_once('.').unwrap();
    let escalated = {
        let (header, _) = signed_part.split_once('.').unwrap();
        let signature = valid.rsplit_once('.').unwrap().1;
        format!(
            "{header}.{}.{signature}",
            b64_json(&with("permissions", json!(["*:admin"])))
        )
    };
    // Another key that claims the provider's key id and points at its own JWKS.
    let impostor = RsaSigner::generate(kid);
    let cases: Vec<(&str, String)> = vec![
        (
            "alg none",
            format!("{}.{}.", b64_json(&json!({"alg": "none", "typ": "JWT", "kid": kid})), b64_json(&claims)),
        ),
        (
            "HS256 keyed with the public key as PEM",
            sign_hs256(&hs256_header, &claims, signer.public_pem.as_bytes()),
        ),
        (
            "HS256 keyed with the JWK modulus",
            sign_hs256(&hs256_header, &claims, signer.jwk["n"].as_str().unwrap().as_bytes()),
        ),
        ("signature stripped", format!("{signed_part}.")),
        ("claims tampered after signing", escalated),
        ("wrong issuer", signer.sign(&with("iss", json!("https://evil.example.test/")))),
        ("wrong audience", signer.sign(&with("aud", json!(["https://other.example.test"])))),
        (
            "jku naming another key",
            impostor.sign_raw(
                &json!({"alg": "RS256", "typ": "JWT", "kid": kid, "jku": "http://127.0.0.1:9/jwks.json"}),
                &claims,
            ),
        ),
        ("no exp", signer.sign(&without("exp"))),
        ("no aud", signer.sign(&without("aud"))),
        ("expired 5 minutes ago", signer.sign(&with("exp", json!(now - 300)))),
        (
            "kid path traversal",
            signer.sign_raw(
                &json!({"alg": "RS256", "typ": "JWT", "kid": "../../../../etc/passwd"}),
                &claims,
            ),
        ),
        ("nbf an hour ahead", signer.sign(&with("nbf", json!(now + 3600)))),
        (
            "crit naming an extension the verifier does not implement",
            signer.sign_raw(
                &json!({"alg": "RS256", "typ": "JWT", "kid": kid, "crit": ["bars-unknown-ext"], "bars-unknown-ext": true}),
                &claims,
            ),
        ),
        (
            "oversized (64 KiB of claims)",
            signer.sign(&with("padding", json!("x".repeat(64 * 1024)))),
        ),
    ];

    let mut refused_workflows = Vec::new();
    for (what, token) in &cases {
        let (status, body) = listeners.decode(token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: /decode answered {body}");
        assert_eq!(body["error"]["status"], 401, "{what}: {body}");
        assert!(!body.to_string().contains("token-attack-secret"), "{what}: {body}");

        let workflow_id = unique("token-attack");
        let refused = listeners.start_workflow(token, &workflow_id).await.unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated, "{what}: {refused:?}");
        refused_workflows.push((what, workflow_id));
    }
    for (what, workflow_id) in &refused_workflows {
        assert!(
            !reached_the_server(workflow_id).await,
            "{what}: the call reached the server"
        );
    }

    // The valid token still works on both listeners.
    let (status, decoded) = listeners.decode(&valid).await;
    assert_eq!(status, StatusCode::OK, "{decoded}");
    assert_eq!(decoded, secret_payloads());
    let accepted = unique("token-attack-valid");
    listeners.start_workflow(&valid, &accepted).await.unwrap();
    assert!(reached_the_server(&accepted).await);

    // Each refusal is logged with its reason, and no token appears in the logs.
    let logs = listeners.proxy.all_logs();
    for reason in ["nbf is in the future", "bars-unknown-ext", "bytes long"] {
        assert!(
            logs.contains("refused a bearer token") && logs.to_lowercase().contains(&reason.to_lowercase()),
            "no refusal logged for {reason:?}"
        );
    }
    for (what, token) in &cases {
        let signature = token.rsplit_once('.').unwrap().1;
        assert!(
            signature.is_empty() || !logs.contains(signature),
            "{what}: the token was logged"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_key_ids_fetch_the_jwks_at_most_once_per_interval_and_a_new_key_is_taken_after_it() {
    let idp = IdentityProvider::start().await;
    let mut claims = idp.claims("grace@example.com");
    claims["permissions"] = json!([format!("{FAULTS_NAMESPACE}:read")]);
    let listeners = Listeners::start(&idp, &idp.sign(&claims)).await;
    // Let the gateway's verifier fetch once too, so the flood starts from warm caches.
    listeners
        .start_workflow(&idp.sign(&claims), &unique("token-flood-warm"))
        .await
        .unwrap();

    let fetches_before = idp.jwks_fetches.load(std::sync::atomic::Ordering::SeqCst);
    let flood_started = Instant::now();
    for _ in 0..100 {
        let forged = idp.sign_with_kid(&claims, &unique("unknown-kid"));
        assert_eq!(listeners.decode(&forged).await.0, StatusCode::UNAUTHORIZED);
        let refused = listeners
            .start_workflow(&forged, &unique("token-flood"))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    }
    let flood = flood_started.elapsed();
    let fetches = idp.jwks_fetches.load(std::sync::atomic::Ordering::SeqCst) - fetches_before;
    // Two verifiers (one per listener), each allowed one fetch per interval begun.
    let intervals = 1 + (flood.as_millis() / REFRESH_INTERVAL.as_millis()) as usize;
    assert!(
        fetches <= 2 * intervals,
        "200 unknown key ids over {flood:?} caused {fetches} JWKS fetches"
    );

    let rolled_in = RsaSigner::generate(&unique("rolled-in"));
    idp.publish(&rolled_in.jwk);
    let token = rolled_in.sign(&claims);
    let deadline = Instant::now() + 3 * REFRESH_INTERVAL + Duration::from_secs(5);
    loop {
        let decoded = listeners.decode(&token).await.0 == StatusCode::OK;
        let started = listeners.start_workflow(&token, &unique("token-rolled")).await.is_ok();
        if decoded && started {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a key added to the JWKS was not accepted after the refresh interval (codec server {decoded}, gateway {started})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What an identity provider that issues opaque access tokens hands the Web UI.
const OPAQUE_ACCESS_TOKEN: &str = "opaque-access-token-8f3a9c";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_token_in_authorization_extras_is_verified_beside_an_opaque_access_token() {
    let idp = IdentityProvider::start().await;
    let mut claims = idp.claims("ada@example.com");
    claims["permissions"] = json!([format!("{FAULTS_NAMESPACE}:read")]);
    let id_token = idp.sign(&claims);
    let listeners = Listeners::start(&idp, &id_token).await;
    let forged = idp.forge_hmac_with_public_key(&claims);
    let both = |id_token: &str| {
        vec![
            ("authorization", format!("Bearer {OPAQUE_ACCESS_TOKEN}")),
            ("authorization-extras", id_token.to_owned()),
        ]
    };

    let (status, decoded) = listeners
        .post_with("decode", &both(&id_token), &listeners.ciphertext)
        .await;
    assert_eq!(status, StatusCode::OK, "{decoded}");
    assert_eq!(decoded, secret_payloads());
    let (status, refused) = listeners
        .post_with("decode", &both(&forged), &listeners.ciphertext)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{refused}");
    assert!(!refused.to_string().contains("token-attack-secret"), "{refused}");
    let (status, decoded) = listeners.decode(&id_token).await;
    assert_eq!(status, StatusCode::OK, "a valid JWT in Authorization alone: {decoded}");
    assert_eq!(decoded, secret_payloads());

    let admitted = unique("extras-valid");
    listeners
        .start_workflow_with(&both(&id_token), &admitted)
        .await
        .unwrap();
    assert!(reached_the_server(&admitted).await);
    let forged_call = unique("extras-forged");
    let refused = listeners
        .start_workflow_with(&both(&forged), &forged_call)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(
        !reached_the_server(&forged_call).await,
        "a forged ID token got a call through"
    );
    let alone = unique("authorization-alone");
    listeners.start_workflow(&id_token, &alone).await.unwrap();
    assert!(reached_the_server(&alone).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_at_the_ui_origin_passes_the_preflight_with_authorization_extras_and_gets_plaintext() {
    let idp = IdentityProvider::start().await;
    let mut claims = idp.claims("ada@example.com");
    claims["permissions"] = json!([format!("{FAULTS_NAMESPACE}:read")]);
    let id_token = idp.sign(&claims);
    let page_port = free_port();
    let origin = format!("http://127.0.0.1:{page_port}");
    let listeners = Listeners::start_with(&idp, &id_token, &["--codec-cors-origin", &origin]).await;

    let stdout = run_program(
        "node".as_ref(),
        &[
            "codec_fetch.js".into(),
            "--page-port".into(),
            page_port.to_string(),
            "--codec-url".into(),
            format!("http://{}", listeners.proxy.codec),
            "--namespace".into(),
            FAULTS_NAMESPACE.into(),
            "--access-token".into(),
            OPAQUE_ACCESS_TOKEN.into(),
            "--id-token".into(),
            id_token,
            "--body".into(),
            listeners.ciphertext.to_string(),
        ],
        &repo_root().join("tests/e2e/browser"),
        Duration::from_secs(90),
    )
    .await;
    let report = last_json_line(&stdout);
    assert_eq!(report["status"], 200, "{report}");
    let decoded: Value = serde_json::from_str(report["body"].as_str().unwrap()).unwrap();
    assert_eq!(decoded, secret_payloads());
}
