//! pfn: a runtime for stream functions written in Rust and loaded as verified plugins.
//!
//! # Layout
//! - [`vocabulary`]: the words every layer shares (function names, guarantees, subscriptions).
//! - [`config`]: function specs (TOML or JSON) and their validation.
//! - [`verify`]: digests, the sidecar manifest, and the checks a plugin must pass.
//! - [`loader`]: opening a plugin file from a private copy and checking its module.
//! - [`instance`]: a live instance of a plugin's function and the call into it.
//! - [`hosted`]: where an instance's calls run (in the calling process, or a child).
//! - [`execute`]: the per-message path: record, call, outcome, effects, settlement.
//! - [`context`]: the host side of the context vtable a plugin calls back into.
//! - [`io`]: sources and sinks (the embedded and Pulsar transports, lines from files or stdin,
//!   the dead-letter file).
//! - [`state`]: durable per-function state (redb), with group-committed writes.
//! - [`plugin_log`]: a function's own log level and its log topic.
//! - [`secrets`]: a function's secrets, resolved through providers (env, file, worker file).
//! - [`process`]: the process runtime: each instance in a child process.
//! - [`run`]: `pfn run`, one plugin over a stream of lines.
//! - [`worker`]: `pfn worker`, every function of a directory on embedded topics or Pulsar, with
//!   hot reload.
//! - [`http_server`]: an HTTP server on a thread of its own (metrics, admin API).
//! - [`telemetry`]: counts, latencies and user metrics, and the Prometheus endpoint.
//! - [`sync`]: locking and wake-up helpers for the worker's threads.
//! - [`resources`]: what the process has used (peak memory).
//! - [`admin`]: the admin REST API (`/admin/v3/functions`).
//! - [`kubernetes`]: a function's Kubernetes manifests.
//! - [`cli`]: the `pfn` command line.

pub mod admin;
pub mod cli;
pub mod config;
pub mod context;
pub mod execute;
pub mod hosted;
pub mod http_server;
pub mod instance;
pub mod io;
pub mod kubernetes;
pub mod loader;
pub mod plugin_log;
pub mod process;
pub mod resources;
pub mod run;
pub mod secrets;
pub mod state;
pub mod sync;
pub mod telemetry;
pub mod verify;
pub mod vocabulary;
pub mod worker;
