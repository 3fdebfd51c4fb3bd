//! Spec options on Pulsar topics: inputs by `topics_pattern`, `at_most_once`, and outputs
//! without their input's properties (`forward_source_message_property = false`).

use std::time::Duration;

use pfn_tests::{
    broker::TestBroker,
    fixtures::scratch,
    pulsar_client::{Outgoing, PulsarPeer, unique_topic},
    pulsar_functions::{
        IDLE, PANICKY, PulsarRig, SHOUT, by_trailing_number, number_of, numbered, panicky_spec, shout_spec,
        start_panicky, start_shout,
    },
    relay::Relay,
};

/// How long a reader waits to be sure that nothing more comes.
const NOTHING_MORE: Duration = Duration::from_secs(2);

#[test]
fn a_topics_pattern_reads_every_matching_topic_of_its_namespace_and_no_other() {
    const PER_TOPIC: usize = 50;
    let broker = TestBroker::start();
    let relay = Relay::start(broker.addr()).expect("relay");
    let base = unique_topic("pattern");
    let (matching, other, output) =
        ([format!("{base}-a"), format!("{base}-b")], format!("{base}-ac"), unique_topic("out"));
    let peer = PulsarPeer::connect(&relay.url());
    let mut reader = peer.subscribe(&output, "check");
    for (t, topic) in matching.iter().chain([&other]).enumerate() {
        peer.produce(topic, (0..PER_TOPIC).map(|i| numbered(t * PER_TOPIC + i, 10)));
    }

    let spec = format!(
        "name = \"shout\"\nplugin = \"exclamation\"\ntopics_pattern = \"{base}-[ab]\"\noutput = \"{output}\"\n\
         subscription_position = \"earliest\"\n"
    );
    let dir = scratch();
    let worker = start_shout(dir.path(), &relay, &spec);
    let mut outputs = reader.receive(2 * PER_TOPIC, IDLE);
    outputs.extend(reader.receive(1, NOTHING_MORE));
    let mut numbers: Vec<usize> = outputs.iter().map(number_of).collect();
    numbers.sort_unstable();
    assert_eq!(
        numbers,
        (0..2 * PER_TOPIC).collect::<Vec<_>>(),
        "not exactly the two matching topics' inputs; log:\n{}",
        worker.log_text()
    );
    worker.wait_until("every input acknowledged", |worker| worker.total(SHOUT, "acked_total") == 2 * PER_TOPIC as u64);
    assert!(relay.stats().namespaces_listed > 0, "the relay did not list the namespace (TESTING.md, deviation 9)");
    let (status, log) = worker.terminate();
    assert!(status.success(), "worker exit: {status}\n{log}");
}

#[test]
fn at_most_once_acknowledges_before_processing_so_a_failed_input_is_neither_retried_nor_dead_lettered() {
    const COUNT: usize = 200;
    let fails = |i: usize| i.is_multiple_of(5);
    let rig = PulsarRig::start();
    let PulsarRig { relay, input, output, peer, .. } = &rig;
    let (mut reader, mut dead_letters) = (rig.reader(), rig.dead_letters());
    peer.produce(
        input,
        (0..COUNT).map(|i| Outgoing::text(if fails(i) { format!("error {i}") } else { format!("{i}") })),
    );

    let dir = scratch();
    let spec = panicky_spec(input, output, "processing_guarantees = \"at_most_once\"");
    let worker = start_panicky(dir.path(), relay, &spec);
    let succeeding = (0..COUNT).filter(|&i| !fails(i)).count();
    let mut outputs = reader.receive(succeeding, IDLE);
    outputs.extend(reader.receive(1, NOTHING_MORE));
    let texts = by_trailing_number(outputs.iter().map(|output| output.text()).collect());
    let expected: Vec<String> = (0..COUNT).filter(|&i| !fails(i)).map(|i| format!("ok:{i}")).collect();
    assert_eq!(texts, expected);
    assert!(dead_letters.receive(1, NOTHING_MORE).is_empty(), "an at-most-once input was dead-lettered");
    let total = |name: &str| worker.total(PANICKY, name);
    assert_eq!(total("received_total"), COUNT as u64, "a failed input came back");
    assert_eq!((total("acked_total"), total("user_exceptions_total")), (COUNT as u64, (COUNT - succeeding) as u64));
    let (status, log) = worker.terminate();
    assert!(status.success(), "worker exit: {status}\n{log}");
}

#[test]
fn outputs_keep_only_their_input_key_when_forward_source_message_property_is_false() {
    const COUNT: usize = 20;
    let rig = PulsarRig::start();
    let PulsarRig { relay, input, output, peer, .. } = &rig;
    let mut reader = rig.reader();
    peer.produce(input, (0..COUNT).map(|i| numbered(i, 4)));

    let dir = scratch();
    let worker = start_shout(dir.path(), relay, &shout_spec(input, output, "forward_source_message_property = false"));
    let outputs = reader.receive(COUNT, IDLE);
    assert_eq!(outputs.len(), COUNT);
    for output in &outputs {
        let i = number_of(output);
        assert_eq!(output.key.as_deref(), Some(format!("key-{}", i % 4).as_str()), "the key is kept");
        // Only what every output carries on Pulsar: where its input came from.
        let mut names: Vec<&str> = output.properties.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["__pfn_input_msg_id__", "__pfn_input_topic__"], "properties forwarded");
        assert_eq!(output.event_time, None, "event time forwarded");
    }
    let (status, log) = worker.terminate();
    assert!(status.success(), "worker exit: {status}\n{log}");
}
