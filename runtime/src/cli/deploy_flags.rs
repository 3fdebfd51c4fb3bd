//! The flags of `pfn functions create|update`, as pulsar-admin names them, and the form they
//! become: the function config as JSON, and the plugin file with its sha256 when `--plugin`
//! names a file (otherwise it names a plugin the worker has).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use serde_json::{Map, Value};
use ureq::unversioned::multipart::{Form, Part};

use crate::verify::Sha256Digest;

/// What `create` and `update` take besides the function's name.
#[derive(Debug, Args)]
pub struct ConfigFlags {
    /// A spec file (TOML or JSON); the flags below override its fields.
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// The plugin: a library file to upload, or the declared name of one the worker has.
    #[arg(long)]
    pub plugin: Option<String>,
    /// Input topics, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub inputs: Vec<String>,
    #[arg(long)]
    pub topics_pattern: Option<String>,
    /// The output topic.
    #[arg(long)]
    pub output: Option<String>,
    #[arg(long)]
    pub log_topic: Option<String>,
    #[arg(long)]
    pub parallelism: Option<u32>,
    /// `ATLEAST_ONCE`, `ATMOST_ONCE`, `EFFECTIVELY_ONCE` or `MANUAL` (or pfn's snake_case).
    #[arg(long)]
    pub processing_guarantees: Option<String>,
    /// User config, as a JSON object.
    #[arg(long)]
    pub user_config: Option<String>,
    /// Secrets, as a JSON object of name to source.
    #[arg(long)]
    pub secrets: Option<String>,
    /// The function's log level (`--log-level` is the command's own).
    #[arg(long)]
    pub function_log_level: Option<String>,
    /// The subscription's name.
    #[arg(long)]
    pub subs_name: Option<String>,
    /// `latest` or `earliest`.
    #[arg(long)]
    pub subs_position: Option<String>,
    #[arg(long)]
    pub retain_ordering: Option<bool>,
    #[arg(long)]
    pub retain_key_ordering: Option<bool>,
    #[arg(long)]
    pub max_message_retries: Option<u32>,
    #[arg(long)]
    pub dead_letter_topic: Option<String>,
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    #[arg(long)]
    pub cleanup_subscription: Option<bool>,
}

/// A create's or an update's form, ready to send.
#[derive(Debug)]
pub struct DeployForm {
    config: String,
    upload: Option<(Vec<u8>, String)>,
}

impl DeployForm {
    pub fn form(&self) -> Form<'_> {
        let form = Form::new().text("functionConfig", &self.config);
        match &self.upload {
            Some((bytes, sha256)) => form.part("data", Part::bytes(bytes).file_name("plugin")).text("sha256", sha256),
            None => form,
        }
    }
}

impl ConfigFlags {
    /// The form: the spec file's fields, overridden by the flags given.
    pub fn into_form(self) -> anyhow::Result<DeployForm> {
        let mut config = match &self.spec {
            Some(path) => read_spec(path)?,
            None => Map::new(),
        };
        let mut set = |key: &str, value: Option<Value>| {
            if let Some(value) = value {
                config.insert(key.to_owned(), value);
            }
        };
        set("inputs", (!self.inputs.is_empty()).then(|| self.inputs.clone().into()));
        set("topics_pattern", self.topics_pattern.clone().map(Value::from));
        set("output", self.output.clone().map(Value::from));
        set("log_topic", self.log_topic.clone().map(Value::from));
        set("parallelism", self.parallelism.map(Value::from));
        set("processing_guarantees", self.processing_guarantees.clone().map(Value::from));
        set("user_config", self.user_config.as_deref().map(|text| json_object("--user-config", text)).transpose()?);
        set("secrets", self.secrets.as_deref().map(|text| json_object("--secrets", text)).transpose()?);
        set("log_level", self.function_log_level.clone().map(Value::from));
        set("subscription_name", self.subs_name.clone().map(Value::from));
        set("subscription_position", self.subs_position.clone().map(Value::from));
        set("retain_ordering", self.retain_ordering.map(Value::from));
        set("retain_key_ordering", self.retain_key_ordering.map(Value::from));
        set("max_message_retries", self.max_message_retries.map(Value::from));
        set("dead_letter_topic", self.dead_letter_topic.clone().map(Value::from));
        set("timeout_ms", self.timeout_ms.map(Value::from));
        set("cleanup_subscription", self.cleanup_subscription.map(Value::from));
        let mut upload = None;
        match self.plugin {
            Some(plugin) if std::path::Path::new(&plugin).is_file() => {
                let bytes = std::fs::read(&plugin).with_context(|| format!("cannot read the plugin {plugin}"))?;
                let sha256 = Sha256Digest::of(&bytes).to_string();
                config.remove("plugin");
                upload = Some((bytes, sha256));
            }
            Some(plugin) => {
                config.insert("plugin".into(), plugin.into());
            }
            None => {}
        }
        Ok(DeployForm { config: Value::Object(config).to_string(), upload })
    }
}

/// A spec file's fields: TOML, or JSON for a `.json` file.
fn read_spec(path: &std::path::Path) -> anyhow::Result<Map<String, Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let value: Value = if path.extension().is_some_and(|extension| extension == "json") {
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?
    } else {
        toml::from_str(&text).with_context(|| format!("{} is not TOML", path.display()))?
    };
    match value {
        Value::Object(config) => Ok(config),
        _ => anyhow::bail!("{} is not a table of fields", path.display()),
    }
}

fn json_object(flag: &str, text: &str) -> anyhow::Result<Value> {
    let value: Value = serde_json::from_str(text).with_context(|| format!("{flag} is not JSON"))?;
    anyhow::ensure!(value.is_object(), "{flag} is not a JSON object");
    Ok(value)
}
