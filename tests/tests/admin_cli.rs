//! `pfn functions` against a worker's admin API, as pulsar-admin's users run it: `--admin-url`
//! and `--token`, the function named by its fqfn or by `--tenant --namespace --name`, a
//! function's whole life (create from an uploaded plugin, update to a new version under load,
//! parallelism, stop, start, restart, delete), and a server's refusal as one clear line and a
//! non-zero exit.

use std::{collections::BTreeMap, process::Output, thread, time::Duration};

use pfn_tests::{
    fixtures::{scratch, versioned},
    pfn_cli::{json_of, texts},
    worker::RunningWorker,
};

const TOKEN: &str = "cli-admin-token";
const SHOUT: &str = "public/default/shout";

fn pfn_functions(worker: &RunningWorker, url: &str, token: &str, args: &[&str]) -> Output {
    let mut command = worker.pfn();
    command.args(["functions"]).args(args).args(["--admin-url", url, "--token", token]);
    command.output().expect("pfn functions")
}

#[test]
fn list_get_and_stats_speak_to_the_admin_api() {
    let dir = scratch();
    let worker = RunningWorker::start_shout_with_admin(dir.path(), TOKEN);
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

#[test]
fn a_function_lives_its_whole_life_through_the_cli() {
    const UP: &str = "public/default/up";
    let dir = scratch();
    let worker = RunningWorker::start(dir.path(), &[], &[], &["--admin-addr", "127.0.0.1:0", "--admin-token", TOKEN]);
    let url = format!("http://{}", worker.admin_addr());
    let run = |args: &[&str]| pfn_functions(&worker, &url, TOKEN, args);
    let plugin_v1 = versioned("1.0.0").display().to_string();
    let plugin_v2 = versioned("1.1.0").display().to_string();

    let created =
        json_of(&run(&["create", "--name", "up", "--inputs", "up-in", "--output", "up-out", "--plugin", &plugin_v1]));
    assert_eq!((created["action"].as_str(), created["plugin"].as_str()), (Some("created"), Some("versioned 1.0.0")));
    worker.wait_until("up runs", |worker| worker.function(UP)["state"] == "running");
    worker.create_subscription("up-out", "check");
    let trigger = worker.pfn().args(["functions", "trigger", "--name", "up", "--trigger-value", "hi"]).output();
    let trigger = trigger.expect("pfn functions trigger");
    assert_eq!(texts(&trigger).0.trim_end(), "hi from v1.0.0 on 0", "{:?}", texts(&trigger));
    assert_eq!(worker.consume("up-out", "check", 1, false), ["hi from v1.0.0 on 0"]);

    // Under load, a new version uploaded, new user config, more instances: every input is
    // answered once, the last ones by the new version.
    let sent: Vec<String> = thread::scope(|scope| {
        let producing = scope.spawn(|| {
            let lines: Vec<String> = (0..1500).map(|n| format!("m{n}")).collect();
            for chunk in lines.chunks(50) {
                worker.produce("up-in", format!("{}\n", chunk.join("\n")).as_bytes(), false);
                thread::sleep(Duration::from_millis(20));
            }
            lines
        });
        let updated = json_of(&run(&["update", "--fqfn", UP, "--plugin", &plugin_v2]));
        assert_eq!(updated["plugin"].as_str(), Some("versioned 1.1.0"), "{updated}");
        worker.wait_until("v1.1.0 runs", |worker| worker.function(UP)["version"] == "1.1.0");
        let updated = json_of(&run(&["update", "--name", "up", "--user-config", r#"{"shade": "dark"}"#]));
        assert_eq!(updated["how"].as_str(), Some("configuration applied live"), "{updated}");
        let updated = json_of(&run(&["update", "--name", "up", "--parallelism", "3"]));
        assert_eq!(updated["how"].as_str(), Some("parallelism 1 -> 3 applied live"), "{updated}");
        producing.join().expect("producer")
    });
    worker.produce("up-in", b"last\n", false);
    let outputs = worker.consume("up-out", "check", sent.len() as u64 + 1, false);
    let mut answered: BTreeMap<String, usize> = BTreeMap::new();
    for output in &outputs {
        let input = output.split(" from ").next().expect("an input");
        *answered.entry(input.to_owned()).or_default() += 1;
    }
    let expected: BTreeMap<String, usize> =
        sent.iter().chain(["last".to_owned()].iter()).map(|input| (input.clone(), 1)).collect();
    assert_eq!(answered, expected, "outputs differ from one per input");
    let last = outputs.iter().find(|output| output.starts_with("last ")).expect("the last input's output");
    assert!(last.starts_with("last from v1.1.0 on "), "{last}");

    // Parallelism from a spec file, shown as a table.
    let spec = dir.path().join("up.toml");
    std::fs::write(&spec, "parallelism = 2\n").expect("the spec");
    let updated = json_of(&run(&["update", UP, "--spec", spec.to_str().expect("a path")]));
    assert_eq!(updated["how"].as_str(), Some("parallelism 3 -> 2 applied live"));
    let table = run(&["get", UP, "--output", "table"]);
    let (stdout, stderr) = texts(&table);
    assert!(table.status.success(), "{stderr}");
    assert!(stdout.lines().any(|line| line.split_whitespace().collect::<Vec<_>>() == ["parallelism", "2"]), "{stdout}");
    assert!(stdout.lines().any(|line| line.split_whitespace().collect::<Vec<_>>() == ["user_config.shade", "dark"]));

    // Stop, start, and one instance restarted.
    for (args, said) in [
        (&["stop", UP][..], "stopped public/default/up"),
        (&["start", UP][..], "started public/default/up (running)"),
        (&["restart", UP, "--instance-id", "1"][..], "restarted public/default/up instance 1"),
    ] {
        let output = run(args);
        assert_eq!(texts(&output).0.trim_end(), said, "{:?}", texts(&output));
    }
    assert_eq!(worker.function(UP)["instances"].as_array().map(Vec::len), Some(2));

    let table = worker.pfn().args(["functions", "status", UP, "--output", "table"]).output().expect("status");
    let (stdout, stderr) = texts(&table);
    assert!(table.status.success(), "{stderr}");
    assert!(
        stdout.lines().any(|line| line.split_whitespace().collect::<Vec<_>>() == ["functions.0.state", "running"]),
        "{stdout}"
    );

    // Refused: one clear line, a non-zero exit, nothing changed.
    let again = run(&["create", "--name", "up", "--inputs", "up-in", "--plugin", "versioned"]);
    assert!(!again.status.success());
    assert_eq!(texts(&again).1.trim_end(), "error: 409 Conflict: function public/default/up already exists");

    // A restarted worker finds the function again, as its spec file says, on the new version.
    let (status, log) = worker.terminate();
    assert!(status.success(), "{log}");
    let worker = RunningWorker::start(dir.path(), &[], &[], &["--admin-addr", "127.0.0.1:0", "--admin-token", TOKEN]);
    let url = format!("http://{}", worker.admin_addr());
    let run = |args: &[&str]| pfn_functions(&worker, &url, TOKEN, args);
    worker.wait_until("up runs again", |worker| worker.function(UP)["state"] == "running");
    assert_eq!(
        (worker.function(UP)["version"].as_str(), worker.function(UP)["instances"].as_array().map(Vec::len)),
        (Some("1.1.0"), Some(2))
    );

    let deleted = worker.pfn().args(["functions", "delete", "--fqfn", UP]).output().expect("pfn functions delete");
    assert!(deleted.status.success(), "{:?}", texts(&deleted));
    assert_eq!(json_of(&run(&["list"])), serde_json::json!([]));
    let (status, log) = worker.terminate();
    assert!(status.success(), "{log}");
}
