//! What the process has used, as the operating system reports it.

/// `/proc/self/status`, read once.
fn status() -> Option<String> {
    std::fs::read_to_string("/proc/self/status").ok()
}

/// A `kB` field of a `/proc/self/status` text.
fn field_kib(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with(field))?;
    line[field.len()..].trim().trim_end_matches("kB").trim().parse().ok()
}

/// The peak resident set size of this process in KiB (Linux: `VmHWM`), if known.
pub fn peak_rss_kib() -> Option<u64> {
    field_kib(&status()?, "VmHWM:")
}

/// The current resident set size of this process in KiB (Linux: `VmRSS`), if known.
pub fn current_rss_kib() -> Option<u64> {
    field_kib(&status()?, "VmRSS:")
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn reads_a_peak_and_the_current_size() {
        assert!(super::peak_rss_kib().is_some() && super::current_rss_kib().is_some());
        // Both from one read: the kernel reports the peak as at least the size of that moment,
        // while two reads can cross when other tests' threads grow or shrink the process.
        let status = super::status().expect("/proc/self/status");
        let current = super::field_kib(&status, "VmRSS:").expect("VmRSS");
        let peak = super::field_kib(&status, "VmHWM:").expect("VmHWM");
        assert!(current > 0 && current <= peak, "{current} {peak}");
    }
}
