//! Function specs: what to run, on which topics, with which guarantees.
//!
//! A spec is a TOML or JSON file using Pulsar Functions' names. [`FunctionSpec::validate`]
//! checks it without touching the network and names the field and the reason of every problem.

mod resources;

use std::{collections::BTreeMap, fmt, path::Path};

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use self::resources::Resources;
use crate::{
    io::{
        producer_config::{ProducerConfig, ProducerSettings},
        transport::SubscriptionRequest,
    },
    verify::{Sha256Digest, check_name},
    vocabulary::{ProcessingGuarantees, Runtime, SubscriptionPosition, SubscriptionType},
};

/// One function: its identity, its plugin, its topics and how it processes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionSpec {
    /// The tenant (default `public`).
    #[serde(default = "default_tenant")]
    pub tenant: String,
    /// The namespace (default `default`).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// The function's name.
    pub name: String,
    /// The plugin: its declared name (looked up in the plugins directory) or a path to a library.
    pub plugin: String,
    /// The plugin versions this function accepts (a semver requirement; default any).
    #[serde(default = "any_version")]
    pub plugin_version: String,
    /// The plugin file's sha256, pinned here instead of (or as well as) by its manifest.
    #[serde(default)]
    pub plugin_sha256: Option<String>,
    /// The input topics.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// A regular expression of input topics, instead of or besides `inputs`.
    #[serde(default)]
    pub topics_pattern: Option<String>,
    /// The topic results go to; none means results are dropped (the function only has effects).
    #[serde(default)]
    pub output: Option<String>,
    /// The topic the function's log lines also go to.
    #[serde(default)]
    pub log_topic: Option<String>,
    /// How many instances run (default 1).
    #[serde(default = "one")]
    pub parallelism: u32,
    #[serde(default)]
    pub processing_guarantees: ProcessingGuarantees,
    /// Keep the input order (a Failover subscription).
    #[serde(default)]
    pub retain_ordering: bool,
    /// Keep the order per key (a Key_Shared subscription).
    #[serde(default)]
    pub retain_key_ordering: bool,
    /// Give each output its input's properties and event time (default true; its key always).
    #[serde(default = "yes")]
    pub forward_source_message_property: bool,
    /// The subscription's name (default: derived from the fully qualified function name).
    #[serde(default)]
    pub subscription_name: Option<String>,
    #[serde(default)]
    pub subscription_position: SubscriptionPosition,
    /// Delete the subscription when the function is deleted (default true, as in Pulsar).
    #[serde(default = "yes")]
    pub cleanup_subscription: bool,
    /// How many times a failed message is redelivered before it is dead-lettered (default 3).
    #[serde(default = "three")]
    pub max_message_retries: u32,
    /// Where messages go after their last retry (default `<output or name>-DLQ`).
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
    /// The longest one call may take, in milliseconds (default: no limit).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Where the instances run: `thread` (in the worker) or `process` (a child each).
    #[serde(default)]
    pub runtime: Runtime,
    /// Values the function reads through its context: any TOML or JSON value (Pulsar's
    /// userConfig is a map of objects); the function reads each as text or typed.
    #[serde(default)]
    pub user_config: BTreeMap<String, serde_json::Value>,
    /// Secret names the function may look up, each mapped to where the secret comes from.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// This function's log level (default: the worker's).
    #[serde(default)]
    pub log_level: Option<String>,
    /// How the function's producers batch and compress (default: as Pulsar Functions).
    #[serde(default)]
    pub producer_config: Option<ProducerConfig>,
    /// What each instance may use (Pulsar's `cpu`, `ram`, `disk`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
}

fn default_tenant() -> String {
    "public".into()
}

fn default_namespace() -> String {
    "default".into()
}

fn any_version() -> String {
    "*".into()
}

fn one() -> u32 {
    1
}

fn three() -> u32 {
    3
}

fn yes() -> bool {
    true
}

/// One thing wrong with a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: &'static str,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// Why a spec was refused.
#[derive(Debug, Error)]
pub enum SpecError {
    #[error("cannot read function spec {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("function spec {path} is not valid {format}: {reason}")]
    Parse { path: String, format: &'static str, reason: String },
    #[error("function spec {path} has an unknown extension: use .toml or .json")]
    Format { path: String },
    #[error("function spec {name} is invalid: {}", join(problems))]
    Invalid { name: String, problems: Vec<Problem> },
}

fn join(problems: &[Problem]) -> String {
    problems.iter().map(Problem::to_string).collect::<Vec<_>>().join("; ")
}

/// The log levels a spec may name.
const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

impl FunctionSpec {
    /// Reads a spec from a `.toml` or `.json` file and validates it. A relative plugin path is
    /// taken from the file's directory.
    pub fn from_file(path: &Path) -> Result<Self, SpecError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read { path: shown.clone(), source })?;
        let mut spec: Self = match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => toml::from_str(&text).map_err(|e| SpecError::Parse {
                path: shown.clone(),
                format: "TOML",
                reason: e.message().to_owned(),
            })?,
            Some("json") => serde_json::from_str(&text).map_err(|e| SpecError::Parse {
                path: shown.clone(),
                format: "JSON",
                reason: e.to_string(),
            })?,
            _ => return Err(SpecError::Format { path: shown }),
        };
        spec.validate()?;
        if spec.plugin_is_file()
            && Path::new(&spec.plugin).is_relative()
            && let Some(dir) = path.parent()
        {
            spec.plugin = dir.join(&spec.plugin).display().to_string();
        }
        Ok(spec)
    }

    /// Whether `plugin` names a library file (a path) rather than a declared plugin name.
    pub fn plugin_is_file(&self) -> bool {
        self.plugin.contains('/') || self.plugin.ends_with(&format!(".{}", std::env::consts::DLL_EXTENSION))
    }

    /// Whether the plugin version `version` is one `plugin_version` accepts (validated when the
    /// spec was read).
    pub fn accepts(&self, version: &semver::Version) -> bool {
        semver::VersionReq::parse(&self.plugin_version).unwrap_or(semver::VersionReq::STAR).matches(version)
    }

    /// `tenant/namespace/name`.
    pub fn fqfn(&self) -> String {
        crate::vocabulary::fqfn(&self.tenant, &self.namespace, &self.name)
    }

    /// The subscription name: the configured one, or one derived from the function's name.
    pub fn subscription(&self) -> String {
        self.subscription_name.clone().unwrap_or_else(|| format!("{}-{}-{}", self.tenant, self.namespace, self.name))
    }

    /// The subscription type, as Pulsar Functions derive it: Failover to retain ordering,
    /// Key_Shared to retain key ordering, Shared otherwise.
    pub fn subscription_type(&self) -> SubscriptionType {
        match (self.retain_ordering, self.retain_key_ordering) {
            (true, _) => SubscriptionType::Failover,
            (false, true) => SubscriptionType::KeyShared,
            (false, false) => SubscriptionType::Shared,
        }
    }

    /// What the function's instances subscribe to.
    pub fn subscription_request(&self) -> SubscriptionRequest {
        SubscriptionRequest {
            topics: self.inputs.iter().cloned().chain(self.retry_topic()).collect(),
            topics_pattern: self.topics_pattern.clone(),
            subscription: self.subscription(),
            kind: self.subscription_type(),
            position: self.subscription_position,
        }
    }

    /// How the function's producers are built.
    pub fn producer_settings(&self) -> ProducerSettings {
        ProducerSettings::of(self.producer_config.as_ref())
    }

    /// Where inputs whose call killed their child process are tried again, under the process
    /// runtime: `<first input or name>-<subscription>-RETRY`, as Pulsar names a retry letter
    /// topic. Not with a topics pattern (those inputs are retried as other failures are).
    pub fn retry_topic(&self) -> Option<String> {
        if self.runtime != Runtime::Process || self.topics_pattern.is_some() {
            return None;
        }
        let first = self.inputs.first().unwrap_or(&self.name);
        Some(format!("{first}-{}-RETRY", self.subscription()))
    }

    /// The dead-letter topic: the configured one, or `<output or name>-DLQ`.
    pub fn dead_letter(&self) -> String {
        self.dead_letter_topic
            .clone()
            .unwrap_or_else(|| format!("{}-DLQ", self.output.as_deref().unwrap_or(&self.name)))
    }

    /// Checks every field and returns every problem found, each with its field and reason.
    pub fn validate(&self) -> Result<(), SpecError> {
        let mut problems = Vec::new();
        let mut problem = |field: &'static str, reason: String| problems.push(Problem { field, reason });
        for (field, value) in [("tenant", &self.tenant), ("namespace", &self.namespace), ("name", &self.name)] {
            if let Err(reason) = check_name(value) {
                problem(field, format!("{value:?}: {reason}"));
            }
        }
        if self.plugin.trim().is_empty() {
            problem("plugin", "names no plugin (a declared name or a path)".into());
        }
        if let Err(e) = semver::VersionReq::parse(&self.plugin_version) {
            problem("plugin_version", format!("{:?} is not a semver requirement: {e}", self.plugin_version));
        }
        if let Some(digest) = &self.plugin_sha256
            && let Err(reason) = Sha256Digest::parse(digest)
        {
            problem("plugin_sha256", reason);
        }
        if self.inputs.is_empty() && self.topics_pattern.is_none() {
            problem("inputs", "no input topics (give inputs or topics_pattern)".into());
        }
        for topic in &self.inputs {
            if let Err(reason) = check_topic(topic) {
                problem("inputs", format!("{topic:?}: {reason}"));
            }
        }
        if let Some(pattern) = &self.topics_pattern
            && let Err(e) = regex::Regex::new(pattern)
        {
            problem("topics_pattern", format!("{pattern:?} is not a regular expression: {e}"));
        }
        for (field, topic) in
            [("output", &self.output), ("log_topic", &self.log_topic), ("dead_letter_topic", &self.dead_letter_topic)]
        {
            if let Some(topic) = topic
                && let Err(reason) = check_topic(topic)
            {
                problem(field, format!("{topic:?}: {reason}"));
            }
        }
        if let Some(output) = &self.output
            && self.inputs.contains(output)
        {
            problem("output", format!("{output:?} is also an input: the function would read its own results"));
        }
        if self.parallelism == 0 {
            problem("parallelism", "must be at least 1".into());
        }
        if self.retain_ordering && self.retain_key_ordering {
            problem("retain_key_ordering", "cannot be combined with retain_ordering".into());
        }
        if self.timeout_ms == Some(0) {
            problem("timeout_ms", "must be positive (leave it out for no limit)".into());
        }
        if let Some(level) = &self.log_level
            && !LOG_LEVELS.contains(&level.as_str())
        {
            problem("log_level", format!("{level:?} is not one of {}", LOG_LEVELS.join(", ")));
        }
        if let Some(config) = &self.producer_config
            && config.batching
            && config.batching_max_publish_delay_ms == 0
        {
            problem("producer_config", "batching_max_publish_delay_ms must be positive when batching".into());
        }
        problems.extend(self.resources.iter().flat_map(Resources::problems));
        if problems.is_empty() { Ok(()) } else { Err(SpecError::Invalid { name: self.fqfn(), problems }) }
    }
}

/// Checks a topic name: `name` or `persistent://tenant/namespace/name` (or `non-persistent://`).
pub(crate) fn check_topic(topic: &str) -> Result<(), String> {
    let path = topic
        .strip_prefix("persistent://")
        .or_else(|| topic.strip_prefix("non-persistent://"))
        .map(|rest| (rest, 3))
        .unwrap_or((topic, 1));
    let parts: Vec<&str> = path.0.split('/').collect();
    if parts.len() != path.1 || parts.iter().any(|part| part.is_empty()) {
        return Err("a topic is `name` or `persistent://tenant/namespace/name`".into());
    }
    if parts.iter().any(|part| part.chars().any(|c| c.is_whitespace() || c.is_control())) {
        return Err("a topic has no spaces or control characters".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(toml: &str) -> FunctionSpec {
        toml::from_str(toml).expect("test spec parses")
    }

    fn problems(spec: &FunctionSpec) -> Vec<(&'static str, String)> {
        match spec.validate() {
            Ok(()) => Vec::new(),
            Err(SpecError::Invalid { problems, .. }) => problems.into_iter().map(|p| (p.field, p.reason)).collect(),
            Err(other) => panic!("unexpected error {other}"),
        }
    }

    #[test]
    fn defaults_follow_pulsar_functions() {
        let spec = spec("name = \"shout\"\nplugin = \"exclamation\"\ninputs = [\"in\"]\noutput = \"out\"\n");
        assert_eq!(spec.fqfn(), "public/default/shout");
        assert_eq!(spec.processing_guarantees, ProcessingGuarantees::AtLeastOnce);
        assert_eq!((spec.parallelism, spec.max_message_retries), (1, 3));
        assert_eq!(spec.subscription(), "public-default-shout");
        assert_eq!(spec.dead_letter(), "out-DLQ");
        assert!(spec.cleanup_subscription, "deleting a function deletes its subscription");
        assert!(spec.forward_source_message_property, "outputs keep their input's properties");
        assert!(problems(&spec).is_empty());
    }

    #[test]
    fn every_problem_is_named_with_its_field() {
        let spec = spec(
            "name = \"bad name\"\nplugin = \"\"\nplugin_version = \"one\"\nplugin_sha256 = \"abc\"\n\
             parallelism = 0\nretain_ordering = true\nretain_key_ordering = true\ntimeout_ms = 0\n\
             log_level = \"loud\"\noutput = \"a/b\"\n",
        );
        let fields: Vec<&str> = problems(&spec).iter().map(|(field, _)| *field).collect();
        assert_eq!(
            fields,
            [
                "name",
                "plugin",
                "plugin_version",
                "plugin_sha256",
                "inputs",
                "output",
                "parallelism",
                "retain_key_ordering",
                "timeout_ms",
                "log_level"
            ]
        );
    }

    #[test]
    fn a_topics_pattern_must_be_a_regular_expression() {
        let good = spec("name = \"f\"\nplugin = \"p\"\ntopics_pattern = \"persistent://public/default/in-.*\"\n");
        assert!(problems(&good).is_empty());
        let bad = spec("name = \"f\"\nplugin = \"p\"\ntopics_pattern = \"in-(\"\n");
        let found = problems(&bad);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "topics_pattern");
        assert!(found[0].1.starts_with("\"in-(\" is not a regular expression"), "{}", found[0].1);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let error = toml::from_str::<FunctionSpec>("name = \"f\"\nplugin = \"p\"\ninput = [\"x\"]\n")
            .expect_err("typo is refused");
        assert!(error.to_string().contains("unknown field `input`"), "{error}");
    }

    #[test]
    fn output_may_not_be_an_input() {
        let spec = spec("name = \"loop\"\nplugin = \"p\"\ninputs = [\"t\"]\noutput = \"t\"\n");
        assert_eq!(problems(&spec)[0].0, "output");
    }

    #[test]
    fn topics_may_be_fully_qualified() {
        assert!(check_topic("persistent://public/default/in").is_ok());
        assert!(check_topic("in").is_ok());
        assert!(check_topic("persistent://public/in").is_err());
        assert!(check_topic("has space").is_err());
    }

    #[test]
    fn files_are_read_by_extension() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let json = dir.path().join("f.json");
        std::fs::write(&json, r#"{"name":"f","plugin":"p","inputs":["in"],"parallelism":2}"#).expect("write");
        assert_eq!(FunctionSpec::from_file(&json).expect("valid JSON spec").parallelism, 2);

        let bad = dir.path().join("g.toml");
        std::fs::write(&bad, "name = \"g\"\nplugin = \"p\"\ninputs = [\"in\"]\nparallelism = 0\n").expect("write");
        let error = FunctionSpec::from_file(&bad).expect_err("parallelism 0 is refused").to_string();
        assert_eq!(error, "function spec public/default/g is invalid: parallelism: must be at least 1");

        let yaml = dir.path().join("h.yaml");
        std::fs::write(&yaml, "name: h").expect("write");
        assert!(matches!(FunctionSpec::from_file(&yaml), Err(SpecError::Format { .. })));

        let broken = dir.path().join("i.toml");
        std::fs::write(&broken, "name = ").expect("write");
        assert!(matches!(FunctionSpec::from_file(&broken), Err(SpecError::Parse { format: "TOML", .. })));
    }
}
