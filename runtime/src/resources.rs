//! What the process has used, as the operating system reports it.

/// Reads a `kB` field of `/proc/self/status`.
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line[field.len()..].trim().trim_end_matches("kB").trim().parse().ok()
}

/// The peak resident set size of this process in KiB (Linux: `VmHWM`), if known.
pub fn peak_rss_kib() -> Option<u64> {
    status_kib("VmHWM:")
}

/// The current resident set size of this process in KiB (Linux: `VmRSS`), if known.
pub fn current_rss_kib() -> Option<u64> {
    status_kib("VmRSS:")
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn reads_a_peak_and_the_current_size() {
        // The size first: other tests' threads may grow the process in between, and the peak
        // read later is at least any size before it.
        let current = super::current_rss_kib().expect("VmRSS");
        let peak = super::peak_rss_kib().expect("VmHWM");
        assert!(current > 0 && current <= peak, "{current} {peak}");
    }
}
