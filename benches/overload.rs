//! The overload table: each misbehaving caller of the README's capacity section, at full scale, against a proxy binary, with its resident memory idle, at peak and 10 s after.
//!
//! `cargo bench --bench overload` measures this checkout's release build; set
//! `OVERLOAD_PROXY_BIN` to measure another binary the same way.

#[path = "../tests/e2e/attacks.rs"]
mod attacks;

use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use attacks::{
    PeakRss, gzip_bomb, partial_bodies, rss_kib, send_gzip_bombs, slow_uploads, stalled_history_readers,
    start_frontend, trickling_codec_bodies, well_behaved_call,
};

const MESSAGE_LIMIT: &str = "4194304";
/// How long after an attack ends the "after" figure is read.
const AFTER: Duration = Duration::from_secs(10);
/// How long a held attack (stalled readers, stalled connections) is kept up.
const HOLD: Duration = Duration::from_secs(5);
/// How long the stalled connections are kept: past the default --request-body-timeout of 30 s.
const STALLED_HOLD: Duration = Duration::from_secs(32);
/// A well-behaved call that has not answered by then is reported as hung.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

fn free_port() -> u16 {
    StdTcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Proxy {
    child: Child,
    grpc: SocketAddr,
    codec: SocketAddr,
}

impl Proxy {
    fn start(binary: &str, upstream: SocketAddr, open_files: Option<u64>) -> Self {
        let (grpc, codec, admin) = (free_port(), free_port(), free_port());
        let key = Command::new(binary).arg("keygen").output().expect("keygen runs");
        let key = format!("bench={}", String::from_utf8_lossy(&key.stdout).trim());
        let mut command = match open_files {
            Some(soft) => {
                let mut prlimit = Command::new("prlimit");
                prlimit
                    .arg(format!("--nofile={soft}:{}", hard_open_file_limit()))
                    .arg(binary);
                prlimit
            }
            None => Command::new(binary),
        };
        let child = command
            .args(["serve", "--upstream", &upstream.to_string(), "--key", &key])
            .args(["--listen", &format!("127.0.0.1:{grpc}")])
            .args(["--codec-listen", &format!("127.0.0.1:{codec}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
            .args(["--max-message-bytes", MESSAGE_LIMIT, "--log", "error"])
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the proxy starts");
        Self {
            child,
            grpc: SocketAddr::from(([127, 0, 0, 1], grpc)),
            codec: SocketAddr::from(([127, 0, 0, 1], codec)),
        }
    }

    async fn wait_until_serving(&self) {
        let started = Instant::now();
        while well_behaved_call(self.grpc).await.is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "the proxy did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn rss_mb(&self) -> f64 {
        rss_kib(self.child.id()) as f64 / 1024.0
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hard_open_file_limit() -> u64 {
    temporal_codec_proxy::open_files::raise_to_hard_limit().map_or(4096, |limits| limits.hard)
}

async fn timed_call(addr: SocketAddr) -> String {
    match tokio::time::timeout(CALL_TIMEOUT, well_behaved_call(addr)).await {
        Ok(Ok(took)) => format!("OK in {} ms", took.as_millis()),
        Ok(Err(error)) => format!("failed: {}", error.chars().take(60).collect::<String>()),
        Err(_) => format!("no answer in {} s", CALL_TIMEOUT.as_secs()),
    }
}

struct Row {
    what: &'static str,
    idle: f64,
    peak: f64,
    after: f64,
    call: String,
    outcome: String,
}

fn print_row(row: &Row) {
    println!(
        "| {} | {:.0} MB | {:.0} MB | {:.0} MB | {} | {} |",
        row.what, row.idle, row.peak, row.after, row.call, row.outcome
    );
}

/// Runs `attack` against a fresh proxy and reads its memory around it.
async fn measure<F, Fut>(
    what: &'static str,
    binary: &str,
    history_payload_bytes: usize,
    open_files: Option<u64>,
    attack: F,
) -> Row
where
    F: FnOnce(SocketAddr, SocketAddr) -> Fut,
    Fut: Future<Output = (String, String)>,
{
    let frontend = start_frontend(history_payload_bytes).await;
    let proxy = Proxy::start(binary, frontend, open_files);
    proxy.wait_until_serving().await;
    let idle = proxy.rss_mb();
    let peak = PeakRss::watch(proxy.child.id());
    let (call, outcome) = attack(proxy.grpc, proxy.codec).await;
    let peak_mb = peak.peak_kib() as f64 / 1024.0;
    tokio::time::sleep(AFTER).await;
    let row = Row {
        what,
        idle,
        peak: peak_mb,
        after: proxy.rss_mb(),
        call,
        outcome,
    };
    print_row(&row);
    row
}

fn count_codes(statuses: &[Result<(u32, String), String>]) -> String {
    let mut counts = std::collections::BTreeMap::new();
    for status in statuses {
        let key = match status {
            Ok((code, _)) => format!("code {code}"),
            Err(_) => "no answer".to_owned(),
        };
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
        .iter()
        .map(|(key, count)| format!("{count} × {key}"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn bombs(addr: SocketAddr, count: usize) -> (String, String) {
    let bomb = gzip_bomb(256 << 20);
    let size = bomb.len();
    let (statuses, call) = tokio::join!(send_gzip_bombs(addr, bomb, count), async {
        tokio::time::sleep(Duration::from_millis(5)).await;
        timed_call(addr).await
    });
    (call, format!("{} ({} KB each)", count_codes(&statuses), size / 1000))
}

fn main() {
    let binary =
        std::env::var("OVERLOAD_PROXY_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_temporal-codec-proxy").to_owned());
    hard_open_file_limit();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    println!("overload table for {binary}, --max-message-bytes {MESSAGE_LIMIT}, other flags at their defaults");
    println!("| what was sent | RSS idle | RSS peak | RSS 10 s after | a well-behaved call meanwhile | outcome |");
    println!("|---|---|---|---|---|---|");
    runtime.block_on(async {
        measure(
            "one gzip request that inflates to 256 MiB",
            &binary,
            1024,
            None,
            |grpc, _| bombs(grpc, 1),
        )
        .await;
        measure("32 such requests at once", &binary, 1024, None, |grpc, _| {
            bombs(grpc, 32)
        })
        .await;
        measure(
            "500 streams each uploading 2 MiB slowly (50 connections, 64 KiB per 100 ms)",
            &binary,
            1024,
            None,
            |grpc, _| async move {
                let uploads = slow_uploads(grpc, 500, 50, 2 << 20, 64 << 10, Duration::from_millis(100)).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
                let call = timed_call(grpc).await;
                let started = Instant::now();
                while uploads.answers.lock().unwrap().len() < 500 && started.elapsed() < Duration::from_secs(60) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let (completed, refused) = (uploads.answered(0), uploads.answered(8));
                let answered = uploads.answers.lock().unwrap().len();
                let other = answered - completed - refused;
                let unanswered = 500 - answered;
                (
                    call,
                    format!("{completed} OK, {refused} RESOURCE_EXHAUSTED, {other} other, {unanswered} unanswered"),
                )
            },
        )
        .await;
        measure(
            "200 history reads of 1 MiB whose answers are never read (10 connections)",
            &binary,
            1 << 20,
            None,
            |grpc, _| async move {
                let readers = stalled_history_readers(grpc, 200, 10).await;
                tokio::time::sleep(HOLD / 2).await;
                let call = timed_call(grpc).await;
                tokio::time::sleep(HOLD / 2).await;
                drop(readers);
                (call, format!("held {} s, then closed", HOLD.as_secs()))
            },
        )
        .await;
        measure(
            "1,100 connections that send a partial body and stop (started with ulimit -n 1024)",
            &binary,
            1024,
            Some(1024),
            |grpc, _| async move {
                let stalled = partial_bodies(grpc, 1100).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
                let call = timed_call(grpc).await;
                tokio::time::sleep(STALLED_HOLD).await;
                let answered = stalled.answers.lock().unwrap().len();
                let refused = stalled.closed.load(Ordering::Relaxed);
                drop(stalled);
                (
                    call,
                    format!(
                        "{answered} answered within {} s, {refused} closed by the proxy",
                        STALLED_HOLD.as_secs()
                    ),
                )
            },
        )
        .await;
        measure(
            "100 codec-server connections trickling a body one byte every 3 s",
            &binary,
            1024,
            None,
            |grpc, codec| async move {
                let trickling = trickling_codec_bodies(codec, 100, Duration::from_secs(3)).await;
                let call = timed_call(grpc).await;
                let started = Instant::now();
                let limit = Duration::from_secs(45);
                while trickling.closed.load(Ordering::Relaxed) < 100 && started.elapsed() < limit {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                let closed = trickling.closed.load(Ordering::Relaxed);
                let outcome = if closed == 100 {
                    format!("all closed by the proxy after {} s", started.elapsed().as_secs())
                } else {
                    format!("{closed} of 100 closed after {} s", limit.as_secs())
                };
                (call, outcome)
            },
        )
        .await;
    });
}
