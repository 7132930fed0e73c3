//! The HTTP/2 connections to the Temporal frontend that the proxied calls share, each reopened
//! when it closes, with TLS and client certificates reloaded from disk.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use h2::{Reason, RecvStream, SendStream};
use http::Uri;
use http::uri::{Authority, PathAndQuery, Scheme};
use http_body::{Body as _, Frame};
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tonic::body::Body;

use super::coalescing_io::CoalescingIo;
use crate::codec_server::tls::root_store;
use crate::reloading::Reloading;

/// HTTP/2 flow-control windows of the upstream connection and of callers' connections.
pub const CONNECTION_WINDOW: u32 = 16 << 20;
pub const STREAM_WINDOW: u32 = 4 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 keepalive pings on both legs: an idle connection through a NAT or load balancer
/// is noticed dead within a minute.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// The largest header block accepted from either side: big enough for any
/// `grpc-status-details-bin` the upstream sends.
pub const MAX_HEADER_LIST_BYTES: u32 = 1 << 20;

/// The most HTTP/2 connections to the upstream one proxy opens.
pub const MAX_CONNECTIONS: usize = 64;

/// Where the upstream is and how to reach it.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// `HOST:PORT`, `http://HOST:PORT` or `https://HOST:PORT`.
    pub address: String,
    pub tls: Option<UpstreamTls>,
    /// HTTP/2 connections the calls are spread over, 1 to [`MAX_CONNECTIONS`].
    pub connections: usize,
}

/// TLS to the upstream. Certificate and key files are read again every `reload_interval`
/// and used for new connections when they change; open connections carry on.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    /// CA certificates (PEM) to trust instead of the system's roots.
    pub ca: Option<PathBuf>,
    /// Name to verify the server certificate against, when it is not the address's host.
    pub server_name: Option<String>,
    /// Client certificate chain and key (PEM) for mTLS.
    pub client_identity: Option<(PathBuf, PathBuf)>,
    pub reload_interval: Duration,
}

impl UpstreamSettings {
    pub fn plaintext(address: &str) -> Self {
        Self {
            address: address.to_owned(),
            tls: None,
            connections: 1,
        }
    }

    /// `HOST:PORT` without a scheme.
    fn host_and_port(&self) -> &str {
        let address = self.address.as_str();
        address
            .strip_prefix("http://")
            .or_else(|| address.strip_prefix("https://"))
            .unwrap_or(address)
            .trim_end_matches('/')
    }
}

/// Makes a lazily connecting client for the upstream.
///
/// The client reconnects by itself, so calls succeed again as soon as the upstream is
/// back. No request timeout is set: each call carries its own `grpc-timeout`, and long
/// polls run for 70 seconds and more.
pub fn connect_lazy(settings: &UpstreamSettings) -> Result<UpstreamClient, UpstreamError> {
    let host_and_port = settings.host_and_port().to_owned();
    let address_error = || UpstreamError::Address(settings.address.clone());
    let authority: Authority = host_and_port.parse().map_err(|_| address_error())?;
    authority.port_u16().ok_or_else(address_error)?;
    let host = authority.host().to_owned();
    if !(1..=MAX_CONNECTIONS).contains(&settings.connections) {
        return Err(UpstreamError::Connections(settings.connections));
    }
    let connections = settings.connections;
    let Some(tls) = &settings.tls else {
        if settings.address.starts_with("https://") {
            return Err(UpstreamError::Tls(format!(
                "{} names https but TLS is switched off",
                settings.address
            )));
        }
        return Ok(UpstreamClient::new(
            Connector {
                address: host_and_port,
                tls: None,
            },
            Scheme::HTTP,
            authority,
            connections,
        ));
    };
    let server_name = tls
        .server_name
        .clone()
        .unwrap_or(host.trim_matches(['[', ']']).to_owned());
    let server_name = ServerName::try_from(server_name.clone())
        .map_err(|_| UpstreamError::Tls(format!("invalid server name {server_name:?}")))?;
    let reload = tls.clone();
    let config = Reloading::load(
        files(tls),
        Some(tls.reload_interval),
        "reloaded the upstream TLS files; new connections use them",
        |path, error| UpstreamError::Tls(format!("cannot read {}: {error}", path.display())),
        move |contents| client_config(&reload, contents),
    )?;
    let connector = Connector {
        address: host_and_port,
        tls: Some(ConnectorTls { server_name, config }),
    };
    Ok(UpstreamClient::new(connector, Scheme::HTTPS, authority, connections))
}

/// The HTTP/2 connections to the upstream that the calls share, each opened on first use
/// and opened again when it has closed.
#[derive(Clone)]
pub struct UpstreamClient {
    shared: Arc<ClientShared>,
}

struct ClientShared {
    connector: Connector,
    scheme: Scheme,
    authority: Authority,
    connections: Box<[ConnectionSlot]>,
    /// Where the search for the least busy connection starts, turning with every call so
    /// that equally busy connections take turns.
    next: AtomicUsize,
}

/// One of the upstream connections, and how many calls are waiting on it.
#[derive(Default)]
struct ConnectionSlot {
    current: std::sync::Mutex<Option<OpenConnection>>,
    /// Held while connecting, so that callers arriving meanwhile wait for that connection
    /// rather than opening their own.
    connecting: tokio::sync::Mutex<()>,
    calls: AtomicUsize,
}

/// Counts a call against its connection until the upstream has answered.
struct CallOnConnection<'a>(&'a ConnectionSlot);

impl<'a> CallOnConnection<'a> {
    fn start(slot: &'a ConnectionSlot) -> Self {
        slot.calls.fetch_add(1, Ordering::Relaxed);
        Self(slot)
    }
}

impl Drop for CallOnConnection<'_> {
    fn drop(&mut self) {
        self.0.calls.fetch_sub(1, Ordering::Relaxed);
    }
}

impl UpstreamClient {
    fn new(connector: Connector, scheme: Scheme, authority: Authority, connections: usize) -> Self {
        Self {
            shared: Arc::new(ClientShared {
                connector,
                scheme,
                authority,
                connections: (0..connections).map(|_| ConnectionSlot::default()).collect(),
                next: AtomicUsize::new(0),
            }),
        }
    }

    /// Sends `request` upstream, addressed to the upstream's scheme and authority, on the
    /// connection with the fewest calls waiting for an answer.
    pub async fn send(&self, request: http::Request<Body>) -> Result<http::Response<UpstreamBody>, UpstreamCallError> {
        let (mut parts, body) = request.into_parts();
        let mut uri = std::mem::take(&mut parts.uri).into_parts();
        uri.scheme = Some(self.shared.scheme.clone());
        uri.authority = Some(self.shared.authority.clone());
        if uri.path_and_query.is_none() {
            uri.path_and_query = Some(PathAndQuery::from_static("/"));
        }
        parts.uri = Uri::from_parts(uri).map_err(|error| UpstreamCallError::Request(error.to_string()))?;
        // With one connection there is nothing to choose, so nothing to count.
        let (slot, _call) = match &*self.shared.connections {
            [only] => (only, None),
            _ => {
                let slot = self.least_busy_connection();
                (slot, Some(CallOnConnection::start(slot)))
            }
        };
        let mut sender = self.ready_sender(slot).await?;
        let end_of_stream = body.is_end_stream();
        let (response, request_stream) = sender
            .send_request(http::Request::from_parts(parts, ()), end_of_stream)
            .map_err(UpstreamCallError::Http)?;
        let call = if end_of_stream {
            None
        } else {
            BodySender::start(body, request_stream).await
        };
        let response = response.await.map_err(UpstreamCallError::Http)?;
        Ok(response.map(|stream| UpstreamBody { stream, _call: call }))
    }

    fn least_busy_connection(&self) -> &ConnectionSlot {
        let connections = &self.shared.connections;
        let start = self.shared.next.fetch_add(1, Ordering::Relaxed) % connections.len();
        (0..connections.len())
            .map(|offset| &connections[(start + offset) % connections.len()])
            .min_by_key(|slot| slot.calls.load(Ordering::Relaxed))
            .expect("at least one connection")
    }

    /// A sender that may start a stream now. A connection that can start no more streams
    /// (the upstream sent GOAWAY, as a server does when it restarts or ages its
    /// connections out) is left to finish its calls, and the call goes on a new one.
    async fn ready_sender(&self, slot: &ConnectionSlot) -> Result<SendRequest<Bytes>, UpstreamCallError> {
        let connection = self.sender(slot).await?;
        match connection.sender.ready().await {
            Ok(sender) => Ok(sender),
            Err(error) => {
                tracing::debug!(%error, "upstream connection takes no new calls; opening another");
                connection.ended.store(true, Ordering::Release);
                self.sender(slot)
                    .await?
                    .sender
                    .ready()
                    .await
                    .map_err(UpstreamCallError::Http)
            }
        }
    }

    fn open_connection(slot: &ConnectionSlot) -> Option<OpenConnection> {
        let current = slot.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        current
            .as_ref()
            .filter(|connection| !connection.ended.load(Ordering::Acquire))
            .cloned()
    }

    async fn sender(&self, slot: &ConnectionSlot) -> Result<OpenConnection, UpstreamCallError> {
        match Self::open_connection(slot) {
            Some(sender) => Ok(sender),
            // Boxed: connecting (TCP, TLS, the HTTP/2 handshake) is a future of a few
            // kilobytes, which every call's future would otherwise carry and move.
            None => Box::pin(self.connect(slot)).await,
        }
    }

    /// Opens the slot's connection, unless a caller that held the lock first already did.
    async fn connect(&self, slot: &ConnectionSlot) -> Result<OpenConnection, UpstreamCallError> {
        let _connecting = slot.connecting.lock().await;
        if let Some(sender) = Self::open_connection(slot) {
            return Ok(sender);
        }
        let io = tokio::time::timeout(CONNECT_TIMEOUT, self.shared.connector.connect())
            .await
            .map_err(|_| UpstreamCallError::Connect(io::Error::from(io::ErrorKind::TimedOut)))?
            .map_err(UpstreamCallError::Connect)?;
        let (sender, mut connection) = h2::client::Builder::new()
            // Fixed, large windows rather than adaptive ones: h2 allows a burst of small DATA
            // frames (a thousand long polls answered at once) up to half the connection
            // window, and an adaptive window starts at 64 KiB.
            .initial_connection_window_size(CONNECTION_WINDOW)
            .initial_window_size(STREAM_WINDOW)
            .max_header_list_size(MAX_HEADER_LIST_BYTES)
            .enable_push(false)
            .handshake::<_, Bytes>(io)
            .await
            .map_err(UpstreamCallError::Http)?;
        let ping_pong = connection.ping_pong();
        let ended = Arc::new(AtomicBool::new(false));
        tokio::spawn(drive_connection(connection, ping_pong, Arc::clone(&ended)));
        let connection = OpenConnection { sender, ended };
        *slot.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(connection.clone());
        Ok(connection)
    }
}

/// An HTTP/2 connection to the upstream that calls may still start streams on.
#[derive(Clone)]
struct OpenConnection {
    sender: SendRequest<Bytes>,
    /// Set once the connection has ended, so the next call opens a new one.
    ended: Arc<AtomicBool>,
}

/// Runs the connection until it ends or a keepalive ping goes unanswered, which drops it
/// and fails the calls still on it.
async fn drive_connection(
    connection: h2::client::Connection<Box<dyn UpstreamIo>, Bytes>,
    ping_pong: Option<h2::PingPong>,
    ended: Arc<AtomicBool>,
) {
    let keep_alive = async move {
        let Some(mut ping_pong) = ping_pong else {
            return std::future::pending().await;
        };
        loop {
            tokio::time::sleep(KEEP_ALIVE_INTERVAL).await;
            match tokio::time::timeout(KEEP_ALIVE_TIMEOUT, ping_pong.ping(h2::Ping::opaque())).await {
                Ok(Ok(_pong)) => {}
                Ok(Err(error)) => return format!("keepalive ping failed: {error}"),
                Err(_) => {
                    return format!(
                        "no answer to a keepalive ping within {} s",
                        KEEP_ALIVE_TIMEOUT.as_secs()
                    );
                }
            }
        }
    };
    tokio::select! {
        result = connection => {
            if let Err(error) = result {
                tracing::debug!(%error, "upstream connection ended with an error");
            }
        }
        reason = keep_alive => tracing::warn!(%reason, "closed the upstream connection"),
    }
    ended.store(true, Ordering::Release);
}

/// The largest request body of known size that is handed to h2 as it comes, before the
/// stream has window for it: h2 holds at most this much for a call until the window opens.
const SEND_AHEAD_LIMIT: u64 = 1 << 20;

/// Sends a request body upstream. A large or streamed one goes as the stream's flow-control
/// window allows, so a slow upstream slows the caller down.
struct BodySender {
    body: Body,
    stream: SendStream<Bytes>,
    /// Resolves when the call is over (its response dropped): the rest is not sent.
    call_over: Option<oneshot::Receiver<()>>,
    /// The body's size is known and at most [`SEND_AHEAD_LIMIT`]. A unary call's body is
    /// whole in memory: it goes to h2 with the headers, so the call needs no task of its
    /// own, and both leave in one write rather than the body after the stream has opened.
    send_ahead_of_window: bool,
}

impl BodySender {
    /// Sends what the body has ready. When more is to come, a task sends the rest, and the
    /// sender returned tells it, by being dropped, that the call is over.
    async fn start(body: Body, stream: SendStream<Bytes>) -> Option<oneshot::Sender<()>> {
        let send_ahead_of_window = body.size_hint().exact().is_some_and(|len| len <= SEND_AHEAD_LIMIT);
        let mut sender = Self {
            body,
            stream,
            call_over: None,
            send_ahead_of_window,
        };
        if std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut sender).poll(cx)))
            .await
            .is_ready()
        {
            return None;
        }
        let (call, call_over) = oneshot::channel();
        sender.call_over = Some(call_over);
        tokio::spawn(sender);
        Some(call)
    }
}

impl Future for BodySender {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if let Some(call_over) = &mut this.call_over
            && Pin::new(call_over).poll(cx).is_ready()
        {
            this.stream.send_reset(Reason::CANCEL);
            return Poll::Ready(());
        }
        loop {
            if this.stream.poll_reset(cx).is_ready() {
                return Poll::Ready(());
            }
            // Wait for window before taking more from the caller, unless h2 may hold it all.
            if !this.send_ahead_of_window {
                this.stream.reserve_capacity(1);
                if this.stream.capacity() == 0 {
                    match ready!(this.stream.poll_capacity(cx)) {
                        Some(Ok(_)) => continue,
                        Some(Err(_)) | None => return Poll::Ready(()),
                    }
                }
            }
            let sent = match ready!(Pin::new(&mut this.body).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let end = this.body.is_end_stream();
                        this.stream.send_data(data, end).map(|()| end)
                    }
                    Err(frame) => match frame.into_trailers() {
                        Ok(trailers) => this.stream.send_trailers(trailers).map(|()| true),
                        Err(_) => Ok(false),
                    },
                },
                Some(Err(error)) => {
                    tracing::debug!(%error, "the caller's request body failed; resetting the upstream stream");
                    this.stream.send_reset(Reason::CANCEL);
                    Ok(true)
                }
                None => this.stream.send_data(Bytes::new(), true).map(|()| true),
            };
            match sent {
                Ok(false) => {}
                Ok(true) | Err(_) => return Poll::Ready(()),
            }
        }
    }
}

/// A response body from the upstream. Flow-control window is handed back as the data is
/// taken, so the upstream sends no faster than the caller reads. h2 keeps the stream's
/// state: once the data is over it answers `None` again, and once the trailers are taken
/// the stream has ended.
pub struct UpstreamBody {
    stream: RecvStream,
    /// Dropped with the body: a request body still being sent then stops.
    _call: Option<oneshot::Sender<()>>,
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        let stream = &mut self.stream;
        match ready!(stream.poll_data(cx)) {
            Some(Ok(data)) => {
                // Cannot fail: the capacity released is what this data used.
                let _ = stream.flow_control().release_capacity(data.len());
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Some(Err(error)) => Poll::Ready(Some(Err(error))),
            None => {
                let trailers = ready!(stream.poll_trailers(cx));
                Poll::Ready(trailers.map(|trailers| trailers.map(Frame::trailers)).transpose())
            }
        }
    }

    /// True at once for a trailers-only answer, so it reaches the caller as one: gRPC
    /// clients read a status only from a header block that ends the stream.
    fn is_end_stream(&self) -> bool {
        self.stream.is_end_stream()
    }
}

/// Lets tonic's client speak through the upstream connection (the readiness check).
impl tower::Service<http::Request<Body>> for UpstreamClient {
    type Response = http::Response<UpstreamBody>;
    type Error = UpstreamCallError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let client = self.clone();
        Box::pin(async move { client.send(request).await })
    }
}

/// Why a call could not be sent upstream or got no answer.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamCallError {
    #[error("connecting failed: {0}")]
    Connect(io::Error),
    #[error("{0}")]
    Http(h2::Error),
    #[error("the request cannot be addressed upstream: {0}")]
    Request(String),
}

/// The upstream TLS configuration from its files, in the order `files` lists them.
fn client_config(tls: &UpstreamTls, contents: &[Vec<u8>]) -> Result<ClientConfig, UpstreamError> {
    let mut contents = contents.iter();
    let ca = if tls.ca.is_some() { contents.next() } else { None };
    let roots = match (&tls.ca, ca) {
        (Some(path), Some(pem)) => {
            root_store(pem).map_err(|reason| UpstreamError::Tls(format!("{}: {reason}", path.display())))?
        }
        _ => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            roots
        }
    };
    let builder = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|error| UpstreamError::Tls(error.to_string()))?
        .with_root_certificates(roots);
    let mut config = match (&tls.client_identity, contents.next(), contents.next()) {
        (Some((cert_path, key_path)), Some(cert_pem), Some(key_pem)) => {
            let chain = CertificateDer::pem_slice_iter(cert_pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| UpstreamError::Tls(format!("{}: {error}", cert_path.display())))?;
            // The key's own error never shows its contents.
            let key = PrivateKeyDer::from_pem_slice(key_pem)
                .map_err(|error| UpstreamError::Tls(format!("{}: {error}", key_path.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|error| UpstreamError::Tls(format!("client certificate and key: {error}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The files the upstream TLS configuration is built from: CA, then certificate and key.
fn files(tls: &UpstreamTls) -> Vec<PathBuf> {
    let identity = tls.client_identity.iter().flat_map(|(cert, key)| [cert, key]);
    tls.ca.iter().chain(identity).cloned().collect()
}

/// A connection to the upstream, plain or TLS, that coalesces its writes.
trait UpstreamIo: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> UpstreamIo for T {}

/// Opens TCP connections to the upstream, speaking TLS (ALPN h2) over them when configured.
struct Connector {
    address: String,
    tls: Option<ConnectorTls>,
}

struct ConnectorTls {
    server_name: ServerName<'static>,
    config: Arc<Reloading<ClientConfig>>,
}

impl Connector {
    async fn connect(&self) -> io::Result<Box<dyn UpstreamIo>> {
        let tcp = TcpStream::connect(&self.address).await?;
        tcp.set_nodelay(true)?;
        let tcp = CoalescingIo::new(tcp);
        let Some(tls) = &self.tls else {
            return Ok(Box::new(tcp));
        };
        let tls_stream = tokio_rustls::TlsConnector::from(tls.config.current())
            .connect(tls.server_name.clone(), tcp)
            .await?;
        if tls_stream.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err(io::Error::other(format!(
                "upstream {} did not agree to HTTP/2 over TLS (ALPN h2)",
                self.address
            )));
        }
        Ok(Box::new(tls_stream))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream address {0:?} is not HOST:PORT, http://HOST:PORT or https://HOST:PORT")]
    Address(String),
    #[error("upstream TLS: {0}")]
    Tls(String),
    #[error("{0} upstream connections asked for; between 1 and {MAX_CONNECTIONS} are allowed")]
    Connections(usize),
}
