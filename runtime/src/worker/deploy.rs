//! Creating and updating functions through the worker's handle, as the admin API does: an
//! uploaded plugin goes through every check a dropped one does before it is put in the plugins
//! directory, and a spec is validated before its file is written (atomically) to the functions
//! directory, which the worker then applies. Nothing is written when anything is refused.

use std::{
    fs,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use serde_json::Value;
use thiserror::Error;

use super::{Applied, WorkerHandle};
use crate::{
    config::{FunctionSpec, SpecError},
    loader::{Loader, Pin},
    verify::{Manifest, Sha256Digest, VerifyError},
};

/// Where the handle installs plugins and writes specs.
#[derive(Debug)]
pub(super) struct DeployTarget {
    pub loader: Loader,
    pub plugins_dir: PathBuf,
    pub functions_dir: PathBuf,
}

/// A plugin file sent with a create or an update.
#[derive(Debug)]
pub struct Upload {
    pub bytes: Vec<u8>,
    /// The sha256 the sender computed, hex.
    pub sha256: String,
}

/// What a create or an update did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Deployed {
    pub fqfn: String,
    /// The uploaded plugin, as `name version` in the plugins directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// The spec file written.
    pub spec_file: String,
    #[serde(flatten)]
    pub applied: Applied,
}

/// Why a create or an update was refused.
#[derive(Debug, Error)]
pub enum DeployError {
    #[error("{0}")]
    BadRequest(String),
    #[error("the uploaded plugin's sha256 is {actual}, not {sent} as sent")]
    DigestMismatch { sent: String, actual: Sha256Digest },
    #[error("uploaded plugin refused: {0}")]
    Plugin(VerifyError),
    #[error(transparent)]
    Spec(SpecError),
    #[error("function {0} already exists")]
    Exists(String),
    #[error("no function {0} in this worker")]
    NoSuchFunction(String),
    #[error("{path} holds another build of {plugin}: bump the plugin's version")]
    PluginConflict { plugin: String, path: String },
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("the worker is shutting down")]
    ShuttingDown,
    #[error("the worker refused the spec it was given: {0}")]
    Refused(String),
}

/// A create, or an update of an existing function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deploy {
    Create,
    Update,
}

impl WorkerHandle {
    /// Creates or updates function `fqfn` from `config` (a spec as JSON; for an update, only
    /// the fields to change) and, when given, an uploaded plugin, which the spec then runs.
    pub fn deploy(
        &self,
        how: Deploy,
        fqfn: &str,
        mut config: serde_json::Map<String, Value>,
        upload: Option<Upload>,
    ) -> Result<Deployed, DeployError> {
        let existing = self.function(fqfn).ok();
        let spec_file = match (how, &existing) {
            (Deploy::Create, Some(_)) => return Err(DeployError::Exists(fqfn.to_owned())),
            (Deploy::Update, None) => return Err(DeployError::NoSuchFunction(fqfn.to_owned())),
            (Deploy::Create, None) => self.new_spec_file(fqfn),
            (Deploy::Update, Some(function)) => function.spec_file.clone(),
        };
        if let Some(function) = &existing {
            let running = serde_json::to_value(&*function.spec());
            let Ok(Value::Object(running)) = running else {
                return Err(DeployError::BadRequest(format!("cannot read function {fqfn}'s spec as JSON")));
            };
            config = running.into_iter().chain(config).collect();
        }
        let (tenant, namespace, name) = split(fqfn)?;
        for (key, value) in [("tenant", tenant), ("namespace", namespace), ("name", name)] {
            match config.get(key).and_then(Value::as_str) {
                Some(given) if given != value => {
                    return Err(DeployError::BadRequest(format!(
                        "the config's {key} {given:?} is not the path's {value:?}"
                    )));
                }
                _ => drop(config.insert(key.to_owned(), value.into())),
            }
        }
        if upload.is_some() && !config.contains_key("plugin") {
            // Named below, once the upload says what it is.
            config.insert("plugin".into(), "uploaded".into());
        }
        let mut spec: FunctionSpec = serde_json::from_value(Value::Object(config))
            .map_err(|error| DeployError::BadRequest(format!("not a function config: {error}")))?;
        spec.validate().map_err(DeployError::Spec)?;
        let plugin = match upload {
            Some(upload) => {
                let manifest = self.install(upload)?;
                spec.plugin.clone_from(&manifest.name);
                Some(format!("{} {}", manifest.name, manifest.version))
            }
            None => None,
        };
        let before = fs::read_to_string(&spec_file).ok();
        write_atomically(&spec_file, &spec_text(&spec, &spec_file)?)?;
        let applied = self.apply_spec(&spec_file).map_err(|_| DeployError::ShuttingDown)?;
        let applied = applied.unwrap_or(Applied::Unchanged { fqfn: fqfn.to_owned() });
        if let Applied::Refused { reason } = applied {
            // The directory says again what runs: the file as it was, or none.
            match before {
                Some(text) => write_atomically(&spec_file, &text)?,
                None => fs::remove_file(&spec_file).map_err(|source| write_error(&spec_file, source))?,
            }
            return Err(DeployError::Refused(reason));
        }
        Ok(Deployed { fqfn: fqfn.to_owned(), plugin, spec_file: spec_file.display().to_string(), applied })
    }

    /// Checks an uploaded plugin as a dropped one is checked, then puts it and its manifest in
    /// the plugins directory as `<name>-<version>.so`.
    fn install(&self, upload: Upload) -> Result<Manifest, DeployError> {
        let sent = Sha256Digest::parse(&upload.sha256)
            .map_err(|reason| DeployError::BadRequest(format!("sha256 {:?}: {reason}", upload.sha256)))?;
        let actual = Sha256Digest::of(&upload.bytes);
        if actual != sent {
            return Err(DeployError::DigestMismatch { sent: upload.sha256, actual });
        }
        let target = &self.deploy;
        let staging = target.plugins_dir.join(".uploads");
        let extension = std::env::consts::DLL_EXTENSION;
        let staged = staging.join(format!("upload-{}.{extension}", unique()));
        fs::create_dir_all(&staging).map_err(|source| write_error(&staging, source))?;
        fs::write(&staged, &upload.bytes).map_err(|source| write_error(&staged, source))?;
        let checked = target.loader.open(&staged, Pin::Digest(sent)).and_then(|opened| {
            let manifest = opened.manifest();
            opened.accept().map(|_| manifest)
        });
        let placed = checked.map_err(DeployError::Plugin).and_then(|manifest| {
            let library = place(&staged, &target.plugins_dir, &manifest, actual)?;
            Ok((manifest, library))
        });
        // Moved into place by now, or not wanted.
        let _ = fs::remove_file(&staged);
        let (manifest, library) = placed?;
        if let Some(library) = library {
            tracing::info!(plugin = %manifest.name, version = %manifest.version, file = %library.display(), "plugin installed through the admin API");
        }
        Ok(manifest)
    }

    /// The file a created function's spec is written to.
    fn new_spec_file(&self, fqfn: &str) -> PathBuf {
        self.deploy.functions_dir.join(format!("{}.json", fqfn.replace('/', ".")))
    }
}

/// Puts the checked file `staged` in the plugins directory as `<name>-<version>.so`, its
/// manifest first and the library by rename, so that the worker never sees a partial file.
/// Returns where, or none when that very file is there already.
fn place(
    staged: &Path,
    plugins_dir: &Path,
    manifest: &Manifest,
    digest: Sha256Digest,
) -> Result<Option<PathBuf>, DeployError> {
    let extension = std::env::consts::DLL_EXTENSION;
    let library = plugins_dir.join(format!("{}-{}.{extension}", manifest.name, manifest.version));
    match Sha256Digest::of_file(&library) {
        Ok(there) if there == digest => return Ok(None),
        Ok(_) => {
            let plugin = format!("{} {}", manifest.name, manifest.version);
            return Err(DeployError::PluginConflict { plugin, path: library.display().to_string() });
        }
        Err(_) => {}
    }
    manifest.write_for(&library).map_err(DeployError::Plugin)?;
    fs::rename(staged, &library).map_err(|source| write_error(&library, source))?;
    Ok(Some(library))
}

/// `tenant`, `namespace` and `name` of a fully qualified function name.
fn split(fqfn: &str) -> Result<(&str, &str, &str), DeployError> {
    let mut parts = fqfn.splitn(3, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(tenant), Some(namespace), Some(name)) => Ok((tenant, namespace, name)),
        _ => Err(DeployError::BadRequest(format!("{fqfn:?} is not tenant/namespace/name"))),
    }
}

/// The spec as its file's format: TOML for `.toml`, JSON otherwise.
fn spec_text(spec: &FunctionSpec, path: &Path) -> Result<String, DeployError> {
    let text = match path.extension().and_then(|e| e.to_str()) {
        Some("toml") => toml::to_string(spec).map_err(|error| error.to_string()),
        _ => serde_json::to_string_pretty(spec).map_err(|error| error.to_string()),
    };
    text.map_err(|reason| DeployError::BadRequest(format!("cannot write the spec as {}: {reason}", path.display())))
}

/// Writes `text` to a hidden file beside `path`, then renames it over `path`.
fn write_atomically(path: &Path, text: &str) -> Result<(), DeployError> {
    let file_name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    let partial = path.with_file_name(format!(".{file_name}.{}.partial", unique()));
    fs::write(&partial, text).map_err(|source| write_error(&partial, source))?;
    fs::rename(&partial, path).map_err(|source| write_error(path, source))
}

fn write_error(path: &Path, source: std::io::Error) -> DeployError {
    DeployError::Write { path: path.display().to_string(), source }
}

/// A name no other upload of this process uses.
fn unique() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_nanos());
    format!("{}-{nanos}", std::process::id())
}
