//! Misbehaving callers and a stand-in frontend, shared by the overload tests and `benches/overload.rs`: each attack holds its connections until it is dropped.

use std::convert::Infallible;
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{BufMut as _, Bytes, BytesMut};
use h2::client::{ResponseFuture, SendRequest};
use http_body::Frame;
use http_body_util::{BodyExt as _, StreamBody};
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message as _;
use temporalio_protos::temporal::api::common::v1::{Payload, Payloads, WorkflowExecution, WorkflowType};
use temporalio_protos::temporal::api::history::v1::{
    History, HistoryEvent, WorkflowExecutionStartedEventAttributes, history_event,
};
use temporalio_protos::temporal::api::taskqueue::v1::TaskQueue;
use temporalio_protos::temporal::api::workflowservice::v1::{
    GetWorkflowExecutionHistoryRequest, GetWorkflowExecutionHistoryResponse, StartWorkflowExecutionRequest,
};
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub const START_WORKFLOW: &str = "/temporal.api.workflowservice.v1.WorkflowService/StartWorkflowExecution";
pub const GET_HISTORY: &str = "/temporal.api.workflowservice.v1.WorkflowService/GetWorkflowExecutionHistory";
const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";
/// The smallest flow-control window HTTP/2 starts with, what a reader that never reads leaves open.
pub const DEFAULT_WINDOW: u32 = 65_535;

/// A gRPC status code and message.
pub type GrpcStatus = (u32, String);

/// Connections and tasks an attack keeps open until it is dropped.
pub struct HeldAttack {
    tasks: Vec<JoinHandle<()>>,
    _held: Vec<Box<dyn std::any::Any + Send>>,
    /// Statuses of the attack's calls that got an answer.
    pub answers: Arc<std::sync::Mutex<Vec<GrpcStatus>>>,
    /// Connections the proxy closed.
    pub closed: Arc<AtomicUsize>,
}

impl HeldAttack {
    fn new() -> Self {
        Self {
            tasks: Vec::new(),
            _held: Vec::new(),
            answers: Arc::default(),
            closed: Arc::default(),
        }
    }

    /// How many answers carried `code`.
    pub fn answered(&self, code: u32) -> usize {
        self.answers.lock().unwrap().iter().filter(|(c, _)| *c == code).count()
    }
}

impl Drop for HeldAttack {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Opens an HTTP/2 connection whose receive windows are `window` bytes.
pub async fn connect(addr: SocketAddr, window: u32) -> Result<SendRequest<Bytes>, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|error| format!("cannot connect to the proxy: {error}"))?;
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size(window)
        .initial_connection_window_size(window)
        .handshake(tcp)
        .await
        .map_err(|error| format!("no HTTP/2 handshake with the proxy: {error}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Opens up to `count` connections with the default window; those refused are left out.
async fn connect_many(addr: SocketAddr, count: usize) -> Vec<SendRequest<Bytes>> {
    let mut clients = Vec::with_capacity(count);
    for _ in 0..count {
        if let Ok(client) = connect(addr, DEFAULT_WINDOW).await {
            clients.push(client);
        }
    }
    clients
}

fn grpc_request(addr: SocketAddr, path: &str, gzip: bool) -> http::Request<()> {
    let mut request = http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("temporal-namespace", "default");
    if gzip {
        request = request.header("grpc-encoding", "gzip");
    }
    request.body(()).unwrap()
}

fn frame(message: &[u8]) -> Bytes {
    let mut framed = BytesMut::with_capacity(5 + message.len());
    framed.put_u8(0);
    framed.put_u32(message.len() as u32);
    framed.put_slice(message);
    framed.freeze()
}

/// The status of an answer: from its headers when it is trailers-only, else its trailers.
pub async fn grpc_status(response: ResponseFuture) -> Result<GrpcStatus, String> {
    let response = response.await.map_err(|error| format!("no answer: {error}"))?;
    let read = |headers: &http::HeaderMap| {
        headers.get("grpc-status").map(|code| {
            let message = headers
                .get("grpc-message")
                .map(|value| percent_decoded(value.as_bytes()))
                .unwrap_or_default();
            (code.to_str().unwrap_or("2").parse().unwrap_or(2), message)
        })
    };
    if let Some(status) = read(response.headers()) {
        return Ok(status);
    }
    let mut body = response.into_body();
    while let Some(data) = body.data().await {
        let data = data.map_err(|error| format!("answer cut: {error}"))?;
        let _ = body.flow_control().release_capacity(data.len());
    }
    let trailers = body.trailers().await.map_err(|error| format!("answer cut: {error}"))?;
    trailers
        .as_ref()
        .and_then(read)
        .ok_or_else(|| "an answer without a grpc-status".to_owned())
}

/// `grpc-message` is percent-encoded (gRPC over HTTP/2, "Responses").
fn percent_decoded(value: &[u8]) -> String {
    let mut decoded = Vec::with_capacity(value.len());
    let mut bytes = value.iter();
    while let Some(&byte) = bytes.next() {
        let hex = |byte: Option<&u8>| byte.and_then(|b| (*b as char).to_digit(16));
        if byte == b'%' {
            let (high, low) = (hex(bytes.next()), hex(bytes.next()));
            decoded.push(high.zip(low).map_or(b'?', |(high, low)| (high * 16 + low) as u8));
        } else {
            decoded.push(byte);
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// A small StartWorkflowExecution request, as a worker sends it.
pub fn start_request(workflow_id: &str) -> Vec<u8> {
    start_request_with_input(workflow_id, b"\"well behaved\"".to_vec())
}

/// A StartWorkflowExecution request whose input payload holds `input`.
pub fn start_request_with_input(workflow_id: &str, input: Vec<u8>) -> Vec<u8> {
    StartWorkflowExecutionRequest {
        namespace: "default".into(),
        workflow_id: workflow_id.into(),
        workflow_type: Some(WorkflowType {
            name: "Overload".into(),
        }),
        task_queue: Some(TaskQueue {
            name: "overload".into(),
            ..Default::default()
        }),
        input: Some(Payloads {
            payloads: vec![json_payload(input)],
        }),
        request_id: workflow_id.into(),
        ..Default::default()
    }
    .encode_to_vec()
}

fn json_payload(data: Vec<u8>) -> Payload {
    Payload {
        metadata: [("encoding".to_owned(), b"json/plain".to_vec())].into(),
        data,
        ..Default::default()
    }
}

/// Makes one well-behaved call on a connection of its own and says how long it took.
pub async fn well_behaved_call(addr: SocketAddr) -> Result<Duration, String> {
    let started = Instant::now();
    let mut client = connect(addr, DEFAULT_WINDOW)
        .await?
        .ready()
        .await
        .map_err(|error| error.to_string())?;
    let (response, mut body) = client
        .send_request(grpc_request(addr, START_WORKFLOW, false), false)
        .map_err(|error| error.to_string())?;
    body.send_data(frame(&start_request("well-behaved")), true)
        .map_err(|error| error.to_string())?;
    match grpc_status(response).await? {
        (0, _) => Ok(started.elapsed()),
        (code, message) => Err(format!("the well-behaved call failed with {code}: {message}")),
    }
}

/// A gzip-compressed frame of zeros that inflates to `inflated` bytes.
pub fn gzip_bomb(inflated: usize) -> Bytes {
    let mut compressed = Vec::new();
    flate2::read::GzEncoder::new(std::io::repeat(0).take(inflated as u64), flate2::Compression::best())
        .read_to_end(&mut compressed)
        .unwrap();
    let mut framed = BytesMut::with_capacity(5 + compressed.len());
    framed.put_u8(1);
    framed.put_u32(compressed.len() as u32);
    framed.put_slice(&compressed);
    framed.freeze()
}

/// Sends `bomb` as `count` calls at once on one connection and gives each call's status.
pub async fn send_gzip_bombs(addr: SocketAddr, bomb: Bytes, count: usize) -> Vec<Result<GrpcStatus, String>> {
    let client = match connect(addr, DEFAULT_WINDOW).await {
        Ok(client) => client,
        Err(error) => return vec![Err(error); count],
    };
    let calls = (0..count).map(|_| {
        let client = client.clone();
        let bomb = bomb.clone();
        async move {
            let mut client = client.ready().await.map_err(|error| error.to_string())?;
            let (response, mut body) = client
                .send_request(grpc_request(addr, START_WORKFLOW, true), false)
                .map_err(|error| error.to_string())?;
            body.send_data(bomb, true).map_err(|error| error.to_string())?;
            grpc_status(response).await
        }
    });
    futures_util::future::join_all(calls).await
}

/// Sends `bytes` on `stream` as the peer's window allows, `piece` bytes at a time with
/// `pause` between pieces, ending the stream after the last.
async fn send_paced(stream: &mut h2::SendStream<Bytes>, bytes: Bytes, piece: usize, pause: Duration) -> bool {
    let mut rest = bytes;
    while !rest.is_empty() {
        stream.reserve_capacity(piece.min(rest.len()));
        let granted = match std::future::poll_fn(|cx| stream.poll_capacity(cx)).await {
            Some(Ok(granted)) => granted,
            _ => return false,
        };
        let chunk = rest.split_to(granted.min(rest.len()));
        let last = rest.is_empty();
        if stream.send_data(chunk, last).is_err() {
            return false;
        }
        if !last && !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    true
}

/// `streams` calls over `connections` connections, each uploading a start request with an
/// input of `input_bytes`, `piece` bytes at a time with `pause` between pieces.
pub async fn slow_uploads(
    addr: SocketAddr,
    streams: usize,
    connections: usize,
    input_bytes: usize,
    piece: usize,
    pause: Duration,
) -> HeldAttack {
    let mut attack = HeldAttack::new();
    let clients = connect_many(addr, connections).await;
    if clients.is_empty() {
        return attack;
    }
    let body = frame(&start_request_with_input("slow-upload", vec![b'7'; input_bytes]));
    for index in 0..streams {
        let client = clients[index % clients.len()].clone();
        let body = body.clone();
        let answers = Arc::clone(&attack.answers);
        attack.tasks.push(tokio::spawn(async move {
            let Ok(mut client) = client.ready().await else { return };
            let Ok((response, mut stream)) = client.send_request(grpc_request(addr, START_WORKFLOW, false), false)
            else {
                return;
            };
            let answer = tokio::spawn(grpc_status(response));
            send_paced(&mut stream, body, piece, pause).await;
            if let Ok(Ok(status)) = answer.await {
                answers.lock().unwrap().push(status);
            }
        }));
    }
    attack._held.push(Box::new(clients));
    attack
}

/// `count` history reads over `connections` connections whose answers are never read.
pub async fn stalled_history_readers(addr: SocketAddr, count: usize, connections: usize) -> HeldAttack {
    let mut attack = HeldAttack::new();
    let clients = connect_many(addr, connections).await;
    if clients.is_empty() {
        return attack;
    }
    let request = frame(
        &GetWorkflowExecutionHistoryRequest {
            namespace: "default".into(),
            execution: Some(WorkflowExecution {
                workflow_id: "large-history".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    let mut unread = Vec::new();
    for index in 0..count {
        let Ok(mut client) = clients[index % clients.len()].clone().ready().await else {
            continue;
        };
        if let Ok((response, mut stream)) = client.send_request(grpc_request(addr, GET_HISTORY, false), false)
            && stream.send_data(request.clone(), true).is_ok()
        {
            unread.push((response, stream));
        }
    }
    attack._held.push(Box::new(unread));
    attack._held.push(Box::new(clients));
    attack
}

/// `connections` connections that each start a call, send part of its body, and stop.
pub async fn partial_bodies(addr: SocketAddr, connections: usize) -> HeldAttack {
    let mut attack = HeldAttack::new();
    let mut held = Vec::new();
    let body = frame(&vec![0; 1000]);
    for _ in 0..connections {
        let Ok(tcp) = TcpStream::connect(addr).await else {
            continue;
        };
        let Ok((client, connection)) = h2::client::handshake(tcp).await else {
            attack.closed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let closed = Arc::clone(&attack.closed);
        attack.tasks.push(tokio::spawn(async move {
            let _ = connection.await;
            closed.fetch_add(1, Ordering::Relaxed);
        }));
        let Ok(mut client) = client.ready().await else {
            continue;
        };
        if let Ok((response, mut stream)) = client.send_request(grpc_request(addr, START_WORKFLOW, false), false) {
            let _ = stream.send_data(body.slice(..100), false);
            let answers = Arc::clone(&attack.answers);
            attack.tasks.push(tokio::spawn(async move {
                if let Ok(status) = grpc_status(response).await {
                    answers.lock().unwrap().push(status);
                }
            }));
            held.push((client, stream));
        }
    }
    attack._held.push(Box::new(held));
    attack
}

/// `count` codec-server connections that send a request head promising 1,000 bytes of body
/// and then one byte every `pause`.
pub async fn trickling_codec_bodies(addr: SocketAddr, count: usize, pause: Duration) -> HeldAttack {
    let mut attack = HeldAttack::new();
    for _ in 0..count {
        let Ok(mut tcp) = TcpStream::connect(addr).await else {
            continue;
        };
        let closed = Arc::clone(&attack.closed);
        attack.tasks.push(tokio::spawn(async move {
            let head = format!(
                "POST /decode HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n"
            );
            if tcp.write_all(head.as_bytes()).await.is_err() {
                closed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            loop {
                tokio::time::sleep(pause).await;
                if tcp.write_all(b"{").await.is_err() || tcp.flush().await.is_err() {
                    closed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                // A closed connection is seen on the next write, or on a read that ends.
                let mut byte = [0u8; 1024];
                if let Ok(0) = tcp.try_read(&mut byte) {
                    closed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }));
    }
    attack
}

/// A stand-in Temporal frontend on loopback: it answers a history read with a history of
/// `history_payload_bytes` of payload data, a health check with SERVING, and every other
/// call with an empty message.
pub async fn start_frontend(history_payload_bytes: usize) -> SocketAddr {
    let history = GetWorkflowExecutionHistoryResponse {
        history: Some(History {
            events: vec![HistoryEvent {
                event_id: 1,
                attributes: Some(history_event::Attributes::WorkflowExecutionStartedEventAttributes(
                    WorkflowExecutionStartedEventAttributes {
                        input: Some(Payloads {
                            payloads: vec![json_payload(vec![b'7'; history_payload_bytes])],
                        }),
                        ..Default::default()
                    },
                )),
                ..Default::default()
            }],
        }),
        ..Default::default()
    };
    let history = frame(&history.encode_to_vec());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let history = history.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let history = history.clone();
                    async move {
                        let answer = match request.uri().path() {
                            GET_HISTORY => history,
                            // grpc.health.v1.HealthCheckResponse { status: SERVING }
                            HEALTH_CHECK => frame(&[0x08, 0x01]),
                            _ => frame(&[]),
                        };
                        let _ = request.into_body().collect().await;
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                        let frames = [Frame::data(answer), Frame::trailers(trailers)].map(Ok::<_, Infallible>);
                        let body = StreamBody::new(futures_util::stream::iter(frames));
                        Ok::<_, Infallible>(
                            http::Response::builder()
                                .header("content-type", "application/grpc")
                                .body(body)
                                .unwrap(),
                        )
                    }
                });
                let _ = http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// Resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Samples a process's resident memory every 20 ms and keeps the highest figure.
pub struct PeakRss {
    peak: Arc<std::sync::atomic::AtomicU64>,
    task: JoinHandle<()>,
}

impl PeakRss {
    pub fn watch(pid: u32) -> Self {
        let peak = Arc::new(std::sync::atomic::AtomicU64::new(rss_kib(pid)));
        let task = tokio::spawn({
            let peak = Arc::clone(&peak);
            async move {
                loop {
                    peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
        Self { peak, task }
    }

    /// The highest resident memory seen so far, in KiB.
    pub fn peak_kib(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for PeakRss {
    fn drop(&mut self) {
        self.task.abort();
    }
}
