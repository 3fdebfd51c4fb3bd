//! `pfn functions localrun --spec FILE`: one function in the foreground, on embedded topics
//! (reached through `--worker`; one instance of three, as a StatefulSet's pod runs it, with its
//! health probe) and on Pulsar, and a non-zero exit on a fatal error.

use std::{
    fs,
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use pfn_tests::{
    fixtures::{plugin, scratch},
    pfn_cli::{pfn, run_with_stdin, texts},
    pulsar_client::Outgoing,
    pulsar_functions::{IDLE, PulsarRig},
};

/// Copies the exclamation plugin and its manifest into `dir`.
fn install_exclamation(dir: &Path) {
    let library = plugin("exclamation");
    fs::copy(&library, dir.join("libexclamation.so")).expect("the plugin");
    fs::copy(library.with_extension("pfn.toml"), dir.join("libexclamation.pfn.toml")).expect("its manifest");
}

/// `pfn functions localrun --spec SPEC` with `args`, its log in `log`.
fn localrun(scratch: &Path, spec: &Path, args: &[&str], log: &Path) -> Child {
    let mut command = pfn(scratch);
    command.env("PFN_LOG", "info").args(["functions", "localrun", "--spec"]).arg(spec).args(args);
    command.stdin(Stdio::null()).stdout(Stdio::null());
    command.stderr(fs::File::create(log).expect("the log file")).spawn().expect("pfn functions localrun")
}

/// Waits up to two minutes for `child` to exit.
fn exit_of(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().expect("the status") {
            return status;
        }
        assert!(Instant::now() < deadline, "localrun did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn terminate(child: &mut Child) -> ExitStatus {
    let signalled = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(signalled.success());
    exit_of(child)
}

#[test]
fn localrun_runs_one_function_on_embedded_topics_until_signalled() {
    let dir = scratch();
    install_exclamation(dir.path());
    let spec = dir.path().join("shout.toml");
    let text = "name = \"shout\"\nplugin = \"exclamation\"\ninputs = [\"in\"]\noutput = \"out\"\nparallelism = 3\n";
    fs::write(&spec, text).expect("spec");
    let socket = dir.path().join("localrun.sock");
    let log = dir.path().join("localrun.log");
    let metrics = pfn_tests::metrics::free_addr().to_string();
    // Instance 1 of 3, as the second pod of a StatefulSet runs it, with a probe to answer.
    let args = ["--worker", socket.to_str().expect("a path"), "--instance-id", "1", "--metrics-addr", &metrics];
    let mut child = localrun(dir.path(), &spec, &args, &log);
    let topics = || {
        let mut command = pfn(dir.path());
        command.env("PFN_WORKER", &socket).arg("topics");
        command
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = pfn(dir.path()).env("PFN_WORKER", &socket).args(["functions", "status"]).output().expect("status");
        if status.status.success() && texts(&status).0.contains("\"state\": \"running\"") {
            break;
        }
        assert!(Instant::now() < deadline, "shout never ran: {}", fs::read_to_string(&log).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = pfn(dir.path()).env("PFN_WORKER", &socket).args(["functions", "status"]).output().expect("status");
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("a JSON status");
    let ids: Vec<u64> = status["functions"][0]["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .filter_map(|instance| instance["instance_id"].as_u64())
        .collect();
    assert_eq!(ids, [1], "{status}");
    let stream = std::net::TcpStream::connect(&metrics).expect("the probe's port");
    let probe = pfn_tests::http::get(stream, "/admin/v3/worker/health", &[]);
    assert!(probe.starts_with("HTTP/1.1 200") && probe.ends_with("ok"), "{probe}");
    let created = topics().args(["create-subscription", "out", "-s", "check"]).output().expect("subscribe");
    assert!(created.status.success(), "{:?}", texts(&created));
    let mut produce = topics();
    produce.args(["produce", "in"]);
    assert!(run_with_stdin(produce, b"one\ntwo\n").status.success());
    let consumed =
        topics().args(["consume", "out", "-s", "check", "--count", "2", "--idle-timeout-ms", "5000"]).output();
    assert_eq!(texts(&consumed.expect("consume")).0, "one!\ntwo!\n");
    let status = terminate(&mut child);
    assert!(status.success(), "localrun failed: {}", fs::read_to_string(&log).unwrap_or_default());
}

#[test]
fn localrun_exits_non_zero_on_a_fatal_error() {
    let dir = scratch();
    let garbage = dir.path().join("libbroken.so");
    fs::write(&garbage, b"not a library").expect("garbage");
    let spec = dir.path().join("broken.toml");
    fs::write(&spec, "name = \"broken\"\nplugin = \"libbroken.so\"\nplugin_sha256 = \"4c5e8a9a4f9e0e0e2b1e3d5f6a7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f7\"\ninputs = [\"in\"]\n")
        .expect("spec");
    let log = dir.path().join("broken.log");
    let status = exit_of(&mut localrun(dir.path(), &spec, &[], &log));
    let text = fs::read_to_string(&log).unwrap_or_default();
    assert!(!status.success(), "a refused plugin left localrun running or exiting well: {text}");
    assert!(text.contains("function public/default/broken failed") && text.contains("sha256 mismatch"), "{text}");

    let invalid = dir.path().join("invalid.toml");
    fs::write(&invalid, "name = \"invalid\"\nplugin = \"exclamation\"\nparallelism = 0\n").expect("spec");
    let output = pfn(dir.path()).args(["functions", "localrun", "--spec"]).arg(&invalid).output().expect("localrun");
    let (_, stderr) = texts(&output);
    assert!(!output.status.success());
    assert!(stderr.contains("inputs:") && stderr.contains("parallelism:"), "not every bad field is named: {stderr}");
}

#[test]
fn localrun_runs_one_function_on_pulsar() {
    let rig = PulsarRig::start();
    let dir = scratch();
    install_exclamation(dir.path());
    let spec = dir.path().join("shout.toml");
    let text = format!(
        "name = \"shout\"\nplugin = \"exclamation\"\ninputs = [\"{}\"]\noutput = \"{}\"\nsubscription_position = \"earliest\"\n",
        rig.input, rig.output
    );
    fs::write(&spec, text).expect("spec");
    let log = dir.path().join("localrun.log");
    let mut child = localrun(dir.path(), &spec, &["--pulsar-url", &rig.relay.url()], &log);
    let mut reader = rig.reader();
    rig.peer.produce(&rig.input, ["one", "two", "three"].map(Outgoing::text));
    let outputs: Vec<String> = reader.receive(3, IDLE).iter().map(|output| output.text()).collect();
    assert_eq!(outputs, ["one!", "two!", "three!"], "{}", fs::read_to_string(&log).unwrap_or_default());
    let status = terminate(&mut child);
    assert!(status.success(), "localrun failed: {}", fs::read_to_string(&log).unwrap_or_default());
}
