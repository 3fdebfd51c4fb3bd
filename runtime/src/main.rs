use std::io::IsTerminal;

use clap::Parser;
use pfn::{
    cli::{Cli, execute},
    plugin_log::filter::PluginLevelFilter,
};
use tracing_subscriber::{EnvFilter, layer::SubscriberExt, util::SubscriberInitExt};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let directives = EnvFilter::try_new(&cli.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let output =
        tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal());
    tracing_subscriber::registry().with(PluginLevelFilter::new(directives)).with(output).init();
    match execute(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
