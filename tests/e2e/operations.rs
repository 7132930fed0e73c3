//! The proxy binary as operators run it: admin endpoints, JSON logs, graceful shutdown,
//! the configuration file and `check-config`.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use temporalio_protos::temporal::api::taskqueue::v1::TaskQueue;
use temporalio_protos::temporal::api::workflowservice::v1::PollActivityTaskQueueRequest;

use crate::faults::{client, json_payload, start_request};
use crate::relay::Relay;
use crate::support::{FAULTS_NAMESPACE, dev_server, random_key, started_input, unique};

const START_WORKFLOW: &str = "/temporal.api.workflowservice.v1.WorkflowService/StartWorkflowExecution";
const PROXY_BIN: &str = env!("CARGO_BIN_EXE_temporal-codec-proxy");

/// The `temporal-codec-proxy serve` process, logging JSON, with the addresses it bound.
pub struct ProxyProcess {
    pub child: Child,
    pub logs: Arc<Mutex<Vec<serde_json::Value>>>,
    pub grpc: String,
    pub admin: String,
    pub codec: String,
}

impl ProxyProcess {
    /// Starts the binary on ephemeral ports and waits until every listener is up.
    pub fn start(upstream: &str, key: &[u8; 32], extra_args: &[&str]) -> Self {
        Self::spawn(Command::new(PROXY_BIN), upstream, Some(key), extra_args)
    }

    /// As [`ProxyProcess::start`] with no `--key`: `extra_args` (a configuration file, say)
    /// give the keys.
    pub fn start_keyed_by(upstream: &str, extra_args: &[&str]) -> Self {
        Self::spawn(Command::new(PROXY_BIN), upstream, None, extra_args)
    }

    /// As [`ProxyProcess::start`], with the process allowed on CPU 0 only.
    pub fn start_on_one_cpu(upstream: &str, key: &[u8; 32]) -> Self {
        let mut taskset = Command::new("taskset");
        taskset.args(["-c", "0", PROXY_BIN]);
        Self::spawn(taskset, upstream, Some(key), &[])
    }

    /// As [`ProxyProcess::start`], started by `prlimit` with these open-file limits.
    pub fn start_with_open_file_limits(
        upstream: &str,
        key: &[u8; 32],
        (soft, hard): (u64, u64),
        extra_args: &[&str],
    ) -> Self {
        let mut prlimit = Command::new("prlimit");
        prlimit.arg(format!("--nofile={soft}:{hard}")).arg(PROXY_BIN);
        Self::spawn(prlimit, upstream, Some(key), extra_args)
    }

    fn spawn(mut command: Command, upstream: &str, key: Option<&[u8; 32]>, extra_args: &[&str]) -> Self {
        let key_flags = key.map(|key| {
            [
                "--key".to_owned(),
                format!("ops=base64:{}", base64::engine::general_purpose::STANDARD.encode(key)),
            ]
        });
        let mut child = command
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--codec-listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--upstream",
                upstream,
                "--log-format",
                "json",
                "--log",
                "info,temporal_codec_proxy=debug",
            ])
            .args(key_flags.iter().flatten())
            .args(extra_args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the proxy binary starts");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let parsed = serde_json::from_str(&line)
                    .unwrap_or_else(|_| panic!("--log-format json wrote a line that is not JSON: {line}"));
                sink.lock().unwrap().push(parsed);
            }
        });
        let mut process = Self {
            child,
            logs,
            grpc: String::new(),
            admin: String::new(),
            codec: String::new(),
        };
        process.grpc = process.wait_for_log("proxying gRPC calls")["listen"]
            .as_str()
            .unwrap()
            .to_owned();
        process.admin = process.wait_for_log("serving /metrics, /healthz and /readyz")["listen"]
            .as_str()
            .unwrap()
            .to_owned();
        process.codec = process.wait_for_log("serving the codec-server API")["listen"]
            .as_str()
            .unwrap()
            .to_owned();
        process
    }

    pub fn wait_for_log(&self, message: &str) -> serde_json::Value {
        let started = Instant::now();
        loop {
            if let Some(line) = self.logs.lock().unwrap().iter().find(|line| line["message"] == message) {
                return line.clone();
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no log line {message:?}; logs so far: {:?}",
                self.logs.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn all_logs(&self) -> String {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .map(|line| line.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = reqwest::get(format!("http://{}{path}", self.admin))
            .await
            .unwrap_or_else(|error| panic!("GET {path}: {error}"));
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// Polls `path` until it answers `status`.
    async fn wait_for_status(&self, path: &str, status: u16) -> String {
        let started = Instant::now();
        loop {
            let (seen, body) = self.get(path).await;
            if seen == status {
                return body;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{path} stayed {seen} ({body}), expected {status}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of one sample line in a Prometheus text exposition, if present.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_show_real_figures_and_readiness_follows_the_upstream() {
    let mut relay = Relay::start(&dev_server().address).await;
    let key = random_key();
    let proxy = ProxyProcess::start(&relay.address.to_string(), &key, &[]);

    assert_eq!(proxy.get("/healthz").await.0, 200);
    proxy.wait_for_status("/readyz", 200).await;
    let before = proxy.get("/metrics").await.1;
    let started_ok = format!("temporal_codec_proxy_rpcs_total{{method=\"{START_WORKFLOW}\",code=\"OK\"}}");
    assert_eq!(sample(&before, &started_ok), None, "{before}");
    assert_eq!(
        sample(&before, "temporal_codec_proxy_payloads_encrypted_total"),
        Some(0.0)
    );

    let marker = unique("secret-ops-input");
    let mut workflows = client(&proxy.grpc).await;
    for _ in 0..3 {
        workflows
            .start_workflow_execution(start_request(&unique("ops"), json_payload(&format!("\"{marker}\""))))
            .await
            .unwrap();
    }

    let after = proxy.get("/metrics").await.1;
    assert_eq!(sample(&after, &started_ok), Some(3.0), "{after}");
    assert!(sample(&after, "temporal_codec_proxy_payloads_encrypted_total").unwrap() >= 3.0);
    assert!(sample(&after, "temporal_codec_proxy_payload_bytes_encrypted_total").unwrap() > 0.0);
    assert_eq!(
        sample(&after, "temporal_codec_proxy_static_key_encryptions_total{key=\"ops\"}"),
        sample(&after, "temporal_codec_proxy_payloads_encrypted_total"),
        "every encryption is counted for the key that made it"
    );
    let method_label = format!("{{method=\"{START_WORKFLOW}\"}}");
    for histogram in [
        "temporal_codec_proxy_rpc_upstream_duration_seconds_count",
        "temporal_codec_proxy_rpc_added_duration_seconds_count",
    ] {
        assert_eq!(
            sample(&after, &format!("{histogram}{method_label}")),
            Some(3.0),
            "{after}"
        );
    }

    let call_logged = proxy
        .logs
        .lock()
        .unwrap()
        .iter()
        .any(|line| line["message"] == "call finished" && line["method"] == START_WORKFLOW && line["code"] == "OK");
    assert!(call_logged, "no debug line for the call: {}", proxy.all_logs());
    let logs = proxy.all_logs();
    assert!(!logs.contains(&marker), "a payload reached the logs");
    let key_text = base64::engine::general_purpose::STANDARD.encode(key);
    assert!(!logs.contains(&key_text), "the key reached the logs");

    relay.stop().await;
    let reason = proxy.wait_for_status("/readyz", 503).await;
    assert!(reason.contains("upstream"), "{reason}");
    assert_eq!(
        proxy.get("/healthz").await.0,
        200,
        "liveness does not depend on the upstream"
    );
    relay.restart().await;
    proxy.wait_for_status("/readyz", 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_one_cpu_the_proxy_runs_every_task_on_one_thread_and_still_encrypts() {
    let key = random_key();
    let proxy = ProxyProcess::start_on_one_cpu(&dev_server().address, &key);
    let runtime = proxy.wait_for_log("started the async runtime");
    assert_eq!(runtime["cpus"], 1, "{runtime}");
    assert_eq!(runtime["scheduler"], "current-thread", "{runtime}");

    let marker = unique("secret-one-cpu-input");
    let mut workflows = client(&proxy.grpc).await;
    let workflow_id = unique("one-cpu");
    workflows
        .start_workflow_execution(start_request(&workflow_id, json_payload(&format!("\"{marker}\""))))
        .await
        .unwrap();
    let stored = started_input(&dev_server().address, FAULTS_NAMESPACE, &workflow_id)
        .await
        .unwrap();
    assert_eq!(stored.metadata["encoding"], b"binary/encrypted");
    let seen = started_input(&proxy.grpc, FAULTS_NAMESPACE, &workflow_id)
        .await
        .unwrap();
    assert_eq!(seen, json_payload(&format!("\"{marker}\"")));
    proxy.wait_for_status("/readyz", 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_calls_in_flight_finish_refuses_new_connections_and_exits_zero() {
    let proxy = ProxyProcess::start(&dev_server().address, &random_key(), &["--shutdown-grace", "20s"]);
    let task_queue = unique("drain-tq");
    let mut polls = Vec::new();
    for _ in 0..5 {
        let mut workflows = client(&proxy.grpc).await;
        let task_queue = task_queue.clone();
        polls.push(tokio::spawn(async move {
            let mut request = tonic::Request::new(PollActivityTaskQueueRequest {
                namespace: FAULTS_NAMESPACE.into(),
                task_queue: Some(TaskQueue {
                    name: task_queue,
                    ..Default::default()
                }),
                identity: "drain-test".into(),
                ..Default::default()
            });
            // The server answers an idle long poll with an empty task shortly before its deadline.
            request.set_timeout(Duration::from_secs(6));
            workflows.poll_activity_task_queue(request).await
        }));
    }
    // Let the polls reach the server before the signal.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let signalled = Instant::now();
    proxy.terminate();

    // A second later the polls are still open, and a client trying to connect is refused at
    // once, so it fails over instead of waiting on a connection nobody will serve.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        std::net::TcpStream::connect(&proxy.grpc).is_err(),
        "a new connection was accepted 1 s after SIGTERM"
    );
    assert!(
        polls.iter().all(|poll| !poll.is_finished()),
        "the polls ended before the check, so it says nothing about calls in flight"
    );
    for poll in polls {
        let answer = poll.await.unwrap();
        assert!(answer.is_ok(), "a long poll in flight was cut: {answer:?}");
    }
    let mut proxy = proxy;
    let exit = loop {
        if let Some(status) = proxy.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(20),
            "still running after the grace period"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "exit status {exit}");
    assert!(proxy.all_logs().contains("stopped"));
}

#[test]
fn check_config_orders_flag_environment_file_default_and_redacts_secrets() {
    let dir = std::env::temp_dir().join(unique("config"));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("old.key");
    std::fs::write(
        &key_file,
        base64::engine::general_purpose::STANDARD.encode(random_key()),
    )
    .unwrap();
    let inline_key = base64::engine::general_purpose::STANDARD.encode(random_key());
    let config = dir.join("proxy.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:17233\"\ncodec-listen = \"127.0.0.1:17234\"\nadmin-listen = \"127.0.0.1:17235\"\n\
             upstream = \"temporal.internal:7233\"\nkey = [\"current=base64:{inline_key}\", \"old=file:{}\"]\n\
             upstream-api-key = \"api-key-in-file\"\nencrypt-headers = false\nmax-message-bytes = 1048576\n",
            key_file.display()
        ),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_temporal-codec-proxy"))
        .args([
            "check-config",
            "--config",
            config.to_str().unwrap(),
            "--listen",
            "127.0.0.1:27233",
        ])
        .env("TEMPORAL_CODEC_PROXY_CODEC_LISTEN", "127.0.0.1:27234")
        .env_remove("TEMPORAL_CODEC_PROXY_ADMIN_LISTEN")
        .env_remove("TEMPORAL_API_KEY")
        .env_remove("TEMPORAL_ADDRESS")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("configuration is valid"), "{stderr}");
    for expected in [
        "listen = \"127.0.0.1:27233\"  # flag",
        "codec-listen = \"127.0.0.1:27234\"  # environment",
        "admin-listen = \"127.0.0.1:17235\"  # file",
        "encrypt-headers = \"false\"  # file",
        "max-message-bytes = \"1048576\"  # file",
        "shutdown-grace = \"30s\"  # default",
        "upstream-api-key = \"<redacted>\"  # file",
        "key = [\"current=base64:<redacted>\", \"old=file:",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
    assert!(
        !stdout.contains(&inline_key) && !stdout.contains("api-key-in-file"),
        "{stdout}"
    );

    std::fs::write(&config, "listen = \"127.0.0.1:17233\"\nlisten-on-everything = true\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_temporal-codec-proxy"))
        .args(["check-config", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown setting \"listen-on-everything\""), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Resident memory (KiB) and open file descriptors of a process.
fn resources(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    (rss_kib, fds)
}

const LONG_POLLS: usize = 1000;
const LOAD_DURATION: Duration = Duration::from_secs(60);
/// The server answers an empty long poll one second before its deadline; on a busy host
/// the answer can miss that second, the more so when many deadlines fall together, so the
/// pollers' deadlines are spread over ten seconds. A poller treats a deadline reached as an empty answer
/// and polls again, as the SDKs do, but only a few may end that way.
const MAX_DEADLINES_REACHED: usize = LONG_POLLS / 100;
const DEADLINE_SPREAD_STEPS: usize = 20;
const DEADLINE_SPREAD_STEP: Duration = Duration::from_millis(500);

/// How one long poller fared: answers, and polls that ran into their deadline.
#[derive(Default)]
struct PollerOutcome {
    answers: usize,
    deadlines_reached: usize,
}

/// Whether `status` ended a poll because its deadline came, not before it: a proxy that
/// cut a long poll short would fail this.
fn reached_deadline(status: &tonic::Status, elapsed: Duration, timeout: Duration) -> bool {
    let deadline_code = match status.code() {
        tonic::Code::DeadlineExceeded => true,
        // The client's own timer, which runs out at the same time as the deadline it sent.
        tonic::Code::Cancelled => status.message() == "Timeout expired",
        _ => false,
    };
    deadline_code && elapsed >= timeout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_long_polls_held_for_a_minute_with_unary_traffic_and_no_error() {
    let proxy = ProxyProcess::start(&dev_server().address, &random_key(), &[]);
    let pid = proxy.child.id();
    let idle = resources(pid);
    let task_queue = unique("load-tq");
    // Workers share a few connections, as SDK clients do.
    let mut connections = Vec::new();
    for _ in 0..10 {
        connections.push(client(&proxy.grpc).await);
    }
    let started = Instant::now();
    let mut polls = Vec::with_capacity(LONG_POLLS);
    for index in 0..LONG_POLLS {
        let mut workflows = connections[index % connections.len()].clone();
        let task_queue = task_queue.clone();
        polls.push(tokio::spawn(async move {
            let mut outcome = PollerOutcome::default();
            // Each poll is renewed when the server answers it empty, until the minute is up.
            while started.elapsed() < LOAD_DURATION {
                let mut request = tonic::Request::new(PollActivityTaskQueueRequest {
                    namespace: FAULTS_NAMESPACE.into(),
                    task_queue: Some(TaskQueue {
                        name: task_queue.clone(),
                        ..Default::default()
                    }),
                    identity: format!("load-poller-{index}"),
                    ..Default::default()
                });
                let timeout = LOAD_DURATION
                    .saturating_sub(started.elapsed())
                    .max(Duration::from_secs(5))
                    + DEADLINE_SPREAD_STEP * (index % DEADLINE_SPREAD_STEPS) as u32;
                request.set_timeout(timeout);
                let sent = Instant::now();
                match workflows.poll_activity_task_queue(request).await {
                    Ok(_) => outcome.answers += 1,
                    Err(status) if reached_deadline(&status, sent.elapsed(), timeout) => {
                        outcome.deadlines_reached += 1;
                    }
                    Err(status) => return Err(status),
                }
            }
            Ok::<PollerOutcome, tonic::Status>(outcome)
        }));
    }
    let unary = tokio::spawn({
        let mut workflows = connections[0].clone();
        async move {
            let mut calls = 0usize;
            while started.elapsed() < LOAD_DURATION {
                workflows
                    .start_workflow_execution(start_request(&unique("load"), json_payload("\"load\"")))
                    .await?;
                calls += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok::<usize, tonic::Status>(calls)
        }
    });
    tokio::time::sleep(LOAD_DURATION / 2).await;
    let loaded = resources(pid);
    let mut polls_answered = 0;
    let mut deadlines_reached = 0;
    for poll in futures_util::future::join_all(polls).await {
        let outcome = poll.unwrap().expect("a long poll failed");
        polls_answered += outcome.answers;
        deadlines_reached += outcome.deadlines_reached;
    }
    assert!(
        deadlines_reached <= MAX_DEADLINES_REACHED,
        "{deadlines_reached} long polls ran into their deadline"
    );
    let unary_calls = unary.await.unwrap().expect("a unary call failed under load");
    let metrics = reqwest::get(format!("http://{}/metrics", proxy.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The proxy counts a poll whose deadline came as DEADLINE_EXCEEDED, or as CANCELLED when
    // the client gave up first; nothing else may end other than OK.
    let not_ok: Vec<&str> = metrics
        .lines()
        .filter(|line| line.starts_with("temporal_codec_proxy_rpcs_total") && !line.contains("code=\"OK\""))
        .collect();
    let deadline_lines: Vec<&str> = not_ok
        .iter()
        .copied()
        .filter(|line| {
            line.contains("PollActivityTaskQueue")
                && (line.contains("code=\"DEADLINE_EXCEEDED\"") || line.contains("code=\"CANCELLED\""))
        })
        .collect();
    assert_eq!(not_ok, deadline_lines, "calls ended other than OK");
    let counted_at_deadline: usize = deadline_lines
        .iter()
        .map(|line| line.rsplit(' ').next().unwrap().parse::<usize>().unwrap())
        .sum();
    assert!(
        counted_at_deadline <= deadlines_reached,
        "the proxy counted {counted_at_deadline} polls ended at their deadline, the pollers saw {deadlines_reached}"
    );
    assert!(unary_calls > 100, "only {unary_calls} unary calls completed");

    let report = format!(
        "{LONG_POLLS} long polls held for {}s on 10 connections plus {unary_calls} StartWorkflowExecution calls; \
         {polls_answered} poll answers, {deadlines_reached} polls ran into their deadline, no errors. Proxy resident memory {} KiB idle, {} KiB under load; \
         open file descriptors {} idle, {} under load.\n",
        LOAD_DURATION.as_secs(),
        idle.0,
        loaded.0,
        idle.1,
        loaded.1
    );
    eprint!("{report}");
    let artifacts = crate::support::repo_root().join("target/e2e-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::write(artifacts.join("load-report.txt"), report).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_spread_over_the_configured_number_of_upstream_connections() {
    use temporalio_protos::temporal::api::workflowservice::v1::GetSystemInfoRequest;

    let server = dev_server();
    for connections in [1, 3] {
        let relay = Relay::start(&server.address).await;
        let proxy = ProxyProcess::start(
            &relay.address.to_string(),
            &random_key(),
            &["--upstream-connections", &connections.to_string()],
        );
        let caller = client(&proxy.grpc).await;
        let calls = (0..12).map(|_| {
            let mut caller = caller.clone();
            async move { caller.get_system_info(GetSystemInfoRequest {}).await }
        });
        for answer in futures_util::future::join_all(calls).await {
            answer.expect("a call through the proxy succeeds");
        }
        assert_eq!(
            relay.recorded.lock().unwrap().connections,
            connections,
            "--upstream-connections {connections}"
        );
        drop(proxy);
    }
    for out_of_range in ["0", "65"] {
        let refused = Command::new(PROXY_BIN)
            .args(["check-config", "--upstream", &server.address, "--key"])
            .arg(format!(
                "k=base64:{}",
                base64::engine::general_purpose::STANDARD.encode(random_key())
            ))
            .args(["--upstream-connections", out_of_range])
            .output()
            .unwrap();
        assert!(
            !refused.status.success(),
            "--upstream-connections {out_of_range} was accepted"
        );
        let message = String::from_utf8_lossy(&refused.stderr);
        assert!(message.contains("--upstream-connections"), "{message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_soft_open_file_limit_is_raised_to_the_hard_one_and_logged() {
    let proxy = ProxyProcess::start_with_open_file_limits(&dev_server().address, &random_key(), (256, 4096), &[]);
    let logged = proxy.wait_for_log("open-file limit");
    assert_eq!(
        (
            logged["soft_before"].as_u64(),
            logged["soft"].as_u64(),
            logged["hard"].as_u64()
        ),
        (Some(256), Some(4096), Some(4096)),
        "{logged}"
    );
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", proxy.child.id())).unwrap();
    let open_files = limits.lines().find(|line| line.starts_with("Max open files")).unwrap();
    assert_eq!(
        open_files.split_whitespace().collect::<Vec<_>>()[3..5],
        ["4096", "4096"],
        "{open_files}"
    );
}
