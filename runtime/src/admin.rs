//! The admin API under `/admin/v3/functions`, as Pulsar Functions' REST API names its routes:
//! create, update, list, get, status and stats (of a function or one instance), state get and
//! put, trigger, start, stop, restart and delete, plus `GET /admin/v3/worker/health` and the
//! Prometheus scrape `GET /metrics`; and pfn's own `/pfn/v1/status` and `/pfn/v1/topics/...`.
//! [`router`] builds the app, which the worker serves over TCP (`--admin-addr`) and on its Unix
//! socket, and tests call in-process.
//!
//! - [`bodies`]: status and stats with Pulsar's field names.
//! - [`error`]: errors as JSON `{"error": "..."}` with their status codes.
//! - [`deploy`]: create and update (multipart, with an uploaded plugin), start, stop, restart.
//! - [`routes`]: the other handlers.
//! - [`topics`]: produce, consume, subscriptions and counts of the functions' topics.

pub mod bodies;
mod deploy;
pub mod error;
mod routes;
pub mod topics;

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Router,
    extract::{DefaultBodyLimit, Request, State},
    http::header,
    middleware::{self, Next},
    response::Response,
};
use thiserror::Error;

use self::error::ApiError;
use crate::{
    http_server::{HttpServer, HttpServerError, UnixHttpServer},
    telemetry::server::metrics_routes,
    worker::WorkerHandle,
};

/// The largest request body accepted, in bytes.
pub const BODY_LIMIT: usize = 1 << 20;

/// What the handlers share: the worker, and the token every request but health and metrics
/// must carry.
#[derive(Debug, Clone)]
pub struct AdminState {
    pub worker: WorkerHandle,
    pub token: Option<Arc<str>>,
}

/// The admin API's app, with `GET /metrics` (open, as a Pulsar worker's is by default).
pub fn router(state: AdminState) -> Router {
    let guarded = routes::functions()
        .merge(routes::worker())
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
        .layer(DefaultBodyLimit::max(BODY_LIMIT));
    let worker = state.worker.clone();
    let metrics = metrics_routes(Arc::new(move || worker.render_metrics()));
    Router::new().merge(routes::health()).merge(guarded).with_state(state).merge(metrics)
}

/// Refuses a request without `Authorization: Bearer <token>` when the worker has a token.
async fn require_token(State(state): State<AdminState>, request: Request, next: Next) -> Result<Response, ApiError> {
    if let Some(token) = &state.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        if given != Some(token.as_ref()) {
            return Err(ApiError::unauthorized(if given.is_some() {
                "wrong token"
            } else {
                "a bearer token is required"
            }));
        }
    }
    Ok(next.run(request).await)
}

/// Why the admin API could not start.
#[derive(Debug, Error)]
pub enum AdminServerError {
    #[error(
        "--admin-addr {addr} is not a loopback address: give an --admin-token (or PFN_ADMIN_TOKEN) to serve the \
         admin API beyond this machine"
    )]
    NoToken { addr: SocketAddr },
    #[error(transparent)]
    Server(#[from] HttpServerError),
}

/// Serves [`router`] on `addr`. An address other than loopback needs a token.
pub fn serve(addr: SocketAddr, state: AdminState) -> Result<HttpServer, AdminServerError> {
    if !addr.ip().is_loopback() && state.token.is_none() {
        return Err(AdminServerError::NoToken { addr });
    }
    let server = HttpServer::start(addr, "admin", router(state))?;
    tracing::info!(addr = %server.addr(), "admin API listening");
    Ok(server)
}

/// Serves [`router`] on the worker's Unix socket, without a token: the socket file's
/// permissions guard it, as they guard the worker's other files.
pub fn serve_unix(path: &std::path::Path, worker: WorkerHandle) -> Result<UnixHttpServer, HttpServerError> {
    let server = UnixHttpServer::start(path, "admin-socket", router(AdminState { worker, token: None }))?;
    tracing::info!(socket = %path.display(), "admin API listening on the worker's socket");
    Ok(server)
}
