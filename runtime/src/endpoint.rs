//! The worker's local endpoint: a Unix socket through which `pfn functions trigger|status` and
//! `pfn topics produce|consume|create-subscription|stats` reach a running worker's embedded
//! topics and functions.
//!
//! Each connection carries one request: a JSON line, then for `produce` the message lines until
//! the client shuts down its side. Every answer starts with a JSON header line (`{"ok": true,
//! ...}` or `{"ok": false, "error": "..."}`); a `consume` answer then streams one message per
//! line until its count is reached or the worker stops.

pub mod client;
pub mod protocol;
pub mod server;

use std::path::PathBuf;

/// Where a worker's endpoint listens when not told otherwise: `worker.sock` in the state
/// directory.
pub fn default_socket(state_dir: &std::path::Path) -> PathBuf {
    state_dir.join("worker.sock")
}

/// The default state directory: `$PFN_STATE_DIR`, else `pfn` under the system's temporary
/// directory.
pub fn default_state_dir() -> PathBuf {
    std::env::temp_dir().join("pfn")
}
