//! The plugins directory: which library files appeared or changed and have settled (are no
//! longer being written), and what each one declares itself to be.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::SystemTime,
};

use crate::{
    loader::{Loader, Pin},
    verify::{Manifest, Sha256Digest},
};

/// What a file looked like at one scan: its size and modification time, and its manifest's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    manifest: Option<(u64, Option<SystemTime>)>,
}

fn stamp_of(path: &Path) -> Option<Stamp> {
    let metadata = std::fs::metadata(path).ok()?;
    let manifest = std::fs::metadata(Manifest::path_for(path)).ok().map(|m| (m.len(), m.modified().ok()));
    Some(Stamp { len: metadata.len(), modified: metadata.modified().ok(), manifest })
}

#[derive(Debug)]
struct Seen {
    stamp: Stamp,
    /// Handed out at this stamp already; only a change makes it new again.
    handed_out: bool,
}

/// The files of a plugins directory, followed from scan to scan.
#[derive(Debug)]
pub(super) struct PluginsDir {
    dir: PathBuf,
    seen: HashMap<PathBuf, Seen>,
}

impl PluginsDir {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir, seen: HashMap::new() }
    }

    /// The library files handed out by a scan, in path order.
    pub fn known(&self) -> Vec<PathBuf> {
        let mut known: Vec<PathBuf> =
            self.seen.iter().filter(|(_, seen)| seen.handed_out).map(|(path, _)| path.clone()).collect();
        known.sort();
        known
    }

    /// Library files that are new or changed and were the same at this scan as at the last
    /// one. On the first scan every file counts as settled.
    pub fn scan(&mut self) -> std::io::Result<Vec<PathBuf>> {
        let first = self.seen.is_empty();
        let mut present = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) == Some(std::env::consts::DLL_EXTENSION) {
                present.push(path);
            }
        }
        self.seen.retain(|path, _| present.contains(path));
        let mut settled = Vec::new();
        for path in present {
            let Some(stamp) = stamp_of(&path) else { continue };
            match self.seen.get_mut(&path) {
                None if first => {
                    self.seen.insert(path.clone(), Seen { stamp, handed_out: true });
                    settled.push(path);
                }
                None => {
                    self.seen.insert(path, Seen { stamp, handed_out: false });
                }
                Some(seen) if seen.stamp != stamp => *seen = Seen { stamp, handed_out: false },
                Some(seen) if !seen.handed_out => {
                    seen.handed_out = true;
                    settled.push(path);
                }
                Some(_) => {}
            }
        }
        settled.sort();
        Ok(settled)
    }
}

/// A plugin file and what it declares.
#[derive(Debug, Clone)]
pub(super) struct PluginFile {
    pub path: PathBuf,
    pub name: String,
    pub version: semver::Version,
    pub pin: Pin,
}

/// Reads what `path` declares: from its manifest, or (for a file a function spec pins by
/// digest) from the library itself. A file pinned by neither is refused.
pub(super) fn identify(path: &Path, pinned_by_specs: &[Sha256Digest], loader: &Loader) -> Result<PluginFile, String> {
    if let Some(manifest) = Manifest::read_for(path).map_err(|e| e.to_string())? {
        let version = semver::Version::parse(&manifest.version).map_err(|e| {
            format!("manifest {} has version {:?}: {e}", Manifest::path_for(path).display(), manifest.version)
        })?;
        return Ok(PluginFile { path: path.into(), name: manifest.name, version, pin: Pin::Manifest });
    }
    let digest = Sha256Digest::of_file(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !pinned_by_specs.contains(&digest) {
        return Err(format!(
            "{} has no manifest and no function spec pins its sha256 {digest}; run `pfn plugin pin {}`",
            path.display(),
            path.display()
        ));
    }
    let opened = loader.open(path, Pin::Digest(digest)).map_err(|e| e.to_string())?;
    let version = semver::Version::parse(&opened.info.version)
        .map_err(|e| format!("{} declares version {:?}: {e}", path.display(), opened.info.version))?;
    Ok(PluginFile { path: path.into(), name: opened.info.name.clone(), version, pin: Pin::Digest(digest) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_handed_out_once_it_stops_changing() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let existing = dir.path().join(format!("a.{}", std::env::consts::DLL_EXTENSION));
        std::fs::write(&existing, b"one").expect("write");
        std::fs::write(dir.path().join("notes.txt"), b"not a library").expect("write");
        let mut plugins = PluginsDir::new(dir.path().into());
        assert_eq!(plugins.scan().expect("scan"), std::slice::from_ref(&existing), "present at start: settled");
        assert!(plugins.scan().expect("scan").is_empty(), "handed out once");

        let copied = dir.path().join(format!("b.{}", std::env::consts::DLL_EXTENSION));
        std::fs::write(&copied, b"half").expect("write");
        assert!(plugins.scan().expect("scan").is_empty(), "new: wait for it to settle");
        std::fs::write(&copied, b"half and the rest").expect("write");
        assert!(plugins.scan().expect("scan").is_empty(), "still changing");
        assert_eq!(plugins.scan().expect("scan"), std::slice::from_ref(&copied), "unchanged for one scan: settled");

        std::fs::write(&existing, b"replaced").expect("write");
        assert!(plugins.scan().expect("scan").is_empty());
        assert_eq!(plugins.scan().expect("scan"), [existing]);
    }
}
