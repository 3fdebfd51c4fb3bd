//! What `pfn functions` and `pfn topics` share: where the worker is (its Unix socket, or its
//! admin API over TCP with a token), its client, and how a function is named.

use std::path::{Path, PathBuf};

use clap::Args;

use super::admin_client::AdminClient;

/// Where the worker listens.
#[derive(Debug, Args)]
pub struct WorkerSocket {
    /// The worker's Unix socket (default: `worker.sock` in the state directory).
    #[arg(long = "worker", env = "PFN_WORKER", global = true)]
    pub socket: Option<PathBuf>,
}

/// The admin API's functions routes.
pub(super) const FUNCTIONS: &str = "/admin/v3/functions";

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

pub(super) fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// The client of the worker at `--admin-url`, else on its socket.
pub(super) fn client(socket: &Path, api: &AdminApi) -> AdminClient {
    match &api.admin_url {
        Some(url) => AdminClient::over_tcp(url, api.token.clone()),
        None => AdminClient::over_socket(socket),
    }
}

/// `text` as one segment of a path: a state key may hold `/` or `?`.
pub(super) fn segment(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A value as its name in the API's query strings (serde's).
pub(super) fn query_name(value: &impl serde::Serialize) -> String {
    serde_json::to_value(value).ok().and_then(|value| value.as_str().map(str::to_owned)).unwrap_or_default()
}
