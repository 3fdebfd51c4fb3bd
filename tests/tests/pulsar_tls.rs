//! `pulsar+ssl://`: a worker reaches Pulsar over TLS through a TLS front to the relay (the test
//! broker speaks no TLS), trusting the certificates it is given and refusing others.

use std::{
    fs, thread,
    time::{Duration, Instant},
};

use pfn_tests::{
    fixtures::scratch,
    pulsar_functions::{HANG_GUARD, IDLE, PulsarRig, SHOUT, launch_shout_at, numbered, shout_spec, tally},
    tls::TlsFront,
    worker::WorkerDirs,
};

#[test]
fn a_worker_on_pulsar_ssl_runs_when_it_trusts_the_broker_certificate_and_is_refused_otherwise() {
    const COUNT: usize = 1_000;
    let rig = PulsarRig::start();
    let front = TlsFront::start(rig.relay.addr());
    rig.relay.answer_lookups_over_tls(&front.url());
    let mut reader = rig.reader();
    rig.peer.produce(&rig.input, (0..COUNT).map(|i| numbered(i, 10)));
    let spec = shout_spec(&rig.input, &rig.output, "");

    // The system's roots do not include the test CA: the handshake fails, the worker says why
    // and keeps retrying.
    let untrusting_dir = scratch();
    let log_path = untrusting_dir.path().join("worker.log");
    let mut untrusting = WorkerDirs::create(untrusting_dir.path())
        .command(untrusting_dir.path())
        .env("PFN_LOG", "info")
        .args(["--pulsar-url", &front.url()])
        .stderr(fs::File::create(&log_path).expect("worker log"))
        .spawn()
        .expect("pfn worker starts");
    let log = || fs::read_to_string(&log_path).unwrap_or_default();
    let deadline = Instant::now() + HANG_GUARD;
    while !(front.refused() >= 2 && log().matches("cannot reach Pulsar").count() >= 2) {
        assert!(Instant::now() < deadline, "no two refused handshakes:\n{}", log());
        thread::sleep(Duration::from_millis(50));
    }
    assert!(log().contains("certificate verify failed"), "the log does not say why:\n{}", log());
    assert!(matches!(untrusting.try_wait(), Ok(None)), "the worker exited:\n{}", log());
    assert_eq!(front.handshakes(), 0, "a handshake passed without the CA");
    untrusting.kill().expect("kill the untrusting worker");
    untrusting.wait().expect("the untrusting worker exits");

    let ca = front.ca_file().display().to_string();
    let trusting_dir = scratch();
    let trusting = launch_shout_at(trusting_dir.path(), &front.url(), &spec, &["--tls-trust-certs", &ca]);
    trusting.wait_until("shout runs", |worker| worker.function(SHOUT)["state"] == "running");
    let outputs = reader.receive(COUNT, IDLE);
    assert!(tally(&outputs, COUNT).iter().all(|&n| n == 1), "not one output per input");
    trusting.wait_until("every input acknowledged", |worker| worker.total(SHOUT, "acked_total") == COUNT as u64);
    assert!(front.handshakes() > 0, "the worker did not come through the TLS front");
    let (status, log) = trusting.terminate();
    assert!(status.success(), "worker exit: {status}\n{log}");
}
