//! The process runtime: each instance in a child `pfn` process, so that a plugin that aborts,
//! segfaults, overflows its stack, exits or never returns costs a restart of its child, not the
//! worker.
//!
//! - [`child_instance`]: the worker's side of an instance in a child: batches out, outcomes
//!   back, crashes and timeouts turned into failed calls, restarts.
//! - [`child`]: starting a child that cannot outlive the worker, and knowing why it died.
//! - [`host`]: the child's side (`pfn instance-host`).
//! - [`wire`]: the frames between them.
//! - [`progress`]: the shared word that says which call a child is in.
//! - [`limits`]: the spec's `resources`, applied to each child.

pub mod child;
pub mod child_instance;
pub mod host;
pub mod limits;
pub mod progress;
pub mod wire;

pub use self::child_instance::{ChildInstance, ProcessHosting};
