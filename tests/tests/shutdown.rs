//! A worker ends on SIGTERM within its grace period whatever became of its listeners: here its
//! socket file was removed while it ran, as tmp cleaners do.

use std::time::Duration;

use pfn_tests::{
    fixtures::{plugin, scratch},
    worker::RunningWorker,
};

#[test]
fn a_worker_whose_socket_file_was_removed_still_exits_on_sigterm() {
    let dir = scratch();
    let spec = "name = \"shout\"\nplugin = \"exclamation\"\ninputs = [\"in\"]\noutput = \"out\"\n";
    let mut worker = RunningWorker::start(
        dir.path(),
        &[("shout.toml", spec)],
        &[(&plugin("exclamation"), "libexclamation.so")],
        &["--grace-period-ms", "2000"],
    );
    worker.wait_until("shout runs", |worker| worker.function("public/default/shout")["state"] == "running");
    std::fs::remove_file(&worker.socket).expect("the socket file is there to remove");
    let ended = worker.terminate_within(Duration::from_secs(10));
    let (status, log) = ended.expect("the worker exits within 10 s of SIGTERM (grace period 2 s)");
    assert!(status.success(), "{log}");
    assert!(log.contains("pfn worker: public/default/shout:"), "it drained and summed up:\n{log}");
}
