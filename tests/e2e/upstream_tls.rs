//! TLS, mTLS and API-key credentials to the upstream, through Debian's nginx (`grpc_pass`,
//! `ssl_verify_client on`) in front of the dev server.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
use temporalio_protos::temporal::api::workflowservice::v1::GetSystemInfoRequest;
use tonic::Code;

use crate::faults::{client, json_payload, start_request};
use crate::nginx_config::{NGINX, nginx_config};
use crate::operations::ProxyProcess;
use crate::support::{FAULTS_NAMESPACE, dev_server, free_port, random_key, unique};

const API_KEY: &str = "test-api-key-7f3a9c";

pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub pem: String,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let pem = params.self_signed(&key).unwrap().pem();
        Self {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// A certificate and key (PEM) for `name`, for a server or a client.
    pub fn issue(&self, name: &str, purpose: ExtendedKeyUsagePurpose) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![purpose];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// nginx terminating TLS with client-certificate verification, passing gRPC to the dev server.
struct Nginx {
    child: Child,
    dir: PathBuf,
    address: String,
    server_ca: TestCa,
    client_ca: TestCa,
}

impl Nginx {
    fn start() -> Self {
        assert!(
            Path::new(NGINX).exists(),
            "{NGINX} is missing: run scripts/install-test-tools.sh"
        );
        let dir = std::env::temp_dir().join(unique("nginx"));
        std::fs::create_dir_all(&dir).unwrap();
        let server_ca = TestCa::new("upstream test CA");
        let client_ca = TestCa::new("worker test CA");
        let (server_cert, server_key) = server_ca.issue("localhost", ExtendedKeyUsagePurpose::ServerAuth);
        write(&dir, "server.pem", &server_cert);
        write(&dir, "server.key", &server_key);
        write(&dir, "client-ca.pem", &client_ca.pem);
        let port = free_port();
        let d = dir.display();
        let http = format!(
            "    log_format calls '$request_uri auth=[$http_authorization] ns=[$http_temporal_namespace] client=[$ssl_client_s_dn]';
    access_log {d}/access.log calls;
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {d}/server.pem;
        ssl_certificate_key {d}/server.key;
        ssl_client_certificate {d}/client-ca.pem;
        ssl_verify_client on;
        # A fresh connection, with a fresh handshake, every few calls: rotated client
        # certificates get used while calls keep flowing.
        keepalive_requests 25;
        location / {{
            grpc_pass grpc://{upstream};
            grpc_read_timeout 300s;
        }}
    }}
",
            upstream = dev_server().address
        );
        let config = nginx_config(&dir, "", &http);
        let config_path = write(&dir, "nginx.conf", &config);
        let child = Command::new(NGINX)
            .args(["-c", config_path.to_str().unwrap(), "-p", dir.to_str().unwrap(), "-e"])
            .arg(dir.join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let address = format!("127.0.0.1:{port}");
        let started = Instant::now();
        while std::net::TcpStream::connect(&address).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "nginx did not start: {}",
                std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            dir,
            address,
            server_ca,
            client_ca,
        }
    }

    fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }

    /// The access log once it mentions `needle`: nginx writes a call's line after sending
    /// the answer, so the caller can see the answer first. Gives up after a few seconds.
    fn access_log_mentioning(&self, needle: &str) -> String {
        let started = Instant::now();
        loop {
            let log = self.access_log();
            if log.contains(needle) || started.elapsed() > Duration::from_secs(20) {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Writes a client certificate from the trusted worker CA; returns (cert, key) paths.
    fn client_identity(&self, name: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = self.client_ca.issue(name, ExtendedKeyUsagePurpose::ClientAuth);
        (
            write(&self.dir, &format!("{name}.pem"), &cert),
            write(&self.dir, &format!("{name}.key"), &key),
        )
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn path_arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_and_api_key_reach_the_upstream_and_rotated_certificates_drop_no_call() {
    let nginx = Nginx::start();
    let ca = write(&nginx.dir, "upstream-ca.pem", &nginx.server_ca.pem);
    let (cert, key) = nginx.client_identity("worker-2026-11");
    let proxy = ProxyProcess::start(
        &nginx.address,
        &random_key(),
        &[
            "--upstream-ca",
            path_arg(&ca),
            "--upstream-server-name",
            "localhost",
            "--upstream-tls-cert",
            path_arg(&cert),
            "--upstream-tls-key",
            path_arg(&key),
            "--upstream-api-key",
            API_KEY,
            "--tls-reload-interval",
            "200ms",
        ],
    );

    let marker = unique("secret-tls-input");
    let mut workflows = client(&proxy.grpc).await;
    workflows
        .start_workflow_execution(start_request(&unique("tls"), json_payload(&format!("\"{marker}\""))))
        .await
        .expect("a call through TLS and mTLS succeeds");
    let log = nginx.access_log_mentioning("StartWorkflowExecution");
    let start_line = log
        .lines()
        .find(|line| line.contains("StartWorkflowExecution"))
        .unwrap_or_else(|| panic!("nginx saw no StartWorkflowExecution: {log}"));
    assert!(start_line.contains(&format!("auth=[Bearer {API_KEY}]")), "{start_line}");
    assert!(start_line.contains(&format!("ns=[{FAULTS_NAMESPACE}]")), "{start_line}");
    assert!(start_line.contains("CN=worker-2026-11"), "{start_line}");

    // Rotate the client certificate on disk while calls run.
    let caller = tokio::spawn({
        let mut workflows = client(&proxy.grpc).await;
        async move {
            let mut failures = Vec::new();
            for _ in 0..150 {
                if let Err(status) = workflows.get_system_info(GetSystemInfoRequest::default()).await {
                    failures.push(status);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            failures
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rotated_cert, rotated_key) = nginx.client_identity("worker-2026-12");
    std::fs::copy(&rotated_key, &key).unwrap();
    std::fs::copy(&rotated_cert, &cert).unwrap();
    proxy.wait_for_log("reloaded the upstream TLS files; new connections use them");
    let failures = caller.await.unwrap();
    assert!(failures.is_empty(), "calls failed during rotation: {failures:?}");
    let log = nginx.access_log_mentioning("CN=worker-2026-12");
    assert!(
        log.contains("CN=worker-2026-12"),
        "the rotated certificate was never used: {log}"
    );
    assert!(!proxy.all_logs().contains(API_KEY), "the API key reached the logs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_or_a_missing_client_certificate_fails_with_a_clear_status() {
    let nginx = Nginx::start();
    let wrong_ca = write(&nginx.dir, "wrong-ca.pem", &TestCa::new("someone else").pem);
    let right_ca = write(&nginx.dir, "upstream-ca.pem", &nginx.server_ca.pem);

    let untrusting = ProxyProcess::start(
        &nginx.address,
        &random_key(),
        &[
            "--upstream-ca",
            path_arg(&wrong_ca),
            "--upstream-server-name",
            "localhost",
        ],
    );
    let status = client(&untrusting.grpc)
        .await
        .get_system_info(GetSystemInfoRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains(&nginx.address) && status.message().contains("certificate"),
        "{status:?}"
    );

    let anonymous = ProxyProcess::start(
        &nginx.address,
        &random_key(),
        &[
            "--upstream-ca",
            path_arg(&right_ca),
            "--upstream-server-name",
            "localhost",
        ],
    );
    let status = client(&anonymous.grpc)
        .await
        .get_system_info(GetSystemInfoRequest::default())
        .await
        .unwrap_err();
    // nginx answers a missing client certificate with an HTML error page, not gRPC.
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert!(
        status.message().contains("HTTP 400") && status.message().contains("No required SSL certificate was sent"),
        "{status:?}"
    );
}
