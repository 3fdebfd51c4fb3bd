//! A real worker on a thread of the test process (embedded topics, `shout` running the
//! exclamation plugin), and one-shot calls to its admin API's app through `admin::router`.

use std::{path::PathBuf, sync::Arc, time::Duration};

use axum::{
    body::{Body, to_bytes},
    http::{Method, Request, StatusCode, header},
};
use pfn::{
    admin::{AdminState, router},
    io::embedded::EmbeddedBroker,
    loader::{Loader, PluginCache},
    worker::{Backoff, Topics, Worker, WorkerHandle, WorkerOptions},
};
use serde_json::Value;
use tower::ServiceExt;

use crate::{
    fixtures::{plugin, scratch},
    worker::WorkerDirs,
};

/// The token the in-process worker's API wants.
pub const TOKEN: &str = "s3cret-admin-token";
/// The path of `shout`.
pub const SHOUT: &str = "/admin/v3/functions/public/default/shout";

/// A worker running `shout` (exclamation) on embedded topics, on a thread of this process.
#[derive(Debug)]
pub struct InProcess {
    pub handle: WorkerHandle,
    pub plugins_dir: PathBuf,
    pub functions_dir: PathBuf,
    thread: Option<std::thread::JoinHandle<pfn::worker::WorkerSummary>>,
    _dir: tempfile::TempDir,
}

impl InProcess {
    pub fn start() -> Self {
        let dir = scratch();
        let dirs = WorkerDirs::create(dir.path());
        let library = plugin("exclamation");
        std::fs::copy(&library, dirs.plugins.join("libexclamation.so")).expect("the plugin");
        std::fs::copy(library.with_extension("pfn.toml"), dirs.plugins.join("libexclamation.pfn.toml")).expect("pin");
        let spec = "name = \"shout\"\nplugin = \"exclamation\"\ninputs = [\"words\"]\noutput = \"shouts\"\n";
        std::fs::write(dirs.functions.join("shout.toml"), spec).expect("the spec");
        let options = WorkerOptions {
            plugins_dir: dirs.plugins.clone(),
            functions_dir: dirs.functions.clone(),
            rollback_after: 0,
            watch_interval: Duration::from_millis(50),
            grace_period: Duration::from_secs(5),
            nack_backoff: Backoff { base: Duration::from_millis(50), max: Duration::from_secs(1) },
            state_store: dirs.state.join("state.redb"),
            cluster: "test".into(),
            timing: true,
            secrets_file: None,
            only_instance: None,
        };
        let loader = Loader::new(PluginCache::new(dir.path().join("cache")));
        let worker = Worker::new(options, loader, EmbeddedBroker::new(), Topics::Embedded).expect("a worker");
        let handle = worker.handle();
        let thread = std::thread::spawn(move || worker.run());
        let this = Self {
            handle,
            plugins_dir: dirs.plugins.clone(),
            functions_dir: dirs.functions.clone(),
            thread: Some(thread),
            _dir: dir,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while this.handle.status(Some("public/default/shout")).map(|s| s[0].state.to_string()).ok().as_deref()
            != Some("running")
        {
            assert!(std::time::Instant::now() < deadline, "shout never ran");
            std::thread::sleep(Duration::from_millis(20));
        }
        this
    }

    pub fn state(&self) -> AdminState {
        AdminState { worker: self.handle.clone(), token: Some(Arc::from(TOKEN)) }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.handle.shutdown();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Sends one request to the app; returns the status and the body (as JSON when it is JSON).
pub async fn call(
    state: AdminState,
    method: Method,
    uri: String,
    token: Option<&'static str>,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    call_with(state, method, &uri, token, "application/octet-stream", body).await
}

/// [`call`] with a content type.
pub async fn call_with(
    state: AdminState,
    method: Method,
    uri: &str,
    token: Option<&'static str>,
    content_type: &str,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(uri).header(header::CONTENT_TYPE, content_type);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = router(state).oneshot(request.body(Body::from(body)).expect("a request")).await.expect("an answer");
    let status = response.status();
    let bytes = to_bytes(response.into_body(), usize::MAX).await.expect("the body");
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, body)
}
