//! `pfn run` as a user runs it: lines in, results out, failures dead-lettered, counts on stderr.

use pfn_tests::{
    fixtures::{fixture, plugin, scratch, sha256_of, shape},
    pfn_cli::{pfn, run_with_stdin, texts},
};

fn summary_line(stderr: &str) -> &str {
    stderr.lines().find(|line| line.starts_with("pfn run: ")).unwrap_or("")
}

#[test]
fn stdin_to_stdout_with_a_pinned_plugin() {
    let dir = scratch();
    let mut command = pfn(dir.path());
    command.args(["run", "--plugin"]).arg(plugin("exclamation"));
    let output = run_with_stdin(command, b"hello\npulsar\n\nlast line without newline");
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stdout, "hello!\npulsar!\n!\nlast line without newline!\n");
    assert!(
        summary_line(&stderr).starts_with("pfn run: 4 messages: 4 outputs, 0 filtered, 0 dead-lettered"),
        "{stderr}"
    );
}

#[test]
fn json_envelopes_carry_metadata_and_malformed_lines_are_dead_lettered() {
    let dir = scratch();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        concat!(
            r#"{"value":"a","key":"k1","properties":{"p":"v"},"event_time":1700000000000}"#,
            "\n",
            "{not json\n",
            r#"{"value":{"nested":true}}"#,
            "\n",
        ),
    )
    .expect("input written");
    let output_path = dir.path().join("results.txt");
    let library = shape("ctx-only");
    let output = pfn(dir.path())
        .args([
            "run",
            "--input-format",
            "json",
            "--name",
            "meta",
            "--sha256",
            &sha256_of(&library).to_string(),
            "--plugin",
        ])
        .arg(&library)
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&output_path)
        .output()
        .expect("pfn runs");
    let (_, stderr) = texts(&output);
    assert!(output.status.success(), "{stderr}");
    let topic = input.display().to_string();
    assert_eq!(
        std::fs::read_to_string(&output_path).expect("results written"),
        format!(
            "meta 1 key=Some(\"k1\") p=Some(\"v\") t=Some(1700000000000) topic={topic}\n\
             meta 3 key=None p=None t=None topic={topic}\n"
        )
    );
    let dead =
        std::fs::read_to_string(dir.path().join("results.dead-letter.jsonl")).expect("dead letters beside output");
    let letter: serde_json::Value = serde_json::from_str(dead.trim()).expect("one JSON dead letter");
    assert_eq!(letter["reason"], "malformed");
    assert_eq!(letter["message_id"], "2");
    assert_eq!(letter["value"], "{not json");
    assert!(letter["error"].as_str().is_some_and(|e| e.contains("malformed JSON message")), "{letter}");
    assert!(summary_line(&stderr).contains("3 messages: 2 outputs, 0 filtered, 1 dead-lettered"), "{stderr}");
    assert!(stderr.contains("dead letters in"), "{stderr}");
}

#[test]
fn user_config_reaches_the_function() {
    let dir = scratch();
    let library = shape("ctx-str");
    let mut command = pfn(dir.path());
    command
        .args([
            "run",
            "--user-config",
            "suffix=?",
            "--user-config",
            "unused=x=y",
            "--sha256",
            &sha256_of(&library).to_string(),
        ])
        .arg("--plugin")
        .arg(&library);
    let output = run_with_stdin(command, b"why\n");
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stdout, "why?\n");
}

#[test]
fn bad_user_config_is_refused_by_name() {
    let dir = scratch();
    let output = pfn(dir.path())
        .args(["run", "--user-config", "novalue", "--plugin"])
        .arg(plugin("exclamation"))
        .output()
        .expect("pfn runs");
    let (_, stderr) = texts(&output);
    assert!(!output.status.success());
    assert!(stderr.contains("`novalue` is not KEY=VALUE"), "{stderr}");
}

#[test]
fn plugin_logs_reach_the_host_log() {
    let dir = scratch();
    let library = fixture("panicky");
    let mut command = pfn(dir.path());
    command
        .env("PFN_LOG", "warn")
        .args(["run", "--sha256", &sha256_of(&library).to_string(), "--plugin"])
        .arg(&library);
    let output = run_with_stdin(command, b"quiet\nlog this\n");
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stdout, "ok:quiet\nok:log this\n");
    let logged = stderr.lines().find(|line| line.contains("asked to log")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(logged.contains("WARN") && logged.contains("input=\"log this\"") && logged.contains("seen=2"), "{logged}");
    assert!(logged.contains("fqfn=public/default/panicky"), "the host's span is missing: {logged}");
    let from_log_crate = stderr
        .lines()
        .find(|line| line.contains("asked to log through the log crate: log this"))
        .unwrap_or_else(|| panic!("the log crate's record is missing: {stderr}"));
    assert!(from_log_crate.contains("WARN") && from_log_crate.contains("panicky::log_crate"), "{from_log_crate}");
    assert!(!from_log_crate.contains("log.file"), "{from_log_crate}");
}

#[test]
fn failing_init_is_a_clear_error() {
    let dir = scratch();
    let library = fixture("panicky");
    let mut command = pfn(dir.path());
    command
        .args(["run", "--user-config", "panic_in_init=true", "--sha256", &sha256_of(&library).to_string(), "--plugin"])
        .arg(&library);
    let output = run_with_stdin(command, b"never processed\n");
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stdout.is_empty());
    assert!(
        stderr.contains(
            "function public/default/panicky: init of plugin panicky 1.0.0 failed: panic: init was told to panic"
        ),
        "{stderr}"
    );
}

#[test]
fn errors_and_panics_are_counted_apart() {
    let dir = scratch();
    let library = fixture("panicky");
    let dead = dir.path().join("dead.jsonl");
    let mut command = pfn(dir.path());
    command
        .args(["run", "--sha256", &sha256_of(&library).to_string(), "--plugin"])
        .arg(&library)
        .arg("--dead-letter")
        .arg(&dead);
    let output = run_with_stdin(command, b"fine\nerror one\npanic two\n");
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stdout, "ok:fine\n");
    assert!(
        summary_line(&stderr)
            .contains("3 messages: 1 outputs, 0 filtered, 2 dead-lettered (1 errors, 1 panics, 0 bad input"),
        "{stderr}"
    );
    let letters: Vec<serde_json::Value> = std::fs::read_to_string(&dead)
        .expect("dead letters written")
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .collect();
    assert_eq!(letters.len(), 2);
    assert_eq!(
        (letters[0]["reason"].as_str(), letters[0]["error"].as_str()),
        (Some("error"), Some("asked to fail on one"))
    );
    assert_eq!(letters[1]["reason"], "panic");
}

#[test]
fn state_and_secrets_in_pfn_run() {
    let dir = scratch();
    let state_dir = dir.path().join("state");
    let run = |input: &[u8], secret: &str| {
        let mut command = pfn(dir.path());
        let plugin = fixture("stateful");
        command.args(["run", "--plugin"]).arg(&plugin).arg("--sha256").arg(sha256_of(&plugin).to_string());
        command.arg("--state-dir").arg(&state_dir);
        command.args(["--secret", secret]).env("PFN_TEST_RUN_SECRET", "hush");
        run_with_stdin(command, input)
    };
    let first = run(b"incr visits 2\nsecret api\n", "api=env:PFN_TEST_RUN_SECRET");
    let (stdout, stderr) = texts(&first);
    assert!(first.status.success(), "{stderr}");
    assert_eq!(stdout, "2\nsecret api has 4 bytes\n");
    // The same state directory again: the counter goes on from where it was.
    let second = run(b"incr visits 3\n", "api=env:PFN_TEST_RUN_SECRET");
    assert_eq!(texts(&second).0, "5\n", "{}", texts(&second).1);
    let missing = run(b"incr visits 1\n", "api=env:PFN_TEST_RUN_NOT_SET");
    assert!(!missing.status.success());
    assert!(texts(&missing).1.contains("secret api: env:PFN_TEST_RUN_NOT_SET is not set"), "{}", texts(&missing).1);
}
