//! What the process has used, as the operating system reports it.

/// The peak resident set size of this process in KiB (Linux: `VmHWM`), if known.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.trim_start_matches("VmHWM:").trim().trim_end_matches("kB").trim().parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn reads_a_peak() {
        assert!(super::peak_rss_kib().is_some_and(|kib| kib > 0));
    }
}
