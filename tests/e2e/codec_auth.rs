//! Codec-server authentication (JWT against a JWKS) and authorization (token claims, or
//! Temporal Cloud's Ops API), through HTTP and the real `temporal` CLI.

use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{Value, json};
use temporal_codec_proxy::auth::claims_roles::ClaimsRoles;
use temporal_codec_proxy::auth::cloud_roles::{CloudRoles, CloudRolesSettings};
use temporal_codec_proxy::auth::jwt::{self, JwtSettings, JwtVerifier};
use temporal_codec_proxy::auth::{Authenticator, RoleSource};
use temporalio_protos::temporal::api::cloud::identity::v1::{account_access::Role, namespace_access::Permission};
use zeroize::Zeroizing;

use crate::identity::{AUDIENCE, EMAIL_CLAIM, ISSUER, IdentityProvider, OPS_API_KEY, OpsApi, cloud_user};
use crate::support::{TestProxy, dev_server, random_key, run_demo_workflow, temporal_cli, unique};

fn verifier(idp: &IdentityProvider) -> JwtVerifier {
    JwtVerifier::new(JwtSettings {
        jwks_url: idp.jwks_url.clone(),
        audiences: vec![AUDIENCE.to_owned()],
        issuer: Some(ISSUER.to_owned()),
        email_claim: EMAIL_CLAIM.to_owned(),
        refetch_interval: jwt::DEFAULT_REFETCH_INTERVAL,
        token_source: jwt::TokenSource::Either,
    })
}

fn claims_roles() -> RoleSource {
    RoleSource::Claims(ClaimsRoles {
        claim: "permissions".to_owned(),
        roles: ["read", "write", "admin"].map(String::from).into(),
    })
}

fn secret_payloads() -> Value {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    json!({"payloads": [{"metadata": {"encoding": b64(b"json/plain")}, "data": b64(b"\"secret-auth\"")}]})
}

async fn post(url: &str, token: Option<&str>, namespace: &str, body: &Value) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("x-namespace", namespace)
        .json(body);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_expired_and_misaddressed_tokens_are_rejected() {
    let idp = IdentityProvider::start().await;
    let proxy = TestProxy::start_with_auth(
        "127.0.0.1:1",
        &[("k", random_key())],
        Authenticator::new(verifier(&idp), claims_roles()),
    )
    .await;
    let decode = format!("{}/decode", proxy.codec_url());
    let mut claims = idp.claims("ada@example.com");
    claims["permissions"] = json!(["default:read"]);
    let valid = idp.sign(&claims);
    let (status, encoded) = post(
        &format!("{}/encode", proxy.codec_url()),
        Some(&valid),
        "default",
        &secret_payloads(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{encoded}");
    let (status, decoded) = post(&decode, Some(&valid), "default", &encoded).await;
    assert_eq!(status, StatusCode::OK, "{decoded}");
    assert_eq!(decoded, secret_payloads());

    let now = jsonwebtoken::get_current_timestamp();
    let with = |field: &str, value: Value| {
        let mut claims = claims.clone();
        claims[field] = value;
        claims
    };
    let tampered = {
        let (rest, signature) = valid.rsplit_once('.').unwrap();
        let flipped = if signature.starts_with('A') { "B" } else { "A" };
        format!("{rest}.{flipped}{}", &signature[1..])
    };
    let cases = [
        ("no token", None),
        ("not a JWT", Some("not-a-token".to_owned())),
        ("alg none", Some(idp.unsigned(&claims))),
        (
            "HMAC keyed with the public key",
            Some(idp.forge_hmac_with_public_key(&claims)),
        ),
        ("expired", Some(idp.sign(&with("exp", json!(now - 3600))))),
        (
            "wrong audience",
            Some(idp.sign(&with("aud", json!(["https://other.example.com"])))),
        ),
        (
            "wrong issuer",
            Some(idp.sign(&with("iss", json!("https://evil.example.com/")))),
        ),
        ("unknown kid", Some(idp.sign_with_kid(&claims, "not-a-known-key"))),
        ("tampered signature", Some(tampered)),
    ];
    for (what, token) in cases {
        let (status, body) = post(&decode, token.as_deref(), "default", &encoded).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        assert_eq!(body["error"]["status"], 401, "{what}");
        assert!(!body.to_string().contains("secret-auth"), "{what}");
    }
    // One fetch for the first token; unknown key ids may refetch, but only rate-limited.
    assert!(
        idp.jwks_fetches.load(Ordering::SeqCst) <= 2,
        "{}",
        idp.jwks_fetches.load(Ordering::SeqCst)
    );
    proxy.stop().await;
}

/// A verified token is not checked again while it is remembered, and never past its `exp`.
/// Observed through a retired key: a token it signed passes only while remembered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_token_is_remembered_until_it_expires() {
    let idp = IdentityProvider::start().await;
    let verifier = verifier(&idp);
    let claims = idp.claims("ada@example.com");
    let lasting = idp.sign(&claims);
    let mut short_lived_claims = claims.clone();
    short_lived_claims["exp"] = json!(jsonwebtoken::get_current_timestamp() + 34);
    let short_lived = idp.sign(&short_lived_claims);
    for token in [&lasting, &short_lived] {
        assert_eq!(verifier.verify(token).await.unwrap().email, "ada@example.com");
    }

    idp.retire_key();
    // Past the verifier's JWKS refetch interval, so an unknown key id makes it take the
    // retired key's JWKS.
    tokio::time::sleep(Duration::from_secs(31)).await;
    let unknown = verifier.verify(&idp.sign_with_kid(&claims, "another-key")).await;
    assert!(unknown.is_err(), "a token under an unknown key id was accepted");
    assert_eq!(idp.jwks_fetches.load(Ordering::SeqCst), 2);
    let fresh = verifier.verify(&idp.sign(&claims)).await;
    assert!(
        fresh.is_err(),
        "a token under the retired key was accepted without being remembered"
    );

    let remembered = verifier
        .verify(&lasting)
        .await
        .unwrap_or_else(|error| panic!("a token verified under 40 s ago was checked again: {error}"));
    assert_eq!(remembered.email, "ada@example.com");
    while jsonwebtoken::get_current_timestamp() <= short_lived_claims["exp"].as_u64().unwrap() {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let expired = verifier.verify(&short_lived).await;
    assert!(expired.is_err(), "a remembered token was taken on trust past its exp");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_claim_decides_per_namespace() {
    let idp = IdentityProvider::start().await;
    let proxy = TestProxy::start_with_auth(
        "127.0.0.1:1",
        &[("k", random_key())],
        Authenticator::new(verifier(&idp), claims_roles()),
    )
    .await;
    let mut claims = idp.claims("grace@example.com");
    claims["permissions"] = json!(["orders:read", "billing:worker"]);
    let token = idp.sign(&claims);
    let (_, encoded) = post(
        &format!("{}/encode", proxy.codec_url()),
        Some(&token),
        "orders",
        &secret_payloads(),
    )
    .await;
    let decode = format!("{}/decode", proxy.codec_url());
    let (status, in_orders) = post(&decode, Some(&token), "orders", &encoded).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(in_orders, secret_payloads());
    for namespace in ["billing", "payments"] {
        let (status, elsewhere) = post(&decode, Some(&token), namespace, &encoded).await;
        assert_eq!(status, StatusCode::OK, "{namespace}");
        assert_eq!(elsewhere, encoded, "{namespace}: payloads must stay encrypted");
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_roles_come_from_the_ops_api_and_are_cached() {
    let idp = IdentityProvider::start().await;
    let ops = OpsApi::start(vec![
        cloud_user("owner@example.com", Role::Owner, &[]),
        cloud_user("admin@example.com", Role::Admin, &[]),
        cloud_user("reader@example.com", Role::Developer, &[("default", Permission::Read)]),
        cloud_user("outsider@example.com", Role::Developer, &[("other", Permission::Admin)]),
    ])
    .await;
    let roles = CloudRoles::new(CloudRolesSettings {
        address: format!("http://{}", ops.address),
        api_key: std::sync::Arc::new(Zeroizing::new(OPS_API_KEY.to_owned())),
        api_version: "2024-05-13-00".to_owned(),
        account_roles: ["owner", "admin"].map(String::from).into(),
        namespace_permissions: ["read", "write", "admin"].map(String::from).into(),
        cache_ttl: Duration::from_secs(300),
        negative_cache_ttl: Duration::from_secs(300),
    })
    .unwrap();
    let proxy = TestProxy::start_with_auth(
        "127.0.0.1:1",
        &[("k", random_key())],
        Authenticator::new(verifier(&idp), RoleSource::Cloud(Box::new(roles))),
    )
    .await;
    let owner_token = idp.sign(&idp.claims("owner@example.com"));
    let (_, encoded) = post(
        &format!("{}/encode", proxy.codec_url()),
        Some(&owner_token),
        "default",
        &secret_payloads(),
    )
    .await;
    let decode = format!("{}/decode", proxy.codec_url());
    let expectations = [
        ("owner@example.com", true),
        ("admin@example.com", true),
        ("reader@example.com", true),
        ("outsider@example.com", false),
        ("stranger@example.com", false),
    ];
    for (email, allowed) in expectations {
        let token = idp.sign(&idp.claims(email));
        let (status, answer) = post(&decode, Some(&token), "default", &encoded).await;
        assert_eq!(status, StatusCode::OK, "{email}: {answer}");
        let expected = if allowed { secret_payloads() } else { encoded.clone() };
        assert_eq!(answer, expected, "{email}");
    }
    let calls = ops.calls.load(Ordering::SeqCst);
    assert_eq!(
        calls,
        expectations.len(),
        "one Ops API call per user (the encode was the owner's)"
    );
    for (email, _) in expectations {
        let token = idp.sign(&idp.claims(email));
        post(&decode, Some(&token), "default", &encoded).await;
    }
    assert_eq!(
        ops.calls.load(Ordering::SeqCst),
        calls,
        "repeated calls must be answered from the cache"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporal_cli_decodes_with_a_valid_token_only() {
    let server = dev_server();
    let idp = IdentityProvider::start().await;
    let proxy = TestProxy::start_with_auth(
        &server.address,
        &[("cli-jwt", random_key())],
        Authenticator::new(verifier(&idp), claims_roles()),
    )
    .await;
    let workflow_id = unique("cli-jwt");
    run_demo_workflow(proxy.address(), &workflow_id).await;
    let mut claims = idp.claims("ada@example.com");
    claims["permissions"] = json!(["default:read"]);
    let show = |token: String| {
        let args = [
            "workflow",
            "show",
            "--workflow-id",
            &workflow_id,
            "--address",
            &server.address,
            "--codec-endpoint",
            &proxy.codec_url(),
            "--codec-auth",
            &format!("Bearer {token}"),
        ]
        .map(String::from);
        async move {
            let output = tokio::process::Command::new(temporal_cli())
                .args(&args)
                .output()
                .await
                .unwrap();
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        }
    };
    let with_token = show(idp.sign(&claims)).await;
    assert!(with_token.contains("was charged 42.00 EUR"), "{with_token}");
    let mut expired = claims.clone();
    expired["exp"] = json!(jsonwebtoken::get_current_timestamp() - 3600);
    let with_bad_token = show(idp.sign(&expired)).await;
    assert!(!with_bad_token.contains("was charged 42.00 EUR"), "{with_bad_token}");
    proxy.stop().await;
}
