//! Secrets through a real `pfn worker`: resolved from the worker-wide file and from a file per
//! secret, read by the function, and shown nowhere: not in the log at trace level, the status,
//! the dead letters or the exit summary. A missing secret refuses that function's start, naming
//! the secret, while the others run.

use std::fs;

use pfn_tests::{
    fixtures::{fixture, scratch},
    worker::RunningWorker,
};

const KEEPER: &str = "public/default/keeper";
const ORPHAN: &str = "public/default/orphan";
const API_KEY: &str = "s3cr3t-api-value";
const TOKEN: &str = "t0ken-file-value";

#[test]
fn a_function_reads_its_secrets_and_they_appear_nowhere_else() {
    secrets_read_and_shown_nowhere("thread");
}

#[test]
fn a_child_process_reads_its_secrets_and_they_appear_nowhere_else() {
    secrets_read_and_shown_nowhere("process");
}

fn secrets_read_and_shown_nowhere(runtime: &str) {
    let dir = scratch();
    let secrets_file = dir.path().join("secrets.toml");
    fs::write(&secrets_file, format!("api_key = \"{API_KEY}\"\n")).expect("secrets file");
    let token_file = dir.path().join("token");
    fs::write(&token_file, format!("{TOKEN}\n")).expect("token file");
    let keeper = format!(
        "name = \"keeper\"\nplugin = \"stateful\"\ninputs = [\"keeper-in\"]\noutput = \"keeper-out\"\n\
         max_message_retries = 0\nruntime = \"{runtime}\"\n[secrets]\napi = \"worker:api_key\"\ntoken = \"file:{}\"\n",
        token_file.display()
    );
    let orphan = "name = \"orphan\"\nplugin = \"stateful\"\ninputs = [\"orphan-in\"]\n\
                  [secrets]\ngone = \"worker:not_in_the_file\"\n";
    let secrets_arg = secrets_file.display().to_string();
    let worker = RunningWorker::start(
        dir.path(),
        &[("keeper.toml", &keeper), ("orphan.toml", orphan)],
        &[(&fixture("stateful"), "libstateful.so")],
        &["--secrets-file", &secrets_arg, "--log-level", "trace"],
    );
    worker.wait_until("keeper runs", |worker| worker.function(KEEPER)["state"] == "running");
    worker.wait_until("orphan is refused", |worker| worker.function(ORPHAN)["state"] != "waiting for plugin");
    let orphan_state = worker.function(ORPHAN)["state"].as_str().unwrap_or_default().to_owned();
    assert!(
        orphan_state.contains("secret gone: worker:not_in_the_file is not set"),
        "the refusal names the secret and its reference: {orphan_state}"
    );

    worker.create_subscription("keeper-out", "check");
    worker.create_subscription("keeper-out-DLQ", "check");
    worker.produce("keeper-in", b"secret api\nsecret token\nsecret other\nfail now\n", false);
    let outputs = worker.consume("keeper-out", "check", 3, false);
    assert_eq!(
        outputs,
        [
            format!("secret api has {} bytes", API_KEY.len()),
            format!("secret token has {} bytes", TOKEN.len()),
            "<none>".to_owned()
        ]
    );
    let letters = worker.consume("keeper-out-DLQ", "check", 1, true);
    assert_eq!(letters.len(), 1);
    let status = serde_json::to_string(&worker.status()).expect("status JSON");
    let (exit, log) = worker.terminate();
    assert!(exit.success(), "the worker stops cleanly: {log}");
    assert!(log.contains("read a secret"), "the plugin's trace events are in the log");
    assert!(log.contains("pfn worker: public/default/keeper:"), "the exit summary is in the log");
    for value in [API_KEY, TOKEN] {
        for (place, text) in [("log", &log), ("status", &status), ("dead letters", &letters.join("\n"))] {
            assert!(!text.contains(value), "a secret's value is in the {place}");
        }
    }
}
