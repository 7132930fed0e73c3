//! A TCP relay between the proxy and the server that records what the proxy sends upstream
//! (HTTP/2 DATA payloads and stream resets) and can be stopped and restarted.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const DATA: u8 = 0x0;
const RST_STREAM: u8 = 0x3;

#[derive(Default)]
pub struct Recorded {
    /// Every DATA frame payload the proxy sent upstream, concatenated (HTTP/2).
    pub upstream_data: Vec<u8>,
    pub upstream_resets: usize,
    /// Every byte sent upstream, for HTTP/1.1 peers such as the KMS emulator.
    pub upstream_raw: Vec<u8>,
    /// Connections accepted from the proxy.
    pub connections: usize,
}

pub struct Relay {
    pub address: SocketAddr,
    upstream: String,
    pub recorded: Arc<Mutex<Recorded>>,
    tasks: Option<JoinSet<()>>,
}

impl Relay {
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut relay = Relay {
            address: listener.local_addr().unwrap(),
            upstream: upstream.to_owned(),
            recorded: Arc::default(),
            tasks: None,
        };
        relay.serve(listener);
        relay
    }

    fn serve(&mut self, listener: TcpListener) {
        let mut tasks = JoinSet::new();
        let upstream = self.upstream.clone();
        let recorded = Arc::clone(&self.recorded);
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                recorded.lock().unwrap().connections += 1;
                let upstream = upstream.clone();
                let recorded = Arc::clone(&recorded);
                connections.spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let to_server = async {
                        let mut inspector = FrameInspector::default();
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match client_read.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            inspector.feed(&buf[..n], &recorded);
                            if server_write.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = server_write.shutdown().await;
                    };
                    let to_client = async {
                        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                        let _ = client_write.shutdown().await;
                    };
                    tokio::join!(to_server, to_client);
                });
            }
        });
        self.tasks = Some(tasks);
    }

    /// Closes the listener and every relayed connection: the upstream looks down.
    pub async fn stop(&mut self) {
        if let Some(mut tasks) = self.tasks.take() {
            tasks.shutdown().await;
        }
    }

    /// Listens again on the same address.
    pub async fn restart(&mut self) {
        let listener = TcpListener::bind(self.address).await.unwrap();
        self.serve(listener);
    }

    pub fn sent_upstream(&self, needle: &[u8]) -> bool {
        let recorded = self.recorded.lock().unwrap();
        recorded.upstream_data.windows(needle.len()).any(|w| w == needle)
    }

    pub fn upstream_resets(&self) -> usize {
        self.recorded.lock().unwrap().upstream_resets
    }

    /// How many times `needle` appears in everything sent upstream.
    pub fn count_sent(&self, needle: &[u8]) -> usize {
        let recorded = self.recorded.lock().unwrap();
        recorded
            .upstream_raw
            .windows(needle.len())
            .filter(|w| *w == needle)
            .count()
    }
}

/// Parses the client side of an HTTP/2 connection frame by frame.
#[derive(Default)]
struct FrameInspector {
    buffer: Vec<u8>,
    preface_seen: bool,
    not_http2: bool,
}

impl FrameInspector {
    fn feed(&mut self, bytes: &[u8], recorded: &Mutex<Recorded>) {
        recorded.lock().unwrap().upstream_raw.extend_from_slice(bytes);
        if self.not_http2 {
            return;
        }
        self.buffer.extend_from_slice(bytes);
        if !self.preface_seen {
            if self.buffer.len() < PREFACE_LEN {
                return;
            }
            if !self.buffer.starts_with(b"PRI * HTTP/2.0") {
                self.not_http2 = true;
                self.buffer.clear();
                return;
            }
            self.buffer.drain(..PREFACE_LEN);
            self.preface_seen = true;
        }
        while self.buffer.len() >= FRAME_HEADER_LEN {
            let len = u32::from_be_bytes([0, self.buffer[0], self.buffer[1], self.buffer[2]]) as usize;
            if self.buffer.len() < FRAME_HEADER_LEN + len {
                return;
            }
            let kind = self.buffer[3];
            let flags = self.buffer[4];
            let payload = &self.buffer[FRAME_HEADER_LEN..FRAME_HEADER_LEN + len];
            let mut recorded = recorded.lock().unwrap();
            match kind {
                DATA => {
                    // PADDED: the first byte is the pad length.
                    let data = if flags & 0x8 != 0 && !payload.is_empty() {
                        &payload[1..payload.len() - usize::from(payload[0]).min(payload.len() - 1)]
                    } else {
                        payload
                    };
                    recorded.upstream_data.extend_from_slice(data);
                }
                RST_STREAM => recorded.upstream_resets += 1,
                _ => {}
            }
            drop(recorded);
            self.buffer.drain(..FRAME_HEADER_LEN + len);
        }
    }
}
