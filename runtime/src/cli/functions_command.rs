//! `pfn functions`: the admin API's function routes from the command line, as pulsar-admin
//! names them.

use std::path::Path;

use clap::Subcommand;

use super::{
    admin_client::{AdminClient, FormMethod},
    deploy_flags::ConfigFlags,
    remote::{AdminApi, FUNCTIONS, FunctionName, client, print_json, segment},
    report::{Format, print},
};
use crate::state::StateEntry;

#[derive(Debug, Subcommand)]
pub enum FunctionsCommand {
    /// Create a function on the worker, uploading its plugin when `--plugin` names a file
    /// (admin API).
    Create {
        #[command(flatten)]
        function: FunctionName,
        #[command(flatten)]
        config: ConfigFlags,
    },
    /// Update a function: only the fields given change (admin API).
    Update {
        #[command(flatten)]
        function: FunctionName,
        #[command(flatten)]
        config: ConfigFlags,
    },
    /// Start a stopped function, or one instance (admin API).
    Start {
        #[command(flatten)]
        function: FunctionName,
        #[arg(long)]
        instance_id: Option<u32>,
    },
    /// Stop a function, or one instance, after the batch in hand; its subscription stays
    /// (admin API).
    Stop {
        #[command(flatten)]
        function: FunctionName,
        #[arg(long)]
        instance_id: Option<u32>,
    },
    /// Restart a function, or one instance (admin API).
    Restart {
        #[command(flatten)]
        function: FunctionName,
        #[arg(long)]
        instance_id: Option<u32>,
    },
    /// Run one function in the foreground, on Pulsar or on embedded topics (reached with
    /// `pfn topics --worker SOCKET`); exits non-zero on a fatal error.
    Localrun(super::localrun::LocalrunArgs),
    /// Print the Kubernetes manifests that run a function (from --spec, or the worker's spec).
    K8sManifest(super::k8s_manifest::ManifestArgs),
    /// List the functions of a namespace (admin API).
    List {
        #[arg(long, default_value = "public")]
        tenant: String,
        #[arg(long, default_value = "default")]
        namespace: String,
        #[arg(long, value_enum, default_value_t)]
        output: Format,
    },
    /// Print a function's spec (admin API).
    Get {
        #[command(flatten)]
        function: FunctionName,
        #[arg(long, value_enum, default_value_t)]
        output: Format,
    },
    /// Print a function's stats, or one instance's, with Pulsar's field names (admin API).
    Stats {
        #[command(flatten)]
        function: FunctionName,
        #[arg(long)]
        instance_id: Option<u32>,
        #[arg(long, value_enum, default_value_t)]
        output: Format,
    },
    /// Publish a value to a function's input and print the function's output for it.
    Trigger {
        #[command(flatten)]
        function: FunctionName,
        #[arg(long, alias = "trigger-value")]
        value: String,
        /// How long to wait for the outcome, in milliseconds.
        #[arg(long, default_value_t = 30_000)]
        timeout_ms: u64,
    },
    /// Print one entry of a function's state (JSON, as Pulsar's `FunctionState`).
    Querystate {
        #[command(flatten)]
        function: FunctionName,
        #[arg(long, short = 'k')]
        key: String,
        /// Read the value as a counter (`numberValue`).
        #[arg(long)]
        counter: bool,
        #[arg(long, value_enum, default_value_t)]
        output: Format,
    },
    /// Set one entry of a function's state; returns once it is on disk.
    Putstate {
        #[command(flatten)]
        function: FunctionName,
        #[arg(long, short = 'k', required_unless_present = "state")]
        key: Option<String>,
        /// The value, as text.
        #[arg(long, required_unless_present_any = ["counter", "state"], conflicts_with = "counter")]
        value: Option<String>,
        /// The entry as Pulsar's `FunctionState` JSON (`{"key": ..., "stringValue": ...}`).
        #[arg(long, conflicts_with_all = ["key", "value", "counter"])]
        state: Option<String>,
        /// The value, as a counter.
        #[arg(long, allow_hyphen_values = true)]
        counter: Option<i64>,
    },
    /// Print the status of every function, or of one (JSON).
    Status {
        /// `tenant/namespace/name`.
        function: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        output: Format,
    },
    /// Stop a function for good: its instances stop, its subscription is deleted unless its
    /// spec says `cleanup_subscription = false`, and its spec file is removed.
    Delete {
        #[command(flatten)]
        function: FunctionName,
    },
}

pub fn functions(command: FunctionsCommand, socket: &Path, api: &AdminApi) -> anyhow::Result<()> {
    let admin = client(socket, api);
    match command {
        FunctionsCommand::Localrun(_) => anyhow::bail!("localrun runs a function here, not on a worker"),
        FunctionsCommand::K8sManifest(args) => super::k8s_manifest::print(args, &admin),
        FunctionsCommand::Create { function, config } => deploy(&admin, FormMethod::Post, &function, config),
        FunctionsCommand::Update { function, config } => deploy(&admin, FormMethod::Put, &function, config),
        FunctionsCommand::Start { function, instance_id } => lifecycle(&admin, "start", &function, instance_id),
        FunctionsCommand::Stop { function, instance_id } => lifecycle(&admin, "stop", &function, instance_id),
        FunctionsCommand::Restart { function, instance_id } => lifecycle(&admin, "restart", &function, instance_id),
        FunctionsCommand::List { tenant, namespace, output } => {
            print(&admin.get_json(&format!("{FUNCTIONS}/{tenant}/{namespace}"), &[])?, output)
        }
        FunctionsCommand::Get { function, output } => {
            print(&admin.get_json(&format!("{FUNCTIONS}/{}", function.path()?), &[])?, output)
        }
        FunctionsCommand::Stats { function, instance_id, output } => {
            let path = match instance_id {
                Some(id) => format!("{FUNCTIONS}/{}/{id}/stats", function.path()?),
                None => format!("{FUNCTIONS}/{}/stats", function.path()?),
            };
            print(&admin.get_json(&path, &[])?, output)
        }
        FunctionsCommand::Trigger { function, value, timeout_ms } => {
            let function = function.path()?;
            let query = [("timeout_ms", timeout_ms.to_string())];
            let (status, output) =
                admin.post_bytes(&format!("{FUNCTIONS}/{function}/trigger"), &query, value.as_bytes())?;
            if status == 204 {
                eprintln!("{function}: no output (the function returned nothing)");
            } else {
                println!("{}", String::from_utf8_lossy(&output));
            }
            Ok(())
        }
        FunctionsCommand::Delete { function } => {
            let deleted = admin.delete_json(&format!("{FUNCTIONS}/{}", function.path()?))?;
            let fate = if deleted["subscriptionDeleted"] == true { "deleted" } else { "kept" };
            let text = |field: &str| deleted[field].as_str().unwrap_or_default().to_owned();
            println!("deleted {}; subscription {} {fate}", text("fqfn"), text("subscription"));
            for warning in deleted["warnings"].as_array().into_iter().flatten() {
                eprintln!("warning: {}", warning.as_str().unwrap_or_default());
            }
            Ok(())
        }
        FunctionsCommand::Querystate { function, key, counter, output } => {
            let path = format!("{FUNCTIONS}/{}/state/{}", function.path()?, segment(&key));
            print(&admin.get_json(&path, &[("counter", counter.to_string())])?, output)
        }
        FunctionsCommand::Putstate { function, key, value, counter, state } => {
            let entry = match state {
                Some(json) => serde_json::from_str(&json)
                    .map_err(|error| anyhow::anyhow!("--state is not a FunctionState: {error}"))?,
                None => StateEntry {
                    key: key.unwrap_or_default(),
                    string_value: value,
                    number_value: counter,
                    ..StateEntry::default()
                },
            };
            let path = format!("{FUNCTIONS}/{}/state/{}", function.path()?, segment(&entry.key));
            admin.post_bytes(&path, &[], &serde_json::to_vec(&entry)?)?;
            print_json(&entry)
        }
        FunctionsCommand::Status { function, output } => {
            let query: Vec<(&str, String)> = function.into_iter().map(|function| ("function", function)).collect();
            print(&admin.get_json("/pfn/v1/status", &query)?, output)
        }
    }
}

/// `create` or `update`: prints what the worker did, as one JSON line.
fn deploy(admin: &AdminClient, method: FormMethod, function: &FunctionName, config: ConfigFlags) -> anyhow::Result<()> {
    let form = config.into_form()?;
    let answer = admin.send_form(method, &format!("{FUNCTIONS}/{}", function.path()?), form.form())?;
    println!("{}", serde_json::to_string(&answer)?);
    Ok(())
}

/// `start`, `stop` or `restart` of a function or one instance.
fn lifecycle(admin: &AdminClient, action: &str, function: &FunctionName, instance: Option<u32>) -> anyhow::Result<()> {
    let path = match instance {
        Some(id) => format!("{FUNCTIONS}/{}/{id}/{action}", function.path()?),
        None => format!("{FUNCTIONS}/{}/{action}", function.path()?),
    };
    let answer = admin.post_empty(&path)?;
    println!("{}", answer["result"].as_str().unwrap_or_default());
    Ok(())
}
