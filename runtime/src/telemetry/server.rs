//! `GET /metrics`: the Prometheus endpoint, on a thread of its own.

use std::{net::SocketAddr, sync::Arc, thread};

use axum::{Router, http::header, response::IntoResponse, routing::get};
use thiserror::Error;
use tokio::sync::oneshot;

/// Renders a scrape.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// The content type of the Prometheus text format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Why the endpoint could not start.
#[derive(Debug, Error)]
pub enum MetricsServerError {
    #[error("cannot serve metrics on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: std::io::Error },
    #[error("cannot start the metrics thread: {0}")]
    Thread(std::io::Error),
}

/// A running metrics endpoint; dropping it stops it.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl MetricsServer {
    /// Listens on `addr` (port 0: any free port) and answers each scrape with `render()`.
    pub fn start(addr: SocketAddr, render: Render) -> Result<Self, MetricsServerError> {
        let bind_error = |reason| MetricsServerError::Bind { addr, reason };
        let listener = std::net::TcpListener::bind(addr).map_err(bind_error)?;
        listener.set_nonblocking(true).map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build().map_err(bind_error)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let app = Router::new().route(
            "/metrics",
            get(move || {
                let render = Arc::clone(&render);
                async move { ([(header::CONTENT_TYPE, TEXT_FORMAT)], render()).into_response() }
            }),
        );
        let thread = thread::Builder::new()
            .name("pfn-metrics".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(error) => return tracing::error!(%error, "cannot serve metrics"),
                    };
                    let shutdown = async {
                        // A dropped sender stops the server too.
                        let _ = stopped.await;
                    };
                    if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
                        tracing::error!(%error, "the metrics endpoint failed");
                    }
                });
            })
            .map_err(MetricsServerError::Thread)?;
        tracing::info!(%addr, "metrics endpoint listening");
        Ok(Self { addr, stop: Some(stop), thread: Some(thread) })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the metrics thread panicked");
        }
    }
}
