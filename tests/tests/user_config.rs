//! Typed user config through a real `pfn worker`: a spec's TOML values of every kind, read by the
//! function as the type it wants, with a default for an absent key and an error naming the key
//! and the type for a value that does not fit.

use pfn_tests::{
    fixtures::{fixture, scratch},
    worker::RunningWorker,
};

const SPEC: &str = r#"
name = "typed"
plugin = "stateful"
inputs = ["typed-in"]
output = "typed-out"
[user_config]
limit = 42
ratio = 0.25
enabled = true
label = "hot"
looks_like_json = "true"
topics = ["a", "b"]
rule = { field = "temp", above = 30.5 }
"#;

#[test]
fn every_kind_of_value_reads_typed_with_defaults_and_clear_errors() {
    let dir = scratch();
    let worker =
        RunningWorker::start(dir.path(), &[("typed.toml", SPEC)], &[(&fixture("stateful"), "libstateful.so")], &[]);
    worker.wait_until("typed runs", |worker| worker.function("public/default/typed")["state"] == "running");
    worker.create_subscription("typed-out", "check");
    let asks = [
        ("config limit int", "Some(42)"),
        ("config ratio float", "Some(0.25)"),
        ("config enabled bool", "Some(true)"),
        ("config label string", "Some(\"hot\")"),
        ("config looks_like_json string", "Some(\"true\")"),
        ("config topics list", "Some([\"a\", \"b\"])"),
        ("config rule rule", "Some(Rule { field: \"temp\", above: 30.5 })"),
        ("config absent int", "None"),
        ("config absent int-or-7", "7"),
        ("config limit int-or-7", "42"),
    ];
    let lines: String = asks.iter().map(|(ask, _)| format!("{ask}\nconfig label int\n")).collect();
    worker.produce("typed-in", lines.as_bytes(), false);
    let outputs = worker.consume("typed-out", "check", 2 * asks.len() as u64, false);
    for (index, (ask, expected)) in asks.iter().enumerate() {
        assert_eq!(outputs[2 * index], *expected, "{ask}");
        assert_eq!(
            outputs[2 * index + 1],
            "user config label: \"hot\" is not a i64: expected value at line 1 column 1"
        );
    }
}
