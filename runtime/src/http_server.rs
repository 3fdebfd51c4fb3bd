//! An HTTP server on a thread of its own, serving an axum app until it is dropped: the metrics
//! endpoint and the admin API run on it.

use std::{net::SocketAddr, thread};

use axum::Router;
use thiserror::Error;
use tokio::sync::oneshot;

/// Why a server could not start.
#[derive(Debug, Error)]
pub enum HttpServerError {
    #[error("cannot serve {what} on {addr}: {reason}")]
    Bind { what: &'static str, addr: SocketAddr, reason: std::io::Error },
    #[error("cannot start the {what} thread: {reason}")]
    Thread { what: &'static str, reason: std::io::Error },
}

impl HttpServerError {
    /// Whether the address was taken by another process.
    pub fn addr_in_use(&self) -> bool {
        matches!(self, Self::Bind { reason, .. } if reason.kind() == std::io::ErrorKind::AddrInUse)
    }
}

/// A running server; dropping it stops it (requests in progress finish first).
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    what: &'static str,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl HttpServer {
    /// Listens on `addr` (port 0: any free port) and serves `app` from a thread named
    /// `pfn-{what}`.
    pub fn start(addr: SocketAddr, what: &'static str, app: Router) -> Result<Self, HttpServerError> {
        let bind_error = |reason| HttpServerError::Bind { what, addr, reason };
        let listener = std::net::TcpListener::bind(addr).map_err(bind_error)?;
        listener.set_nonblocking(true).map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build().map_err(bind_error)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = thread::Builder::new()
            .name(format!("pfn-{what}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
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
            .map_err(|reason| HttpServerError::Thread { what, reason })?;
        Ok(Self { addr, what, stop: Some(stop), thread: Some(thread) })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!(what = self.what, "the server's thread panicked");
        }
    }
}
