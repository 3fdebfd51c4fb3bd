//! `pfn functions k8s-manifest`: what runs a function on Kubernetes (see [`crate::kubernetes`]),
//! from a spec file or from the spec a worker runs, as YAML or JSON.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use serde_json::{Value, json};

use super::{admin_client::AdminClient, remote::FunctionName};
use crate::{
    config::FunctionSpec,
    kubernetes::{ManifestOptions, manifests},
    verify::Sha256Digest,
};

#[derive(Debug, Args)]
pub struct ManifestArgs {
    /// The function's spec file; without it, the spec of the function named is asked of the
    /// worker.
    #[arg(long)]
    pub spec: Option<PathBuf>,
    #[command(flatten)]
    pub function: FunctionName,
    /// The image with the `pfn` binary.
    #[arg(long, default_value = "pfn:latest")]
    pub image: String,
    /// The Pulsar service URL the instances connect to.
    #[arg(long, env = "PFN_PULSAR_URL")]
    pub pulsar_url: String,
    /// The plugin library to pin by its sha256 (default: the spec's plugin, when it names a file).
    #[arg(long)]
    pub plugin: Option<PathBuf>,
    /// An image holding the plugin at `/plugins/<file name>` (default: the pfn image holds it).
    #[arg(long)]
    pub plugin_image: Option<String>,
    /// The Kubernetes namespace of the objects.
    #[arg(long)]
    pub k8s_namespace: Option<String>,
    /// The Secret holding the function's secrets, a key per secret (default: `<name>-secrets`).
    #[arg(long)]
    pub secret_name: Option<String>,
    #[arg(long, value_enum, default_value_t)]
    pub output: ManifestFormat,
}

/// How the manifests are printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum ManifestFormat {
    /// YAML documents separated by `---`.
    #[default]
    Yaml,
    /// One JSON `List` of the objects.
    Json,
}

/// Prints the manifests; `admin` is asked for the spec when no file is given.
pub fn print(args: ManifestArgs, admin: &AdminClient) -> anyhow::Result<()> {
    let spec = match &args.spec {
        Some(path) => FunctionSpec::from_file(path)?,
        None => {
            let path = format!("/admin/v3/functions/{}", args.function.path()?);
            serde_json::from_value(admin.get_json(&path, &[])?).context("the worker's spec")?
        }
    };
    let plugin = match &args.plugin {
        Some(plugin) => plugin.clone(),
        None if Path::new(&spec.plugin).is_file() => PathBuf::from(&spec.plugin),
        None => anyhow::bail!(
            "the spec's plugin {:?} is not a file here: pass --plugin FILE, the library to pin by its sha256",
            spec.plugin
        ),
    };
    let plugin_sha256 =
        Sha256Digest::of_file(&plugin).with_context(|| format!("cannot read the plugin {}", plugin.display()))?;
    let plugin_file = plugin.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    let options = ManifestOptions {
        image: args.image,
        pulsar_url: args.pulsar_url,
        plugin_file,
        plugin_sha256,
        plugin_image: args.plugin_image,
        namespace: args.k8s_namespace,
        secret_name: args.secret_name,
    };
    let objects = manifests(&spec, &options);
    match args.output {
        ManifestFormat::Json => {
            let list = json!({ "apiVersion": "v1", "kind": "List", "items": objects });
            println!("{}", serde_json::to_string_pretty(&list)?);
        }
        ManifestFormat::Yaml => {
            let documents: Vec<String> =
                objects.iter().map(yaml_serde::to_string::<Value>).collect::<Result<_, _>>()?;
            print!("{}", documents.join("---\n"));
        }
    }
    Ok(())
}
