//! A function's life on a Pulsar worker through the CLI and the admin API: created from an
//! uploaded plugin, triggered, updated under load (more instances, then a change that restarts
//! it) with every input answered, stopped while its input keeps it waiting, started again, and
//! deleted with its subscription.

use std::{thread, time::Duration};

use pfn_tests::{
    fixtures::{plugin, scratch},
    pfn_cli::{json_of, texts},
    pulsar_functions::{IDLE, PulsarRig, SHOUT, Tally, number_of, numbered},
    worker::RunningWorker,
};

#[test]
fn a_function_is_created_updated_under_load_stopped_started_and_deleted_on_pulsar() {
    let rig = PulsarRig::start();
    let dir = scratch();
    let worker = RunningWorker::start(dir.path(), &[], &[], &["--pulsar-url", &rig.relay.url()]);
    let run = |args: &[&str]| worker.pfn().arg("functions").args(args).output().expect("pfn functions");
    let library = plugin("exclamation").display().to_string();
    let created = run(&[
        "create",
        "--name",
        "shout",
        "--inputs",
        &rig.input,
        "--output",
        &rig.output,
        "--plugin",
        &library,
        "--subs-position",
        "earliest",
    ]);
    assert_eq!(json_of(&created)["action"], "created");
    worker.wait_until("shout runs", |worker| worker.function(SHOUT)["state"] == "running");
    let triggered = run(&["trigger", "--name", "shout", "--trigger-value", "hi"]);
    assert_eq!(texts(&triggered).0.trim_end(), "hi!", "{:?}", texts(&triggered));
    let mut reader = rig.reader();
    assert_eq!(reader.receive(1, IDLE).iter().map(|output| output.text()).collect::<Vec<_>>(), ["hi!"]);

    // Under load: two instances, then a change that restarts the function after it drains.
    const COUNT: usize = 3000;
    thread::scope(|scope| {
        scope.spawn(|| {
            for chunk in (0..COUNT).collect::<Vec<_>>().chunks(100) {
                rig.peer.produce(&rig.input, chunk.iter().map(|&i| numbered(i, 8)));
                thread::sleep(Duration::from_millis(10));
            }
        });
        let updated = json_of(&run(&["update", "--name", "shout", "--parallelism", "2"]));
        assert_eq!(updated["how"], "parallelism 1 -> 2 applied live");
        let updated = json_of(&run(&["update", "--name", "shout", "--max-message-retries", "5"]));
        assert_eq!(updated["how"], "restarted");
    });
    let mut tally = Tally::new(COUNT);
    while !tally.missing().is_empty() {
        let outputs = reader.receive(COUNT, IDLE);
        assert!(!outputs.is_empty(), "inputs never answered: {:?}", &tally.missing()[..tally.missing().len().min(10)]);
        for output in &outputs {
            tally.add(number_of(output));
        }
    }
    tally.assert_complete("after the updates");
    worker.wait_until("two instances run", |worker| {
        worker.function(SHOUT)["state"] == "running"
            && worker.function(SHOUT)["instances"].as_array().map(Vec::len) == Some(2)
    });

    // Stopped, its input waits for it; started again, it goes on where it stopped.
    assert_eq!(texts(&run(&["stop", "--name", "shout"])).0.trim_end(), "stopped public/default/shout");
    rig.peer.produce(&rig.input, (COUNT..COUNT + 10).map(|i| numbered(i, 8)));
    assert!(reader.receive(1, Duration::from_secs(2)).is_empty(), "a stopped function answered");
    assert!(run(&["start", "--name", "shout"]).status.success());
    let late: Vec<usize> = reader.receive(10, IDLE).iter().map(number_of).collect();
    assert_eq!(late.len(), 10, "the inputs sent while it was stopped: {late:?}");

    let deleted = run(&["delete", "--name", "shout"]);
    assert_eq!(
        texts(&deleted).0.trim_end(),
        "deleted public/default/shout; subscription public-default-shout deleted",
        "{:?}",
        texts(&deleted)
    );
    let (status, log) = worker.terminate();
    assert!(status.success(), "{log}");
}
