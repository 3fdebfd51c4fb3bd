//! What the benches share: finding the built plugins, installing one into a plugins directory,
//! and running a worker on its own thread.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::Arc,
    thread::JoinHandle,
    time::Duration,
};

use pfn::{
    io::embedded::EmbeddedBroker,
    loader::{Loader, PluginCache},
    verify::{Manifest, Sha256Digest},
    worker::{Backoff, Topics, Worker, WorkerHandle, WorkerOptions, WorkerSummary},
};

/// The target directory `scripts/build-plugins.sh` built into.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("target"), PathBuf::from)
}

/// Stops the bench with a message saying how to build `path`, if it is missing.
pub fn require(path: &Path) -> PathBuf {
    if !path.is_file() {
        eprintln!("missing {}: run scripts/build-plugins.sh first", path.display());
        std::process::exit(2);
    }
    path.to_owned()
}

/// Copies `library` into `dir` as `file_name` and writes its manifest beside it.
pub fn install(library: &Path, dir: &Path, file_name: &str, name: &str, version: &str) -> PathBuf {
    let bytes = fs::read(library).unwrap_or_else(|e| panic!("cannot read {}: {e}", library.display()));
    let dest = dir.join(file_name);
    write_manifest(&bytes, &dest, name, version);
    fs::write(&dest, &bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", dest.display()));
    dest
}

/// Writes the manifest that pins `bytes` as the library at `library` (which need not exist yet).
fn write_manifest(bytes: &[u8], library: &Path, name: &str, version: &str) {
    let manifest =
        Manifest { name: name.to_owned(), version: version.to_owned(), sha256: Sha256Digest::of(bytes).to_string() };
    manifest.write_for(library).unwrap_or_else(|e| panic!("cannot write the manifest of {}: {e}", library.display()));
}

/// The options of a bench's worker: its plugins and functions directories, its state store,
/// how often it scans the plugins directory, and whether calls are timed for the metrics.
pub fn bench_options(
    plugins: PathBuf,
    functions: PathBuf,
    state_store: PathBuf,
    watch_interval: Duration,
    timing: bool,
) -> WorkerOptions {
    WorkerOptions {
        plugins_dir: plugins,
        functions_dir: functions,
        rollback_after: 0,
        watch_interval,
        grace_period: Duration::from_secs(10),
        nack_backoff: Backoff { base: Duration::from_millis(100), max: Duration::from_secs(10) },
        state_store,
        cluster: "bench".into(),
        timing,
        secrets_file: None,
        only_instance: None,
    }
}

/// Starts a worker on its own thread.
pub fn start_worker(
    options: WorkerOptions,
    cache: &Path,
    broker: &Arc<EmbeddedBroker>,
) -> (WorkerHandle, JoinHandle<WorkerSummary>) {
    let loader = Loader::new(PluginCache::new(cache));
    let worker = Worker::new(options, loader, Arc::clone(broker), Topics::Embedded)
        .expect("the worker's directories are readable");
    let handle = worker.handle();
    let thread = std::thread::Builder::new()
        .name("bench-worker".into())
        .spawn(move || worker.run())
        .expect("the worker thread starts");
    (handle, thread)
}
