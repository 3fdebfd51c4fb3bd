//! `pfn functions` and `pfn topics`: commands that talk to a running worker's admin API, over
//! its Unix socket or over TCP.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use clap::{Args, Subcommand};

use super::{
    admin_client::{AdminClient, FormMethod},
    deploy_flags::ConfigFlags,
    report::{Format, print},
};
use crate::{
    io::{
        lines::{InputFormat, OutputFormat},
        transport::SubscriptionType,
    },
    state::StateEntry,
};

/// Where the worker listens.
#[derive(Debug, Args)]
pub struct WorkerSocket {
    /// The worker's Unix socket (default: `worker.sock` in the state directory).
    #[arg(long = "worker", env = "PFN_WORKER", global = true)]
    pub socket: Option<PathBuf>,
}

/// The admin API's functions routes.
const FUNCTIONS: &str = "/admin/v3/functions";

/// Where the worker's admin API is over TCP, and its token; without a URL, the worker's
/// Unix socket is used.
#[derive(Debug, Args)]
pub struct AdminApi {
    /// The admin API's URL (`http://127.0.0.1:6750`); default: the worker's socket.
    #[arg(long, env = "PFN_ADMIN_URL", global = true)]
    pub admin_url: Option<String>,
    /// The bearer token the worker was given.
    #[arg(long, env = "PFN_ADMIN_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
}

/// Which function, as pulsar-admin names one: `--fqfn`, or `--tenant --namespace --name`, or
/// the fully qualified name alone.
#[derive(Debug, Args)]
pub struct FunctionName {
    /// `tenant/namespace/name`.
    #[arg(conflicts_with_all = ["fqfn", "name"])]
    pub function: Option<String>,
    #[arg(long)]
    pub fqfn: Option<String>,
    #[arg(long, default_value = "public")]
    pub tenant: String,
    #[arg(long, default_value = "default")]
    pub namespace: String,
    #[arg(long)]
    pub name: Option<String>,
}

impl FunctionName {
    /// The function's path under `/admin/v3/functions`: `tenant/namespace/name`.
    pub(super) fn path(&self) -> anyhow::Result<String> {
        if let Some(fqfn) = self.function.as_ref().or(self.fqfn.as_ref()) {
            if fqfn.split('/').count() != 3 || fqfn.split('/').any(str::is_empty) {
                anyhow::bail!("{fqfn:?} is not tenant/namespace/name");
            }
            return Ok(fqfn.clone());
        }
        let name = self.name.as_ref().ok_or_else(|| anyhow::anyhow!("name the function: FQFN, --fqfn or --name"))?;
        Ok(format!("{}/{}/{name}", self.tenant, self.namespace))
    }
}

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

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Publish one message per stdin line.
    Produce {
        topic: String,
        #[arg(long, value_enum, default_value_t)]
        input_format: InputFormat,
    },
    /// Print messages of a subscription, acknowledging each once printed.
    Consume {
        topic: String,
        #[arg(long, short = 's', default_value = "pfn-cli")]
        subscription: String,
        #[arg(long, value_enum, default_value_t)]
        subscription_type: SubscriptionType,
        /// Stop after this many messages.
        #[arg(long, short = 'n')]
        count: Option<u64>,
        /// Stop when no message came for this many milliseconds.
        #[arg(long)]
        idle_timeout_ms: Option<u64>,
        #[arg(long, value_enum, default_value_t)]
        output_format: OutputFormat,
    },
    /// Create a subscription, so that it keeps every message published from now on.
    CreateSubscription {
        topic: String,
        #[arg(long, short = 's')]
        subscription: String,
        #[arg(long, value_enum, default_value_t)]
        subscription_type: SubscriptionType,
    },
    /// Print a topic's counts (JSON).
    Stats { topic: String },
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// The client of the worker at `--admin-url`, else on its socket.
fn client(socket: &Path, api: &AdminApi) -> AdminClient {
    match &api.admin_url {
        Some(url) => AdminClient::over_tcp(url, api.token.clone()),
        None => AdminClient::over_socket(socket),
    }
}

/// `text` as one segment of a path: a state key may hold `/` or `?`.
fn segment(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A value as its name in the API's query strings (serde's).
fn query_name(value: &impl serde::Serialize) -> String {
    serde_json::to_value(value).ok().and_then(|value| value.as_str().map(str::to_owned)).unwrap_or_default()
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

pub fn topics(command: TopicsCommand, socket: &Path, api: &AdminApi) -> anyhow::Result<()> {
    let admin = client(socket, api);
    match command {
        TopicsCommand::Produce { topic, input_format } => {
            let query = [("topic", topic.clone()), ("format", query_name(&input_format))];
            let answer = admin.post_reader("/pfn/v1/topics/produce", &query, &mut std::io::stdin().lock())?;
            eprintln!("produced {} messages to {topic}", answer["produced"].as_u64().unwrap_or(0));
            Ok(())
        }
        TopicsCommand::Consume { topic, subscription, subscription_type, count, idle_timeout_ms, output_format } => {
            let mut query = vec![
                ("topic", topic),
                ("subscription", subscription),
                ("subscription_type", query_name(&subscription_type)),
                ("format", query_name(&output_format)),
            ];
            query.extend(count.map(|count| ("count", count.to_string())));
            query.extend(idle_timeout_ms.map(|idle| ("idle_timeout_ms", idle.to_string())));
            let mut messages = admin.get_stream("/pfn/v1/topics/consume", &query)?;
            let mut out = std::io::stdout().lock();
            std::io::copy(&mut messages, &mut out)?;
            out.flush()?;
            Ok(())
        }
        TopicsCommand::CreateSubscription { topic, subscription, subscription_type } => {
            let query = [
                ("topic", topic),
                ("subscription", subscription),
                ("subscription_type", query_name(&subscription_type)),
            ];
            Ok(admin.put_empty("/pfn/v1/topics/subscription", &query)?)
        }
        TopicsCommand::Stats { topic } => print_json(&admin.get_json("/pfn/v1/topics/stats", &[("topic", topic)])?),
    }
}
