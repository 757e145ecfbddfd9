//! Per-sample scores through the bulk endpoint, then the same rows by `COPY` straight into
//! `run_samples` on the same database: the ceiling the API is measured against.
//!
//! Each worker writes to a run of its own: an ingestion locks its run, so workers on one
//! run would measure that lock, not the service. Keys never repeat within a run, so every
//! batch takes the API's path for new rows.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use super::{drive, only};
use crate::client::{Outcome, Session, timed};
use crate::report::Step;
use crate::rows;
use crate::rss::{self, Sampler};
use crate::setup::Fixture;
use crate::stats::Recorder;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// application/x-ndjson, streamed by the server as it arrives.
    Ndjson,
    /// One JSON array, held whole by the server (its ordinary body limit applies).
    Json,
}

pub struct Config {
    pub concurrency: Vec<usize>,
    pub batch_sizes: Vec<u64>,
    pub duration: Duration,
    /// Rows per step at most, whatever the time left.
    pub max_rows: u64,
    pub format: Format,
    /// The tables' owner, for COPY; without it, only the API is measured.
    pub database_url: Option<String>,
}

pub async fn run(
    fx: &Arc<Fixture>,
    config: &Config,
    pid: Option<u32>,
) -> anyhow::Result<Vec<Step>> {
    let mut steps = Vec::new();
    for &batch in &config.batch_sizes {
        for &concurrency in &config.concurrency {
            let mut step = Step::new(
                "ingest",
                format!("batch {batch} rows, concurrency {concurrency}"),
            );
            step.params = serde_json::json!({"batch": batch, "concurrency": concurrency});
            let mut runs = Vec::with_capacity(concurrency);
            for _ in 0..concurrency {
                runs.push(fx.running_run(&fx.harness).await?);
            }
            let sampler = Sampler::start(pid);
            let api = through_api(fx, config, batch, runs).await?;
            step.rss = rss::finish(sampler).await;
            let api_rows = api.rows;
            let api_rate = api.rows_per_sec;
            step.ops.push(api);
            if let Some(url) = &config.database_url
                && api_rows > 0
            {
                let mut runs = Vec::with_capacity(concurrency);
                for _ in 0..concurrency {
                    runs.push(fx.running_run(&fx.harness).await?);
                }
                let copy = by_copy(url, batch, api_rows, runs).await?;
                step.api_over_copy = match (api_rate, copy.rows_per_sec) {
                    (Some(a), Some(c)) if c > 0.0 => Some(a / c),
                    _ => None,
                };
                step.ops.push(copy);
            }
            println!(
                "ingest: batch {batch}, concurrency {concurrency}: {api_rows} rows through the API{}",
                step.api_over_copy
                    .map(|r| format!(", API/COPY {r:.2}"))
                    .unwrap_or_default()
            );
            steps.push(step);
        }
    }
    Ok(steps)
}

async fn through_api(
    fx: &Arc<Fixture>,
    config: &Config,
    batch: u64,
    runs: Vec<Uuid>,
) -> anyhow::Result<crate::stats::OpStats> {
    let concurrency = runs.len();
    let budget = Arc::new(AtomicU64::new(0));
    let (max_rows, format) = (config.max_rows, config.format);
    let deadline = Instant::now() + config.duration;
    let (ops, elapsed) = drive(runs, |_, run| {
        let (fx, budget) = (fx.clone(), budget.clone());
        async move {
            let mut recorder = Recorder::default();
            let mut next = 0u64;
            while Instant::now() < deadline
                && budget.fetch_add(batch, Ordering::Relaxed) + batch <= max_rows
            {
                if !send_batch(&mut recorder, &fx.harness, run, &mut next, batch, format).await {
                    break;
                }
            }
            only("api", recorder)
        }
    })
    .await?;
    let name = match format {
        Format::Ndjson => "api (ndjson)",
        Format::Json => "api (json array)",
    };
    Ok(ops
        .into_values()
        .next()
        .unwrap_or_default()
        .summary(name, concurrency, elapsed))
}

/// `rows` rows in batches of `batch`, one COPY statement (and so one transaction) per
/// batch, as the API commits one request at a time.
async fn by_copy(
    url: &str,
    batch: u64,
    rows: u64,
    runs: Vec<Uuid>,
) -> anyhow::Result<crate::stats::OpStats> {
    let concurrency = runs.len();
    // Connected before the clock starts: a client of the API reuses its connections too.
    let mut states = Vec::with_capacity(concurrency);
    for run in runs {
        let conn = PgConnection::connect(url)
            .await
            .context("connecting to --database-url for COPY")?;
        states.push((run, conn));
    }
    let budget = Arc::new(AtomicU64::new(0));
    let statements = (
        format!("copy run_samples ({}) from stdin", rows::COPY_COLUMNS),
        format!(
            "copy run_sample_transcripts ({}) from stdin",
            rows::COPY_TRANSCRIPT_COLUMNS
        ),
    );
    let (ops, elapsed) = drive(states, |_, (run, mut conn)| {
        let (budget, statements) = (budget.clone(), statements.clone());
        async move {
            let mut recorder = Recorder::default();
            let mut next = 0u64;
            while budget.fetch_add(batch, Ordering::Relaxed) + batch <= rows {
                let (results, transcripts) = rows::copy_text(run, next, batch);
                let bytes = (results.len() + transcripts.len()) as u64;
                let started = Instant::now();
                let copied = async {
                    let mut copy = conn.copy_in_raw(&statements.0).await?;
                    copy.send(results).await?;
                    let n = copy.finish().await?;
                    let mut copy = conn.copy_in_raw(&statements.1).await?;
                    copy.send(transcripts).await?;
                    copy.finish().await?;
                    Ok::<_, sqlx::Error>(n)
                }
                .await;
                match copied {
                    Ok(n) if n == batch => {
                        recorder.success(started.elapsed(), batch, bytes);
                        next += batch;
                    }
                    Ok(n) => recorder.failure(
                        started.elapsed(),
                        "wrong-count",
                        &format!("COPY wrote {n} rows of {batch}"),
                    ),
                    Err(e) => {
                        // Row-level security is forced on run_samples: COPY needs an owner
                        // that bypasses it (a superuser), or PostgreSQL refuses it.
                        recorder.failure(started.elapsed(), "copy-error", &e.to_string());
                        break;
                    }
                }
            }
            let _ = conn.close().await;
            only("copy", recorder)
        }
    })
    .await?;
    Ok(ops.into_values().next().unwrap_or_default().summary(
        "copy into run_samples",
        concurrency,
        elapsed,
    ))
}

/// Sends scores `next..next + batch` to `run`, and moves `next` past them once the run
/// holds them. False when the caller should stop (its token could not be renewed).
pub async fn send_batch(
    recorder: &mut Recorder,
    writer: &Session,
    run: Uuid,
    next: &mut u64,
    batch: u64,
    format: Format,
) -> bool {
    let (body, content_type) = match format {
        Format::Ndjson => (rows::ndjson(*next, batch), "application/x-ndjson"),
        Format::Json => (rows::json_array(*next, batch), "application/json"),
    };
    let bytes = body.len() as u64;
    let request = match writer
        .request(Method::POST, &format!("/v1/runs/{run}/samples"))
        .await
    {
        Ok(r) => r.header("content-type", content_type).body(body),
        Err(e) => {
            recorder.failure(Duration::ZERO, "token", &format!("{e:#}"));
            return false;
        }
    };
    let (latency, outcome) = timed(recorder, request, StatusCode::OK).await;
    if let Outcome::Ok(answer) = outcome {
        // The run must hold exactly what was sent so far: a count that is off is a lost
        // or doubled write, whatever the status said.
        let stored = serde_json::from_slice::<Value>(&answer)
            .ok()
            .and_then(|v| v["stored"].as_u64());
        if stored == Some(*next + batch) {
            *next += batch;
            recorder.success(latency, batch, bytes);
        } else {
            recorder.failure(
                latency,
                "wrong-count",
                &format!(
                    "expected stored = {}, got {}",
                    *next + batch,
                    String::from_utf8_lossy(&answer)
                ),
            );
        }
    }
    true
}
