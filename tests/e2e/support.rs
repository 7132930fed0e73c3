//! Shared test fixtures: one Temporal dev server per test binary, proxies, tools.

use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderValue;
use prost::Message as _;
use temporal_codec_proxy::auth::Authenticator;
use temporal_codec_proxy::codec::{Codec, EncryptionPolicy, Keyring};
use temporal_codec_proxy::codec_server::{self, CodecServerSettings};
use temporal_codec_proxy::memory_budget::MemoryBudget;
use temporal_codec_proxy::proxy::{self, Forwarder};
use temporal_codec_proxy::running_server::{ConnectionCap, Refusal, RunningServer};
use temporal_codec_proxy::telemetry::Metrics;
use temporalio_protos::temporal::api::common::v1::{Payload, WorkflowExecution};
use temporalio_protos::temporal::api::history::v1::History;
use temporalio_protos::temporal::api::history::v1::WorkflowExecutionStartedEventAttributes;
use temporalio_protos::temporal::api::history::v1::history_event::Attributes;
use temporalio_protos::temporal::api::workflowservice::v1::workflow_service_client::WorkflowServiceClient;
use temporalio_protos::temporal::api::workflowservice::v1::{
    DescribeWorkflowExecutionRequest, GetWorkflowExecutionHistoryRequest,
};
use zeroize::Zeroizing;

/// The namespace the fault tests write deliberately bad data to, so the
/// every-payload-is-encrypted checks of `default` stay meaningful.
pub const FAULTS_NAMESPACE: &str = "faults";

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tools_dir() -> PathBuf {
    std::env::var_os("TEST_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".test-tools"))
}

pub fn python() -> PathBuf {
    let python = tools_dir().join("venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/install-test-tools.sh (scripts/test.sh does)",
        python.display()
    );
    python
}

pub fn temporal_cli() -> PathBuf {
    tools_dir().join("venv/bin/temporal")
}

pub fn free_port() -> u16 {
    StdTcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct DevServer {
    pub address: String,
    /// The Web UI's address, when the server runs one.
    pub ui_address: Option<String>,
    /// The shell that runs the server and stops it when this process ends, or when it
    /// receives SIGTERM.
    watcher: std::process::Child,
}

impl Drop for DevServer {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.watcher.id().to_string()).status();
        let _ = self.watcher.wait();
    }
}

fn log_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("temporal-codec-proxy-e2e-{name}.log"))
}

/// Starts `command` in the background, logging to a file named after `name`, under a
/// watcher shell that stops it when this test process ends or when the watcher gets
/// SIGTERM. Returns the watcher.
pub fn spawn_for_this_test_run(command: &str, name: &str) -> std::process::Child {
    let script = format!(
        "{command} & child=$!; trap 'kill $child; exit 0' TERM; \
         while kill -0 {parent} 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 1; done; kill $child",
        parent = std::process::id(),
    );
    let log_path = log_path(name);
    let log = std::fs::File::create(&log_path).expect("create a log file");
    eprintln!("{name}: log in {}", log_path.display());
    Command::new("bash")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|error| panic!("start {name}: {error}"))
}

/// A dev server of its own with the Web UI, which calls the codec server at `codec_endpoint`.
pub fn dev_server_with_ui(codec_endpoint: &str) -> DevServer {
    start_dev_server(Some(codec_endpoint), "")
}

/// The dev server shared by every test of this binary, started on first use.
pub fn dev_server() -> &'static DevServer {
    static SERVER: OnceLock<DevServer> = OnceLock::new();
    SERVER.get_or_init(|| start_dev_server(None, ""))
}

/// A second dev server that answers history requests with serialized `raw_history` blobs.
pub fn raw_history_dev_server() -> &'static DevServer {
    static SERVER: OnceLock<DevServer> = OnceLock::new();
    SERVER.get_or_init(|| start_dev_server(None, "--dynamic-config-value frontend.sendRawWorkflowHistory=true"))
}

/// How long one start of the dev server may take to answer its health check. Several
/// servers and SDK workers start at once on two cores, so this is generous.
const DEV_SERVER_START_TIMEOUT: Duration = Duration::from_secs(120);

/// How many times a dev server is started before the test gives up. A start can fail for
/// reasons outside the test: a port picked by `free_port` taken by another process before
/// the server bound it.
const DEV_SERVER_START_ATTEMPTS: usize = 3;

fn start_dev_server(ui_codec_endpoint: Option<&str>, extra_flags: &str) -> DevServer {
    let cli = temporal_cli();
    assert!(
        cli.exists(),
        "{} is missing: run scripts/install-test-tools.sh",
        cli.display()
    );
    let mut failures = Vec::new();
    for _ in 0..DEV_SERVER_START_ATTEMPTS {
        let port = free_port();
        let address = format!("127.0.0.1:{port}");
        let (ui_flags, ui_address) = match ui_codec_endpoint {
            Some(endpoint) => {
                let ui_port = free_port();
                (
                    format!("--ui-port {ui_port} --ui-codec-endpoint {endpoint}"),
                    Some(format!("127.0.0.1:{ui_port}")),
                )
            }
            None => ("--headless".to_owned(), None),
        };
        // The server outlives no test run: a watcher kills it once this test process is gone.
        let command = format!(
            "{cli} server start-dev --ip 127.0.0.1 --port {port} --http-port {http} \
             --metrics-port {metrics} --db-filename '' --log-level error --namespace {FAULTS_NAMESPACE} \
             --dynamic-config-value frontend.rps=100000 \
             --dynamic-config-value frontend.namespaceRPS=100000 {ui_flags} {extra_flags}",
            cli = cli.display(),
            http = free_port(),
            metrics = free_port(),
        );
        let name = format!("server-{port}");
        let mut server = DevServer {
            address,
            ui_address,
            watcher: spawn_for_this_test_run(&command, &name),
        };
        match wait_until_healthy(&cli, &mut server) {
            Ok(()) => return server,
            Err(reason) => {
                let log = std::fs::read_to_string(log_path(&name)).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                eprintln!("{name}: {reason}; last lines of its log:\n{}", tail.join("\n"));
                failures.push(format!("{name}: {reason}"));
            }
        }
    }
    panic!("dev server did not become healthy: {}", failures.join("; "));
}

fn wait_until_healthy(cli: &Path, server: &mut DevServer) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let healthy = Command::new(cli)
            .args(["operator", "cluster", "health", "--address", &server.address])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if healthy {
            return Ok(());
        }
        if let Ok(Some(status)) = server.watcher.try_wait() {
            return Err(format!("the server exited ({status}) before it was healthy"));
        }
        if started.elapsed() > DEV_SERVER_START_TIMEOUT {
            return Err(format!("not healthy after {DEV_SERVER_START_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// A proxy running inside the test process: the gRPC listener and the codec server.
pub struct TestProxy {
    pub address: SocketAddr,
    pub codec_address: SocketAddr,
    pub codec: Arc<Codec>,
    listener: RunningServer,
    codec_server: RunningServer,
}

/// Browser origins the test codec servers allow.
pub const TEST_CORS_ORIGINS: &[&str] = &["http://ui.example.test", "http://localhost:8233"];

impl TestProxy {
    pub async fn start(upstream: &str, keys: &[(&str, [u8; 32])]) -> Self {
        Self::start_with_limit(upstream, keys, temporal_codec_proxy::config::DEFAULT_MAX_MESSAGE_BYTES).await
    }

    pub async fn start_with_limit(upstream: &str, keys: &[(&str, [u8; 32])], max_message_bytes: usize) -> Self {
        Self::start_with(upstream, keys, max_message_bytes, None).await
    }

    /// A proxy whose codec server authenticates callers with `authenticator`.
    pub async fn start_with_auth(upstream: &str, keys: &[(&str, [u8; 32])], authenticator: Authenticator) -> Self {
        Self::start_with(
            upstream,
            keys,
            temporal_codec_proxy::config::DEFAULT_MAX_MESSAGE_BYTES,
            Some(Arc::new(authenticator)),
        )
        .await
    }

    /// A proxy whose codec server listens on `codec_listen` and allows the `ui_origin`.
    pub async fn start_for_ui(
        upstream: &str,
        keys: &[(&str, [u8; 32])],
        codec_listen: SocketAddr,
        ui_origin: &str,
    ) -> Self {
        let mut proxy = Self::start(upstream, keys).await;
        let settings = CodecServerSettings {
            cors_origins: vec![HeaderValue::from_str(ui_origin).unwrap()],
            max_body_bytes: 1024 * 1024,
            body_timeout: Duration::from_secs(30),
            authenticator: None,
            tls: None,
        };
        proxy.replace_codec_server(codec_listen, settings).await;
        proxy
    }

    /// Serves the codec server on `listen` with `settings` instead of the default one.
    pub async fn replace_codec_server(&mut self, listen: SocketAddr, settings: CodecServerSettings) {
        let replacement = codec_server::start(
            listen,
            codec_server::router(Arc::clone(&self.codec), &settings, test_budget()),
            settings.tls.clone(),
            ConnectionCap::new("codec-server", "--codec-max-connections", 1024, Refusal::Close),
        )
        .await
        .unwrap();
        self.codec_address = replacement.local_addr();
        let replaced = std::mem::replace(&mut self.codec_server, replacement);
        replaced.shutdown(Duration::from_secs(1)).await;
    }

    async fn start_with(
        upstream: &str,
        keys: &[(&str, [u8; 32])],
        max_message_bytes: usize,
        authenticator: Option<Arc<Authenticator>>,
    ) -> Self {
        let keyring = Keyring::new(
            keys.iter()
                .map(|(id, key)| (id.to_string(), Zeroizing::new(key.to_vec()))),
        )
        .unwrap();
        let codec = Codec::new(keyring, EncryptionPolicy::default()).with_message_limit(max_message_bytes);
        Self::start_with_codec_and_limits(upstream, codec, max_message_bytes, authenticator).await
    }

    /// A proxy around a codec built by the test (KMS, for one).
    pub async fn start_with_codec(upstream: &str, codec: Codec) -> Self {
        Self::start_with_codec_and_limits(
            upstream,
            codec,
            temporal_codec_proxy::config::DEFAULT_MAX_MESSAGE_BYTES,
            None,
        )
        .await
    }

    async fn start_with_codec_and_limits(
        upstream: &str,
        codec: Codec,
        max_message_bytes: usize,
        authenticator: Option<Arc<Authenticator>>,
    ) -> Self {
        let codec = Arc::new(codec);
        let upstream_client =
            proxy::upstream::connect_lazy(&proxy::upstream::UpstreamSettings::plaintext(upstream)).unwrap();
        let forwarder = Arc::new(Forwarder::new(
            Arc::clone(&codec),
            upstream_client,
            upstream.to_owned(),
            max_message_bytes,
            Arc::new(Metrics::new(Arc::clone(&codec))),
        ));
        let listener = proxy::start(
            "127.0.0.1:0".parse().unwrap(),
            forwarder,
            None,
            ConnectionCap::new("gRPC", "--max-connections", 1024, Refusal::Http2GoAway),
            proxy::listener::CallerConnections::default(),
        )
        .await
        .unwrap();
        let settings = CodecServerSettings {
            cors_origins: TEST_CORS_ORIGINS.iter().map(|o| HeaderValue::from_static(o)).collect(),
            max_body_bytes: 1024 * 1024,
            body_timeout: Duration::from_secs(30),
            authenticator,
            tls: None,
        };
        let codec_server = codec_server::start(
            "127.0.0.1:0".parse().unwrap(),
            codec_server::router(Arc::clone(&codec), &settings, test_budget()),
            None,
            ConnectionCap::new(
                "codec-server",
                "--codec-max-connections",
                1024,
                Refusal::Http1Unavailable,
            ),
        )
        .await
        .unwrap();
        Self {
            address: listener.local_addr(),
            codec_address: codec_server.local_addr(),
            codec,
            listener,
            codec_server,
        }
    }

    /// Connections the codec server is serving.
    pub fn codec_connections(&self) -> usize {
        self.codec_server.connections()
    }

    pub fn codec_url(&self) -> String {
        format!("http://{}", self.codec_address)
    }

    pub fn address(&self) -> String {
        self.address.to_string()
    }

    pub async fn stop(self) {
        self.listener.shutdown(Duration::from_secs(5)).await;
        self.codec_server.shutdown(Duration::from_secs(5)).await;
    }
}

/// A random key and a fresh id, so tests never share keys by accident.
/// A memory budget of the proxy's default size, for servers a test builds itself.
pub fn test_budget() -> Arc<MemoryBudget> {
    MemoryBudget::new(
        temporal_codec_proxy::memory_budget::DEFAULT_MAX_BUFFERED_BYTES,
        temporal_codec_proxy::memory_budget::DEFAULT_BUFFER_WAIT,
    )
}

pub fn random_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    aws_lc_rs::rand::fill(&mut key).unwrap();
    key
}

pub fn unique(prefix: &str) -> String {
    let mut bytes = [0u8; 4];
    aws_lc_rs::rand::fill(&mut bytes).unwrap();
    format!("{prefix}-{}", hex::encode(bytes))
}

/// Runs a test program to completion and returns its stdout; fails the test with its
/// output if it exits non-zero.
pub async fn run_program(program: &Path, args: &[String], cwd: &Path, timeout: Duration) -> String {
    let child = tokio::process::Command::new(program)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{} {args:?} did not finish in {timeout:?}", program.display()))
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{} {args:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        program.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The last line of a program's stdout, parsed as JSON.
pub fn last_json_line(stdout: &str) -> serde_json::Value {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or_else(|| {
            panic!("no JSON line in output:\n{stdout}");
        });
    serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON {line}: {e}"))
}

/// Runs `scripts/demo_workflow.py` (a Python SDK worker and client) through the proxy at
/// `proxy_address`: a workflow with a card number in its input, completed with a result.
pub async fn run_demo_workflow(proxy_address: String, workflow_id: &str) {
    run_program(
        &python(),
        &[
            "scripts/demo_workflow.py".into(),
            "--address".into(),
            proxy_address,
            "--workflow-id".into(),
            workflow_id.to_owned(),
            "--task-queue".into(),
            unique("demo-tq"),
        ],
        &repo_root(),
        Duration::from_secs(120),
    )
    .await;
}

/// The `WorkflowExecutionStarted` attributes of a workflow's current run, read through
/// `address` (a server or a proxy), from a history or a raw-history blob.
pub async fn workflow_started(
    address: &str,
    namespace: &str,
    workflow_id: &str,
) -> Result<WorkflowExecutionStartedEventAttributes, tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let response = WorkflowServiceClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .get_workflow_execution_history(GetWorkflowExecutionHistoryRequest {
            namespace: namespace.into(),
            execution: Some(WorkflowExecution {
                workflow_id: workflow_id.into(),
                run_id: String::new(),
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    let history = match response.history {
        Some(history) if !history.events.is_empty() => history,
        _ => {
            let blob = response.raw_history.first().expect("a history or a raw history blob");
            History::decode(blob.data.as_slice()).unwrap()
        }
    };
    match history.events.into_iter().next().and_then(|event| event.attributes) {
        Some(Attributes::WorkflowExecutionStartedEventAttributes(started)) => Ok(started),
        other => panic!("first event is not WorkflowExecutionStarted: {other:?}"),
    }
}

/// The first input payload of a workflow, as `address` answers it.
pub async fn started_input(address: &str, namespace: &str, workflow_id: &str) -> Result<Payload, tonic::Status> {
    let started = workflow_started(address, namespace, workflow_id).await?;
    Ok(started.input.unwrap().payloads.into_iter().next().unwrap())
}

/// Posts a `{"payloads": …}` body to a codec-server URL; returns the status and JSON answer.
pub async fn post_payloads(
    url: &str,
    namespace: &str,
    body: &serde_json::Value,
) -> (reqwest::StatusCode, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("x-namespace", namespace)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// Opens a gRPC call to `path` on a raw HTTP/2 connection to `address`, for what a gRPC
/// client hides: whether a header block ends the stream, or a request stream left open.
pub async fn raw_h2_call(address: &str, path: &str) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let (sender, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut sender = sender.ready().await.unwrap();
    let request = http::Request::post(format!("http://{address}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    sender.send_request(request, false).unwrap()
}

/// Whether workflow `workflow_id` exists, asked of the server directly.
pub async fn reached_the_server(workflow_id: &str) -> bool {
    let described = crate::faults::client(&dev_server().address)
        .await
        .describe_workflow_execution(DescribeWorkflowExecutionRequest {
            namespace: FAULTS_NAMESPACE.into(),
            execution: Some(WorkflowExecution {
                workflow_id: workflow_id.into(),
                run_id: String::new(),
            }),
        })
        .await;
    match described {
        Ok(_) => true,
        Err(status) if status.code() == tonic::Code::NotFound => false,
        Err(status) => panic!("describing {workflow_id}: {status:?}"),
    }
}
