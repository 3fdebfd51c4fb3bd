//! Summaries of abi_stable's layout-mismatch reports, which run to hundreds of lines.

/// The most lines of a summary.
const MAX_LINES: usize = 8;

/// Keeps the lines that say what differs (`expected`/`found` pairs and the error headings),
/// each trimmed, at most [`MAX_LINES`] of them.
pub fn summarise(report: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    for line in report.lines().map(str::trim).filter(|line| !line.is_empty()) {
        let lower = line.to_ascii_lowercase();
        let telling = lower.starts_with("expected") || lower.starts_with("found") || lower.starts_with("error");
        if telling && !kept.contains(&line) {
            kept.push(line);
        }
    }
    if kept.is_empty() {
        kept = report.lines().map(str::trim).filter(|line| !line.is_empty()).take(MAX_LINES).collect();
    }
    let total = kept.len();
    let mut summary = kept.into_iter().take(MAX_LINES).collect::<Vec<_>>().join("; ");
    if total > MAX_LINES {
        summary.push_str(&format!("; ... ({} more differences)", total - MAX_LINES));
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::summarise;

    #[test]
    fn keeps_expected_and_found_lines() {
        let report = "Error:\n  a long path\n  expected: u32\n  found: u64\n  noise\n";
        assert_eq!(summarise(report), "Error:; expected: u32; found: u64");
    }

    #[test]
    fn caps_long_reports() {
        let report: String = (0..20).map(|i| format!("expected: t{i}\n")).collect();
        let summary = summarise(&report);
        assert!(summary.ends_with("(12 more differences)"), "{summary}");
    }
}
