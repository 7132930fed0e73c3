//! A socket wrapper that sends what many HTTP/2 streams write in one scheduling round with one system call.
//!
//! h2 flushes after every DATA frame it hands over by reference and at the end of each
//! poll, so without this each call costs two or more `writev`s per connection, and on a
//! virtual machine the system call, not the payload work, dominates the proxy's CPU time.
//!
//! The first flush only marks the buffer as due and wakes the connection's task, which
//! runs again after the other tasks that were ready, and they add their frames meanwhile
//! (a streamed or large request's DATA frame, for one, waits for its HEADERS to open the
//! stream). h2 reads the socket first on every poll of a connection and flushes at the
//! end, so a flush that comes after a read belongs to a later poll: that one writes
//! everything. Each poll that finds bytes due wakes the task once more, and the next read
//! writes them if no flush did, so nothing waits for traffic that may never come.

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
    /// A flush was asked for; the buffer goes out at the first flush of a later poll, or
    /// on a write past the high water mark, or at shutdown.
    drain_due: bool,
    /// The task has read since the buffer became due, so it is in a later poll.
    read_since_due: bool,
}

impl<T> CoalescingIo<T> {
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            pending: Vec::new(),
            written: 0,
            drain_due: false,
            read_since_due: false,
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
        self.read_since_due = false;
        if self.pending.capacity() > KEPT_CAPACITY {
            self.pending = Vec::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for CoalescingIo<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.drain_due {
            if this.read_since_due {
                // A whole poll went by without a flush. A socket that cannot take more now
                // has registered this task for writability; reading goes on meanwhile.
                if let Poll::Ready(Err(error)) = this.poll_drain(cx) {
                    return Poll::Ready(Err(error));
                }
            } else {
                this.read_since_due = true;
                cx.waker().wake_by_ref();
            }
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
            return Poll::Ready(Ok(()));
        }
        if !this.read_since_due {
            // The same poll: h2 making room for its next frame.
            return Poll::Ready(Ok(()));
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
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
    async fn a_flush_after_a_read_sends_what_earlier_flushes_left_due_in_one_piece() {
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let mut io = CoalescingIo::new(near);
        io.write_all(b"HEADERS").await.unwrap();
        io.flush().await.unwrap();
        io.write_all(b"DATA").await.unwrap();
        io.flush().await.unwrap();
        assert_eq!(io.buffered(), 11, "flushes in one poll only mark the buffer as due");

        far.write_all(b"ping").await.unwrap();
        let mut read = [0; 4];
        io.read_exact(&mut read).await.unwrap();
        assert_eq!(&read, b"ping");
        assert_eq!(io.buffered(), 11, "the read only notes that a later poll has begun");
        io.write_all(b"TRAILERS").await.unwrap();
        io.flush().await.unwrap();
        assert_eq!(io.buffered(), 0);
        let mut sent = [0; 19];
        far.read_exact(&mut sent).await.unwrap();
        assert_eq!(&sent, b"HEADERSDATATRAILERS");
    }

    #[tokio::test]
    async fn a_second_read_sends_what_no_flush_has_sent() {
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let mut io = CoalescingIo::new(near);
        io.write_all(b"SETTINGS").await.unwrap();
        io.flush().await.unwrap();
        far.write_all(b"pingpong").await.unwrap();
        let mut read = [0; 4];
        io.read_exact(&mut read).await.unwrap();
        io.read_exact(&mut read).await.unwrap();
        assert_eq!(io.buffered(), 0);
        let mut sent = [0; 8];
        far.read_exact(&mut sent).await.unwrap();
        assert_eq!(&sent, b"SETTINGS");
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
