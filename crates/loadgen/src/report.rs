//! The figures: one table for people, one JSON document for BENCHMARKS.md and scripts.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Value, json};

use crate::rss::Rss;
use crate::stats::OpStats;

/// One step of a scenario: its operations' figures over the same span, and the server's
/// memory over it.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub scenario: &'static str,
    pub name: String,
    /// What the step varied (batch size, concurrency, rows exported), for the summary.
    #[serde(skip_serializing_if = "Value::is_null")]
    pub params: Value,
    pub ops: Vec<OpStats>,
    pub rss: Option<Rss>,
    /// Ingest only: the API's rows/s over COPY's, same rows, batches and concurrency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_over_copy: Option<f64>,
}

impl Step {
    pub fn new(scenario: &'static str, name: impl Into<String>) -> Step {
        Step {
            scenario,
            name: name.into(),
            params: Value::Null,
            ops: Vec::new(),
            rss: None,
            api_over_copy: None,
        }
    }
}

fn ms(v: Option<f64>) -> String {
    v.map(|v| {
        if v < 10.0 {
            format!("{v:.2}")
        } else {
            format!("{v:.0}")
        }
    })
    .unwrap_or_else(|| "-".to_owned())
}

fn rate(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

const HEADER: [&str; 11] = [
    "op",
    "conc",
    "requests",
    "req/s",
    "rows/s",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "max ms",
    "errors",
    "server RSS MiB start/max/end",
];

/// The table: one block per step, one line per operation.
pub fn table(steps: &[Step]) -> String {
    let mut out = String::new();
    let mut scenario = "";
    for step in steps {
        if step.scenario != scenario {
            scenario = step.scenario;
            let _ = writeln!(out, "\n== {scenario} ==");
        }
        let mut extra = String::new();
        if let Some(ratio) = step.api_over_copy {
            let _ = write!(extra, "   API/COPY = {ratio:.2}");
        }
        let _ = writeln!(out, "-- {}{extra}", step.name);
        let mut rows: Vec<[String; 11]> = vec![HEADER.map(str::to_owned)];
        for (k, op) in step.ops.iter().enumerate() {
            // The memory is the step's, shown once.
            let rss = match (&step.rss, k) {
                (Some(r), 0) => format!(
                    "{:.0}/{:.0}/{:.0}{}",
                    r.start_mib,
                    r.max_mib,
                    r.end_mib,
                    if r.hwm_reset {
                        format!(" (peak {:.0})", r.hwm_mib)
                    } else {
                        String::new()
                    }
                ),
                _ => String::new(),
            };
            let errors = if op.errors == 0 {
                "0".to_owned()
            } else {
                let kinds: Vec<String> = op
                    .errors_by_status
                    .iter()
                    .map(|(k, n)| format!("{n}×{k}"))
                    .collect();
                kinds.join(" ")
            };
            rows.push([
                op.op.clone(),
                op.concurrency.to_string(),
                op.requests.to_string(),
                rate(op.requests_per_sec),
                op.rows_per_sec.map(rate).unwrap_or_else(|| "-".to_owned()),
                ms(op.p50_ms),
                ms(op.p95_ms),
                ms(op.p99_ms),
                ms(op.max_ms),
                errors,
                rss,
            ]);
        }
        let widths: Vec<usize> = (0..HEADER.len())
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        for row in &rows {
            let mut line = String::from("  ");
            for (c, cell) in row.iter().enumerate() {
                let pad = widths[c] - cell.chars().count();
                // Names left, figures right.
                if c == 0 || c == HEADER.len() - 1 {
                    let _ = write!(line, "{cell}{}  ", " ".repeat(pad));
                } else {
                    let _ = write!(line, "{}{cell}  ", " ".repeat(pad));
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
    }
    out
}

/// What went wrong, for the end of the report: every unexpected answer, with the first
/// body of each kind.
pub fn problems(steps: &[Step]) -> Vec<String> {
    let mut found = Vec::new();
    for step in steps {
        for op in &step.ops {
            for (kind, n) in &op.errors_by_status {
                let body = op
                    .first_error_bodies
                    .get(kind)
                    .map(String::as_str)
                    .unwrap_or("");
                found.push(format!(
                    "{} / {} / {}: {n} × {kind}; first answer: {body}",
                    step.scenario, step.name, op.op
                ));
            }
        }
    }
    found
}

/// The figures BENCHMARKS.md states targets for: API ingestion against COPY, and the
/// server's memory while it exports a small and a large run.
pub fn summary(steps: &[Step]) -> Value {
    let ingest: Vec<Value> = steps
        .iter()
        .filter(|s| s.scenario == "ingest")
        .map(|s| {
            json!({
                "batch": s.params["batch"], "concurrency": s.params["concurrency"],
                "api_rows_per_sec": s.ops.first().and_then(|o| o.rows_per_sec),
                "copy_rows_per_sec": s.ops.get(1).and_then(|o| o.rows_per_sec),
                "api_over_copy": s.api_over_copy,
            })
        })
        .collect();
    let exports: Vec<Value> = steps
        .iter()
        .filter(|s| !s.params["export_rows"].is_null())
        .map(|s| {
            json!({
                "rows": s.params["export_rows"],
                "rows_per_sec": s.ops.first().and_then(|o| o.rows_per_sec),
                "server_rss_max_mib": s.rss.as_ref().map(|r| r.max_mib),
                "server_rss_peak_mib": s.rss.as_ref().filter(|r| r.hwm_reset).map(|r| r.hwm_mib),
                "server_rss_start_mib": s.rss.as_ref().map(|r| r.start_mib),
                // What the export added to the server's memory at most.
                "server_rss_growth_mib": s.rss.as_ref().map(|r| {
                    let peak = if r.hwm_reset { r.hwm_mib.max(r.max_mib) } else { r.max_mib };
                    peak - r.start_mib
                }),
            })
        })
        .collect();
    json!({"ingest": ingest, "export": exports})
}

/// The summary as lines for people.
pub fn summary_text(summary: &Value) -> String {
    let mut out = String::new();
    let figure = |v: &Value| v.as_f64().map_or_else(|| "-".to_owned(), rate);
    if let Some(ingest) = summary["ingest"].as_array().filter(|a| !a.is_empty()) {
        let _ = writeln!(out, "\ningest, rows/s (API / COPY = ratio):");
        for i in ingest {
            let _ = writeln!(
                out,
                "  batch {:>6}, concurrency {:>2}: {:>8} / {:>8} = {}",
                i["batch"],
                i["concurrency"],
                figure(&i["api_rows_per_sec"]),
                figure(&i["copy_rows_per_sec"]),
                i["api_over_copy"]
                    .as_f64()
                    .map_or_else(|| "-".to_owned(), |r| format!("{r:.2}")),
            );
        }
    }
    if let Some(exports) = summary["export"].as_array().filter(|a| !a.is_empty()) {
        let _ = writeln!(out, "\nexport, server RSS (MiB):");
        for e in exports {
            let _ = writeln!(
                out,
                "  {:>9} rows: start {}, max sampled {}, peak {}, growth {}  ({} rows/s)",
                e["rows"],
                figure(&e["server_rss_start_mib"]),
                figure(&e["server_rss_max_mib"]),
                figure(&e["server_rss_peak_mib"]),
                figure(&e["server_rss_growth_mib"]),
                figure(&e["rows_per_sec"]),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Recorder;
    use std::time::Duration;

    #[test]
    fn table_aligns_and_lists_problems() {
        let mut ok = Recorder::default();
        ok.success(Duration::from_millis(12), 1000, 0);
        let mut bad = Recorder::default();
        bad.success(Duration::from_millis(3), 0, 0);
        bad.failure(Duration::from_millis(5000), "503", "{\"title\":\"busy\"}");
        let mut step = Step::new("ingest", "batch 1000, concurrency 4");
        step.ops.push(ok.summary("api", 4, Duration::from_secs(1)));
        step.ops
            .push(bad.summary("copy", 4, Duration::from_secs(1)));
        step.api_over_copy = Some(0.75);
        let text = table(&[step.clone()]);
        assert!(text.contains("== ingest =="), "{text}");
        assert!(text.contains("API/COPY = 0.75"), "{text}");
        assert!(text.contains("1×503"), "{text}");
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("  ")).collect();
        assert_eq!(lines.len(), 3, "{text}");
        // Right-aligned figures end in the column where their header ends.
        let end = lines[0].find("req/s").expect("header") + "req/s".len();
        for line in &lines {
            let bytes = line.as_bytes();
            assert!(bytes[end - 1] != b' ' && bytes[end] == b' ', "{text}");
        }
        let listed = problems(&[step]);
        assert_eq!(listed.len(), 1);
        assert!(listed[0].contains("copy: 1 × 503"), "{}", listed[0]);
        assert!(listed[0].contains("busy"), "{}", listed[0]);
    }

    #[test]
    fn summary_picks_the_targeted_figures() {
        let mut api = Recorder::default();
        api.success(Duration::from_millis(100), 8000, 0);
        let mut copy = Recorder::default();
        copy.success(Duration::from_millis(50), 8000, 0);
        let mut ingest = Step::new("ingest", "batch 1000, concurrency 4");
        ingest.params = json!({"batch": 1000, "concurrency": 4});
        ingest
            .ops
            .push(api.summary("api", 4, Duration::from_secs(1)));
        ingest
            .ops
            .push(copy.summary("copy", 4, Duration::from_secs(2)));
        ingest.api_over_copy = Some(2.0);
        let mut export = Step::new("read", "export");
        export.params = json!({"export_rows": 10000});
        let mut read = Recorder::default();
        read.success(Duration::from_millis(500), 10000, 0);
        export
            .ops
            .push(read.summary("export", 1, Duration::from_millis(500)));
        export.rss = Some(Rss {
            start_mib: 20.0,
            max_mib: 24.0,
            end_mib: 21.0,
            hwm_mib: 25.0,
            hwm_reset: true,
            samples: 10,
        });
        let other = Step::new("read", "list runs");
        let s = summary(&[ingest, other, export]);
        assert_eq!(
            s["ingest"],
            json!([{"batch": 1000, "concurrency": 4, "api_rows_per_sec": 8000.0,
                    "copy_rows_per_sec": 4000.0, "api_over_copy": 2.0}])
        );
        assert_eq!(s["export"].as_array().map(Vec::len), Some(1));
        assert_eq!(s["export"][0]["rows"], 10000);
        assert_eq!(s["export"][0]["rows_per_sec"], 20000.0);
        assert_eq!(s["export"][0]["server_rss_max_mib"], 24.0);
        assert_eq!(s["export"][0]["server_rss_peak_mib"], 25.0);
        let text = summary_text(&s);
        assert!(text.contains("8000 /     4000 = 2.00"), "{text}");
        assert_eq!(s["export"][0]["server_rss_growth_mib"], 5.0);
        assert!(
            text.contains("max sampled 24.0, peak 25.0, growth 5.0"),
            "{text}"
        );
    }
}
