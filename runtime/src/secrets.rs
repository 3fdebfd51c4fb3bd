//! Secrets: a spec's `secrets = { name = "reference" }`, resolved through providers when the
//! function starts, and read by the function with `ctx.secret(name)`.
//!
//! A reference names its provider: `env:VAR` (an environment variable of the worker), `file:PATH`
//! (a file's contents without a trailing newline, as Kubernetes mounts secrets), or `worker:KEY`
//! (a key of the worker-wide TOML file, `--secrets-file`). A value is never shown: not in logs,
//! errors, status or dead letters; its `Debug` prints a placeholder and it has no `Display`.

use std::{collections::BTreeMap, fmt, path::Path, sync::Arc};

use thiserror::Error;

/// A secret's value. Printing it with `{:?}` shows `<secret>`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    /// The value itself, for the function that asked for it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// Why a function's secrets could not be resolved. Names the secret and its reference, never a
/// value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SecretError {
    #[error("secret {name}: unknown provider in {reference:?} (use env:VAR, file:PATH or worker:KEY)")]
    UnknownProvider { name: String, reference: String },
    #[error("secret {name}: {reference} is not set")]
    Missing { name: String, reference: String },
    #[error("secret {name}: cannot read {reference}: {reason}")]
    Unreadable { name: String, reference: String, reason: String },
    #[error("secret {name}: {reference} needs --secrets-file, and the worker has none")]
    NoWorkerFile { name: String, reference: String },
    #[error("cannot read the secrets file {path}: {reason}")]
    WorkerFile { path: String, reason: String },
}

/// The worker-wide secrets file: `name = "value"` lines of TOML.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct WorkerSecrets(BTreeMap<String, SecretValue>);

impl fmt::Debug for WorkerSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl WorkerSecrets {
    /// Reads the file; a value that is not a string is refused (naming its key only).
    pub fn read(path: &Path) -> Result<Self, SecretError> {
        let failed = |reason: String| SecretError::WorkerFile { path: path.display().to_string(), reason };
        let text = std::fs::read_to_string(path).map_err(|error| failed(error.to_string()))?;
        // TOML's own error would quote the offending line, which may hold a value.
        let table: toml::Table = text.parse().map_err(|_| failed("not a TOML table of name = \"value\"".into()))?;
        let mut secrets = BTreeMap::new();
        for (name, value) in table {
            let toml::Value::String(value) = value else {
                return Err(failed(format!("{name} is not a string")));
            };
            secrets.insert(name, SecretValue(value));
        }
        Ok(Self(secrets))
    }
}

/// A function's resolved secrets, by the names it reads them by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Secrets(BTreeMap<String, SecretValue>);

impl Secrets {
    /// Resolves every secret of a spec. `env` reads an environment variable.
    pub fn resolve(
        references: &BTreeMap<String, String>,
        worker: Option<&WorkerSecrets>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, SecretError> {
        let mut secrets = BTreeMap::new();
        for (name, reference) in references {
            let missing = || SecretError::Missing { name: name.clone(), reference: reference.clone() };
            let value = match reference.split_once(':') {
                Some(("env", variable)) => env(variable).ok_or_else(missing)?,
                Some(("file", path)) => match std::fs::read_to_string(path) {
                    Ok(text) => text.strip_suffix('\n').map_or_else(|| text.clone(), str::to_owned),
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
                    Err(error) => {
                        let reason = error.to_string();
                        return Err(SecretError::Unreadable {
                            name: name.clone(),
                            reference: reference.clone(),
                            reason,
                        });
                    }
                },
                Some(("worker", key)) => {
                    let Some(worker) = worker else {
                        return Err(SecretError::NoWorkerFile { name: name.clone(), reference: reference.clone() });
                    };
                    worker.0.get(key).ok_or_else(missing)?.expose().to_owned()
                }
                _ => return Err(SecretError::UnknownProvider { name: name.clone(), reference: reference.clone() }),
            };
            secrets.insert(name.clone(), SecretValue(value));
        }
        Ok(Self(secrets))
    }

    /// The value of secret `name`, if the function has it.
    pub fn get(&self, name: &str) -> Option<&SecretValue> {
        self.0.get(name)
    }

    /// Every secret's name and value, to hand to a child process that hosts an instance.
    pub fn exposed(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(name, value)| (name.as_str(), value.expose()))
    }

    /// Secrets already resolved elsewhere (by the worker, for a child process).
    pub fn from_resolved<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self(pairs.into_iter().map(|(name, value)| (name.to_owned(), SecretValue(value.to_owned()))).collect())
    }

    /// Shared, for the instances of one function.
    pub fn shared(self) -> Arc<Self> {
        Arc::new(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn references(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(name, reference)| ((*name).to_owned(), (*reference).to_owned())).collect()
    }

    #[test]
    fn every_provider_resolves_and_no_error_shows_a_value() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file\n").expect("write");
        let worker_file = dir.path().join("secrets.toml");
        std::fs::write(&worker_file, "db = \"from-worker\"\n").expect("write");
        let worker = WorkerSecrets::read(&worker_file).expect("the worker file");
        let env = |name: &str| (name == "API_KEY").then(|| "from-env".to_owned());
        let file_ref = format!("file:{}", file.display());
        let secrets = Secrets::resolve(
            &references(&[("api", "env:API_KEY"), ("token", &file_ref), ("db", "worker:db")]),
            Some(&worker),
            env,
        )
        .expect("every secret resolves");
        let value = |name: &str| secrets.get(name).map(SecretValue::expose).map(str::to_owned);
        assert_eq!(value("api").as_deref(), Some("from-env"));
        assert_eq!(value("token").as_deref(), Some("from-file"));
        assert_eq!(value("db").as_deref(), Some("from-worker"));
        assert!(!format!("{secrets:?}{worker:?}").contains("from-"), "Debug shows no value");

        let refused = |pairs: &[(&str, &str)], worker: Option<&WorkerSecrets>| {
            Secrets::resolve(&references(pairs), worker, env).expect_err("refused").to_string()
        };
        assert!(refused(&[("x", "env:NOPE")], None).contains("secret x: env:NOPE is not set"));
        assert!(refused(&[("x", "vault:a")], None).contains("unknown provider"));
        assert!(refused(&[("x", "worker:db")], None).contains("needs --secrets-file"));
        assert!(refused(&[("x", "worker:nope")], Some(&worker)).contains("worker:nope is not set"));
        std::fs::write(&worker_file, "db = \"from-worker\nbroken").expect("write");
        let error = WorkerSecrets::read(&worker_file).expect_err("not TOML").to_string();
        assert!(!error.contains("from-worker"), "{error}");
    }
}
