//! `GET /metrics`: the Prometheus endpoint, on a server of its own (which answers the health
//! probe too).

use std::{net::SocketAddr, sync::Arc};

use axum::{Router, http::header, response::IntoResponse, routing::get};

use crate::http_server::HttpServer;
pub use crate::http_server::HttpServerError as MetricsServerError;

/// Renders a scrape.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// The content type of the Prometheus text format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The route `GET /metrics`, answered with `render()`.
pub fn metrics_routes(render: Render) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let render = Arc::clone(&render);
            async move { ([(header::CONTENT_TYPE, TEXT_FORMAT)], render()).into_response() }
        }),
    )
}

/// A running metrics endpoint; dropping it stops it.
#[derive(Debug)]
pub struct MetricsServer(HttpServer);

impl MetricsServer {
    /// Listens on `addr` (port 0: any free port) and answers each scrape with `render()`.
    pub fn start(addr: SocketAddr, render: Render) -> Result<Self, MetricsServerError> {
        let app = metrics_routes(render).merge(crate::http_server::health_route());
        let server = HttpServer::start(addr, "metrics", app)?;
        tracing::info!(addr = %server.addr(), "metrics endpoint listening");
        Ok(Self(server))
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.0.addr()
    }
}
