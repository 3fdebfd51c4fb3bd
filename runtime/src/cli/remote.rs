//! `pfn functions` and `pfn topics`: commands that talk to a running worker's endpoint.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::{
    admin_client::{AdminClient, DEFAULT_ADMIN_URL, FormMethod},
    deploy_flags::ConfigFlags,
    report::{Format, print},
};
use crate::{
    endpoint::{
        client::{Connection, ask},
        protocol::{Request, TriggerAnswer},
    },
    io::{
        lines::{InputFormat, OutputFormat},
        transport::SubscriptionType,
    },
    state::StateEntry,
};

/// Where the worker listens.
#[derive(Debug, Args)]
pub struct WorkerSocket {
    /// The worker's endpoint socket (default: `worker.sock` in the state directory).
    #[arg(long = "worker", env = "PFN_WORKER", global = true)]
    pub socket: Option<PathBuf>,
}

/// The admin API's functions routes.
const FUNCTIONS: &str = "/admin/v3/functions";

/// Where the worker's admin API is, and its token (`list`, `get`, `stats`).
#[derive(Debug, Args)]
pub struct AdminApi {
    /// The admin API's URL.
    #[arg(long, env = "PFN_ADMIN_URL", global = true, default_value = DEFAULT_ADMIN_URL)]
    pub admin_url: String,
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
    fn path(&self) -> anyhow::Result<String> {
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

pub fn functions(command: FunctionsCommand, socket: &Path, api: &AdminApi) -> anyhow::Result<()> {
    let admin = || AdminClient::new(&api.admin_url, api.token.clone());
    match command {
        FunctionsCommand::Localrun(_) => anyhow::bail!("localrun runs a function here, not on a worker"),
        FunctionsCommand::Create { function, config } => deploy(&admin(), FormMethod::Post, &function, config),
        FunctionsCommand::Update { function, config } => deploy(&admin(), FormMethod::Put, &function, config),
        FunctionsCommand::Start { function, instance_id } => lifecycle(&admin(), "start", &function, instance_id),
        FunctionsCommand::Stop { function, instance_id } => lifecycle(&admin(), "stop", &function, instance_id),
        FunctionsCommand::Restart { function, instance_id } => lifecycle(&admin(), "restart", &function, instance_id),
        FunctionsCommand::List { tenant, namespace, output } => {
            print(&admin().get_json(&format!("{FUNCTIONS}/{tenant}/{namespace}"))?, output)
        }
        FunctionsCommand::Get { function, output } => {
            print(&admin().get_json(&format!("{FUNCTIONS}/{}", function.path()?))?, output)
        }
        FunctionsCommand::Stats { function, instance_id, output } => {
            let path = match instance_id {
                Some(id) => format!("{FUNCTIONS}/{}/{id}/stats", function.path()?),
                None => format!("{FUNCTIONS}/{}/stats", function.path()?),
            };
            print(&admin().get_json(&path)?, output)
        }
        FunctionsCommand::Trigger { function, value, timeout_ms } => {
            let function = function.path()?;
            let header = ask(socket, &Request::Trigger { function: function.clone(), value, timeout_ms })?;
            match header.trigger {
                Some(TriggerAnswer::Output { value }) => println!("{value}"),
                Some(TriggerAnswer::Filtered) => eprintln!("{function}: no output (the function returned nothing)"),
                Some(TriggerAnswer::DeadLettered { reason, error }) => {
                    anyhow::bail!("{function}: message dead-lettered ({reason}): {error}")
                }
                None => anyhow::bail!("the worker's answer has no outcome"),
            }
            Ok(())
        }
        FunctionsCommand::Delete { function } => {
            let header = ask(socket, &Request::Delete { function: function.path()? })?;
            let Some(deleted) = header.deleted else { anyhow::bail!("the worker's answer says nothing deleted") };
            let fate = if deleted.subscription_deleted { "deleted" } else { "kept" };
            println!("deleted {}; subscription {} {fate}", deleted.fqfn, deleted.subscription);
            for warning in &deleted.warnings {
                eprintln!("warning: {warning}");
            }
            Ok(())
        }
        FunctionsCommand::Querystate { function, key, counter } => {
            print_json(&ask(socket, &Request::QueryState { function: function.path()?, key, counter })?.state)
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
            print_json(&ask(socket, &Request::PutState { function: function.path()?, entry })?.state)
        }
        FunctionsCommand::Status { function } => {
            let header = ask(socket, &Request::Status { function })?;
            print_json(&serde_json::json!({
                "functions": header.functions.unwrap_or_default(),
                "spec_errors": header.spec_errors.unwrap_or_default(),
                "pulsar": header.pulsar,
            }))
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

pub fn topics(command: TopicsCommand, socket: &Path) -> anyhow::Result<()> {
    match command {
        TopicsCommand::Produce { topic, input_format } => {
            let mut connection =
                Connection::open(socket, &Request::Produce { topic: topic.clone(), format: input_format })?;
            connection.send_all(&mut std::io::stdin().lock())?;
            let header = connection.header()?;
            eprintln!("produced {} messages to {topic}", header.produced.unwrap_or(0));
            Ok(())
        }
        TopicsCommand::Consume { topic, subscription, subscription_type, count, idle_timeout_ms, output_format } => {
            let request = Request::Consume {
                topic,
                subscription,
                subscription_type,
                count,
                idle_timeout_ms,
                format: output_format,
            };
            let mut connection = Connection::open(socket, &request)?;
            connection.header()?;
            connection.copy_lines(&mut std::io::stdout().lock())?;
            Ok(())
        }
        TopicsCommand::CreateSubscription { topic, subscription, subscription_type } => {
            ask(socket, &Request::CreateSubscription { topic, subscription, subscription_type })?;
            Ok(())
        }
        TopicsCommand::Stats { topic } => print_json(&ask(socket, &Request::TopicStats { topic })?.topic),
    }
}
