//! `pfn functions list|get|stats` against a worker's admin API, as pulsar-admin's users run
//! them: `--admin-url` and `--token`, the function named by its fqfn or by
//! `--tenant --namespace --name`, and a server's refusal as one clear line and a non-zero exit.

use std::process::Output;

use pfn_tests::{
    fixtures::{plugin, scratch},
    pfn_cli::texts,
    worker::RunningWorker,
};
use serde_json::Value;

const TOKEN: &str = "cli-admin-token";
const SHOUT: &str = "public/default/shout";

fn pfn_functions(worker: &RunningWorker, url: &str, token: &str, args: &[&str]) -> Output {
    let mut command = worker.pfn();
    command.args(["functions"]).args(args).args(["--admin-url", url, "--token", token]);
    command.output().expect("pfn functions")
}

fn json_of(output: &Output) -> Value {
    let (stdout, stderr) = texts(output);
    assert!(output.status.success(), "{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|error| panic!("not JSON ({error}): {stdout}"))
}

#[test]
fn list_get_and_stats_speak_to_the_admin_api() {
    let dir = scratch();
    let spec = "name = \"shout\"\nplugin = \"exclamation\"\ninputs = [\"words\"]\noutput = \"shouts\"\n";
    let worker = RunningWorker::start(
        dir.path(),
        &[("shout.toml", spec)],
        &[(&plugin("exclamation"), "libexclamation.so")],
        &["--admin-addr", "127.0.0.1:0", "--admin-token", TOKEN],
    );
    worker.wait_until("shout runs", |worker| worker.function(SHOUT)["state"] == "running");
    let url = format!("http://{}", worker.admin_addr());
    let trigger = worker.pfn().args(["functions", "trigger", SHOUT, "--value", "hi"]).output().expect("trigger");
    assert!(trigger.status.success(), "{:?}", texts(&trigger));

    assert_eq!(json_of(&pfn_functions(&worker, &url, TOKEN, &["list"])), serde_json::json!(["shout"]));
    let spec = json_of(&pfn_functions(&worker, &url, TOKEN, &["get", "--name", "shout"]));
    assert_eq!((spec["name"].as_str(), spec["inputs"][0].as_str()), (Some("shout"), Some("words")));
    let stats = json_of(&pfn_functions(&worker, &url, TOKEN, &["stats", "--fqfn", SHOUT]));
    assert_eq!((stats["receivedTotal"].as_u64(), stats["processedSuccessfullyTotal"].as_u64()), (Some(1), Some(1)));
    let one = json_of(&pfn_functions(&worker, &url, TOKEN, &["stats", SHOUT, "--instance-id", "0"]));
    assert_eq!(one["receivedTotal"], 1);

    for (args, token, expected) in [
        (&["list"][..], "wrong", "error: 401 Unauthorized: wrong token"),
        (
            &["get", "public/default/nope"][..],
            TOKEN,
            "error: 404 Not Found: no function public/default/nope in this worker",
        ),
    ] {
        let refused = pfn_functions(&worker, &url, token, args);
        let (stdout, stderr) = texts(&refused);
        assert!(!refused.status.success() && stdout.is_empty(), "{stdout}");
        assert_eq!(stderr.trim_end(), expected);
    }
    let (status, log) = worker.terminate();
    assert!(status.success(), "{log}");
}
