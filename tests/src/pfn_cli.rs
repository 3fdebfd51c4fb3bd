//! Running the real `pfn` binary.

use std::{
    io::Write,
    path::Path,
    process::{Command, Output, Stdio},
};

use crate::fixtures::pfn_bin;

/// `pfn` with its plugin cache in `scratch` and quiet logs.
pub fn pfn(scratch: &Path) -> Command {
    let mut command = Command::new(pfn_bin());
    command.env("PFN_PLUGIN_CACHE", scratch.join("plugin-cache")).env("PFN_LOG", "warn");
    command
}

/// Runs `command` with `stdin` as its input and returns what it did.
pub fn run_with_stdin(mut command: Command, stdin: &[u8]) -> Output {
    let mut child =
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("pfn starts");
    child.stdin.take().expect("piped stdin").write_all(stdin).expect("stdin accepts input");
    child.wait_with_output().expect("pfn finishes")
}

/// Stdout and stderr as text, for assertions and failure messages.
pub fn texts(output: &Output) -> (String, String) {
    (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// What a command that succeeded printed, as JSON; fails with its stderr otherwise.
pub fn json_of(output: &Output) -> serde_json::Value {
    let (stdout, stderr) = texts(output);
    assert!(output.status.success(), "{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|error| panic!("not JSON ({error}): {stdout}"))
}
