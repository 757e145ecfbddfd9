//! This process's resident memory, from /proc/self/status (Linux).

#![allow(dead_code)] // each benchmark uses its own part of this module

/// A field of /proc/self/status, in KiB.
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The peak resident set (`VmHWM`), in KiB: this address space's own, unlike
/// `getrusage`'s `ru_maxrss`, which keeps the peak of the process that forked it.
pub fn peak_kib() -> u64 {
    status_kib("VmHWM:")
}

/// Resets the peak resident size to the current one and answers it, so that the peak
/// read afterwards is what was added since.
pub fn reset_peak() -> u64 {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    status_kib("VmRSS:")
}
