//! The command line's client of the admin API (`--admin-url`, `--token`).

use serde_json::Value;
use thiserror::Error;
use ureq::{http::Response, unversioned::multipart::Form};

/// Where the admin API is when no `--admin-url` is given.
pub const DEFAULT_ADMIN_URL: &str = "http://127.0.0.1:6750";

/// Why a request to the admin API gave no answer to print.
#[derive(Debug, Error)]
pub enum AdminClientError {
    #[error("cannot reach the admin API at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The API's own error, with its status (`404 Not Found`).
    #[error("{status}: {message}")]
    Refused { status: String, message: String },
    #[error("{url} answered with something that is not JSON: {reason}")]
    NotJson { url: String, reason: String },
}

/// How a form is sent: `POST` creates, `PUT` updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormMethod {
    Post,
    Put,
}

/// A client of one worker's admin API.
#[derive(Debug)]
pub struct AdminClient {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl AdminClient {
    /// A client of the API at `base` (`http://host:port`), sending `token` when given.
    pub fn new(base: &str, token: Option<String>) -> Self {
        let agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        Self { base: base.trim_end_matches('/').to_owned(), token, agent }
    }

    fn authorization(&self) -> Option<String> {
        self.token.as_ref().map(|token| format!("Bearer {token}"))
    }

    /// `GET path`, its JSON answer.
    pub fn get_json(&self, path: &str) -> Result<Value, AdminClientError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.agent.get(&url);
        if let Some(authorization) = self.authorization() {
            request = request.header("Authorization", &authorization);
        }
        answer(url.clone(), request.call())
    }

    /// `POST path` with no body, its JSON answer.
    pub fn post_empty(&self, path: &str) -> Result<Value, AdminClientError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.agent.post(&url);
        if let Some(authorization) = self.authorization() {
            request = request.header("Authorization", &authorization);
        }
        answer(url.clone(), request.send_empty())
    }

    /// Sends `form` to `path`, its JSON answer.
    pub fn send_form(&self, method: FormMethod, path: &str, form: Form<'_>) -> Result<Value, AdminClientError> {
        let url = format!("{}{path}", self.base);
        let mut request = match method {
            FormMethod::Post => self.agent.post(&url),
            FormMethod::Put => self.agent.put(&url),
        };
        if let Some(authorization) = self.authorization() {
            request = request.header("Authorization", &authorization);
        }
        answer(url.clone(), request.send(form))
    }
}

/// The JSON of a success, or the API's error as [`AdminClientError::Refused`].
fn answer(url: String, response: Result<Response<ureq::Body>, ureq::Error>) -> Result<Value, AdminClientError> {
    let unreachable =
        |error: ureq::Error| AdminClientError::Unreachable { url: url.clone(), reason: error.to_string() };
    let mut response = response.map_err(unreachable)?;
    let status = response.status();
    let text = response.body_mut().read_to_string().map_err(unreachable)?;
    let body: Result<Value, _> = serde_json::from_str(&text);
    if !status.is_success() {
        let message = body.ok().and_then(|body| body["error"].as_str().map(str::to_owned)).unwrap_or(text);
        let status = format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or("")).trim().to_owned();
        return Err(AdminClientError::Refused { status, message });
    }
    body.map_err(|error| AdminClientError::NotJson { url, reason: error.to_string() })
}
