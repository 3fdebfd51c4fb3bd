//! The stable interface between the pfn runtime and its plugins.
//!
//! A plugin is a `cdylib` that depends on this crate only. It writes an ordinary Rust function
//! and marks it with [`function`]; the macro exports a versioned, layout-checked root module
//! ([`PluginModule`]) that the runtime verifies before running anything.
//!
//! ```ignore
//! #[pfn_abi::function]
//! fn exclamation(input: &str) -> String {
//!     format!("{input}!")
//! }
//! ```
//!
//! # Layout
//! - [`module`]: the root module, [`ABI_VERSION`] and the `export_function!` macro.
//! - [`ffi`]: the FFI-safe types that cross the edge (records, errors, the host vtable).
//! - [`context`]: [`Context`], the plugin's view of the host (config, state, metrics, publish).
//! - [`function`]: the [`Function`] and [`StatefulFunction`] traits the macro implements.
//! - [`payload`]: how inputs are decoded ([`FromPayload`]) and outputs written ([`IntoOutcome`]).
//! - `entry`, `bridge`: the guarded `extern "C"` entry points, the panic hook and the log bridge.

mod bridge;
pub mod context;
mod entry;
pub mod ffi;
pub mod function;
pub mod module;
pub mod payload;

pub use context::{ConfigError, Context, ContextError, Message, RecordView};
pub use ffi::{ErrorKind, Produced};
pub use function::{Error, Function, Stateful, StatefulFunction};
/// The `log` crate: its records inside a plugin reach the host's log as `tracing` events do.
pub use log;
pub use module::{ABI_VERSION, PluginModule, PluginModuleRef};
pub use payload::{FromPayload, IntoOutcome, Json, Output, OutputValue};
/// Turns a function (or an `impl StatefulFunction` block) into the plugin's exported module.
///
/// Accepted function shapes, with an optional leading `&Context` or `&mut Context`:
/// `fn()`, `fn(input)`, returning `()`, `Result<(), E>`, `O`, `Option<O>` (None filters the
/// message out), `Result<O, E>` or `Result<Option<O>, E>`. Inputs: `Vec<u8>`, `&[u8]`, `String`,
/// `&str`, [`Json<T>`]. Outputs: the same, plus `&'static` forms. `E` is anything `Display`.
pub use pfn_abi_macros::function;
pub use tracing;
/// serde and serde_json, so that plugins need no dependency of their own for JSON types
/// (derive with `#[serde(crate = "pfn_abi::serde")]`).
pub use {serde, serde_json};

/// Items the exported code refers to; not part of the public interface.
#[doc(hidden)]
pub mod __private {
    pub use abi_stable::library::{
        __call_root_module_loader as call_root_module_loader, CheckTypeLayout, LibHeader, RootModuleResult,
    };

    pub use crate::module::module_for;

    /// The symbol abi_stable's loader looks up; a unit test keeps it in step with abi_stable.
    pub const ROOT_MODULE_SYMBOL: &str = "_1as_0lib_1header_0root_bmodule_bloader";
}
