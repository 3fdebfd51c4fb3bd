//! The handlers of the admin API's routes.

use std::time::Duration;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post, put},
};

use super::{
    AdminState,
    bodies::{FunctionStats, FunctionStatus},
    deploy,
    error::ApiError,
    topics,
};
use crate::{state::entry::StateEntry, vocabulary::fqfn, worker::Outcome};

/// How long a trigger waits for what becomes of its message.
const TRIGGER_WAIT: Duration = Duration::from_secs(30);

const FUNCTIONS: &str = "/admin/v3/functions";

/// `GET /admin/v3/worker/health`, open to all.
pub(super) fn health() -> Router<AdminState> {
    crate::http_server::health_route()
}

/// pfn's own routes, beside Pulsar's: the worker's status of every function, and the topics
/// its functions use (see [`super::topics`]).
pub(super) fn worker() -> Router<AdminState> {
    Router::new()
        .route("/pfn/v1/status", get(worker_status))
        .route("/pfn/v1/topics/produce", post(topics::produce))
        .route("/pfn/v1/topics/consume", get(topics::consume))
        .route("/pfn/v1/topics/subscription", put(topics::create_subscription))
        .route("/pfn/v1/topics/stats", get(topics::stats))
}

/// `?function=FQFN`.
#[derive(Debug, serde::Deserialize)]
struct StatusQuery {
    function: Option<String>,
}

/// The status of every function, or of one, with the spec files refused and Pulsar's
/// failure counts: pfn's view of the worker, as `pfn functions status` prints it.
async fn worker_status(
    State(state): State<AdminState>,
    Query(query): Query<StatusQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let functions = state.worker.status(query.function.as_deref())?;
    Ok(Json(serde_json::json!({
        "functions": functions,
        "spec_errors": state.worker.spec_errors(),
        "pulsar": state.worker.pulsar_stats(),
    })))
}

/// The routes under `/admin/v3/functions`.
pub(super) fn functions() -> Router<AdminState> {
    Router::new()
        .route(&format!("{FUNCTIONS}/{{tenant}}/{{namespace}}"), get(list))
        .route(
            &format!("{FUNCTIONS}/{{tenant}}/{{namespace}}/{{name}}"),
            get(spec)
                .delete(delete)
                .post(deploy::create)
                .put(deploy::update)
                .layer(DefaultBodyLimit::max(deploy::UPLOAD_LIMIT)),
        )
        .route(&format!("{FUNCTIONS}/{{tenant}}/{{namespace}}/{{name}}/{{action}}"), post(deploy::whole))
        .route(&format!("{FUNCTIONS}/{{tenant}}/{{namespace}}/{{name}}/{{instance}}/{{action}}"), post(deploy::one))
        .route(&format!("{FUNCTIONS}/{{tenant}}/{{namespace}}/{{name}}/status"), get(status))
        .route(&format!("{FUNCTIONS}/{{tenant}}/{{namespace}}/{{name}}/{{instance}}/status"), get(instance_status))
        .route(&format!("{FUNCTIONS}/{{tenant}}/{{namespace}}/{{name}}/stats"), get(stats))
        .route(&format!("{FUNCTIONS}/{{tenant}}/{{namespace}}/{{name}}/{{instance}}/stats"), get(instance_stats))
        .route(&format!("{FUNCTIONS}/{{tenant}}/{{namespace}}/{{name}}/state/{{key}}"), get(get_state).post(put_state))
        .route(&format!("{FUNCTIONS}/{{tenant}}/{{namespace}}/{{name}}/trigger"), post(trigger))
}

/// A function's path: tenant, namespace, name.
type Function = Path<(String, String, String)>;

fn named(Path((tenant, namespace, name)): Function) -> String {
    fqfn(&tenant, &namespace, &name)
}

async fn list(State(state): State<AdminState>, Path((tenant, namespace)): Path<(String, String)>) -> Json<Vec<String>> {
    Json(state.worker.names(&tenant, &namespace))
}

async fn spec(State(state): State<AdminState>, function: Function) -> Result<Response, ApiError> {
    Ok(Json(state.worker.spec(&named(function))?).into_response())
}

async fn delete(State(state): State<AdminState>, function: Function) -> Result<Response, ApiError> {
    let fqfn = named(function);
    // Deleting waits for the instances to stop.
    let worker = state.worker.clone();
    let deleted = off_thread(move || worker.delete(&fqfn)).await??;
    Ok(Json(serde_json::json!({
        "fqfn": deleted.fqfn,
        "subscription": deleted.subscription,
        "subscriptionDeleted": deleted.subscription_deleted,
        "warnings": deleted.warnings,
    }))
    .into_response())
}

/// Runs `work`, which waits on the worker, off the server's thread.
pub(super) async fn off_thread<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))
}

fn function_status(state: &AdminState, fqfn: &str) -> Result<FunctionStatus, ApiError> {
    let status = state.worker.status(Some(fqfn))?.into_iter().next().ok_or_else(|| ApiError::not_found(fqfn))?;
    Ok(FunctionStatus::of(status, &state.worker.instance_metrics(fqfn)?))
}

async fn status(State(state): State<AdminState>, function: Function) -> Result<Json<FunctionStatus>, ApiError> {
    Ok(Json(function_status(&state, &named(function))?))
}

async fn instance_status(
    State(state): State<AdminState>,
    Path((tenant, namespace, name, instance)): Path<(String, String, String, u32)>,
) -> Result<Response, ApiError> {
    let fqfn = fqfn(&tenant, &namespace, &name);
    let status = function_status(&state, &fqfn)?;
    let found = status.instances.into_iter().find(|entry| entry.instance_id == instance);
    let entry = found.ok_or_else(|| ApiError::not_found(format!("function {fqfn} has no instance {instance}")))?;
    Ok(Json(entry.status).into_response())
}

async fn stats(State(state): State<AdminState>, function: Function) -> Result<Json<FunctionStats>, ApiError> {
    Ok(Json(FunctionStats::of(&state.worker.instance_metrics(&named(function))?)))
}

async fn instance_stats(
    State(state): State<AdminState>,
    Path((tenant, namespace, name, instance)): Path<(String, String, String, u32)>,
) -> Result<Response, ApiError> {
    let fqfn = fqfn(&tenant, &namespace, &name);
    let stats = FunctionStats::of(&state.worker.instance_metrics(&fqfn)?);
    let found = stats.instances.into_iter().find(|entry| entry.instance_id == instance);
    let entry = found.ok_or_else(|| ApiError::not_found(format!("function {fqfn} has no instance {instance}")))?;
    Ok(Json(entry.metrics).into_response())
}

/// `?counter=true` reads the entry as a counter (`numberValue`).
#[derive(Debug, serde::Deserialize)]
struct StateQuery {
    #[serde(default)]
    counter: bool,
}

async fn get_state(
    State(state): State<AdminState>,
    Path((tenant, namespace, name, key)): Path<(String, String, String, String)>,
    Query(query): Query<StateQuery>,
) -> Result<Json<StateEntry>, ApiError> {
    let fqfn = fqfn(&tenant, &namespace, &name);
    Ok(Json(state.worker.query_state(&fqfn, &key, query.counter)?))
}

/// Sets a state entry from Pulsar's `FunctionState` JSON (`stringValue`, `numberValue` or
/// `byteValue`); its `key`, when given, must be the path's.
async fn put_state(
    State(state): State<AdminState>,
    Path((tenant, namespace, name, key)): Path<(String, String, String, String)>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let fqfn = fqfn(&tenant, &namespace, &name);
    let mut value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|error| ApiError::bad_request(format!("not a FunctionState: {error}")))?;
    match value.get("key").and_then(serde_json::Value::as_str) {
        Some(given) if given != key => {
            return Err(ApiError::bad_request(format!("the body's key {given:?} is not the path's {key:?}")));
        }
        Some(_) => {}
        None => {
            value["key"] = serde_json::Value::String(key);
        }
    }
    let entry: StateEntry = serde_json::from_value(value)
        .map_err(|error| ApiError::bad_request(format!("not a FunctionState: {error}")))?;
    state.worker.put_state(&fqfn, &entry)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `?timeout_ms=` (default 30 s).
#[derive(Debug, serde::Deserialize)]
struct TriggerQuery {
    timeout_ms: Option<u64>,
}

/// Publishes the body to the function's input and answers with what became of it: the output
/// (200), nothing (204, filtered), or the dead letter's reason (422).
async fn trigger(
    State(state): State<AdminState>,
    function: Function,
    Query(query): Query<TriggerQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let fqfn = named(function);
    let worker = state.worker.clone();
    let wait = query.timeout_ms.map_or(TRIGGER_WAIT, Duration::from_millis);
    let outcome = off_thread(move || worker.trigger(&fqfn, body.to_vec(), wait)).await??;
    Ok(match outcome {
        Outcome::Output(output) => (StatusCode::OK, output).into_response(),
        Outcome::Filtered => StatusCode::NO_CONTENT.into_response(),
        Outcome::DeadLettered { reason, error } => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("dead-lettered ({reason}): {error}"))
                .into_response()
        }
    })
}
