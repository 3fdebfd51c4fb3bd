//! The functions directory, followed from scan to scan: which spec files appeared, changed or
//! went away. The directory is the source of truth for the worker's functions; the admin API
//! writes spec files into it as a user or a deployment tool would.

use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::SystemTime,
};

/// What a spec file looked like at one scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    /// Replacing a file by renaming another onto it changes this even within one clock tick.
    inode: u64,
}

/// A spec file that appeared, changed or went away since the last scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SpecChange {
    Added(PathBuf),
    Changed(PathBuf),
    Removed(PathBuf),
}

/// The spec files of a functions directory.
#[derive(Debug)]
pub(super) struct FunctionsDir {
    dir: PathBuf,
    seen: HashMap<PathBuf, Stamp>,
}

impl FunctionsDir {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir, seen: HashMap::new() }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// What changed since the last scan, in path order (on the first, every file is added).
    pub fn scan(&mut self) -> std::io::Result<Vec<SpecChange>> {
        let mut present = HashMap::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if is_spec_file(&path)
                && let Ok(metadata) = std::fs::metadata(&path)
            {
                let stamp = Stamp { len: metadata.len(), modified: metadata.modified().ok(), inode: metadata.ino() };
                present.insert(path, stamp);
            }
        }
        let mut changes: Vec<SpecChange> = self
            .seen
            .keys()
            .filter(|path| !present.contains_key(*path))
            .map(|path| SpecChange::Removed(path.clone()))
            .collect();
        for (path, stamp) in &present {
            match self.seen.get(path) {
                None => changes.push(SpecChange::Added(path.clone())),
                Some(seen) if seen != stamp => changes.push(SpecChange::Changed(path.clone())),
                Some(_) => {}
            }
        }
        self.seen = present;
        changes.sort_by(|a, b| a.path().cmp(b.path()));
        Ok(changes)
    }
}

impl SpecChange {
    pub fn path(&self) -> &Path {
        match self {
            Self::Added(path) | Self::Changed(path) | Self::Removed(path) => path,
        }
    }
}

/// Whether `path` names a function spec by its extension (YAML ones are refused when read).
pub(super) fn is_spec_file(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("toml" | "json" | "yaml" | "yml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_each_added_changed_and_removed_file_once() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (a, b) = (dir.path().join("a.toml"), dir.path().join("b.json"));
        std::fs::write(&a, "one").expect("write");
        std::fs::write(dir.path().join("notes.txt"), "not a spec").expect("write");
        let mut functions = FunctionsDir::new(dir.path().to_path_buf());
        assert_eq!(functions.scan().expect("scan"), vec![SpecChange::Added(a.clone())]);
        assert_eq!(functions.scan().expect("scan"), vec![]);
        std::fs::write(&b, "{}").expect("write");
        let replacement = dir.path().join(".a.toml.new");
        std::fs::write(&replacement, "two").expect("write");
        std::fs::rename(&replacement, &a).expect("rename");
        assert_eq!(functions.scan().expect("scan"), vec![SpecChange::Changed(a.clone()), SpecChange::Added(b.clone())]);
        std::fs::remove_file(&a).expect("remove");
        assert_eq!(functions.scan().expect("scan"), vec![SpecChange::Removed(a)]);
    }
}
