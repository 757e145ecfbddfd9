//! The server process's memory during a step, from /proc/<pid>/status.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;

/// A field of /proc/<pid>/status (`VmRSS:`, `VmHWM:` …) in KiB.
pub fn status_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
}

fn read(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some((
        status_kib(&status, "VmRSS:")?,
        status_kib(&status, "VmHWM:")?,
    ))
}

/// The server's resident memory over one step, in MiB.
#[derive(Debug, Clone, Serialize)]
pub struct Rss {
    pub start_mib: f64,
    /// The largest of the samples taken every 50 ms.
    pub max_mib: f64,
    pub end_mib: f64,
    /// The kernel's peak (VmHWM) at the end of the step. It was reset at the start when
    /// `hwm_reset`, so then it is the step's own peak, one that sampling may have missed.
    pub hwm_mib: f64,
    pub hwm_reset: bool,
    pub samples: usize,
}

/// Samples the server's memory until [`Sampler::finish`].
pub struct Sampler {
    pid: u32,
    start_kib: u64,
    hwm_reset: bool,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(u64, usize)>,
}

const PERIOD: Duration = Duration::from_millis(50);

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

impl Sampler {
    /// None without a pid, or when the process cannot be read.
    pub fn start(pid: Option<u32>) -> Option<Sampler> {
        let pid = pid?;
        // Writing 5 to clear_refs resets the peak to the current size (Linux ≥ 4.0), so
        // that VmHWM at the end is this step's peak, not the largest of the run so far.
        // Only a process we may trace accepts it; without it, the sampled max still is.
        let hwm_reset = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
        let (start_kib, _) = read(pid)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let (mut max, mut samples) = (start_kib, 1usize);
            while !flag.load(Ordering::Relaxed) {
                tokio::time::sleep(PERIOD).await;
                if let Some((rss, _)) = read(pid) {
                    max = max.max(rss);
                    samples += 1;
                }
            }
            (max, samples)
        });
        Some(Sampler {
            pid,
            start_kib,
            hwm_reset,
            stop,
            task,
        })
    }

    pub async fn finish(self) -> Option<Rss> {
        self.stop.store(true, Ordering::Relaxed);
        let (max, samples) = self.task.await.ok()?;
        let (end, hwm) = read(self.pid)?;
        Some(Rss {
            start_mib: mib(self.start_kib),
            max_mib: mib(max.max(end)),
            end_mib: mib(end),
            hwm_mib: mib(hwm),
            hwm_reset: self.hwm_reset,
            samples: samples + 1,
        })
    }
}

/// What `sampler` saw, when there was one to start (the server's pid was given).
pub async fn finish(sampler: Option<Sampler>) -> Option<Rss> {
    match sampler {
        Some(s) => s.finish().await,
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_status_fields() {
        let status = "Name:\tjointeval\nVmPeak:\t  912345 kB\nVmHWM:\t   81234 kB\nVmRSS:\t   40960 kB\nThreads:\t5\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(40960));
        assert_eq!(status_kib(status, "VmHWM:"), Some(81234));
        assert_eq!(status_kib(status, "VmSwap:"), None);
        assert_eq!(status_kib(status, "Threads:"), None, "not a size in kB");
    }

    #[tokio::test]
    async fn samples_this_process() {
        let sampler = Sampler::start(Some(std::process::id())).expect("our own status");
        tokio::time::sleep(Duration::from_millis(120)).await;
        let rss = sampler.finish().await.expect("figures");
        assert!(rss.start_mib > 0.0 && rss.end_mib > 0.0);
        assert!(rss.max_mib >= rss.start_mib && rss.max_mib >= rss.end_mib);
        assert!(rss.samples >= 2);
        assert!(Sampler::start(None).is_none());
    }
}
