//! The content-addressed directory plugins are opened from.

use std::{
    fs,
    io::{Read, Write},
    path::{Path, PathBuf},
};

use crate::verify::{IO_CHUNK, Sha256Digest, VerifyError};

/// A directory of private plugin copies, one subdirectory per sha256.
#[derive(Debug, Clone)]
pub struct PluginCache {
    root: PathBuf,
}

impl PluginCache {
    /// A cache rooted at `root` (created on first use, readable by this user only).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The default root: `$PFN_PLUGIN_CACHE`, else `$XDG_CACHE_HOME/pfn/plugins`, else
    /// `~/.cache/pfn/plugins`, else a folder in the temporary directory.
    pub fn default_root() -> PathBuf {
        if let Some(root) = std::env::var_os("PFN_PLUGIN_CACHE") {
            return root.into();
        }
        let cache_home = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")));
        match cache_home {
            Some(home) => home.join("pfn").join("plugins"),
            None => std::env::temp_dir().join("pfn-plugins"),
        }
    }

    /// Stores `bytes` (the contents of `source`, with digest `digest`) and returns the path of
    /// the copy. An existing copy is reused only if its bytes are the same.
    pub fn store(&self, source: &Path, bytes: &[u8], digest: Sha256Digest) -> Result<PathBuf, VerifyError> {
        let file_name = source.file_name().map_or_else(|| "plugin.so".into(), |name| name.to_os_string());
        let dir = self.root.join(digest.to_string());
        let copy = dir.join(file_name);
        if holds_exactly(&copy, bytes).unwrap_or(false) {
            return Ok(copy);
        }
        let error = |e: std::io::Error| VerifyError::PrivateCopy { path: source.into(), copy: copy.clone(), source: e };
        create_private_dir(&dir).map_err(error)?;
        let mut temp = tempfile::NamedTempFile::new_in(&dir).map_err(error)?;
        // Small writes keep each system call short. No fsync: a copy torn by a crash is never
        // reused, because an existing copy is compared byte for byte before it is.
        for chunk in bytes.chunks(IO_CHUNK) {
            temp.write_all(chunk).map_err(error)?;
        }
        temp.persist(&copy).map_err(|e| error(e.error))?;
        Ok(copy)
    }
}

/// Whether the file at `path` holds exactly `bytes`, compared in small chunks (the bytes were
/// hashed already; the file is not hashed again).
fn holds_exactly(path: &Path, bytes: &[u8]) -> std::io::Result<bool> {
    let mut file = fs::File::open(path)?;
    if file.metadata()?.len() != bytes.len() as u64 {
        return Ok(false);
    }
    let mut chunk = [0; 1 << 16];
    let mut rest = bytes;
    loop {
        let read = file.read(&mut chunk)?;
        if read == 0 {
            return Ok(rest.is_empty());
        }
        let Some((expected, tail)) = rest.split_at_checked(read) else { return Ok(false) };
        if expected != &chunk[..read] {
            return Ok(false);
        }
        rest = tail;
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_existing_copy_is_reused_only_with_the_same_bytes() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let cache = PluginCache::new(dir.path());
        let bytes = vec![7; 200_000];
        let digest = Sha256Digest::of(&bytes);
        let copy = cache.store(Path::new("/plugins/libx.so"), &bytes, digest).expect("stored");
        assert!(holds_exactly(&copy, &bytes).expect("readable"));
        let mut changed = bytes.clone();
        changed[150_000] = 8;
        assert!(!holds_exactly(&copy, &changed).expect("readable"));
        assert!(!holds_exactly(&copy, &bytes[..1000]).expect("readable"));

        fs::write(&copy, &changed).expect("tamper with the copy");
        let again = cache.store(Path::new("/plugins/libx.so"), &bytes, digest).expect("stored again");
        assert_eq!(again, copy);
        assert_eq!(fs::read(&copy).expect("readable"), bytes, "a changed copy is replaced");
    }
}
