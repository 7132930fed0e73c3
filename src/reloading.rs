//! Values built from files that are read again when they change: certificates that rotate.

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The current value built from a set of files.
#[derive(Debug)]
pub struct Reloading<T> {
    value: RwLock<Arc<T>>,
}

impl<T: Send + Sync + 'static> Reloading<T> {
    /// Builds the value from the contents of `paths`. With `interval`, and inside a tokio
    /// runtime, the files are read again at that interval and the value rebuilt when their
    /// contents change; a rebuild that fails is logged and the current value kept. Outside
    /// a runtime (`check-config`) nothing is watched. `reloaded` is logged on each reload.
    pub fn load<E, B>(
        paths: Vec<PathBuf>,
        interval: Option<Duration>,
        reloaded: &'static str,
        read_error: impl FnOnce(&Path, std::io::Error) -> E,
        build: B,
    ) -> Result<Arc<Self>, E>
    where
        E: Display + 'static,
        B: Fn(&[Vec<u8>]) -> Result<T, E> + Send + 'static,
    {
        let contents = read_all(&paths).map_err(|(path, error)| read_error(path, error))?;
        let reloading = Arc::new(Self {
            value: RwLock::new(Arc::new(build(&contents)?)),
        });
        if let (Some(interval), Ok(runtime)) = (interval, tokio::runtime::Handle::try_current()) {
            runtime.spawn(Arc::clone(&reloading).watch(paths, contents, interval, reloaded, build));
        }
        Ok(reloading)
    }

    pub fn current(&self) -> Arc<T> {
        Arc::clone(&self.value.read().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    async fn watch<E, B>(
        self: Arc<Self>,
        paths: Vec<PathBuf>,
        mut contents: Vec<Vec<u8>>,
        interval: Duration,
        reloaded: &'static str,
        build: B,
    ) where
        E: Display,
        B: Fn(&[Vec<u8>]) -> Result<T, E>,
    {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let fresh = match read_all(&paths) {
                Ok(fresh) if fresh != contents => fresh,
                Ok(_) => continue,
                Err((path, error)) => {
                    tracing::warn!(path = %path.display(), %error, "cannot read a changed TLS file; keeping the current one");
                    continue;
                }
            };
            match build(&fresh) {
                Ok(value) => {
                    *self.value.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(value);
                    contents = fresh;
                    tracing::info!(paths = ?paths, "{reloaded}");
                }
                Err(error) => tracing::warn!(%error, "changed TLS files do not load; keeping the current ones"),
            }
        }
    }
}

fn read_all(paths: &[PathBuf]) -> Result<Vec<Vec<u8>>, (&Path, std::io::Error)> {
    paths
        .iter()
        .map(|path| std::fs::read(path).map_err(|error| (path.as_path(), error)))
        .collect()
}
