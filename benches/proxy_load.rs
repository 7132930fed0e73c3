//! End-to-end load through the proxy process: throughput, latency, CPU and memory of QueryWorkflow calls.

#[path = "../tests/e2e/nginx_config.rs"]
mod nginx_config;

use std::convert::Infallible;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use h2::client::SendRequest;
use http_body::Frame;
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message as _;
use temporal_codec_proxy::proxy::coalescing_io::CoalescingIo;
use temporal_codec_proxy::proxy::grpc_frame::encode_frame;
use temporal_codec_proxy::proxy::upstream::{CONNECTION_WINDOW, STREAM_WINDOW};
use temporalio_protos::temporal::api::common::v1::{Payload, Payloads, WorkflowExecution};
use temporalio_protos::temporal::api::query::v1::WorkflowQuery;
use temporalio_protos::temporal::api::workflowservice::v1::{QueryWorkflowRequest, QueryWorkflowResponse};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

use nginx_config::{NGINX, nginx_config};

const PROXY_BIN: &str = env!("CARGO_BIN_EXE_temporal-codec-proxy");
const QUERY_PATH: &str = "/temporal.api.workflowservice.v1.WorkflowService/QueryWorkflow";
const PAYLOAD_DATA_BYTES: usize = 1024;
/// HTTP/2 connections the load generator spreads its calls over, for each target.
const CONNECTIONS: usize = 4;
const CONCURRENCY: usize = 32;
const WARM_UP: Duration = Duration::from_secs(1);
const SATURATION_TIME: Duration = Duration::from_secs(5);
const OPEN_LOOP_TIME: Duration = Duration::from_secs(5);
/// The rate the latency targets are stated for is measured in short rounds, direct and
/// proxied taking turns, and judged by the median round: a burst of work elsewhere on the
/// host then spoils one round, not the verdict.
const TARGET_ROUNDS: usize = 5;
const TARGET_ROUND_TIME: Duration = Duration::from_secs(2);
const _: () = assert!(TARGET_ROUNDS % 2 == 1, "the median round needs an odd number of rounds");
/// A rate low enough that the proxy's latency is seen without queueing on the two cores.
const LIGHT_RATE: f64 = 1_000.0;
/// The shortest time between two wake-ups of the open-loop pacer.
const PACING_INTERVAL: Duration = Duration::from_micros(250);
/// How long an open-loop run waits for its last calls before counting them as lost.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause before each phase, so work left from the one before is not counted in it.
const SETTLE_TIME: Duration = Duration::from_millis(500);
const RSS_SAMPLE_INTERVAL: Duration = Duration::from_millis(50);
const GRPC_PREFIX_LEN: usize = 5;
const ENCRYPTED_ENCODING: &[u8] = b"binary/encrypted";

fn main() {
    let layout = CpuLayout::choose();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let upstream_stats = Arc::new(UpstreamStats::default());
    let upstream_addr = runtime
        .block_on(start_upstream(Arc::clone(&upstream_stats)))
        .expect("upstream listens");
    let proxy = ServedProcess::proxy(upstream_addr, &layout);
    let fresh_rss = proxy.rss_kib();
    let nginx = ServedProcess::nginx(upstream_addr, &layout);
    let (direct, proxied, nginx_target) = runtime.block_on(async {
        tokio::join!(
            Target::connect("direct", upstream_addr, None),
            Target::connect("proxied", proxy.addr, Some(proxy)),
            Target::connect("nginx", nginx.addr, Some(nginx)),
        )
    });
    let bench = Bench {
        runtime,
        clock: CpuClock::new(),
        query: QueryCall::new(),
        targets: [direct, proxied, nginx_target],
    };
    let proxy = bench.targets[PROXIED].process.as_ref().expect("the proxy runs");

    for target in &bench.targets {
        bench.run(target, Load::Closed(WARM_UP));
    }
    let encrypted_before = upstream_stats.encrypted_payloads.load(Ordering::Relaxed);
    bench.run(&bench.targets[PROXIED], Load::Closed(Duration::from_millis(100)));
    assert!(
        upstream_stats.encrypted_payloads.load(Ordering::Relaxed) > encrypted_before,
        "payloads must reach the upstream encrypted through the proxy"
    );
    let idle_rss = proxy.rss_kib();

    println!(
        "QueryWorkflow with a {PAYLOAD_DATA_BYTES} B JSON payload, echoed back as the query result; \
         {CONNECTIONS} HTTP/2 connections per target; proxy pid {}",
        proxy.child.id()
    );
    println!(
        "targets: direct to the upstream; through the proxy; through {NGINX} with plain grpc_pass (no payload work), for reference"
    );
    println!("{}\n", layout.describe());

    println!(
        "(a) closed loop, concurrency {CONCURRENCY}, {} s per target",
        SATURATION_TIME.as_secs()
    );
    let [direct_saturation, proxied_saturation, nginx_saturation] = bench.compare(Load::Closed(SATURATION_TIME));
    let direct_rate = direct_saturation.phase.rate();
    let proxied_rate = proxied_saturation.phase.rate();
    println!(
        "  proxied / direct throughput: {:.2}; nginx / direct: {:.2}\n",
        proxied_rate / direct_rate,
        nginx_saturation.phase.rate() / direct_rate
    );

    // The rate the targets are stated for comes last: on a small machine it can overload the
    // proxied path, and the memory that backlog takes would otherwise show in the later rows.
    let open_loop_rates = [
        ("half of proxied saturation", (proxied_rate / 2.0).round()),
        ("light load", LIGHT_RATE),
    ];
    let mut open_loop_runs = Vec::new();
    for (label, rate) in open_loop_rates {
        println!(
            "(b) open loop at {rate:.0} calls/s ({label}), {} s per target, latency from the scheduled send time",
            OPEN_LOOP_TIME.as_secs()
        );
        let [direct_open, proxied_open, nginx_open] = bench.compare(Load::Open {
            rate,
            duration: OPEN_LOOP_TIME,
        });
        println!(
            "  added by the proxy: p50 {}, p99 {}; by nginx: p50 {}, p99 {}\n",
            added_latency(&proxied_open, &direct_open, 0.50),
            added_latency(&proxied_open, &direct_open, 0.99),
            added_latency(&nginx_open, &direct_open, 0.50),
            added_latency(&nginx_open, &direct_open, 0.99),
        );
        open_loop_runs.push((label, rate, proxied_open, nginx_open));
    }
    let target_rate = (direct_rate / 2.0).round();
    let (proxied_target, nginx_target) = bench.compare_in_rounds(target_rate);
    open_loop_runs.push(("half of direct saturation", target_rate, proxied_target, nginx_target));

    println!(
        "(c) CPU time per successful call of the process in between (utime+stime from /proc/<pid>/stat, tick {} ms)",
        bench.clock.tick_ms()
    );
    println!("  {:<58} {:>10} {:>10}", "", "proxy", "nginx");
    let cpu_rows = [(
        "closed loop, saturated".to_owned(),
        &proxied_saturation,
        &nginx_saturation,
    )]
    .into_iter()
    .chain(
        open_loop_runs
            .iter()
            .map(|(label, rate, proxied, nginx)| (format!("open loop, {rate:.0} calls/s ({label})"), proxied, nginx)),
    );
    for (label, proxied, nginx) in cpu_rows {
        let unsuccessful = proxied.phase.failed + proxied.phase.timed_out;
        let caveat = if unsuccessful > 0 {
            format!(" ({unsuccessful} proxied calls failed; their work is counted too)")
        } else {
            String::new()
        };
        println!(
            "  {:<58} {:>10} {:>10}{caveat}",
            format!("{label}:"),
            proxied.cpu_per_call(),
            nginx.cpu_per_call()
        );
    }
    println!("  target for the proxy: below 40 us\n");

    println!("(d) proxy resident memory (VmRSS from /proc/<pid>/status; per-phase maxima in the tables)");
    println!("  just started:                   {}", format_kib(fresh_rss));
    println!("  idle, connected, after warm-up: {}", format_kib(idle_rss));
    println!("  idle after all load:            {}", format_kib(proxy.rss_kib()));
    println!(
        "  peak (VmHWM):                   {}",
        format_kib(proxy.status_kib("VmHWM:"))
    );
}

/// Index of the direct target in [`Bench::targets`].
const DIRECT: usize = 0;
/// Index of the proxied target in [`Bench::targets`].
const PROXIED: usize = 1;
/// Index of the nginx target in [`Bench::targets`].
const NGINX_TARGET: usize = 2;

/// Which CPUs the load generator and upstream, and the process in between, run on.
enum CpuLayout {
    /// This process on CPU 0, the proxy and nginx on CPU 1: the process in between has a
    /// core of its own, as a sidecar with its own CPU budget has, and the load generator
    /// cannot take its time.
    Split,
    /// Everything on all CPUs.
    Shared(usize),
}

impl CpuLayout {
    /// Split when there are at least two CPUs and `PROXY_LOAD_SHARED_CORES` is unset.
    fn choose() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        if cores < 2 || std::env::var_os("PROXY_LOAD_SHARED_CORES").is_some() {
            return Self::Shared(cores);
        }
        // Before the runtime starts, so every thread it makes inherits the mask.
        let pinned = Command::new("taskset")
            .args(["-a", "-p", "-c", "0", &std::process::id().to_string()])
            .stdout(Stdio::null())
            .status()
            .expect("running taskset (util-linux)");
        assert!(pinned.success(), "taskset could not pin the load generator to CPU 0");
        Self::Split
    }

    /// The command that runs `program` in this layout.
    fn command(&self, program: &str) -> Command {
        match self {
            Self::Split => {
                let mut command = Command::new("taskset");
                command.args(["-c", "1", program]);
                command
            }
            Self::Shared(_) => Command::new(program),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Split => "CPU 0: the load generator and the upstream (this process); CPU 1: the proxy, and nginx \
                            (one process each, one at a time under load); set PROXY_LOAD_SHARED_CORES=1 to share all cores"
                .to_owned(),
            Self::Shared(cores) => {
                format!("{cores} cores shared by the load generator + upstream (this process) and the process in between")
            }
        }
    }
}

/// How calls are offered to a target.
#[derive(Clone, Copy)]
enum Load {
    /// [`CONCURRENCY`] callers, each starting its next call when the last one returns.
    Closed(Duration),
    /// Calls started at a fixed rate whatever the target's answers.
    Open { rate: f64, duration: Duration },
}

/// The load generator and the three targets, connected.
struct Bench {
    runtime: Runtime,
    clock: CpuClock,
    query: Arc<QueryCall>,
    targets: [Target; 3],
}

impl Bench {
    /// Runs `load` against each target in turn, and prints them.
    fn compare(&self, load: Load) -> [Measured; 3] {
        let measured = self.targets.each_ref().map(|target| self.measure(target, load));
        print_phase_header();
        for (target, measured) in self.targets.iter().zip(&measured) {
            print_phase(target.name, measured);
        }
        measured
    }

    /// Open loop at `rate` in [`TARGET_ROUNDS`] rounds of direct and proxied, the two in
    /// alternating order, then nginx once. Prints every round and the median of the
    /// latency the proxy added; returns the proxied rounds merged, and nginx's run.
    fn compare_in_rounds(&self, rate: f64) -> (Measured, Measured) {
        println!(
            "(b) open loop at {rate:.0} calls/s (half of direct saturation), {TARGET_ROUNDS} rounds of {} s \
             with direct and proxied taking turns, then nginx for {} s; latency from the scheduled send time",
            TARGET_ROUND_TIME.as_secs(),
            OPEN_LOOP_TIME.as_secs()
        );
        let round_load = Load::Open {
            rate,
            duration: TARGET_ROUND_TIME,
        };
        print_phase_header();
        let mut proxied_rounds = Vec::with_capacity(TARGET_ROUNDS);
        let mut direct_rounds = Vec::with_capacity(TARGET_ROUNDS);
        for round in 1..=TARGET_ROUNDS {
            let direct_first = round % 2 == 1;
            let order = if direct_first {
                [DIRECT, PROXIED]
            } else {
                [PROXIED, DIRECT]
            };
            let [first, second] = order.map(|index| self.measure(&self.targets[index], round_load));
            let (direct, proxied) = if direct_first { (first, second) } else { (second, first) };
            print_phase(&format!("direct {round}"), &direct);
            print_phase(&format!("proxied {round}"), &proxied);
            proxied_rounds.push(proxied);
            direct_rounds.push(direct);
        }
        let nginx = self.measure(
            &self.targets[NGINX_TARGET],
            Load::Open {
                rate,
                duration: OPEN_LOOP_TIME,
            },
        );
        print_phase(self.targets[NGINX_TARGET].name, &nginx);
        let added_by_proxy = |quantile| -> Vec<f64> {
            direct_rounds
                .iter()
                .zip(&proxied_rounds)
                .map(|(direct, proxied)| latency_difference(proxied, direct, quantile))
                .collect()
        };
        let (mut added_p50, mut added_p99) = (added_by_proxy(0.50), added_by_proxy(0.99));
        let list = |differences: &[f64]| {
            differences
                .iter()
                .map(|&seconds| format_signed_seconds(seconds))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "  added by the proxy in each round: p50 {}; p99 {}",
            list(&added_p50),
            list(&added_p99)
        );
        println!(
            "  added by the proxy, median round: p50 {}, p99 {} (targets: p50 <= 100 us, p99 <= 1 ms)",
            format_signed_seconds(median(&mut added_p50)),
            format_signed_seconds(median(&mut added_p99)),
        );
        let direct = Measured::merged(direct_rounds);
        println!(
            "  added by nginx, against all direct rounds: p50 {}, p99 {}\n",
            added_latency(&nginx, &direct, 0.50),
            added_latency(&nginx, &direct, 0.99),
        );
        (Measured::merged(proxied_rounds), nginx)
    }

    /// Runs `load` against `target` and reads the CPU time and memory it took.
    fn measure(&self, target: &Target, load: Load) -> Measured {
        std::thread::sleep(SETTLE_TIME);
        let pid = target.process.as_ref().map(|process| process.child.id());
        let rss_sampler = pid.map(RssSampler::start);
        let between_cpu = pid.map(|pid| self.clock.process_cpu(pid));
        let own_cpu = self.clock.process_cpu(std::process::id());
        let phase = self.run(target, load);
        Measured {
            between_cpu: pid
                .zip(between_cpu)
                .map(|(pid, before)| self.clock.process_cpu(pid) - before),
            own_cpu: self.clock.process_cpu(std::process::id()) - own_cpu,
            between_rss_peak: rss_sampler.map(RssSampler::stop),
            phase,
        }
    }

    fn run(&self, target: &Target, load: Load) -> Phase {
        match load {
            Load::Closed(duration) => self.runtime.block_on(closed_loop(target, &self.query, duration)),
            Load::Open { rate, duration } => open_loop(&self.runtime, target, &self.query, rate, duration),
        }
    }
}

/// A load generator's connections to one target, and the process serving it when it is
/// not the upstream itself.
struct Target {
    name: &'static str,
    /// The full address of the method: nginx, like a gRPC server may, wants the authority.
    query_uri: http::Uri,
    connections: Vec<SendRequest<Bytes>>,
    process: Option<ServedProcess>,
}

impl Target {
    async fn connect(name: &'static str, addr: SocketAddr, process: Option<ServedProcess>) -> Self {
        let mut connections = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            let connection = open_connection(addr)
                .await
                .unwrap_or_else(|error| panic!("connecting to {name} at {addr}: {error}"));
            connections.push(connection);
        }
        Self {
            name,
            query_uri: format!("http://{addr}{QUERY_PATH}").parse().expect("valid URI"),
            connections,
            process,
        }
    }

    /// What a call needs to go out on the connection for `index`.
    fn call_route(&self, index: usize) -> (SendRequest<Bytes>, http::Uri) {
        (
            self.connections[index % self.connections.len()].clone(),
            self.query_uri.clone(),
        )
    }
}

/// Opens one HTTP/2 connection and drives it on the runtime.
async fn open_connection(addr: SocketAddr) -> Result<SendRequest<Bytes>, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|error| error.to_string())?;
    stream.set_nodelay(true).map_err(|error| error.to_string())?;
    let (sender, connection) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .handshake::<_, Bytes>(stream)
        .await
        .map_err(|error| error.to_string())?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            eprintln!("load generator connection ended: {error}");
        }
    });
    Ok(sender)
}

/// The request every call sends and the answer it expects back, both as gRPC frames.
///
/// A call is written the way grpc-go (the Go SDK, the `temporal` CLI) writes a unary call:
/// the headers and the one message, which ends the stream, leave together. A tonic client
/// (the Core-based SDKs) sends the end of the stream as a third, empty frame in a write of
/// its own; on one core shared with the upstream, those writes took the load generator
/// close to saturation at the rates the latency targets are stated for, and the
/// measurement became the load generator's queue.
struct QueryCall {
    request_frame: Bytes,
    expected_answer: Bytes,
}

impl QueryCall {
    fn new() -> Arc<Self> {
        let args = Payloads {
            payloads: vec![Payload {
                metadata: [("encoding".to_owned(), b"json/plain".to_vec())].into(),
                data: json_document(PAYLOAD_DATA_BYTES),
                external_payloads: vec![],
            }],
        };
        let request = QueryWorkflowRequest {
            namespace: "default".to_owned(),
            execution: Some(WorkflowExecution {
                workflow_id: "order-00000001".to_owned(),
                run_id: "0198c3a2-7e51-7c1e-9a3b-5d4f6e7a8b9c".to_owned(),
            }),
            query: Some(WorkflowQuery {
                query_type: "orderStatus".to_owned(),
                query_args: Some(args.clone()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let answer = QueryWorkflowResponse {
            query_result: Some(args),
            ..Default::default()
        };
        Arc::new(Self {
            request_frame: encode_frame(&request.encode_to_vec()),
            expected_answer: encode_frame(&answer.encode_to_vec()),
        })
    }

    /// Makes one call and checks that it returned the payload it sent, byte for byte.
    async fn call(&self, (connection, uri): (SendRequest<Bytes>, http::Uri)) -> Result<(), String> {
        let describe = |what: &str, error: h2::Error| format!("{what}: {error}");
        let mut sender = connection
            .ready()
            .await
            .map_err(|error| describe("opening a stream", error))?;
        let request = http::Request::post(uri)
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .expect("valid request");
        let (response, mut request_body) = sender
            .send_request(request, false)
            .map_err(|error| describe("sending the headers", error))?;
        request_body
            .send_data(self.request_frame.clone(), true)
            .map_err(|error| describe("sending the message", error))?;
        let response = response.await.map_err(|error| describe("awaiting the answer", error))?;
        if response.status() != http::StatusCode::OK {
            return Err(format!("HTTP status {}", response.status()));
        }
        if let Some(status) = grpc_error_status(response.headers()) {
            return Err(status);
        }
        let mut body = response.into_body();
        let mut answer = BytesMut::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|error| describe("reading the answer", error))?;
            let _ = body.flow_control().release_capacity(chunk.len());
            answer.extend_from_slice(&chunk);
        }
        let trailers = body
            .trailers()
            .await
            .map_err(|error| describe("reading the trailers", error))?
            .ok_or("the answer ended without trailers")?;
        if trailers.get("grpc-status").is_none() {
            return Err("the trailers carry no grpc-status".to_owned());
        }
        if let Some(status) = grpc_error_status(&trailers) {
            return Err(status);
        }
        if answer == self.expected_answer {
            Ok(())
        } else {
            Err("the query result differs from the arguments sent".to_owned())
        }
    }
}

/// The status and message, when `headers` carry a grpc-status other than OK.
fn grpc_error_status(headers: &http::HeaderMap) -> Option<String> {
    let status = headers.get("grpc-status")?;
    if status == "0" {
        return None;
    }
    let message = headers.get("grpc-message").map_or("", header_text);
    Some(format!("grpc-status {}: {message}", header_text(status)))
}

fn header_text(value: &http::HeaderValue) -> &str {
    value.to_str().unwrap_or("(not text)")
}

/// What became of one call.
enum Outcome {
    Succeeded(Duration),
    Failed(String),
    /// Still unanswered when the open-loop run stopped waiting.
    TimedOut,
}

/// The outcome of one load phase against one target.
struct Phase {
    /// Latencies of the successful calls, sorted.
    latencies: Vec<Duration>,
    failed: u64,
    timed_out: u64,
    first_failure: Option<String>,
    elapsed: Duration,
}

impl Phase {
    fn new(outcomes: impl IntoIterator<Item = Outcome>, elapsed: Duration) -> Self {
        let mut phase = Self {
            latencies: Vec::new(),
            failed: 0,
            timed_out: 0,
            first_failure: None,
            elapsed,
        };
        for outcome in outcomes {
            match outcome {
                Outcome::Succeeded(latency) => phase.latencies.push(latency),
                Outcome::Failed(reason) => {
                    phase.failed += 1;
                    phase.first_failure.get_or_insert(reason);
                }
                Outcome::TimedOut => phase.timed_out += 1,
            }
        }
        phase.latencies.sort();
        phase
    }

    fn succeeded(&self) -> u64 {
        self.latencies.len() as u64
    }

    fn calls(&self) -> u64 {
        self.succeeded() + self.failed + self.timed_out
    }

    /// Successful calls per second.
    fn rate(&self) -> f64 {
        self.succeeded() as f64 / self.elapsed.as_secs_f64()
    }

    /// The latency at `quantile` of the successful calls.
    fn latency(&self, quantile: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let index = ((self.latencies.len() - 1) as f64 * quantile).round() as usize;
        self.latencies[index]
    }
}

/// A phase with the CPU time this process and the process in between spent during it, and
/// the latter's memory.
struct Measured {
    phase: Phase,
    between_cpu: Option<Duration>,
    own_cpu: Duration,
    between_rss_peak: Option<u64>,
}

impl Measured {
    /// One measurement of several runs against the same target: all their calls, CPU time
    /// summed, the highest memory peak.
    fn merged(runs: Vec<Measured>) -> Measured {
        let elapsed = runs.iter().map(|run| run.phase.elapsed).sum();
        let between_cpu = runs.iter().map(|run| run.between_cpu).sum::<Option<Duration>>();
        let own_cpu = runs.iter().map(|run| run.own_cpu).sum();
        let between_rss_peak = runs.iter().filter_map(|run| run.between_rss_peak).max();
        let mut phase = Phase {
            latencies: Vec::new(),
            failed: 0,
            timed_out: 0,
            first_failure: None,
            elapsed,
        };
        for run in runs {
            phase.latencies.extend(run.phase.latencies);
            phase.failed += run.phase.failed;
            phase.timed_out += run.phase.timed_out;
            phase.first_failure = phase.first_failure.or(run.phase.first_failure);
        }
        phase.latencies.sort();
        Measured {
            phase,
            between_cpu,
            own_cpu,
            between_rss_peak,
        }
    }

    fn cpu_per_call(&self) -> String {
        self.between_cpu.map_or("-".to_owned(), |cpu| {
            format_seconds(cpu.as_secs_f64() / self.phase.succeeded().max(1) as f64)
        })
    }
}

fn print_phase_header() {
    println!(
        "  {:<10} {:>7} {:>8} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10} {:>10}",
        "target",
        "calls",
        "ok/s",
        "failed",
        "timed out",
        "p50",
        "p99",
        "p99.9",
        "max",
        "CPU (mid)",
        "bench CPU",
        "RSS (mid)"
    );
}

/// One row: latencies of successful calls, CPU time per successful call of the process in
/// between and of this process, and the largest RSS sample of the process in between.
fn print_phase(label: &str, measured: &Measured) {
    let phase = &measured.phase;
    println!(
        "  {:<10} {:>7} {:>8.0} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10} {:>10}",
        label,
        phase.calls(),
        phase.rate(),
        phase.failed,
        phase.timed_out,
        format_seconds(phase.latency(0.50).as_secs_f64()),
        format_seconds(phase.latency(0.99).as_secs_f64()),
        format_seconds(phase.latency(0.999).as_secs_f64()),
        format_seconds(phase.latencies.last().copied().unwrap_or_default().as_secs_f64()),
        measured.cpu_per_call(),
        format_seconds(measured.own_cpu.as_secs_f64() / phase.succeeded().max(1) as f64),
        measured.between_rss_peak.map_or("-".to_owned(), format_kib),
    );
    if let Some(reason) = &phase.first_failure {
        println!("  first failure ({label}): {reason}");
    }
}

/// Runs [`CONCURRENCY`] callers that each start a new call as soon as the last one returns.
async fn closed_loop(target: &Target, query: &Arc<QueryCall>, duration: Duration) -> Phase {
    let start = Instant::now();
    let deadline = start + duration;
    let callers: Vec<_> = (0..CONCURRENCY)
        .map(|index| {
            let route = target.call_route(index);
            let query = Arc::clone(query);
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    outcomes.push(match query.call(route.clone()).await {
                        Ok(()) => Outcome::Succeeded(sent.elapsed()),
                        Err(reason) => Outcome::Failed(reason),
                    });
                }
                outcomes
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for caller in callers {
        outcomes.extend(caller.await.expect("caller task"));
    }
    Phase::new(outcomes, start.elapsed())
}

/// Starts calls at a fixed `rate` whether or not earlier ones have returned, and measures
/// each call from the time it was scheduled, so a stalled target cannot hide its queue.
fn open_loop(runtime: &Runtime, target: &Target, query: &Arc<QueryCall>, rate: f64, duration: Duration) -> Phase {
    let total = (rate * duration.as_secs_f64()) as usize;
    let start = Instant::now();
    let mut calls = Vec::with_capacity(total);
    // Pacing from this plain thread with sleeps: tokio's timer has millisecond granularity,
    // which would send the calls in bursts. Each wake-up sends every call that is due, and
    // wake-ups are at least PACING_INTERVAL apart: waking the runtime from outside for each
    // call would cost the load generator more CPU than the call itself. A call sent late is
    // still timed from its scheduled time.
    let mut last_wake = start;
    for index in 0..total {
        let scheduled = start + Duration::from_secs_f64(index as f64 / rate);
        let now = Instant::now();
        if scheduled > now {
            let wake = scheduled.max(last_wake + PACING_INTERVAL);
            std::thread::sleep(wake - now);
            last_wake = Instant::now();
        }
        let route = target.call_route(index);
        let query = Arc::clone(query);
        calls.push(runtime.spawn(async move {
            match query.call(route).await {
                Ok(()) => Outcome::Succeeded(scheduled.elapsed()),
                Err(reason) => Outcome::Failed(reason),
            }
        }));
    }
    let outcomes = runtime.block_on(async {
        let drain_deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
        let mut outcomes = Vec::with_capacity(calls.len());
        for mut call in calls {
            outcomes.push(match tokio::time::timeout_at(drain_deadline, &mut call).await {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(join_error)) => Outcome::Failed(format!("call task: {join_error}")),
                Err(_) => {
                    // Cancelling resets the stream, so the target can drop the call too.
                    call.abort();
                    Outcome::TimedOut
                }
            });
        }
        outcomes
    });
    Phase::new(outcomes, duration)
}

/// What the upstream saw: proof that payloads crossed the proxy encrypted.
#[derive(Default)]
struct UpstreamStats {
    encrypted_payloads: AtomicU64,
}

type UpstreamBody = StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

/// Serves QueryWorkflow over h2c on a random local port, answering each query with its
/// own arguments as the result. Like Temporal's Go frontend, it writes an answer's
/// headers, message and trailers together rather than in a system call each.
async fn start_upstream(stats: Arc<UpstreamStats>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let stats = Arc::clone(&stats);
            tokio::spawn(async move {
                let service = service_fn(move |request| answer_query(request, Arc::clone(&stats)));
                // The proxy's own windows. With hyper's 1 MiB default, a backlog of calls
                // fills the window, the proxy's h2 then sends requests in pieces as the
                // window reopens, and this server's h2 closes the connection once it holds
                // too many small DATA frames (GOAWAY ENHANCE_YOUR_CALM), failing every
                // call on it: a limit of this test server, not of the proxy.
                let _ = http2::Builder::new(TokioExecutor::new())
                    .max_concurrent_streams(4096)
                    .initial_connection_window_size(CONNECTION_WINDOW)
                    .initial_stream_window_size(STREAM_WINDOW)
                    .serve_connection(TokioIo::new(CoalescingIo::new(stream)), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

async fn answer_query(
    request: http::Request<Incoming>,
    stats: Arc<UpstreamStats>,
) -> Result<http::Response<UpstreamBody>, Infallible> {
    if request.uri().path() != QUERY_PATH {
        return Ok(grpc_error(12, "only QueryWorkflow is served"));
    }
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Ok(grpc_error(1, "request body ended early")),
    };
    let message = match body.split_first() {
        Some((0, rest)) if rest.len() >= GRPC_PREFIX_LEN - 1 => &rest[GRPC_PREFIX_LEN - 1..],
        _ => return Ok(grpc_error(3, "expected one uncompressed gRPC message")),
    };
    let Ok(query) = QueryWorkflowRequest::decode(message) else {
        return Ok(grpc_error(3, "not a QueryWorkflowRequest"));
    };
    let query_result = query.query.and_then(|query| query.query_args);
    let encrypted = query_result
        .iter()
        .flat_map(|args| &args.payloads)
        .filter(|payload| payload.metadata.get("encoding").map(Vec::as_slice) == Some(ENCRYPTED_ENCODING))
        .count();
    stats.encrypted_payloads.fetch_add(encrypted as u64, Ordering::Relaxed);
    let response = QueryWorkflowResponse {
        query_result,
        ..Default::default()
    }
    .encode_to_vec();
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let frames = vec![Ok(Frame::data(encode_frame(&response))), Ok(Frame::trailers(trailers))];
    Ok(http::Response::builder()
        .header("content-type", "application/grpc")
        .body(StreamBody::new(futures_util::stream::iter(frames)))
        .expect("valid response"))
}

/// A trailers-only gRPC error response.
fn grpc_error(code: u8, message: &'static str) -> http::Response<UpstreamBody> {
    http::Response::builder()
        .header("content-type", "application/grpc")
        .header("grpc-status", code.to_string())
        .header("grpc-message", message)
        .body(StreamBody::new(futures_util::stream::iter(Vec::new())))
        .expect("valid response")
}

/// A process between the load generator and the upstream (the proxy, or nginx), so its CPU
/// time and memory can be read apart.
struct ServedProcess {
    child: Child,
    addr: SocketAddr,
    /// Where nginx keeps its configuration and temporary files.
    scratch_dir: Option<PathBuf>,
}

impl ServedProcess {
    fn proxy(upstream: SocketAddr, layout: &CpuLayout) -> Self {
        let keygen = Command::new(PROXY_BIN).arg("keygen").output().expect("running keygen");
        assert!(keygen.status.success(), "keygen failed");
        let key_source = String::from_utf8(keygen.stdout).expect("keygen prints text");
        let addr = unused_local_addr();
        let child = layout
            .command(PROXY_BIN)
            .args([
                "serve",
                "--listen",
                &addr.to_string(),
                "--upstream",
                &upstream.to_string(),
                "--codec-listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .args(["--key", &format!("bench={}", key_source.trim()), "--log", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("starting {PROXY_BIN}: {error}"));
        Self::wait_listening(child, addr, None, "the proxy")
    }

    /// nginx as one process (no master) relaying gRPC with `grpc_pass` over kept-alive
    /// upstream connections.
    fn nginx(upstream: SocketAddr, layout: &CpuLayout) -> Self {
        assert!(
            Path::new(NGINX).exists(),
            "{NGINX} is missing: run scripts/install-test-tools.sh (Debian's nginx-light)"
        );
        let dir = std::env::temp_dir().join(format!("proxy-load-nginx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating nginx's directory");
        let addr = unused_local_addr();
        let http = format!(
            "    access_log off;
    upstream bench_upstream {{
        server {upstream};
        keepalive 64;
        keepalive_requests 100000000;
    }}
    server {{
        listen {addr} http2;
        keepalive_requests 100000000;
        location / {{
            grpc_pass grpc://bench_upstream;
        }}
    }}
"
        );
        let config = nginx_config(&dir, "master_process off;\n", &http);
        let config_path = dir.join("nginx.conf");
        std::fs::write(&config_path, config).expect("writing nginx.conf");
        let child = layout
            .command(NGINX)
            .args(["-c", config_path.to_str().expect("UTF-8 path"), "-p"])
            .arg(&dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("starting {NGINX}: {error}"));
        Self::wait_listening(child, addr, Some(dir), "nginx")
    }

    fn wait_listening(child: Child, addr: SocketAddr, scratch_dir: Option<PathBuf>, what: &str) -> Self {
        let process = Self {
            child,
            addr,
            scratch_dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "{what} did not start listening on {addr}");
            std::thread::sleep(Duration::from_millis(20));
        }
        process
    }

    fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    fn status_kib(&self, field: &str) -> u64 {
        status_kib(self.child.id(), field)
    }
}

impl Drop for ServedProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.scratch_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A local port that is free now; the process in between binds it moments later.
fn unused_local_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free local port")
}

/// A `kB` line of `/proc/<pid>/status`.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("reading /proc/<pid>/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or_else(|| panic!("{field} missing from /proc/{pid}/status"))
}

/// Samples a process's VmRSS on a thread of its own and keeps the largest value.
struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            while !stopped.load(Ordering::Relaxed) {
                peak = peak.max(status_kib(pid, "VmRSS:"));
                std::thread::sleep(RSS_SAMPLE_INTERVAL);
            }
            peak
        });
        Self { stop, thread }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("RSS sampler")
    }
}

/// Reads processes' CPU time (user + system, all threads) in clock ticks.
struct CpuClock {
    ticks_per_second: u64,
}

impl CpuClock {
    fn new() -> Self {
        // The tick is almost always 100 Hz; getconf reads the real value without a libc binding.
        let ticks_per_second = Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|output| String::from_utf8(output.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(100);
        Self { ticks_per_second }
    }

    fn tick_ms(&self) -> u64 {
        1000 / self.ticks_per_second
    }

    fn process_cpu(&self, pid: u32) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("reading /proc/<pid>/stat");
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        let after_name = &stat[stat.rfind(')').expect("stat has a command name") + 2..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
        Duration::from_secs_f64(ticks as f64 / self.ticks_per_second as f64)
    }
}

/// A JSON order document of exactly `len` bytes.
fn json_document(len: usize) -> Vec<u8> {
    let mut json = r#"{"orderId":"order-00000001","status":"shipped","items":["#.to_owned();
    let mut item = 0;
    // Room for the longest item and the fixed `],"note":""}` tail.
    let reserve = 64 + r#"],"note":""}"#.len();
    while json.len() + reserve < len {
        if item > 0 {
            json.push(',');
        }
        json.push_str(&format!(
            r#"{{"sku":"SKU-{:06}","qty":{}}}"#,
            item * 104_729 % 1_000_000,
            item % 5 + 1
        ));
        item += 1;
    }
    json.push_str(r#"],"note":""#);
    let filler = "shipping by ground; leave at the front desk ".chars().cycle();
    json.extend(filler.take(len - json.len() - 2));
    json.push_str(r#""}"#);
    assert_eq!(json.len(), len);
    json.into_bytes()
}

/// How much later `through` answered than `direct` at `quantile`, in seconds.
fn latency_difference(through: &Measured, direct: &Measured, quantile: f64) -> f64 {
    through.phase.latency(quantile).as_secs_f64() - direct.phase.latency(quantile).as_secs_f64()
}

fn added_latency(through: &Measured, direct: &Measured, quantile: f64) -> String {
    format_signed_seconds(latency_difference(through, direct, quantile))
}

/// The middle value of an odd number of values.
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn format_seconds(seconds: f64) -> String {
    if seconds >= 1.0 {
        format!("{seconds:.2} s")
    } else if seconds >= 1e-3 {
        format!("{:.2} ms", seconds * 1e3)
    } else {
        format!("{:.1} us", seconds * 1e6)
    }
}

fn format_signed_seconds(seconds: f64) -> String {
    let sign = if seconds < 0.0 { "-" } else { "+" };
    format!("{sign}{}", format_seconds(seconds.abs()))
}

fn format_kib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}
