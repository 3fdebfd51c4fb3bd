//! Following a running function's spec file: a changed `log_level` applies at once, with no
//! restart. Any other change waits for the function to be restarted; the log says so.

use std::{fs, sync::Mutex, time::SystemTime};

use super::{FunctionShared, Worker, is_path};
use crate::{config::FunctionSpec, sync::lock};

/// When a spec file was last seen changed.
#[derive(Debug, Default)]
pub(super) struct SpecSeen(Mutex<Option<SystemTime>>);

impl SpecSeen {
    /// Notes when the file was modified, as it was read.
    pub fn note(&self, modified: SystemTime) {
        *lock(&self.0) = Some(modified);
    }

    /// Notes `modified`; whether it differs from what was noted before (the first note is not a
    /// change).
    fn changed(&self, modified: SystemTime) -> bool {
        let mut seen = lock(&self.0);
        let changed = seen.is_some_and(|before| before != modified);
        *seen = Some(modified);
        changed
    }
}

impl Worker {
    /// Looks at every function's spec file and applies what may change while it runs.
    pub(super) fn follow_spec_files(&self) {
        for function in self.handle.listed() {
            let Ok(modified) = fs::metadata(&function.spec_file).and_then(|metadata| metadata.modified()) else {
                continue;
            };
            if function.spec_seen.changed(modified) {
                apply_changed_spec(&function);
            }
        }
    }
}

/// Reads a function's changed spec and applies its log level.
fn apply_changed_spec(function: &FunctionShared) {
    let path = &function.spec_file;
    let mut spec = match FunctionSpec::from_file(path) {
        Ok(spec) => spec,
        Err(error) => {
            tracing::error!(fqfn = %function.fqfn, %error, "changed spec refused; the function runs as it was");
            return;
        }
    };
    if spec.fqfn() != function.fqfn {
        tracing::warn!(fqfn = %function.fqfn, file = %path.display(), "the spec file now names another function; ignored until a restart");
        return;
    }
    if is_path(&spec.plugin)
        && let Some(dir) = path.parent()
        && std::path::Path::new(&spec.plugin).is_relative()
    {
        spec.plugin = dir.join(&spec.plugin).display().to_string();
    }
    function.log.set_level(spec.log_level.as_deref());
    tracing::info!(fqfn = %function.fqfn, log_level = spec.log_level.as_deref().unwrap_or("the worker's"), "log level applied from the changed spec");
    let running = function.spec();
    spec.log_level.clone_from(&running.log_level);
    if spec != *running {
        tracing::warn!(fqfn = %function.fqfn, "the spec changed beyond log_level; the rest applies when the function restarts");
    }
}
