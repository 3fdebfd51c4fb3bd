//! Summaries of abi_stable's layout-mismatch reports, which run to hundreds of lines.
//!
//! A report holds, among dumps of both layouts, blocks of the form
//! `Error:<what>` / `Expected:` / `    <value>` / `Found:` / `    <value>`, and the headers
//! `Layout of expected type:` / `Layout of found type:` followed by `type:`, `size:` and
//! `package:` lines. The summary keeps those and drops the dumps.

/// The most mismatches a summary lists.
const MAX_MISMATCHES: usize = 4;

#[derive(Default)]
struct Mismatch {
    what: String,
    expected: Vec<String>,
    found: Vec<String>,
}

#[derive(Clone, Copy, PartialEq)]
enum Reading {
    Nothing,
    Expected,
    Found,
    ExpectedType,
    FoundType,
}

/// One line per mismatch: `<what>: expected <value>, found <value>`, after the mismatching
/// types as `<type> (<size>, <package>)`.
pub fn summarise(report: &str) -> String {
    let mut mismatches: Vec<Mismatch> = Vec::new();
    let (mut expected_type, mut found_type) = (Vec::new(), Vec::new());
    let mut reading = Reading::Nothing;
    for raw in report.lines() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(what) = line.strip_prefix("Error:") {
            mismatches.push(Mismatch { what: what.trim().to_owned(), ..Mismatch::default() });
            reading = Reading::Nothing;
        } else if line == "Expected:" {
            reading = Reading::Expected;
        } else if line == "Found:" {
            reading = Reading::Found;
        } else if line == "Layout of expected type:" {
            reading = Reading::ExpectedType;
            expected_type.clear();
        } else if line == "Layout of found type:" {
            reading = Reading::FoundType;
            found_type.clear();
        } else if !raw.starts_with(' ') {
            reading = Reading::Nothing;
        } else {
            match (reading, mismatches.last_mut()) {
                (Reading::Expected, Some(mismatch)) => mismatch.expected.push(line.to_owned()),
                (Reading::Found, Some(mismatch)) => mismatch.found.push(line.to_owned()),
                (Reading::ExpectedType, _) => keep_type_fact(&mut expected_type, line),
                (Reading::FoundType, _) => keep_type_fact(&mut found_type, line),
                _ => {}
            }
        }
    }
    if mismatches.is_empty() {
        return report.lines().map(str::trim).find(|line| !line.is_empty()).unwrap_or("no details").to_owned();
    }
    let mut parts = Vec::new();
    if !expected_type.is_empty() || !found_type.is_empty() {
        parts.push(format!("expected type {}, found type {}", describe(&expected_type), describe(&found_type)));
    }
    for mismatch in mismatches.iter().take(MAX_MISMATCHES) {
        parts.push(format!(
            "{}: expected {}, found {}",
            mismatch.what,
            mismatch.expected.join(" "),
            mismatch.found.join(" ")
        ));
    }
    if mismatches.len() > MAX_MISMATCHES {
        parts.push(format!("and {} more mismatches", mismatches.len() - MAX_MISMATCHES));
    }
    parts.join("; ")
}

fn keep_type_fact(facts: &mut Vec<String>, line: &str) {
    let wanted = ["type:", "size:", "package:"];
    if facts.len() < wanted.len() && wanted.iter().any(|prefix| line.starts_with(prefix)) {
        facts.push(line.to_owned());
    }
}

fn describe(facts: &[String]) -> String {
    match facts.split_first() {
        Some((name, rest)) => format!("{} ({})", name.trim_start_matches("type:"), rest.join(", ")),
        None => "?".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::summarise;

    const REPORT: &str = "Compared <this>:\n    --- Type Layout ---\n    type:X\nLayout of expected type:\n    --- Type Layout ---\n    type:PluginModule\n    size:80 align:8\n    package:'pfn-abi' version:'1.0.0'\n    line:28\nLayout of found type:\n    --- Type Layout ---\n    type:PluginModule\n    size:48 align:8\n    package:'other' version:'1.0.0'\nError:mismatched package\nExpected:\n    pfn-abi\nFound:\n    other\n";

    #[test]
    fn keeps_the_mismatch_and_the_types() {
        assert_eq!(
            summarise(REPORT),
            "expected type PluginModule (size:80 align:8, package:'pfn-abi' version:'1.0.0'), \
             found type PluginModule (size:48 align:8, package:'other' version:'1.0.0'); \
             mismatched package: expected pfn-abi, found other"
        );
    }

    #[test]
    fn caps_long_reports() {
        let report: String = (0..6).map(|i| format!("Error:e{i}\nExpected:\n    a\nFound:\n    b\n")).collect();
        assert!(summarise(&report).ends_with("and 2 more mismatches"), "{}", summarise(&report));
    }
}
