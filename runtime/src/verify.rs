//! Checks made on a plugin file and its module before any of its code runs for a function.

pub mod elf;

use std::{
    fmt, fs,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The size of each read and write of a plugin file: small enough that no single system call
/// holds a CPU for long, large enough that their count does not matter.
pub const IO_CHUNK: usize = 1 << 18;

/// A sha256 digest, written as 64 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Digest([u8; 32]);

impl Sha256Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// Reads the whole file at `path` and returns its bytes with their digest.
    pub fn read_file(path: &Path) -> std::io::Result<(Vec<u8>, Self)> {
        let length = std::fs::metadata(path)?.len();
        let mut bytes = Vec::with_capacity(usize::try_from(length).unwrap_or(0));
        let digest = Self::hash_file(path, |chunk| bytes.extend_from_slice(chunk))?;
        Ok((bytes, digest))
    }

    /// The digest of the file at `path`, read without keeping it.
    pub fn of_file(path: &Path) -> std::io::Result<Self> {
        Self::hash_file(path, |_| {})
    }

    /// Reads `path` in chunks of [`IO_CHUNK`], hashing each and handing it to `each`. Small
    /// reads keep each system call short, so a large plugin read on a busy machine does not hold
    /// a CPU that a function instance is waiting for.
    fn hash_file(path: &Path, mut each: impl FnMut(&[u8])) -> std::io::Result<Self> {
        let mut file = std::fs::File::open(path)?;
        let mut hasher = Sha256::new();
        let mut chunk = vec![0; IO_CHUNK];
        loop {
            let read = std::io::Read::read(&mut file, &mut chunk)?;
            if read == 0 {
                return Ok(Self(hasher.finalize().into()));
            }
            hasher.update(&chunk[..read]);
            each(&chunk[..read]);
        }
    }

    /// Parses 64 hex digits.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut digest = [0; 32];
        hex::decode_to_slice(text.trim(), &mut digest)
            .map_err(|e| format!("`{text}` is not a sha256 digest (64 hex digits): {e}"))?;
        Ok(Self(digest))
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// The sidecar manifest `<file stem>.pfn.toml` that pins a plugin file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The plugin's declared name.
    pub name: String,
    /// The plugin's declared version.
    pub version: String,
    /// The sha256 of the library file, hex.
    pub sha256: String,
}

impl Manifest {
    /// Where the manifest of `library` lives: beside it, named after its file stem.
    pub fn path_for(library: &Path) -> PathBuf {
        let stem = library.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        library.with_file_name(format!("{stem}.pfn.toml"))
    }

    /// Reads the manifest of `library`, if it has one.
    pub fn read_for(library: &Path) -> Result<Option<Self>, VerifyError> {
        let path = Self::path_for(library);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(VerifyError::BadManifest { path, reason: e.to_string() }),
        };
        toml::from_str(&text).map(Some).map_err(|e| VerifyError::BadManifest { path, reason: e.message().to_owned() })
    }

    /// Writes the manifest beside `library`, returning its path.
    pub fn write_for(&self, library: &Path) -> Result<PathBuf, VerifyError> {
        let path = Self::path_for(library);
        let text = toml::to_string(self)
            .map_err(|e| VerifyError::BadManifest { path: path.clone(), reason: e.to_string() })?;
        fs::write(&path, text).map_err(|e| VerifyError::BadManifest { path: path.clone(), reason: e.to_string() })?;
        Ok(path)
    }
}

/// Why a plugin was refused. Every variant names the file and what was expected and found.
#[derive(Debug, Error)]
pub enum VerifyError {
    #[error("cannot read plugin {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error(
        "plugin {path} has no pinned sha256 (found {found}): pass --sha256, or pin it with `pfn plugin pin {path}` (writes {manifest})"
    )]
    NotPinned { path: PathBuf, manifest: PathBuf, found: Sha256Digest },
    #[error("bad plugin manifest {path}: {reason}")]
    BadManifest { path: PathBuf, reason: String },
    #[error("sha256 mismatch for plugin {path}: expected {expected}, found {found}")]
    DigestMismatch { path: PathBuf, expected: Sha256Digest, found: Sha256Digest },
    #[error("cannot make a private copy of plugin {path} at {copy}: {source}")]
    PrivateCopy { path: PathBuf, copy: PathBuf, source: std::io::Error },
    #[error("plugin {path} is not a loadable shared library: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("cannot open plugin {path} as a shared library: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("{path} is not a pfn plugin: {reason}")]
    NotAPlugin { path: PathBuf, reason: String },
    #[error("plugin {path} has an incompatible module layout: {summary}")]
    Layout { path: PathBuf, summary: String },
    #[error("plugin {path} failed to initialise its module: {reason}")]
    ModuleInit { path: PathBuf, reason: String },
    #[error("plugin {path} was built against ABI {found}, incompatible with this runtime's ABI {expected}")]
    AbiVersion { path: PathBuf, expected: String, found: String },
    #[error(
        "plugin {path} was built with panic = \"{found}\", expected panic = \"unwind\" (set it in [profile.release])"
    )]
    PanicStrategy { path: PathBuf, found: &'static str },
    #[error("plugin {path} declares an invalid name {found:?}: {reason}")]
    BadName { path: PathBuf, found: String, reason: &'static str },
    #[error("plugin {path} declares an invalid version {found:?}: {reason}")]
    BadVersion { path: PathBuf, found: String, reason: String },
    #[error("plugin {path} declares {field} {found:?}, but its manifest says {expected:?}")]
    ManifestMismatch { path: PathBuf, field: &'static str, expected: String, found: String },
}

impl VerifyError {
    /// A short name for what was wrong, for counting refusals by reason.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Read { .. } | Self::PrivateCopy { .. } => "unreadable",
            Self::NotPinned { .. } => "not_pinned",
            Self::BadManifest { .. } | Self::ManifestMismatch { .. } => "manifest",
            Self::DigestMismatch { .. } => "checksum",
            Self::Malformed { .. } | Self::Open { .. } | Self::NotAPlugin { .. } => "not_a_plugin",
            Self::Layout { .. } => "layout",
            Self::ModuleInit { .. } => "module_init",
            Self::AbiVersion { .. } => "abi_version",
            Self::PanicStrategy { .. } => "panic_strategy",
            Self::BadName { .. } | Self::BadVersion { .. } => "declaration",
        }
    }
}

/// Whether a plugin built against `plugin` can run on a host with interface `host`: the same
/// major, and while the major is 0, the same minor (Cargo's rules for compatible versions).
pub fn abi_compatible(host: &semver::Version, plugin: &semver::Version) -> bool {
    host.major == plugin.major && (host.major != 0 || host.minor == plugin.minor)
}

/// Checks a declared plugin name: 1 to 64 of `[A-Za-z0-9_-]`, starting with a letter.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 64 {
        return Err("a name has 1 to 64 characters");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err("a name starts with a letter");
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err("a name has only letters, digits, '-' and '_'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(text: &str) -> semver::Version {
        semver::Version::parse(text).expect("test versions parse")
    }

    #[test]
    fn same_major_is_compatible() {
        assert!(abi_compatible(&version("1.0.0"), &version("1.4.2")));
        assert!(abi_compatible(&version("1.4.0"), &version("1.0.0")));
        assert!(!abi_compatible(&version("1.0.0"), &version("2.0.0")));
        assert!(abi_compatible(&version("0.3.0"), &version("0.3.9")));
        assert!(!abi_compatible(&version("0.3.0"), &version("0.4.0")));
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("order-summary").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("9lives").is_err());
        assert!(check_name("a b").is_err());
    }

    #[test]
    fn digests_round_trip() {
        let digest = Sha256Digest::of(b"pfn");
        assert_eq!(Sha256Digest::parse(&digest.to_string()), Ok(digest));
        assert!(Sha256Digest::parse("abc").is_err());
    }

    #[test]
    fn manifest_sits_beside_the_library() {
        let path = Manifest::path_for(Path::new("/plugins/libexclamation.so"));
        assert_eq!(path, Path::new("/plugins/libexclamation.pfn.toml"));
    }
}
