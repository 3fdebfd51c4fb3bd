//! An HTTP server on a thread of its own, serving an axum app until it is dropped: the metrics
//! endpoint and the admin API run on it, over TCP or (the admin API) the worker's Unix socket.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use axum::{Router, routing::get, serve::Listener};
use thiserror::Error;
use tokio::sync::oneshot;

/// How long a stopping server waits for requests in progress (a `consume` stream, a trigger)
/// before it is left behind.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Where every server of the worker answers `ok` while the process serves (liveness and
/// readiness probes ask it), open to all.
pub const HEALTH_PATH: &str = "/admin/v3/worker/health";

/// The route `GET` [`HEALTH_PATH`].
pub fn health_route<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route(HEALTH_PATH, get(|| async { "ok" }))
}

/// Why a server could not start.
#[derive(Debug, Error)]
pub enum HttpServerError {
    #[error("cannot serve {what} on {addr}: {reason}")]
    Bind { what: &'static str, addr: String, reason: std::io::Error },
    #[error("another worker is listening on {0}")]
    InUse(PathBuf),
    #[error("cannot start the {what} thread: {reason}")]
    Thread { what: &'static str, reason: std::io::Error },
}

impl HttpServerError {
    /// Whether the address was taken by another process.
    pub fn addr_in_use(&self) -> bool {
        matches!(self, Self::Bind { reason, .. } if reason.kind() == std::io::ErrorKind::AddrInUse)
            || matches!(self, Self::InUse(_))
    }
}

/// A running server on TCP; dropping it stops it (requests in progress get a few seconds).
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    /// Stopped when dropped.
    _serving: Serving,
}

impl HttpServer {
    /// Listens on `addr` (port 0: any free port) and serves `app` from a thread named
    /// `pfn-{what}`.
    pub fn start(addr: SocketAddr, what: &'static str, app: Router) -> Result<Self, HttpServerError> {
        let bind_error = |reason| HttpServerError::Bind { what, addr: addr.to_string(), reason };
        let listener = std::net::TcpListener::bind(addr).map_err(bind_error)?;
        listener.set_nonblocking(true).map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        let serving = Serving::spawn(what, move || tokio::net::TcpListener::from_std(listener), app)?;
        Ok(Self { addr, _serving: serving })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// A running server on a Unix socket; dropping it stops it and removes the socket file.
#[derive(Debug)]
pub struct UnixHttpServer {
    path: PathBuf,
    serving: Serving,
}

impl UnixHttpServer {
    /// Listens on the Unix socket `path` (replacing a stale socket file; refusing one another
    /// process listens on) and serves `app`.
    pub fn start(path: &Path, what: &'static str, app: Router) -> Result<Self, HttpServerError> {
        let bind_error = |reason| HttpServerError::Bind { what, addr: path.display().to_string(), reason };
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(HttpServerError::InUse(path.into()));
            }
            // A socket file left by a worker that is gone.
            let _ = std::fs::remove_file(path);
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(bind_error)?;
        }
        let listener = std::os::unix::net::UnixListener::bind(path).map_err(bind_error)?;
        listener.set_nonblocking(true).map_err(bind_error)?;
        let serving = Serving::spawn(what, move || tokio::net::UnixListener::from_std(listener), app)?;
        Ok(Self { path: path.into(), serving })
    }
}

impl Drop for UnixHttpServer {
    fn drop(&mut self) {
        self.serving.stop();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// An app served from a thread of its own until stopped.
#[derive(Debug)]
struct Serving {
    what: &'static str,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Serving {
    /// Serves `app` on the listener `listen` makes, from a thread named `pfn-{what}`.
    fn spawn<L: Listener>(
        what: &'static str,
        listen: impl FnOnce() -> std::io::Result<L> + Send + 'static,
        app: Router,
    ) -> Result<Self, HttpServerError>
    where
        L::Addr: std::fmt::Debug,
    {
        let thread_error = |reason| HttpServerError::Thread { what, reason };
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build().map_err(thread_error)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = thread::Builder::new()
            .name(format!("pfn-{what}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match listen() {
                        Ok(listener) => listener,
                        Err(error) => return tracing::error!(%error, what, "cannot serve"),
                    };
                    let shutdown = async {
                        // A dropped sender stops the server too.
                        let _ = stopped.await;
                    };
                    if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
                        tracing::error!(%error, what, "the server failed");
                    }
                });
            })
            .map_err(thread_error)?;
        Ok(Self { what, stop: Some(stop), thread: Some(thread) })
    }

    /// Stops serving, waiting a few seconds for requests in progress; the thread is left
    /// behind when they do not end (a `consume` stream with no end).
    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Some(thread) = self.thread.take() else { return };
        let deadline = Instant::now() + STOP_GRACE;
        while !thread.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        if !thread.is_finished() {
            tracing::warn!(what = self.what, "requests still open when the server stopped; left behind");
        } else if thread.join().is_err() {
            tracing::error!(what = self.what, "the server's thread panicked");
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.stop();
    }
}
