//! Paths of the artifacts `scripts/build-plugins.sh` produces.

use std::path::{Path, PathBuf};

use pfn::{
    loader::{Loader, PluginCache},
    verify::Sha256Digest,
};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the workspace").to_path_buf()
}

/// The target directory the build script used.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

fn built(path: PathBuf) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-plugins.sh (scripts/test.sh does) before the tests",
        path.display()
    );
    path
}

/// The release `pfn` binary.
pub fn pfn_bin() -> PathBuf {
    built(target_dir().join("release").join("pfn"))
}

/// An example plugin, e.g. `exclamation` (pinned by its manifest).
pub fn plugin(name: &str) -> PathBuf {
    built(target_dir().join("plugins").join(format!("lib{}.so", name.replace('-', "_"))))
}

/// A fixture library: `panicky`, `abort-build` or `broken-layout`.
pub fn fixture(name: &str) -> PathBuf {
    built(target_dir().join("fixtures").join(format!("lib{}.so", name.replace('-', "_"))))
}

/// The library exporting one function shape (a feature of `tests/fixtures/shapes`).
pub fn shape(name: &str) -> PathBuf {
    built(target_dir().join("fixtures").join("shapes").join(format!("{name}.so")))
}

/// A hand-built module: `future-abi`, `bad-name` or `bad-version`.
pub fn hand_built(name: &str) -> PathBuf {
    built(target_dir().join("fixtures").join("hand-built").join(format!("{name}.so")))
}

/// The `versioned` fixture built as `version` (1.0.0, 1.1.0, 1.2.0 or 2.0.0).
pub fn versioned(version: &str) -> PathBuf {
    built(target_dir().join("fixtures").join("versioned").join(version).join("libversioned.so"))
}

/// The `versioned` fixture (as 1.0.0) built against the plugin interface as released at 1.0.0
/// (`tests/abi-1.0.0`), before the host's callback table grew.
pub fn versioned_on_abi_1_0() -> PathBuf {
    built(target_dir().join("fixtures").join("abi-1.0.0").join("libversioned.so"))
}

/// A loader whose private copies go into a fresh directory of `scratch`.
pub fn loader_in(scratch: &Path) -> Loader {
    Loader::new(PluginCache::new(scratch.join("plugin-cache")))
}

/// A scratch directory, removed when dropped.
pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("pfn-test-").tempdir().expect("temporary directory")
}

/// The sha256 of a file, to pin a fixture by digest.
pub fn sha256_of(path: &Path) -> Sha256Digest {
    Sha256Digest::of(&std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display())))
}
