//! The worker's Prometheus endpoint after a run with outputs, filtered messages, errors, panics,
//! timeouts and a user metric, read with a real Prometheus parser: every count exact, every
//! family once, Pulsar Functions' names and labels.

use std::{collections::BTreeMap, fmt::Write as _};

use pfn_tests::{
    fixtures::{fixture, scratch},
    metrics::{Family, free_addr, parse, scrape},
    worker::RunningWorker,
};

const GAUGE: &str = "public/default/gauge";
const GAUGE_SPEC: &str = r#"
name = "gauge"
plugin = "stateful"
inputs = ["gauge-in"]
output = "gauge-out"
parallelism = 2
max_message_retries = 0
timeout_ms = 1000
"#;

/// The summed value of `family`'s samples named `sample`, over every instance.
fn total(families: &BTreeMap<String, Family>, family: &str, sample: &str) -> f64 {
    let family = families.get(family).unwrap_or_else(|| panic!("no family {family} in {:?}", families.keys()));
    family.samples.iter().filter(|s| s.name == sample).map(|s| s.value).sum()
}

#[test]
fn a_scrape_counts_every_outcome_once_with_pulsar_names_and_labels() {
    let dir = scratch();
    let addr = free_addr();
    let addr_text = addr.to_string();
    let worker = RunningWorker::start(
        dir.path(),
        &[("gauge.toml", GAUGE_SPEC)],
        &[(&fixture("stateful"), "libstateful.so")],
        &["--metrics-addr", &addr_text, "--cluster", "test-cluster"],
    );
    worker.wait_until("gauge runs", |worker| worker.function(GAUGE)["state"] == "running");
    let mut lines = String::new();
    for n in 0..50 {
        let _ = writeln!(lines, "incr n{} 1", n % 5);
    }
    lines.push_str(&"filter\n".repeat(20));
    lines.push_str(&"fail now\n".repeat(10));
    lines.push_str(&"panic now\n".repeat(5));
    for n in 0..30 {
        let _ = writeln!(lines, "metric size {}", 5 + n % 5);
    }
    worker.produce("gauge-in", lines.as_bytes(), false);
    worker.wait_until("the first inputs are acknowledged", |worker| worker.total(GAUGE, "acked_total") >= 115);
    // Two calls past the timeout, one at a time so that each is alone in its batch: each is
    // failed by the watchdog, redelivered once, and dead-lettered as out of retries.
    for sent in 1..=2 {
        worker.produce("gauge-in", b"sleep 2500\n", false);
        worker.wait_until("the sleeper is dead-lettered", |worker| worker.total(GAUGE, "acked_total") >= 115 + sent);
    }
    worker.wait_until("every instance is healthy again", |worker| {
        worker.function(GAUGE)["instances"].as_array().is_some_and(|all| all.iter().all(|i| i["healthy"] == true))
    });

    let text = scrape(addr);
    for line in text.lines().filter(|line| line.starts_with("# TYPE ")) {
        assert_eq!(text.matches(&format!("{line}\n")).count(), 1, "{line} written twice:\n{text}");
    }
    let families: BTreeMap<String, Family> = parse(&text).into_iter().map(|f| (f.name.clone(), f)).collect();
    let expected = [
        // 115 inputs and the two sleepers' redeliveries: a batch taken back from a stuck call
        // is not counted, its inputs are when they come again.
        ("pulsar_function_received", "pulsar_function_received_total", 117.0),
        ("pulsar_function_processed_successfully", "pulsar_function_processed_successfully_total", 100.0),
        ("pulsar_function_user_exceptions", "pulsar_function_user_exceptions_total", 17.0),
        ("pulsar_function_system_exceptions", "pulsar_function_system_exceptions_total", 0.0),
        ("pfn_outputs", "pfn_outputs_total", 80.0),
        ("pfn_filtered", "pfn_filtered_total", 20.0),
        ("pfn_dead_letters", "pfn_dead_letters_total", 17.0),
        ("pfn_acked", "pfn_acked_total", 117.0),
        ("pfn_panics", "pfn_panics_total", 5.0),
        ("pfn_timeouts", "pfn_timeouts_total", 2.0),
        ("pfn_bad_input", "pfn_bad_input_total", 0.0),
    ];
    for (family, sample, value) in expected {
        assert_eq!(total(&families, family, sample), value, "{sample}");
    }
    // The parser names a counter's sample `<family>_total` when its name does not end so.
    assert!(text.contains("\npulsar_function_received_total_1min{"), "the one-minute variant as Pulsar names it");
    assert_eq!(
        total(&families, "pulsar_function_received_total_1min", "pulsar_function_received_total_1min_total"),
        117.0,
        "the first minute counts everything"
    );

    let received = &families["pulsar_function_received"];
    assert_eq!(received.kind, "counter");
    assert_eq!(received.samples.len(), 2, "one sample per instance");
    let labels = &received.samples[0].labels;
    let names: Vec<&str> = labels.keys().map(String::as_str).collect();
    assert_eq!(names, ["cluster", "fqfn", "instance_id", "name", "namespace", "tenant"]);
    assert_eq!(
        (labels["tenant"].as_str(), labels["namespace"].as_str(), labels["name"].as_str(), labels["fqfn"].as_str()),
        ("public", "default", "gauge", GAUGE)
    );
    assert_eq!(labels["cluster"], "test-cluster");

    let user = &families["pulsar_function_user_metric_"];
    assert_eq!(user.kind, "summary");
    let count: f64 = user.samples.iter().filter(|s| s.name.ends_with("_count")).map(|s| s.value).sum();
    assert_eq!(count, 30.0, "every recorded value");
    assert!(user.samples.iter().all(|s| s.labels["metric"] == "size"), "{user:?}");
    let sum: f64 = user.samples.iter().filter(|s| s.name.ends_with("_sum")).map(|s| s.value).sum();
    assert_eq!(sum, 6.0 * (5.0 + 6.0 + 7.0 + 8.0 + 9.0), "values 5 to 9, six of each");
    let median = user.samples.iter().find(|s| s.labels.get("quantile").is_some_and(|q| q == "0.5")).map(|s| s.value);
    assert!(median.is_some_and(|median| (5.0..=9.0).contains(&median)), "median {median:?}");

    let latency = &families["pulsar_function_process_latency_ms"];
    assert_eq!(latency.kind, "summary");
    let quantiles: Vec<&str> =
        latency.samples.iter().filter_map(|s| s.labels.get("quantile").map(String::as_str)).collect();
    assert!(["0.5", "0.9", "0.99", "0.999"].iter().all(|q| quantiles.contains(q)), "{quantiles:?}");
    assert!(total(&families, "pulsar_function_last_invocation", "pulsar_function_last_invocation") > 1.7e12);
    let info = &families["pfn_plugin_info"];
    assert_eq!((info.samples.len(), info.samples[0].labels["version"].as_str()), (1, "1.0.0"));
    assert!(total(&families, "pfn_state_operations", "pfn_state_operations_total") >= 50.0, "the increments");
    assert!(families.contains_key("pfn_state_flush_latency_ms"));
}
