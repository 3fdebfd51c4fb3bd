//! Deciding what to do with a settled plugin file: start a waiting function with it, swap it
//! in for a lower running version, or refuse it (logged and counted) and keep what runs.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use super::{
    FunctionShared, Worker,
    plugins_dir::{PluginFile, identify},
    runner::FunctionRunner,
    state::FunctionState,
    stats::{Refusal, Reload},
};
use crate::{
    loader::{Pin, Plugin},
    resources::current_rss_kib,
    verify::{Sha256Digest, VerifyError},
};

impl Worker {
    /// Starts the functions whose spec names a plugin file by path (these are not watched).
    pub(super) fn start_path_plugins(&mut self) {
        for shared in self.handle.functions.all() {
            if shared.spec().plugin_is_file() {
                self.start_from_path(&shared);
            }
        }
    }

    /// Starts a function whose spec names its plugin file by path.
    pub(super) fn start_from_path(&mut self, shared: &Arc<FunctionShared>) {
        let spec = shared.spec();
        let path = PathBuf::from(&spec.plugin);
        match self.load(&path, spec_pin(&spec.plugin_sha256).unwrap_or(Pin::Manifest)) {
            Ok(plugin) => self.start(shared, plugin, &path),
            Err(error) => {
                shared.set_state(FunctionState::Failed(error.to_string()));
                shared.refuse(Refusal {
                    file: path.display().to_string(),
                    version: None,
                    kind: error.kind().into(),
                    reason: error.to_string(),
                });
            }
        }
    }

    /// What each of `paths` declares itself to be, highest version first; a file that cannot
    /// be identified is logged and left out.
    pub(super) fn identify(&self, paths: &[PathBuf]) -> Vec<PluginFile> {
        let mut files: Vec<PluginFile> = Vec::new();
        for path in paths {
            let (loader, digests, path) = (self.loader.clone(), self.spec_digests.clone(), path.clone());
            match self.loads.run(move || identify(&path, &digests, &loader).map_err(|reason| (path, reason))) {
                Ok(file) => files.push(file),
                Err((path, reason)) => tracing::warn!(file = %path.display(), %reason, "plugin file refused"),
            }
        }
        files.sort_by(|a, b| b.version.cmp(&a.version));
        files
    }

    /// Takes each settled file to the functions that run its plugin.
    pub(super) fn consider(&mut self, settled: &[PathBuf]) {
        let files = self.identify(settled);
        for function in self.handle.functions.all() {
            let spec = function.spec();
            if spec.plugin_is_file() || function.is_deleted() || self.stopped.contains_key(&function.fqfn) {
                continue;
            }
            for file in files.iter().filter(|file| file.name == spec.plugin) {
                self.offer(&function, file);
            }
        }
    }

    /// Offers one file to function `shared`.
    pub(super) fn offer(&mut self, shared: &Arc<FunctionShared>, file: &PluginFile) {
        let spec = shared.spec();
        let refuse = |kind: &str, reason: String| {
            shared.refuse(Refusal {
                file: file.path.display().to_string(),
                version: Some(file.version.to_string()),
                kind: kind.into(),
                reason,
            });
        };
        if !spec.accepts(&file.version) {
            return refuse(
                "version_requirement",
                format!("version {} is outside plugin_version {}", file.version, spec.plugin_version),
            );
        }
        if let Some(runner) = self.runners.get(&shared.fqfn)
            && file.version <= runner.plugin.version
        {
            return refuse(
                "not_newer",
                format!("version {} is not higher than the running {}", file.version, runner.plugin.version),
            );
        }
        let rss_before = current_rss_kib();
        let plugin = match self.load(&file.path, spec_pin(&spec.plugin_sha256).unwrap_or(file.pin)) {
            Ok(plugin) => plugin,
            Err(error) => return refuse(error.kind(), error.to_string()),
        };
        if plugin.info.name != spec.plugin || plugin.version != file.version {
            return refuse(
                "declaration",
                format!(
                    "the library declares {} {}, not {} {}",
                    plugin.info.name, plugin.info.version, spec.plugin, file.version
                ),
            );
        }
        match self.runners.get_mut(&shared.fqfn) {
            None => self.start(shared, plugin, &file.path),
            Some(runner) => {
                let from = runner.plugin.info.version.clone();
                let probation = (self.options.rollback_after > 0).then_some(self.options.rollback_after);
                if let Err(error) = runner.upgrade(plugin, probation) {
                    return refuse("init", error.to_string());
                }
                let memory_cost_kib =
                    rss_before.zip(current_rss_kib()).map(|(before, after)| after.saturating_sub(before));
                tracing::info!(
                    fqfn = %shared.fqfn,
                    %from,
                    to = %file.version,
                    file = %file.path.display(),
                    memory_cost_kib = memory_cost_kib.unwrap_or(0),
                    "plugin reloaded; instances switch at their next message"
                );
                shared.record_reload(Reload {
                    from,
                    to: file.version.to_string(),
                    file: file.path.display().to_string(),
                    memory_cost_kib,
                    rolled_back: None,
                });
            }
        }
    }

    /// Loads `path` on the low-priority thread.
    fn load(&self, path: &Path, pin: Pin) -> Result<Plugin, VerifyError> {
        let (loader, path) = (self.loader.clone(), path.to_path_buf());
        self.loads.run(move || loader.load(&path, pin))
    }

    /// Starts function `shared` with `plugin`.
    pub(super) fn start(&mut self, shared: &Arc<FunctionShared>, plugin: Plugin, path: &Path) {
        let version = plugin.info.version.clone();
        match FunctionRunner::start(Arc::clone(shared), plugin, &self.wiring) {
            Ok((runner, watched)) => {
                self.watchdog.watch(watched);
                self.runners.insert(shared.fqfn.clone(), runner);
            }
            Err(error) => {
                shared.set_state(FunctionState::Failed(error.to_string()));
                shared.refuse(Refusal {
                    file: path.display().to_string(),
                    version: Some(version),
                    kind: error.kind().into(),
                    reason: error.to_string(),
                });
            }
        }
    }

    /// An instance rolled back from `from` to `to`: put the others back too, and report it.
    pub(super) fn rolled_back(&mut self, fqfn: &str, instance: u32, from: &str, to: &str, reason: &str) {
        let Some(runner) = self.runners.get_mut(fqfn) else { return };
        if runner.roll_back(instance, from) {
            let shared = &runner.shared;
            tracing::warn!(fqfn = %shared.fqfn, %from, %to, %reason, "rolled back to the previous version");
            shared.record_rollback(from, reason);
        }
    }
}

/// The pin a spec's `plugin_sha256` sets, if any (validated when the spec was read).
fn spec_pin(digest: &Option<String>) -> Option<Pin> {
    digest.as_deref().and_then(|digest| Sha256Digest::parse(digest).ok()).map(Pin::Digest)
}
