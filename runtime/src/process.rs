//! The process runtime: each instance in a child `pfn` process, so that a plugin that aborts,
//! segfaults, overflows its stack, exits or never returns costs a restart of its child, not the
//! worker.
//!
//! - [`child_instance`]: the worker's side of an instance in a child: batches out, outcomes
//!   back, crashes and timeouts turned into failed calls, restarts.
//! - `ahead`: the outcomes of a batch, handed out in turn; `serving`: the worker's answers to a
//!   child's state asks, and its log events.
//! - [`child`]: starting a child that cannot outlive the worker, and knowing why it died.
//! - [`host`]: the child's side (`pfn instance-host`).
//! - [`wire`]: the frames between them.
//! - [`progress`]: the shared word that says which call a child is in.
//! - [`limits`]: the spec's `resources`, applied to each child.

mod ahead;
pub mod child;
pub mod child_instance;
pub mod host;
pub mod limits;
pub mod progress;
mod serving;
pub mod wire;

pub use self::child_instance::{ChildInstance, ProcessHosting};
