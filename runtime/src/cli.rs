//! The `pfn` command line.

mod admin_client;
mod choices;
mod deploy_flags;
mod functions_command;
mod k8s_manifest;
mod localrun;
mod remote;
mod report;
mod topics_command;
mod unix_connector;
mod worker;

use std::{collections::BTreeMap, path::PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{
    context::FunctionIdentity,
    io::lines::{InputFormat, OutputFormat},
    loader::{Loader, Pin, PluginCache},
    run::{RunOptions, RunReport, run},
    verify::Sha256Digest,
    vocabulary::Runtime,
};

/// Run stream functions written in Rust as verified plugins.
#[derive(Debug, Parser)]
#[command(name = "pfn", version)]
pub struct Cli {
    /// Log filter (error, warn, info, debug, trace, or a tracing directive).
    #[arg(long, global = true, env = "PFN_LOG", default_value = "info")]
    pub log_level: String,
    /// Where verified plugin copies are kept.
    #[arg(long, global = true, env = "PFN_PLUGIN_CACHE")]
    pub plugin_cache: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a plugin over lines from a file or stdin.
    Run(RunArgs),
    /// Look at and pin plugin files.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Run every function of a directory (on embedded topics, or Pulsar with --pulsar-url),
    /// reloading plugins as they change.
    Worker(worker::WorkerArgs),
    /// Trigger functions and look at their status in a running worker.
    Functions {
        #[command(flatten)]
        worker: remote::WorkerSocket,
        #[command(flatten)]
        api: remote::AdminApi,
        #[command(subcommand)]
        command: functions_command::FunctionsCommand,
    },
    /// Produce to and consume from a running worker's topics (embedded or Pulsar).
    Topics {
        #[command(flatten)]
        worker: remote::WorkerSocket,
        #[command(flatten)]
        api: remote::AdminApi,
        #[command(subcommand)]
        command: topics_command::TopicsCommand,
    },
    /// Host one instance for a worker (started by the worker under the process runtime).
    #[command(hide = true)]
    InstanceHost,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The plugin library (.so).
    #[arg(long)]
    pub plugin: PathBuf,
    /// The expected sha256 of the plugin file; without it the sidecar manifest pins it.
    #[arg(long, value_parser = Sha256Digest::parse)]
    pub sha256: Option<Sha256Digest>,
    /// Input file, one message per line (default: stdin).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Where the function's state is kept, to read again by later runs (default: a temporary
    /// directory, removed at the end).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Output file, one result per line (default: stdout).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Where failed messages go, one JSON line each (default: beside the output).
    #[arg(long)]
    pub dead_letter: Option<PathBuf>,
    /// Where messages the function publishes to topics go, one JSON line each with its topic
    /// (default: beside the output).
    #[arg(long)]
    pub published: Option<PathBuf>,
    /// A user-config entry handed to the function (repeatable).
    #[arg(long = "user-config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub user_config: Vec<(String, String)>,
    /// A secret the function reads by NAME, from REFERENCE: `env:VAR`, `file:PATH` or
    /// `worker:KEY` (repeatable).
    #[arg(long = "secret", value_name = "NAME=REFERENCE", value_parser = parse_key_value)]
    pub secrets: Vec<(String, String)>,
    /// A TOML file of `name = "value"` secrets, for references `worker:NAME`.
    #[arg(long)]
    pub secrets_file: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t)]
    pub input_format: InputFormat,
    #[arg(long, value_enum, default_value_t)]
    pub output_format: OutputFormat,
    /// The function's name (default: the plugin's name).
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long, default_value = "public")]
    pub tenant: String,
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// Where the function runs: `thread` (in this process) or `process` (a child process, so
    /// that an abort or a segfault costs one line, not the run).
    #[arg(long, value_enum, default_value_t)]
    pub runtime: Runtime,
    /// The longest one call may take, in milliseconds, before its child process is killed and
    /// the line dead-lettered (process runtime).
    #[arg(long)]
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Print what a plugin file declares, and whether this runtime accepts it.
    Inspect {
        path: PathBuf,
        /// Check the file against this sha256 as well.
        #[arg(long, value_parser = Sha256Digest::parse)]
        sha256: Option<Sha256Digest>,
        #[arg(long, value_enum, default_value_t)]
        output: OutputKind,
    },
    /// Verify a plugin file and write its sidecar manifest (name, version, sha256).
    Pin { path: PathBuf },
}

/// How commands print what they report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputKind {
    #[default]
    Table,
    Json,
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    let (key, value) = text.split_once('=').ok_or_else(|| format!("`{text}` is not KEY=VALUE"))?;
    if key.is_empty() {
        return Err(format!("`{text}` has an empty key"));
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// Runs a parsed command line.
pub fn execute(cli: Cli) -> anyhow::Result<()> {
    let state_dir = std::env::var_os("PFN_STATE_DIR").map_or_else(default_state_dir, PathBuf::from);
    let socket = |given: Option<PathBuf>| given.unwrap_or_else(|| default_socket(&state_dir));
    match cli.command {
        Command::Worker(args) => {
            let state_dir = args.state_dir.clone().unwrap_or(state_dir.clone());
            let cache = cli.plugin_cache.unwrap_or_else(|| state_dir.join("plugin-cache"));
            worker::run(args, state_dir, Loader::new(PluginCache::new(cache)))
        }
        Command::Functions { worker, command: functions_command::FunctionsCommand::Localrun(args), .. } => {
            localrun::run(args, worker.socket, cli.plugin_cache)
        }
        Command::Functions { worker, api, command } => {
            functions_command::functions(command, &socket(worker.socket), &api)
        }
        Command::Topics { worker, api, command } => topics_command::topics(command, &socket(worker.socket), &api),
        Command::Run(args) => run_plugin(args, &default_loader(cli.plugin_cache)),
        Command::Plugin(command) => plugin(command, &default_loader(cli.plugin_cache)),
        Command::InstanceHost => Ok(crate::process::host::host_instance()?),
    }
}

/// Where a worker's Unix socket is when not told otherwise: `worker.sock` in the state
/// directory.
pub(crate) fn default_socket(state_dir: &std::path::Path) -> PathBuf {
    state_dir.join("worker.sock")
}

/// The default state directory: `$PFN_STATE_DIR`, else `pfn` under the system's temporary
/// directory.
fn default_state_dir() -> PathBuf {
    std::env::temp_dir().join("pfn")
}

/// The loader of the one-shot commands: private copies in `cache` or the default place.
fn default_loader(cache: Option<PathBuf>) -> Loader {
    Loader::new(PluginCache::new(cache.unwrap_or_else(PluginCache::default_root)))
}

/// `pfn run`.
fn run_plugin(args: RunArgs, loader: &Loader) -> anyhow::Result<()> {
    let options = RunOptions {
        plugin: args.plugin,
        pin: args.sha256.map_or(Pin::Manifest, Pin::Digest),
        input: args.input,
        state_dir: args.state_dir,
        secrets: args.secrets.into_iter().collect(),
        secrets_file: args.secrets_file,
        output: args.output,
        dead_letter: args.dead_letter,
        published: args.published,
        input_format: args.input_format,
        output_format: args.output_format,
        identity: FunctionIdentity {
            tenant: args.tenant,
            namespace: args.namespace,
            name: args.name.unwrap_or_default(),
            instance_id: 0,
            num_instances: 1,
            input_topics: Vec::new(),
            output_topic: None,
            user_config: args.user_config.into_iter().collect::<BTreeMap<_, _>>(),
        },
        runtime: args.runtime,
        timeout_ms: args.timeout_ms,
    };
    let RunReport { summary, dead_letters, published } = run(options, loader)?;
    eprintln!("pfn run: {summary}");
    if summary.dead_lettered > 0 {
        eprintln!("pfn run: dead letters in {}", dead_letters.display());
    }
    if summary.published > 0 {
        eprintln!("pfn run: published messages in {}", published.display());
    }
    Ok(())
}

/// `pfn plugin inspect|pin`.
fn plugin(command: PluginCommand, loader: &Loader) -> anyhow::Result<()> {
    match command {
        PluginCommand::Inspect { path, sha256, output } => {
            let opened = loader.open(&path, sha256.map_or(Pin::Unpinned, Pin::Digest))?;
            let info = opened.info.clone();
            let verdict = opened.accept().map(|_| ()).map_err(|refusal| refusal.to_string());
            match output {
                OutputKind::Json => {
                    let mut value = serde_json::to_value(&info)?;
                    value["accepted"] = verdict.is_ok().into();
                    if let Err(reason) = &verdict {
                        value["refusal"] = reason.clone().into();
                    }
                    println!("{}", serde_json::to_string_pretty(&value)?);
                }
                OutputKind::Table => {
                    println!("name            {}", info.name);
                    println!("version         {}", info.version);
                    println!("abi_version     {}", info.abi_version);
                    println!("sha256          {}", info.sha256);
                    println!("panic_strategy  {}", info.panic_strategy);
                    match &verdict {
                        Ok(()) => println!("accepted        yes"),
                        Err(reason) => println!("accepted        no: {reason}"),
                    }
                }
            }
            Ok(())
        }
        PluginCommand::Pin { path } => {
            let opened = loader.open(&path, Pin::Unpinned)?;
            let manifest = opened.manifest();
            opened.accept()?;
            let written = manifest.write_for(&path)?;
            println!(
                "pinned {} {} (sha256 {}) in {}",
                manifest.name,
                manifest.version,
                manifest.sha256,
                written.display()
            );
            Ok(())
        }
    }
}
