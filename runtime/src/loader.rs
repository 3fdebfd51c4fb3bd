//! Opening plugin files: verify the bytes, open a private copy, check the module.
//!
//! The steps, in order (each failure is its own [`VerifyError`] variant):
//! 1. read the file and check its sha256 against the pin (`--sha256` or the sidecar manifest),
//!    *before* anything is opened, since opening a library runs its initialisers;
//! 2. check that the file is a complete shared library (a truncated one would crash `dlopen`);
//!    write those exact bytes to a private, content-addressed path and open that, so that a
//!    file replaced later never changes a loaded plugin and two versions never share a path;
//! 3. check abi_stable's header and the root module's layout against this host's;
//! 4. check the declared ABI version, panic strategy, name and version, and the manifest's.
//!
//! Libraries are never unloaded: abi_stable keeps pointers into them and values they allocated
//! free through their code. Each load costs about the library's size in memory for the rest
//! of the process.

mod layout;
mod private_copy;

use std::{
    fmt,
    mem::ManuallyDrop,
    path::{Path, PathBuf},
};

use abi_stable::library::{AbiHeaderRef, LibraryError, ROOT_MODULE_LOADER_NAME_WITH_NUL};
use pfn_abi::{ABI_VERSION, PluginModuleRef};
use serde::Serialize;

pub use self::private_copy::PluginCache;
use crate::verify::{Manifest, Sha256Digest, VerifyError, abi_compatible, check_name};

/// How the file's sha256 is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pin {
    /// The digest given by the caller (a flag or a function spec); the manifest is not needed.
    Digest(Sha256Digest),
    /// The digest in the sidecar manifest; a file without one is refused.
    Manifest,
    /// No pin: the operator is looking at the file (`pfn plugin inspect`, `pfn plugin pin`).
    Unpinned,
}

/// How the plugin handles panics, as it declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PanicStrategy {
    Unwind,
    Abort,
}

impl PanicStrategy {
    fn as_str(self) -> &'static str {
        match self {
            Self::Unwind => "unwind",
            Self::Abort => "abort",
        }
    }
}

impl fmt::Display for PanicStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a plugin file declares about itself.
#[derive(Debug, Clone, Serialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub abi_version: String,
    pub sha256: String,
    pub panic_strategy: PanicStrategy,
    /// The file the plugin was loaded from.
    #[serde(skip)]
    pub path: PathBuf,
    /// The private copy that was opened.
    #[serde(skip)]
    pub opened_path: PathBuf,
}

/// A module that opened and passed the layout check, before the semantic checks.
#[derive(Debug, Clone)]
pub struct OpenedModule {
    pub info: PluginInfo,
    module: Module,
    manifest: Option<Manifest>,
}

/// A plugin that passed every check and can make instances.
#[derive(Debug, Clone)]
pub struct Plugin {
    pub info: PluginInfo,
    pub version: semver::Version,
    pub(crate) module: Module,
}

/// A checked root module (only its address is worth printing).
#[derive(Clone, Copy)]
pub(crate) struct Module(pub(crate) PluginModuleRef);

impl fmt::Debug for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Module({:p})", self.0.0.to_raw_ptr())
    }
}

/// Opens and verifies plugin files.
#[derive(Debug, Clone)]
pub struct Loader {
    cache: PluginCache,
}

impl Loader {
    /// A loader whose private copies live in `cache`.
    pub fn new(cache: PluginCache) -> Self {
        Self { cache }
    }

    /// Runs every check and returns the plugin, or the first refusal.
    pub fn load(&self, path: &Path, pin: Pin) -> Result<Plugin, VerifyError> {
        self.open(path, pin)?.accept()
    }

    /// Steps 1 to 3: digest, private copy, open, layout.
    pub fn open(&self, path: &Path, pin: Pin) -> Result<OpenedModule, VerifyError> {
        let (bytes, found) =
            Sha256Digest::read_file(path).map_err(|source| VerifyError::Read { path: path.into(), source })?;
        let manifest = Manifest::read_for(path)?;
        let expected = match (pin, &manifest) {
            (Pin::Digest(digest), _) => Some(digest),
            (Pin::Manifest, Some(manifest)) => Some(
                Sha256Digest::parse(&manifest.sha256)
                    .map_err(|reason| VerifyError::BadManifest { path: Manifest::path_for(path), reason })?,
            ),
            (Pin::Manifest, None) => {
                return Err(VerifyError::NotPinned { path: path.into(), manifest: Manifest::path_for(path), found });
            }
            (Pin::Unpinned, _) => None,
        };
        if let Some(expected) = expected
            && expected != found
        {
            return Err(VerifyError::DigestMismatch { path: path.into(), expected, found });
        }
        #[cfg(all(target_os = "linux", target_pointer_width = "64", target_endian = "little"))]
        crate::verify::elf::check_complete(&bytes)
            .map_err(|reason| VerifyError::Malformed { path: path.into(), reason })?;
        let opened_path = self.cache.store(path, &bytes, found)?;
        let module = open_module(path, &opened_path)?;
        let info = PluginInfo {
            name: module.name().to_string(),
            version: module.version().to_string(),
            abi_version: module.abi_version().to_string(),
            sha256: found.to_string(),
            panic_strategy: if module.panic_unwind() { PanicStrategy::Unwind } else { PanicStrategy::Abort },
            path: path.into(),
            opened_path,
        };
        Ok(OpenedModule { info, module: Module(module), manifest })
    }
}

impl OpenedModule {
    /// Step 4: the declared ABI version, panic strategy, name and version.
    pub fn accept(self) -> Result<Plugin, VerifyError> {
        let path = &self.info.path;
        let abi_ok = match (semver::Version::parse(ABI_VERSION), semver::Version::parse(&self.info.abi_version)) {
            (Ok(host), Ok(plugin)) => abi_compatible(&host, &plugin),
            _ => false,
        };
        if !abi_ok {
            return Err(VerifyError::AbiVersion {
                path: path.clone(),
                expected: format!("^{ABI_VERSION}"),
                found: self.info.abi_version.clone(),
            });
        }
        if self.info.panic_strategy != PanicStrategy::Unwind {
            return Err(VerifyError::PanicStrategy { path: path.clone(), found: self.info.panic_strategy.as_str() });
        }
        check_name(&self.info.name).map_err(|reason| VerifyError::BadName {
            path: path.clone(),
            found: self.info.name.clone(),
            reason,
        })?;
        let version = semver::Version::parse(&self.info.version).map_err(|e| VerifyError::BadVersion {
            path: path.clone(),
            found: self.info.version.clone(),
            reason: e.to_string(),
        })?;
        if let Some(manifest) = &self.manifest {
            for (field, expected, found) in
                [("name", &manifest.name, &self.info.name), ("version", &manifest.version, &self.info.version)]
            {
                if expected != found {
                    return Err(VerifyError::ManifestMismatch {
                        path: path.clone(),
                        field,
                        expected: expected.clone(),
                        found: found.clone(),
                    });
                }
            }
        }
        Ok(Plugin { info: self.info, version, module: self.module })
    }

    /// The manifest that pins this file as it is now.
    pub fn manifest(&self) -> Manifest {
        Manifest { name: self.info.name.clone(), version: self.info.version.clone(), sha256: self.info.sha256.clone() }
    }
}

/// Opens `opened_path` (the private copy of `path`) and checks its header and layout.
fn open_module(path: &Path, opened_path: &Path) -> Result<PluginModuleRef, VerifyError> {
    // SAFETY: opening a library runs its initialisers. The bytes at `opened_path` are the ones
    // whose digest was just checked against the pin, in a directory only this user writes.
    let library = unsafe { libloading::Library::new(opened_path) }
        .map_err(|e| VerifyError::Open { path: path.into(), reason: e.to_string() })?;
    // Never unloaded: see the module documentation.
    let library = ManuallyDrop::new(library);
    let not_a_plugin = |reason: String| VerifyError::NotAPlugin { path: path.into(), reason };
    // SAFETY: abi_stable exports its library header under this name with the type
    // `AbiHeaderRef`; a library that exports something else under that name is not one we can
    // defend against beyond abi_stable's own magic-string check in `upgrade`.
    let header: AbiHeaderRef = unsafe {
        *library
            .get::<AbiHeaderRef>(ROOT_MODULE_LOADER_NAME_WITH_NUL.as_bytes())
            .map_err(|e| not_a_plugin(format!("it exports no pfn root module ({e})")))?
    };
    let header = header.upgrade().map_err(|e| not_a_plugin(e.to_string()))?;
    header.ensure_layout::<PluginModuleRef>().map_err(|error| match error {
        LibraryError::AbiInstability(details) => {
            VerifyError::Layout { path: path.into(), summary: layout::summarise(&details.to_string()) }
        }
        other => VerifyError::ModuleInit { path: path.into(), reason: other.to_string() },
    })?;
    // SAFETY: the layout of the library's root module was checked just above.
    unsafe { header.unchecked_layout::<PluginModuleRef>() }
        .map_err(|e| VerifyError::ModuleInit { path: path.into(), reason: e.to_string() })
}
