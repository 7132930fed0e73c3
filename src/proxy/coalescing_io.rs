//! A socket wrapper that sends what many HTTP/2 streams write in one scheduling round with one system call.
//!
//! h2 flushes after every DATA frame it hands over by reference and at the end of each
//! poll, so without this each call costs two or more `writev`s per connection, and on a
//! virtual machine the system call, not the payload work, dominates the proxy's CPU time.
//! Flushing here only marks the buffer as due and wakes the connection's task; the bytes go
//! out when the task is polled again, after the other tasks that were ready have added
//! their frames. h2 reads the socket on every poll of a connection, so the due bytes are
//! written at the start of that read.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Buffered bytes beyond which a write goes to the socket at once.
const HIGH_WATER: usize = 256 << 10;
/// A drained buffer keeps its allocation up to this size, so idle connections stay small.
const KEPT_CAPACITY: usize = 64 << 10;

/// Delays writes to `inner` until the owning task's next poll.
#[derive(Debug)]
pub struct CoalescingIo<T> {
    inner: T,
    pending: Vec<u8>,
    /// How much of `pending` the socket has taken already.
    written: usize,
    /// A flush was asked for; the buffer goes out on the next read, write past the high
    /// water mark, or shutdown.
    drain_due: bool,
}

impl<T> CoalescingIo<T> {
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            pending: Vec::new(),
            written: 0,
            drain_due: false,
        }
    }

    fn buffered(&self) -> usize {
        self.pending.len() - self.written
    }
}

impl<T: AsyncWrite + Unpin> CoalescingIo<T> {
    /// Writes out everything buffered.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let written = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += written;
        }
        self.pending.clear();
        self.written = 0;
        self.drain_due = false;
        if self.pending.capacity() > KEPT_CAPACITY {
            self.pending = Vec::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for CoalescingIo<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // A socket that cannot take more now has registered this task for writability;
        // reading goes on meanwhile.
        if this.drain_due
            && let Poll::Ready(Err(error)) = this.poll_drain(cx)
        {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CoalescingIo<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let len: usize = bufs.iter().map(|buf| buf.len()).sum();
        if this.buffered() + len > HIGH_WATER {
            ready!(this.poll_drain(cx))?;
            if len >= HIGH_WATER {
                // Large frames of a big history page gain nothing from a copy.
                return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
            }
        }
        for buf in bufs {
            this.pending.extend_from_slice(buf);
        }
        Poll::Ready(Ok(len))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.buffered() == 0 {
            return Pin::new(&mut this.inner).poll_flush(cx);
        }
        if !this.drain_due {
            this.drain_due = true;
            cx.waker().wake_by_ref();
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    #[tokio::test]
    async fn flushed_bytes_go_out_on_the_next_read_in_one_piece() {
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let mut io = CoalescingIo::new(near);
        io.write_all(b"HEADERS").await.unwrap();
        io.flush().await.unwrap();
        io.write_all(b"DATA").await.unwrap();
        io.flush().await.unwrap();
        assert_eq!(io.buffered(), 11, "flushing only marks the buffer as due");

        far.write_all(b"ping").await.unwrap();
        let mut read = [0; 4];
        io.read_exact(&mut read).await.unwrap();
        assert_eq!(&read, b"ping");
        let mut sent = [0; 11];
        far.read_exact(&mut sent).await.unwrap();
        assert_eq!(&sent, b"HEADERSDATA");
    }

    #[tokio::test]
    async fn shutdown_sends_what_is_buffered() {
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let mut io = CoalescingIo::new(near);
        io.write_all(b"GOAWAY").await.unwrap();
        io.flush().await.unwrap();
        io.shutdown().await.unwrap();
        let mut sent = Vec::new();
        far.read_to_end(&mut sent).await.unwrap();
        assert_eq!(sent, b"GOAWAY");
    }

    #[tokio::test]
    async fn writes_past_the_high_water_mark_reach_the_socket_at_once() {
        let (near, mut far) = tokio::io::duplex(4 << 20);
        let mut io = CoalescingIo::new(near);
        let frame = vec![7u8; HIGH_WATER / 2 + 1];
        io.write_all(&frame).await.unwrap();
        io.write_all(&frame).await.unwrap();
        assert_eq!(io.buffered(), frame.len(), "the first frame was written to make room");
        let mut sent = vec![0; frame.len()];
        far.read_exact(&mut sent).await.unwrap();
        assert_eq!(sent, frame);

        let large = vec![9u8; HIGH_WATER];
        io.write_all(&large).await.unwrap();
        assert_eq!(io.buffered(), 0, "a large frame goes straight through after the buffer");
        let mut sent = vec![0; frame.len() + large.len()];
        far.read_exact(&mut sent).await.unwrap();
        assert_eq!(&sent[..frame.len()], &frame[..]);
        assert_eq!(&sent[frame.len()..], &large[..]);
    }
}
