//! The command line's client of a worker's admin API: over TCP (`--admin-url`, `--token`) or
//! over the worker's Unix socket (`--worker`, the default), which needs no token.

use std::{
    io::Read,
    path::{Path, PathBuf},
};

use serde_json::Value;
use thiserror::Error;
use ureq::{
    RequestBuilder,
    http::Response,
    unversioned::{multipart::Form, resolver::DefaultResolver},
};

use super::unix_connector::UnixConnector;

/// Why a request to the admin API gave no answer to print.
#[derive(Debug, Error)]
pub enum AdminClientError {
    #[error("cannot reach the worker at {place}: {reason}")]
    Unreachable { place: String, reason: String },
    /// The API's own error, with its status (`404 Not Found`).
    #[error("{status}: {message}")]
    Refused { status: String, message: String },
    #[error("{place} answered with something that is not JSON: {reason}")]
    NotJson { place: String, reason: String },
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
    /// Where the worker is, for messages: its URL or its socket.
    place: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// A query string's pairs.
pub type QueryPairs<'a> = &'a [(&'a str, String)];

impl AdminClient {
    /// A client of the API at `base` (`http://host:port`), sending `token` when given.
    pub fn over_tcp(base: &str, token: Option<String>) -> Self {
        let agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let base = base.trim_end_matches('/').to_owned();
        Self { place: base.clone(), base, token, agent }
    }

    /// A client of the API on the worker's Unix socket at `path`.
    pub fn over_socket(path: &Path) -> Self {
        let config = ureq::Agent::config_builder().http_status_as_error(false).build();
        let connector = UnixConnector { path: PathBuf::from(path) };
        let agent = ureq::Agent::with_parts(config, connector, DefaultResolver::default());
        let place = format!("{} (start one with `pfn worker`, or pass --worker or --admin-url)", path.display());
        Self { base: "http://localhost".into(), place, token: None, agent }
    }

    fn authorized<B>(&self, request: RequestBuilder<B>, query: QueryPairs<'_>) -> RequestBuilder<B> {
        let request = request.query_pairs(query.iter().map(|(key, value)| (*key, value.as_str())));
        match &self.token {
            Some(token) => request.header("Authorization", &format!("Bearer {token}")),
            None => request,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET path`, its JSON answer.
    pub fn get_json(&self, path: &str, query: QueryPairs<'_>) -> Result<Value, AdminClientError> {
        let response = self.authorized(self.agent.get(&self.url(path)), query).call();
        self.json(self.success(response)?)
    }

    /// `DELETE path`, its JSON answer.
    pub fn delete_json(&self, path: &str) -> Result<Value, AdminClientError> {
        let response = self.authorized(self.agent.delete(&self.url(path)), &[]).call();
        self.json(self.success(response)?)
    }

    /// `POST path` with no body, its JSON answer.
    pub fn post_empty(&self, path: &str) -> Result<Value, AdminClientError> {
        let response = self.authorized(self.agent.post(&self.url(path)), &[]).send_empty();
        self.json(self.success(response)?)
    }

    /// `POST path` with `body`; the answer's status and bytes.
    pub fn post_bytes(
        &self,
        path: &str,
        query: QueryPairs<'_>,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), AdminClientError> {
        let response = self.authorized(self.agent.post(&self.url(path)), query).send(body);
        let mut response = self.success(response)?;
        let status = response.status().as_u16();
        let bytes = response.body_mut().read_to_vec().map_err(|error| self.unreachable(error))?;
        Ok((status, bytes))
    }

    /// `POST path` with `body` read to its end (sent as it is read), its JSON answer.
    pub fn post_reader(
        &self,
        path: &str,
        query: QueryPairs<'_>,
        body: &mut dyn Read,
    ) -> Result<Value, AdminClientError> {
        let body = ureq::SendBody::from_reader(body);
        let response = self.authorized(self.agent.post(&self.url(path)), query).send(body);
        self.json(self.success(response)?)
    }

    /// `PUT path` with no body; succeeds on any 2xx.
    pub fn put_empty(&self, path: &str, query: QueryPairs<'_>) -> Result<(), AdminClientError> {
        let response = self.authorized(self.agent.put(&self.url(path)), query).send_empty();
        self.success(response).map(drop)
    }

    /// `GET path`, its body as a stream.
    pub fn get_stream(&self, path: &str, query: QueryPairs<'_>) -> Result<impl Read, AdminClientError> {
        let response = self.authorized(self.agent.get(&self.url(path)), query).call();
        Ok(self.success(response)?.into_body().into_reader())
    }

    /// Sends `form` to `path`, its JSON answer.
    pub fn send_form(&self, method: FormMethod, path: &str, form: Form<'_>) -> Result<Value, AdminClientError> {
        let request = match method {
            FormMethod::Post => self.agent.post(&self.url(path)),
            FormMethod::Put => self.agent.put(&self.url(path)),
        };
        let response = self.authorized(request, &[]).send(form);
        self.json(self.success(response)?)
    }

    fn unreachable(&self, error: ureq::Error) -> AdminClientError {
        AdminClientError::Unreachable { place: self.place.clone(), reason: error.to_string() }
    }

    /// The response of a success, or the API's error as [`AdminClientError::Refused`].
    fn success(
        &self,
        response: Result<Response<ureq::Body>, ureq::Error>,
    ) -> Result<Response<ureq::Body>, AdminClientError> {
        let mut response = response.map_err(|error| self.unreachable(error))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.body_mut().read_to_string().map_err(|error| self.unreachable(error))?;
        let body: Option<Value> = serde_json::from_str(&text).ok();
        let message = body.and_then(|body| body["error"].as_str().map(str::to_owned)).unwrap_or(text);
        let status = format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or("")).trim().to_owned();
        Err(AdminClientError::Refused { status, message })
    }

    /// The JSON of a successful response (`null` for no content).
    fn json(&self, mut response: Response<ureq::Body>) -> Result<Value, AdminClientError> {
        let text = response.body_mut().read_to_string().map_err(|error| self.unreachable(error))?;
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text)
            .map_err(|error| AdminClientError::NotJson { place: self.place.clone(), reason: error.to_string() })
    }
}
