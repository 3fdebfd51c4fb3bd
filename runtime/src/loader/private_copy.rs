//! The content-addressed directory plugins are opened from.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use crate::verify::{Sha256Digest, Sha256Writer, VerifyError};

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
        if digest_of_file(&copy).is_ok_and(|existing| existing == digest) {
            return Ok(copy);
        }
        let error = |e: std::io::Error| VerifyError::PrivateCopy { path: source.into(), copy: copy.clone(), source: e };
        create_private_dir(&dir).map_err(error)?;
        let mut temp = tempfile::NamedTempFile::new_in(&dir).map_err(error)?;
        temp.write_all(bytes).map_err(error)?;
        temp.as_file().sync_all().map_err(error)?;
        temp.persist(&copy).map_err(|e| error(e.error))?;
        Ok(copy)
    }
}

/// The sha256 of a file, read in small chunks.
fn digest_of_file(path: &Path) -> std::io::Result<Sha256Digest> {
    let mut hasher = Sha256Writer::default();
    std::io::copy(&mut fs::File::open(path)?, &mut hasher)?;
    Ok(hasher.finish())
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}
