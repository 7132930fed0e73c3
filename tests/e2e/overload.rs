//! Callers that misbehave on purpose: the proxy stays up, serves well-behaved calls, holds no more memory than its budget allows, and answers its probes throughout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::attacks::{
    PeakRss, gzip_bomb, partial_bodies, rss_kib, send_gzip_bombs, slow_uploads, stalled_history_readers,
    start_frontend, trickling_codec_bodies, well_behaved_call,
};
use temporal_codec_proxy::proxy::upstream::CONNECTION_WINDOW as UPSTREAM_CONNECTION_WINDOW;

use crate::operations::ProxyProcess;
use crate::support::random_key;

const MESSAGE_LIMIT: usize = 1 << 20;
const BUDGET_BYTES: usize = 8 << 20;
/// What resident memory may grow by during an attack besides the budget: the attack's
/// connections and their HTTP/2 buffers, the runtime's task and timer memory, allocator slack.
/// Reads waiting for budget leave their answers in the upstream connection's HTTP/2 window.
const OVERHEAD_KIB: u64 = 32 * 1024 + (UPSTREAM_CONNECTION_WINDOW / 1024) as u64;
/// What resident memory may still be above idle 10 s after an attack has ended.
const RETURNED_WITHIN_KIB: u64 = 32 * 1024;
const RESOURCE_EXHAUSTED: u32 = 8;
const DEADLINE_EXCEEDED: u32 = 4;
/// A well-behaved call made during an attack answers within this.
const WELL_BEHAVED_LATENCY: Duration = Duration::from_secs(1);

fn small_limits() -> Vec<String> {
    [
        "--max-message-bytes",
        &MESSAGE_LIMIT.to_string(),
        "--max-buffered-bytes",
        &BUDGET_BYTES.to_string(),
        "--buffer-wait",
        "500ms",
        "--request-body-timeout",
        "2s",
        "--codec-max-body-bytes",
        &MESSAGE_LIMIT.to_string(),
    ]
    .map(String::from)
    .to_vec()
}

struct Target {
    proxy: ProxyProcess,
    addr: SocketAddr,
    idle_kib: u64,
}

async fn target(history_payload_bytes: usize, extra_args: &[&str]) -> Target {
    let frontend = start_frontend(history_payload_bytes).await;
    let mut args = small_limits();
    args.extend(extra_args.iter().map(|arg| (*arg).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let proxy = ProxyProcess::start(&frontend.to_string(), &random_key(), &args);
    let addr = proxy.grpc.parse().unwrap();
    well_behaved_call(addr).await.expect("a call through the idle proxy");
    let idle_kib = rss_kib(proxy.child.id());
    Target { proxy, addr, idle_kib }
}

impl Target {
    fn assert_peak_within_budget(&self, peak: &PeakRss, what: &str) {
        let grown = peak.peak_kib().saturating_sub(self.idle_kib);
        let allowed = (BUDGET_BYTES / 1024) as u64 + OVERHEAD_KIB;
        assert!(
            grown <= allowed,
            "{what}: resident memory grew by {grown} KiB from {} KiB idle, more than the budget and overhead ({allowed} KiB)",
            self.idle_kib
        );
    }

    /// Waits up to 10 s for resident memory to come back near idle.
    async fn assert_memory_returns(&self, after: &str) {
        let waited = Instant::now();
        loop {
            let above = rss_kib(self.proxy.child.id()).saturating_sub(self.idle_kib);
            if above <= RETURNED_WITHIN_KIB {
                return;
            }
            assert!(
                waited.elapsed() < Duration::from_secs(10),
                "10 s after {after}, resident memory is still {above} KiB above idle"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn well_behaved_call_succeeds_quickly(&self, during: &str) {
        let took = well_behaved_call(self.addr)
            .await
            .unwrap_or_else(|error| panic!("during {during}: {error}"));
        assert!(
            took < WELL_BEHAVED_LATENCY,
            "during {during} a well-behaved call took {took:?}"
        );
    }

    async fn admin(&self, path: &str) -> (u16, String) {
        let response = reqwest::Client::new()
            .get(format!("http://{}{path}", self.proxy.admin))
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .unwrap_or_else(|error| panic!("{path} did not answer: {error}"));
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// Waits until `/readyz` says `ready` (or not), and gives its answer.
    async fn becomes_ready(&self, ready: bool) -> String {
        let waited = Instant::now();
        loop {
            let (status, text) = self.admin("/readyz").await;
            if (status == 200) == ready {
                return text;
            }
            assert!(
                waited.elapsed() < Duration::from_secs(10),
                "/readyz still answers {status} {text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn metric(&self, name: &str) -> f64 {
        let (_, text) = self.admin("/metrics").await;
        text.lines()
            .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_bombs_are_refused_at_the_limit_without_inflating_past_it() {
    let target = target(1024, &[]).await;
    let peak = PeakRss::watch(target.proxy.child.id());
    let bomb = gzip_bomb(16 << 20);
    assert!(bomb.len() < 64 * 1024, "a {}-byte bomb", bomb.len());
    let (one, ()) = tokio::join!(send_gzip_bombs(target.addr, bomb.clone(), 1), async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        target.well_behaved_call_succeeds_quickly("one gzip bomb").await;
    });
    let (many, ()) = tokio::join!(send_gzip_bombs(target.addr, bomb, 32), async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        target.well_behaved_call_succeeds_quickly("32 gzip bombs").await;
    });
    for status in one.into_iter().chain(many) {
        let (code, message) = status.expect("every bomb is answered");
        assert_eq!(code, RESOURCE_EXHAUSTED, "{message}");
        assert!(message.contains("--max-message-bytes"), "{message}");
    }
    target.assert_peak_within_budget(&peak, "33 gzip bombs");
    target.assert_memory_returns("33 gzip bombs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_uploads_wait_for_the_budget_and_are_refused_when_it_stays_full() {
    let target = target(1024, &[]).await;
    let peak = PeakRss::watch(target.proxy.child.id());
    // 100 uploads of 512 KiB, 16 KiB every 50 ms, over two connections: 50 MiB wanted at
    // once against a budget of 8 MiB.
    let uploads = slow_uploads(target.addr, 100, 2, 512 << 10, 16 << 10, Duration::from_millis(50)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    target.well_behaved_call_succeeds_quickly("100 slow uploads").await;
    let readiness = target.becomes_ready(false).await;
    assert!(readiness.contains("--max-buffered-bytes"), "{readiness}");
    let waited = Instant::now();
    while uploads.answers.lock().unwrap().len() < 100 {
        assert!(waited.elapsed() < Duration::from_secs(20), "uploads still unanswered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused = uploads.answered(RESOURCE_EXHAUSTED);
    let completed = uploads.answered(0);
    let other = uploads
        .answers
        .lock()
        .unwrap()
        .iter()
        .find(|(code, _)| *code != 0 && *code != RESOURCE_EXHAUSTED)
        .cloned();
    assert!(refused > 0, "no upload was refused");
    assert_eq!(refused + completed, 100, "{other:?}");
    let refusal = uploads
        .answers
        .lock()
        .unwrap()
        .iter()
        .find(|(code, _)| *code == RESOURCE_EXHAUSTED)
        .cloned()
        .unwrap();
    assert!(refusal.1.contains("--max-buffered-bytes"), "{}", refusal.1);
    target.assert_peak_within_budget(&peak, "100 slow uploads");
    drop(uploads);
    target.assert_memory_returns("100 slow uploads").await;
    assert!(target.metric("temporal_codec_proxy_buffer_refusals_total").await >= refused as f64);
    assert_eq!(target.metric("temporal_codec_proxy_buffered_bytes").await, 0.0);
    target.becomes_ready(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_that_never_read_hold_no_more_than_the_budget() {
    let target = target(512 << 10, &[]).await;
    let peak = PeakRss::watch(target.proxy.child.id());
    let readers = stalled_history_readers(target.addr, 100, 4).await;
    target.becomes_ready(false).await;
    // Long enough for every read to have been answered, held or refused.
    tokio::time::sleep(Duration::from_secs(2)).await;
    target
        .well_behaved_call_succeeds_quickly("100 stalled history reads")
        .await;
    target.assert_peak_within_budget(&peak, "100 stalled history reads");
    let buffered = target.metric("temporal_codec_proxy_buffered_bytes").await;
    assert!(
        buffered <= (BUDGET_BYTES + 100 * 64 * 1024) as f64,
        "{buffered} bytes buffered"
    );
    drop(readers);
    let waited = Instant::now();
    while target.metric("temporal_codec_proxy_buffered_bytes").await > 0.0 {
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "the readers' budget was not given back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    target.becomes_ready(true).await;
    target.assert_memory_returns("100 stalled history reads").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eleven_hundred_stalled_connections_under_a_low_open_file_limit_leave_the_proxy_serving() {
    temporal_codec_proxy::open_files::raise_to_hard_limit().unwrap();
    let frontend = start_frontend(1024).await;
    let args = small_limits();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // The common default soft limit of 1,024 under a higher hard one: the proxy raises it.
    let proxy = ProxyProcess::start_with_open_file_limits(&frontend.to_string(), &random_key(), (1024, 8192), &args);
    let addr: SocketAddr = proxy.grpc.parse().unwrap();
    let target = Target {
        idle_kib: rss_kib(proxy.child.id()),
        proxy,
        addr,
    };
    let stalled = partial_bodies(addr, 1100).await;
    assert_eq!(stalled.closed.load(Ordering::Relaxed), 0, "connections were refused");
    target
        .well_behaved_call_succeeds_quickly("1,100 stalled connections")
        .await;
    let (status, _) = target.admin("/healthz").await;
    assert_eq!(status, 200);
    let waited = Instant::now();
    while stalled.answers.lock().unwrap().len() < 1100 {
        assert!(
            waited.elapsed() < Duration::from_secs(20),
            "{} of 1,100 stalled calls answered",
            stalled.answers.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        stalled.answered(DEADLINE_EXCEEDED),
        1100,
        "{:?}",
        stalled.answers.lock().unwrap().first()
    );
    let message = stalled.answers.lock().unwrap()[0].1.clone();
    assert!(message.contains("--request-body-timeout"), "{message}");
    assert_eq!(target.metric("temporal_codec_proxy_buffered_bytes").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_are_refused_while_probes_answer() {
    let target = target(1024, &["--max-connections", "20"]).await;
    let stalled = partial_bodies(target.addr, 30).await;
    let waited = Instant::now();
    while stalled.closed.load(Ordering::Relaxed) < 10 {
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "connections past the cap were not closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _) = target.admin("/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(
        target
            .metric("temporal_codec_proxy_listener_connections_refused_total{listener=\"gRPC\"}")
            .await,
        10.0
    );
    assert_eq!(
        target
            .metric("temporal_codec_proxy_listener_connections{listener=\"gRPC\"}")
            .await,
        20.0
    );
    // One more connection is told why before it is closed: the server's SETTINGS, then a
    // GOAWAY whose debug data names the limit.
    let mut refused = tokio::net::TcpStream::connect(target.addr).await.unwrap();
    let mut told = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), refused.read_to_end(&mut told))
        .await
        .expect("the refused connection is closed")
        .unwrap();
    let told = String::from_utf8_lossy(&told);
    assert!(told.contains("limit of 20 connections (--max-connections)"), "{told:?}");
    assert!(
        target.proxy.all_logs().contains("refusing connections"),
        "the refusal is logged"
    );
    drop(stalled);
    let waited = Instant::now();
    loop {
        match well_behaved_call(target.addr).await {
            Ok(_) => break,
            Err(error) => assert!(waited.elapsed() < Duration::from_secs(10), "{error}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codec_server_bodies_wait_for_the_budget_and_get_503_when_it_stays_full() {
    let target = target(1024, &["--codec-body-timeout", "3s"]).await;
    let codec: SocketAddr = target.proxy.codec.parse().unwrap();
    // 20 requests that each declare 1 MiB against a budget of 8 MiB, then send 1 KiB.
    let mut uploads = Vec::new();
    for _ in 0..20 {
        let mut tcp = tokio::net::TcpStream::connect(codec).await.unwrap();
        let head = format!(
            "POST /decode HTTP/1.1\r\nhost: {codec}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            MESSAGE_LIMIT
        );
        tcp.write_all(head.as_bytes()).await.unwrap();
        tcp.write_all(&[b' '; 1024]).await.unwrap();
        uploads.push(tokio::spawn(async move {
            let mut answer = Vec::new();
            let _ = tcp.read_to_end(&mut answer).await;
            String::from_utf8_lossy(&answer).into_owned()
        }));
    }
    let small = reqwest::Client::new()
        .post(format!("http://{codec}/encode"))
        .json(&serde_json::json!({"payloads": []}))
        .timeout(WELL_BEHAVED_LATENCY)
        .send()
        .await
        .expect("a small codec-server request during the uploads");
    assert_eq!(small.status().as_u16(), 200);
    let mut refused = 0;
    for upload in uploads {
        let answer = tokio::time::timeout(Duration::from_secs(10), upload)
            .await
            .expect("every upload is answered")
            .unwrap();
        if answer.starts_with("HTTP/1.1 503") {
            assert!(answer.contains("--max-buffered-bytes"), "{answer}");
            refused += 1;
        } else {
            assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        }
    }
    assert!((8..=14).contains(&refused), "{refused} of 20 uploads refused");
    assert_eq!(target.metric("temporal_codec_proxy_buffered_bytes").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_codec_server_bodies_are_closed_at_the_body_timeout() {
    let target = target(1024, &["--codec-body-timeout", "1s"]).await;
    let codec: SocketAddr = target.proxy.codec.parse().unwrap();
    let trickling = trickling_codec_bodies(codec, 100, Duration::from_millis(300)).await;
    target
        .well_behaved_call_succeeds_quickly("100 trickling codec-server bodies")
        .await;
    let waited = Instant::now();
    while trickling.closed.load(Ordering::Relaxed) < 100 {
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "{} of 100 trickling connections closed",
            trickling.closed.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) = target.admin("/healthz").await;
    assert_eq!(status, 200);
}

/// Forwards one connection to `target` until `silent` is set, then stops reading and
/// writing but keeps both sockets open: a peer that has gone away without closing.
async fn relay_that_goes_silent(target: SocketAddr, silent: Arc<AtomicBool>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut client, _) = listener.accept().await.unwrap();
        let mut server = tokio::net::TcpStream::connect(target).await.unwrap();
        let (mut from_client, mut to_client) = ([0u8; 16384], [0u8; 16384]);
        while !silent.load(Ordering::Relaxed) {
            tokio::select! {
                read = client.read(&mut from_client) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => { let _ = server.write_all(&from_client[..n]).await; }
                },
                read = server.read(&mut to_client) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => { let _ = client.write_all(&to_client[..n]).await; }
                },
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
        let _held = (client, server);
        std::future::pending::<()>().await;
    });
    address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_stops_answering_pings_is_dropped() {
    let target = target(
        1024,
        &["--listen-keepalive-interval", "1s", "--listen-keepalive-timeout", "1s"],
    )
    .await;
    let connections = "temporal_codec_proxy_listener_connections{listener=\"gRPC\"}";
    let silent = Arc::new(AtomicBool::new(false));
    let relay = relay_that_goes_silent(target.addr, Arc::clone(&silent)).await;
    let mut client = crate::attacks::connect(relay, crate::attacks::DEFAULT_WINDOW)
        .await
        .unwrap();
    client = client.ready().await.unwrap();
    let waited = Instant::now();
    while target.metric(connections).await != 1.0 {
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "the relayed connection was not counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Answered pings keep an idle connection open.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        target.metric(connections).await,
        1.0,
        "an idle connection that answers pings was dropped"
    );
    silent.store(true, Ordering::Relaxed);
    let waited = Instant::now();
    while target.metric(connections).await != 0.0 {
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "a peer that stopped answering pings is still connected"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(client);
}
