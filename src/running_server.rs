//! A listener's accept task, and the graceful stop both listeners share.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

/// A running listener: its address, and the signal that stops its accept loop.
pub struct RunningServer {
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningServer {
    /// Binds `listen` and runs `accept_loop` on the listener until shut down; the loop gets
    /// a receiver that changes when it must stop accepting.
    pub async fn start<F, Fut>(listen: SocketAddr, accept_loop: F) -> std::io::Result<Self>
    where
        F: FnOnce(TcpListener, watch::Receiver<bool>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind(listen).await?;
        let local_addr = listener.local_addr()?;
        let (shutdown, signal) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, signal));
        Ok(Self {
            local_addr,
            shutdown,
            task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting and lets open connections finish for up to `grace`; what is still
    /// running after that (long polls, watches) is cut.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.shutdown.send(true);
        let mut task = self.task;
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            tracing::warn!(?grace, "connections still open after the grace period; closing them");
            task.abort();
        }
    }
}
