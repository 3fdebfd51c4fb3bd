//! Create and update (`POST` and `PUT /admin/v3/functions/{tenant}/{namespace}/{name}`) as
//! Pulsar takes them: a multipart form with the function's config in `functionConfig` (JSON,
//! Pulsar's camelCase names or pfn's own; TOML too) and, optionally, the plugin file in `data`
//! with its sha256 in `sha256`. Without `data`, the config's `plugin` names one already in the
//! plugins directory. And start, stop and restart of a function or one instance.

use axum::{
    Json,
    extract::{Multipart, Path, State},
    http::StatusCode,
};
use serde_json::{Map, Value};

use super::{AdminState, error::ApiError, routes::off_thread};
use crate::{
    vocabulary::fqfn,
    worker::{Deploy, Deployed, Lifecycle, Upload},
};

/// The largest upload accepted (a plugin with its config), in bytes.
pub const UPLOAD_LIMIT: usize = 256 << 20;

/// A function's path: tenant, namespace, name.
type Function = Path<(String, String, String)>;

pub(super) async fn create(
    state: State<AdminState>,
    function: Function,
    form: Multipart,
) -> Result<Json<Deployed>, ApiError> {
    deploy(state, function, form, Deploy::Create).await
}

pub(super) async fn update(
    state: State<AdminState>,
    function: Function,
    form: Multipart,
) -> Result<Json<Deployed>, ApiError> {
    deploy(state, function, form, Deploy::Update).await
}

async fn deploy(
    State(state): State<AdminState>,
    Path((tenant, namespace, name)): Function,
    mut form: Multipart,
    how: Deploy,
) -> Result<Json<Deployed>, ApiError> {
    let (mut config, mut data, mut sha256) = (None, None, None);
    let form_error = |error: axum::extract::multipart::MultipartError| ApiError::new(error.status(), error.body_text());
    while let Some(field) = form.next_field().await.map_err(form_error)? {
        let part = field.name().unwrap_or_default().to_owned();
        let bytes = field.bytes().await.map_err(form_error)?;
        match part.as_str() {
            "functionConfig" | "spec" => config = Some(parse_config(&bytes)?),
            "data" => data = Some(bytes.to_vec()),
            "sha256" => sha256 = Some(String::from_utf8_lossy(&bytes).trim().to_owned()),
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown form part {other:?}: expected functionConfig, data and sha256"
                )));
            }
        }
    }
    let config = config.ok_or_else(|| ApiError::bad_request("the form has no functionConfig part"))?;
    let upload = match (data, sha256) {
        (Some(bytes), Some(sha256)) => Some(Upload { bytes, sha256 }),
        (Some(_), None) => return Err(ApiError::bad_request("an uploaded plugin (data) needs its sha256 part")),
        (None, _) => None,
    };
    let fqfn = fqfn(&tenant, &namespace, &name);
    let worker = state.worker.clone();
    Ok(Json(off_thread(move || worker.deploy(how, &fqfn, config, upload)).await??))
}

/// A function config: a JSON object or a TOML table, its keys in pfn's snake_case (Pulsar's
/// camelCase names are taken too).
fn parse_config(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let text = std::str::from_utf8(bytes).map_err(|_| ApiError::bad_request("functionConfig is not UTF-8"))?;
    let value = match serde_json::from_str::<Value>(text) {
        Ok(value) => value,
        Err(json) => match toml::from_str::<Value>(text) {
            Ok(value) => value,
            Err(toml) => {
                return Err(ApiError::bad_request(format!(
                    "functionConfig is neither JSON ({json}) nor TOML ({})",
                    toml.message()
                )));
            }
        },
    };
    let Value::Object(config) = value else {
        return Err(ApiError::bad_request("functionConfig is not an object"));
    };
    Ok(config.into_iter().map(|(key, value)| (snake_case(&key), value)).collect())
}

/// pfn's name for a config key: Pulsar's `subName` is `subscription_name`; other camelCase
/// names (`userConfig`, `timeoutMs`) become snake_case.
fn snake_case(key: &str) -> String {
    if key == "subName" {
        return "subscription_name".into();
    }
    let mut snake = String::with_capacity(key.len() + 4);
    for character in key.chars() {
        if character.is_ascii_uppercase() {
            snake.push('_');
            snake.push(character.to_ascii_lowercase());
        } else {
            snake.push(character);
        }
    }
    snake
}

/// `POST .../{name}/{start|stop|restart}`.
pub(super) async fn whole(
    State(state): State<AdminState>,
    Path((tenant, namespace, name, action)): Path<(String, String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    lifecycle(state, fqfn(&tenant, &namespace, &name), None, &action).await
}

/// `POST .../{name}/{instance}/{start|stop|restart}`.
pub(super) async fn one(
    State(state): State<AdminState>,
    Path((tenant, namespace, name, instance, action)): Path<(String, String, String, u32, String)>,
) -> Result<Json<Value>, ApiError> {
    lifecycle(state, fqfn(&tenant, &namespace, &name), Some(instance), &action).await
}

async fn lifecycle(
    state: AdminState,
    fqfn: String,
    instance: Option<u32>,
    action: &str,
) -> Result<Json<Value>, ApiError> {
    let action = match action {
        "start" => Lifecycle::Start,
        "stop" => Lifecycle::Stop,
        "restart" => Lifecycle::Restart,
        other => {
            return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no action {other:?}: start, stop or restart")));
        }
    };
    let worker = state.worker.clone();
    let done = off_thread(move || worker.lifecycle(&fqfn, instance, action)).await??;
    Ok(Json(serde_json::json!({ "result": done })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pulsar_config_names_become_pfns() {
        let config = parse_config(br#"{"userConfig": {"a": 1}, "subName": "s", "timeoutMs": 5, "inputs": ["x"]}"#)
            .expect("a config");
        let keys: Vec<&str> = config.keys().map(String::as_str).collect();
        assert_eq!(keys, ["inputs", "subscription_name", "timeout_ms", "user_config"]);
        let toml = parse_config(b"name = \"f\"\nparallelism = 2\n").expect("TOML");
        assert_eq!(toml.get("parallelism"), Some(&Value::from(2)));
        assert!(parse_config(b"[1, 2]").is_err());
    }
}
