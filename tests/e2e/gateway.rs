//! Gateway mode: one proxy shared by many workers, which must prove who they are.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use rcgen::ExtendedKeyUsagePurpose;
use temporalio_protos::temporal::api::workflowservice::v1::GetSystemInfoRequest;
use temporalio_protos::temporal::api::workflowservice::v1::workflow_service_client::WorkflowServiceClient;
use tonic::Code;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::faults::client;
use crate::identity::{AUDIENCE, IdentityProvider};
use crate::operations::ProxyProcess;
use crate::support::{dev_server, random_key, unique};
use crate::upstream_tls::TestCa;

fn key_flag() -> String {
    format!(
        "gw=base64:{}",
        base64::engine::general_purpose::STANDARD.encode(random_key())
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_loopback_listener_without_caller_authentication_refuses_to_start() {
    let binary = env!("CARGO_BIN_EXE_temporal-codec-proxy");
    let base = [
        "serve",
        "--listen",
        "0.0.0.0:0",
        "--codec-listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--upstream",
        &dev_server().address,
    ];
    let refused = Command::new(binary)
        .args(base)
        .args(["--key", &key_flag()])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("without caller authentication") && stderr.contains("--listen-allow-unauthenticated-plaintext"),
        "{stderr}"
    );

    let mut allowed = Command::new(binary)
        .args(base)
        .args(["--key", &key_flag(), "--listen-allow-unauthenticated-plaintext"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        assert!(
            allowed.try_wait().unwrap().is_none(),
            "the explicit flag must let it start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    allowed.kill().unwrap();
    let _ = allowed.wait();
}

async fn tls_client(
    address: &str,
    ca: &str,
    identity: Option<(String, String)>,
) -> WorkflowServiceClient<tonic::transport::Channel> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let channel = Endpoint::from_shared(format!("https://{address}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    WorkflowServiceClient::new(channel)
}

/// Whether a call with client certificate `identity` gets through; a refused handshake
/// counts as not getting through.
async fn gets_through(address: &str, ca: &str, identity: (String, String)) -> bool {
    let connected = Endpoint::from_shared(format!("https://{address}"))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(ca))
                .domain_name("localhost")
                .identity(Identity::from_pem(identity.0, identity.1)),
        )
        .unwrap()
        .connect()
        .await;
    match connected {
        Err(_) => false,
        Ok(channel) => WorkflowServiceClient::new(channel)
            .get_system_info(GetSystemInfoRequest::default())
            .await
            .is_ok(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_only_callers_with_a_client_certificate_get_through_and_renewed_certificates_and_cas_are_used() {
    let dir = std::env::temp_dir().join(unique("gateway"));
    std::fs::create_dir_all(&dir).unwrap();
    let server_ca = TestCa::new("gateway CA");
    let worker_ca = TestCa::new("workers CA");
    let (cert, key) = server_ca.issue("localhost", ExtendedKeyUsagePurpose::ServerAuth);
    let write = |name: &str, contents: &str| {
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let (cert_path, key_path, client_ca_path) = (
        write("gateway.pem", &cert),
        write("gateway.key", &key),
        write("workers-ca.pem", &worker_ca.pem),
    );
    let proxy = ProxyProcess::start(
        &dev_server().address,
        &random_key(),
        &[
            "--listen-tls-cert",
            &cert_path,
            "--listen-tls-key",
            &key_path,
            "--listen-client-ca",
            &client_ca_path,
            "--tls-reload-interval",
            "200ms",
        ],
    );

    let status = tls_client(&proxy.grpc, &server_ca.pem, None)
        .await
        .get_system_info(GetSystemInfoRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    let stranger = TestCa::new("someone else").issue("stranger", ExtendedKeyUsagePurpose::ClientAuth);
    assert!(
        !gets_through(&proxy.grpc, &server_ca.pem, stranger).await,
        "a certificate from another CA was accepted"
    );

    let worker = worker_ca.issue("worker-1", ExtendedKeyUsagePurpose::ClientAuth);
    tls_client(&proxy.grpc, &server_ca.pem, Some(worker.clone()))
        .await
        .get_system_info(GetSystemInfoRequest::default())
        .await
        .expect("a worker with a certificate from the workers' CA gets through");

    // cert-manager renews the gateway's certificate, from a new CA: new connections get it.
    let renewed_ca = TestCa::new("gateway CA, renewed");
    let (renewed_cert, renewed_key) = renewed_ca.issue("localhost", ExtendedKeyUsagePurpose::ServerAuth);
    write("gateway.key", &renewed_key);
    write("gateway.pem", &renewed_cert);
    proxy.wait_for_log("reloaded a listener certificate");
    tls_client(&proxy.grpc, &renewed_ca.pem, Some(worker.clone()))
        .await
        .get_system_info(GetSystemInfoRequest::default())
        .await
        .expect("new connections are served with the renewed certificate");

    // The workers' CA is replaced: certificates from the new one get through, from the old
    // one no longer.
    let next_worker_ca = TestCa::new("workers CA, next");
    write("workers-ca.pem", &next_worker_ca.pem);
    proxy.wait_for_log("reloaded the listener's client CA");
    let next_worker = next_worker_ca.issue("worker-2", ExtendedKeyUsagePurpose::ClientAuth);
    tls_client(&proxy.grpc, &renewed_ca.pem, Some(next_worker))
        .await
        .get_system_info(GetSystemInfoRequest::default())
        .await
        .expect("a certificate from the new workers' CA gets through");
    assert!(
        !gets_through(&proxy.grpc, &renewed_ca.pem, worker).await,
        "a certificate from the replaced CA was still accepted"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_jwt_auth_only_callers_with_a_valid_token_get_through() {
    let identity = IdentityProvider::start().await;
    let proxy = ProxyProcess::start(
        &dev_server().address,
        &random_key(),
        &[
            "--listen-auth",
            "jwt",
            "--listen-jwks-url",
            &identity.jwks_url,
            "--listen-jwt-audience",
            AUDIENCE,
        ],
    );
    let call = |token: Option<String>| {
        let address = proxy.grpc.clone();
        async move {
            let mut request = tonic::Request::new(GetSystemInfoRequest::default());
            if let Some(token) = token {
                request
                    .metadata_mut()
                    .insert("authorization", format!("Bearer {token}").parse().unwrap());
            }
            client(&address).await.get_system_info(request).await
        }
    };

    let missing = call(None).await.unwrap_err();
    assert_eq!(missing.code(), Code::Unauthenticated, "{missing:?}");
    let mut expired = identity.claims("worker@example.com");
    expired["exp"] = serde_json::json!(jsonwebtoken::get_current_timestamp() - 3600);
    let stale = call(Some(identity.sign(&expired))).await.unwrap_err();
    assert_eq!(stale.code(), Code::Unauthenticated, "{stale:?}");
    let forged = call(Some(
        identity.forge_hmac_with_public_key(&identity.claims("worker@example.com")),
    ))
    .await
    .unwrap_err();
    assert_eq!(forged.code(), Code::Unauthenticated, "{forged:?}");

    call(Some(identity.sign(&identity.claims("worker@example.com"))))
        .await
        .expect("a valid token gets through");
}
