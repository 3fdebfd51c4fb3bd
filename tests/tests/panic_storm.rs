//! A plugin that panics on every other message, over 100,000 messages in one `pfn run`: the
//! process finishes, the counts add up, every panicked input is dead-lettered with its panic
//! message, and peak memory does not grow with the number of panics.

use std::{fmt::Write as _, path::Path};

use pfn_tests::{
    fixtures::{fixture, scratch, sha256_of},
    pfn_cli::{pfn, texts},
};

struct Storm {
    outputs: Vec<String>,
    dead_letters: Vec<serde_json::Value>,
    summary: String,
    peak_rss_kib: u64,
}

/// Runs `panicky` over `messages` lines alternating `ok N` and `panic N`.
fn storm(dir: &Path, messages: usize) -> Storm {
    let input = dir.join(format!("storm-{messages}.txt"));
    let mut lines = String::new();
    for n in 0..messages {
        let _ = writeln!(lines, "{} {n}", if n % 2 == 0 { "ok" } else { "panic" });
    }
    std::fs::write(&input, lines).expect("input written");
    let plugin = fixture("panicky");
    let digest = sha256_of(&plugin).to_string();
    let output_path = dir.join(format!("storm-{messages}.out"));
    let dead_letter_path = dir.join(format!("storm-{messages}.dead.jsonl"));
    let output = pfn(dir)
        .args(["run", "--sha256", &digest, "--plugin"])
        .arg(&plugin)
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&output_path)
        .arg("--dead-letter")
        .arg(&dead_letter_path)
        .output()
        .expect("pfn runs");
    let (_, stderr) = texts(&output);
    assert!(output.status.success(), "pfn run failed: {stderr}");
    let summary = stderr.lines().find(|line| line.starts_with("pfn run: ")).expect("summary line").to_owned();
    let peak_rss_kib = summary
        .split("peak RSS ")
        .nth(1)
        .and_then(|rest| rest.trim_end_matches(" KiB").parse().ok())
        .expect("summary reports peak RSS");
    let outputs = std::fs::read_to_string(&output_path).expect("output written").lines().map(str::to_owned).collect();
    let dead_letters = std::fs::read_to_string(&dead_letter_path)
        .expect("dead letters written")
        .lines()
        .map(|line| serde_json::from_str(line).expect("dead letters are JSON lines"))
        .collect();
    Storm { outputs, dead_letters, summary, peak_rss_kib }
}

#[test]
fn hundred_thousand_messages_half_panicking() {
    let dir = scratch();
    let messages = 100_000;
    let big = storm(dir.path(), messages);
    let half = messages / 2;
    assert!(
        big.summary.contains(&format!(
            "{messages} messages: {half} outputs, 0 filtered, {half} dead-lettered (0 errors, {half} panics"
        )),
        "{}",
        big.summary
    );
    assert_eq!(big.outputs.len(), half);
    for (i, line) in big.outputs.iter().enumerate() {
        assert_eq!(line, &format!("ok:ok {}", 2 * i));
    }
    assert_eq!(big.dead_letters.len(), half);
    for (i, letter) in big.dead_letters.iter().enumerate() {
        let n = 2 * i + 1;
        assert_eq!(letter["reason"], "panic");
        assert_eq!(letter["value"], format!("panic {n}"));
        assert_eq!(letter["message_id"], (n + 1).to_string());
        let error = letter["error"].as_str().expect("error text");
        assert!(error.starts_with(&format!("asked to panic on {n} at ")), "{error}");
        assert!(error.contains("panicky/src/lib.rs"), "panic location missing: {error}");
    }

    // Peak memory is flat: ten times the panics cost no more than a little slack.
    let small = storm(dir.path(), messages / 10);
    let growth = big.peak_rss_kib.saturating_sub(small.peak_rss_kib);
    eprintln!(
        "peak RSS: {} KiB for {} messages, {} KiB for {messages} messages",
        small.peak_rss_kib,
        messages / 10,
        big.peak_rss_kib
    );
    assert!(growth < 4096, "peak RSS grew by {growth} KiB from {} to {messages} messages", messages / 10);
}
