//! What one operation did during one step: latencies, outcomes, rows.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// The `p`-th percentile (0 < p ≤ 100) of sorted values by the nearest-rank method: the
/// smallest value with at least p % of the values at or below it. Nearest rank, not
/// interpolation, so that every figure reported is a latency that was really observed.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() || !(p > 0.0 && p <= 100.0) {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Outcomes recorded by one worker; workers' recorders are merged at the end of a step so
/// that the hot path takes no lock.
#[derive(Debug, Default, Clone)]
pub struct Recorder {
    latencies_ms: Vec<f64>,
    ok: u64,
    rows: u64,
    bytes: u64,
    /// Unexpected outcomes: an HTTP status, or `io` for a request that got no answer.
    errors: BTreeMap<String, u64>,
    /// The first answer of each unexpected kind, to report what the server said.
    first_error: BTreeMap<String, String>,
}

fn millis(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

/// The longest error body kept for the report.
const ERROR_BODY_CHARS: usize = 600;

impl Recorder {
    pub fn success(&mut self, latency: Duration, rows: u64, bytes: u64) {
        self.latencies_ms.push(millis(latency));
        self.ok += 1;
        self.rows += rows;
        self.bytes += bytes;
    }

    /// A failed request still took time: its latency counts, so that a server answering
    /// errors fast does not look faster in the percentiles than it is to its clients.
    pub fn failure(&mut self, latency: Duration, kind: &str, body: &str) {
        self.latencies_ms.push(millis(latency));
        *self.errors.entry(kind.to_owned()).or_default() += 1;
        self.first_error
            .entry(kind.to_owned())
            .or_insert_with(|| body.chars().take(ERROR_BODY_CHARS).collect());
    }

    pub fn merge(&mut self, other: Recorder) {
        self.latencies_ms.extend(other.latencies_ms);
        self.ok += other.ok;
        self.rows += other.rows;
        self.bytes += other.bytes;
        for (kind, n) in other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
        for (kind, body) in other.first_error {
            self.first_error.entry(kind).or_insert(body);
        }
    }

    pub fn summary(mut self, name: &str, concurrency: usize, elapsed: Duration) -> OpStats {
        self.latencies_ms.sort_by(f64::total_cmp);
        let secs = elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
        let requests = self.latencies_ms.len() as u64;
        let errors: u64 = self.errors.values().sum();
        let sorted = &self.latencies_ms;
        OpStats {
            op: name.to_owned(),
            concurrency,
            seconds: elapsed.as_secs_f64(),
            requests,
            ok: self.ok,
            errors,
            errors_by_status: self.errors,
            first_error_bodies: self.first_error,
            requests_per_sec: requests as f64 / secs,
            rows: self.rows,
            rows_per_sec: (self.rows > 0).then(|| self.rows as f64 / secs),
            mib: self.bytes as f64 / (1024.0 * 1024.0),
            p50_ms: percentile(sorted, 50.0),
            p95_ms: percentile(sorted, 95.0),
            p99_ms: percentile(sorted, 99.0),
            max_ms: sorted.last().copied(),
        }
    }
}

/// One operation's figures over one step.
#[derive(Debug, Clone, Serialize)]
pub struct OpStats {
    pub op: String,
    pub concurrency: usize,
    pub seconds: f64,
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    pub errors_by_status: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub first_error_bodies: BTreeMap<String, String>,
    pub requests_per_sec: f64,
    /// Rows written or read by the successful requests (ingest, page reads, exports).
    pub rows: u64,
    pub rows_per_sec: Option<f64>,
    /// Bytes of the bodies read or sent, where they matter (exports, ingest).
    pub mib: f64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), Some(50.0));
        assert_eq!(percentile(&values, 95.0), Some(95.0));
        assert_eq!(percentile(&values, 99.0), Some(99.0));
        assert_eq!(percentile(&values, 100.0), Some(100.0));
        // Ten values: p95 and p99 are the largest, p50 the fifth.
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&ten, 50.0), Some(5.0));
        assert_eq!(percentile(&ten, 95.0), Some(10.0));
        assert_eq!(percentile(&ten, 99.0), Some(10.0));
        assert_eq!(percentile(&ten, 1.0), Some(1.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&ten, 0.0), None);
        assert_eq!(percentile(&ten, 101.0), None);
    }

    #[test]
    fn summary_sorts_and_counts_failures_in_latency() {
        let mut a = Recorder::default();
        a.success(Duration::from_millis(30), 1000, 10);
        a.success(Duration::from_millis(10), 1000, 10);
        let mut b = Recorder::default();
        b.failure(Duration::from_millis(20), "503", "{\"status\":503}");
        b.failure(Duration::from_millis(40), "503", "second body, not kept");
        b.failure(Duration::from_millis(5), "io", "connection reset");
        a.merge(b);
        let s = a.summary("ingest", 4, Duration::from_secs(2));
        assert_eq!(s.requests, 5);
        assert_eq!(s.ok, 2);
        assert_eq!(s.errors, 3);
        assert_eq!(s.errors_by_status.get("503"), Some(&2));
        assert_eq!(s.errors_by_status.get("io"), Some(&1));
        assert_eq!(
            s.first_error_bodies.get("503").map(String::as_str),
            Some("{\"status\":503}")
        );
        assert_eq!(s.rows, 2000);
        assert_eq!(s.rows_per_sec, Some(1000.0));
        assert_eq!(s.requests_per_sec, 2.5);
        assert_eq!(s.p50_ms, Some(20.0));
        assert_eq!(s.max_ms, Some(40.0));
    }
}
