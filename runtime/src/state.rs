//! Durable per-function state: what `get_state`, `put_state`, `incr_counter` and their kin read
//! and write.
//!
//! - [`store`]: the redb file, the writes staged for it, and the flusher that group-commits them.
//! - [`layer`]: writes not yet on disk, stacked over the file.
//! - [`slot`]: an instance's writes in progress: its current call's and its batch's.
//! - [`counter`]: how a counter's value is stored.
//! - [`entry`]: one entry as the command line shows and sets it.
//!
//! A call's writes are its own until it succeeds; then they join its batch's, which the instance
//! stages with its commit and whose inputs are acknowledged once the flusher says they are on
//! disk. A call that fails, and a batch taken back, leave nothing behind.

pub mod counter;
pub mod entry;
pub mod layer;
pub mod slot;
pub mod store;

use std::{path::PathBuf, sync::Arc};

use thiserror::Error;

pub use self::{
    entry::StateEntry,
    layer::Layer,
    slot::StateSlot,
    store::{FunctionStore, StateStore},
};

/// The longest key a function may use, in bytes.
pub const MAX_KEY_LEN: usize = 4096;
/// The most keys one `list_state` call returns.
pub const MAX_PAGE: usize = 1000;

/// A state operation that failed.
#[derive(Debug, Clone, Error)]
pub enum StateError {
    #[error("cannot open the state store {path}: {reason}")]
    Open { path: PathBuf, reason: Arc<redb::Error> },
    #[error("cannot start the state flusher: {reason}")]
    Flusher { reason: Arc<std::io::Error> },
    #[error("cannot read the state store {path}: {reason}")]
    Read { path: PathBuf, reason: Arc<redb::Error> },
    #[error("cannot write the state store {path}: {reason}")]
    Write { path: PathBuf, reason: Arc<redb::Error> },
    #[error("state key `{key}` holds a value that is not a counter (8 bytes)")]
    NotACounter { key: String },
    #[error("a state key must be 1 to {MAX_KEY_LEN} bytes long, not {len}")]
    KeyLength { len: usize },
    #[error("counter `{key}` would overflow")]
    Overflow { key: String },
    #[error("the state store is closed")]
    Closed,
    #[error("bad state entry: {reason}")]
    BadEntry { reason: String },
    #[error("no state key `{key}`")]
    NoKey { key: String },
    /// Said by the worker that serves a child process its state.
    #[error("{message}")]
    Remote { message: String, invalid_argument: bool },
}

impl StateError {
    /// Whether the key asked for has no value.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NoKey { .. })
    }

    /// Whether the caller asked for something wrong, rather than the store failing.
    pub fn is_invalid_argument(&self) -> bool {
        matches!(
            self,
            Self::NotACounter { .. } | Self::KeyLength { .. } | Self::Overflow { .. } | Self::BadEntry { .. }
        ) || matches!(self, Self::Remote { invalid_argument: true, .. })
    }
}

/// Refuses an empty or overlong key.
pub fn check_key(key: &str) -> Result<(), StateError> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(StateError::KeyLength { len: key.len() });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
