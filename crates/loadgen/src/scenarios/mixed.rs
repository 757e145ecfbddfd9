//! Readers and writers at once, each with a token of its own institute, so that every
//! request goes through the access checks: US and UK viewers read a US run released to
//! UK, the UK viewer also asks for a US run that was not released (it must not exist for
//! them), while the US harness writes scores.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use uuid::Uuid;

use super::ingest::{Format, send_batch};
use super::read::{authorised, list_runs, run_with_metrics, sample_page};
use super::{Ops, drive};
use crate::client::{Outcome, timed};
use crate::report::Step;
use crate::rss::{self, Sampler};
use crate::setup::Fixture;

pub struct Config {
    pub readers: usize,
    pub writers: usize,
    pub batch: u64,
    pub format: Format,
    pub duration: Duration,
    pub page: u32,
    /// Scores of the released run that readers page through.
    pub released_rows: u64,
}

enum Worker {
    /// The harness, writing to a running run of its own.
    Writer(Uuid),
    /// A viewer of the institute (`US` or `UK`).
    Reader(&'static str),
}

pub async fn run(fx: &Arc<Fixture>, config: &Config, pid: Option<u32>) -> anyhow::Result<Step> {
    let released = fx.finished_run(config.released_rows, true).await?;
    let unreleased = fx.finished_run(1_000, false).await?;
    let mut workers = Vec::new();
    for _ in 0..config.writers {
        workers.push(Worker::Writer(fx.running_run(&fx.harness).await?));
    }
    for k in 0..config.readers {
        workers.push(Worker::Reader(if k % 2 == 0 { "US" } else { "UK" }));
    }
    let mut step = Step::new(
        "mixed",
        format!(
            "{} readers (US and UK viewers) and {} writer(s) (the US harness, batches of {}) at once",
            config.readers, config.writers, config.batch
        ),
    );
    step.params = serde_json::json!({"readers": config.readers, "writers": config.writers,
                                     "batch": config.batch});
    let deadline = Instant::now() + config.duration;
    let (batch, format, page) = (config.batch, config.format, config.page);
    let sampler = Sampler::start(pid);
    let (ops, elapsed) = drive(workers, |_, worker| {
        let fx = fx.clone();
        async move {
            let mut ops = Ops::new();
            match worker {
                Worker::Writer(run) => {
                    let recorder = ops
                        .entry(format!("US harness ingest ({batch} rows)"))
                        .or_default();
                    let mut next = 0;
                    while Instant::now() < deadline {
                        if !send_batch(recorder, &fx.harness, run, &mut next, batch, format).await {
                            break;
                        }
                    }
                }
                Worker::Reader(institute) => {
                    let reader = if institute == "UK" {
                        &fx.uk_viewer
                    } else {
                        &fx.us_viewer
                    };
                    let mut cursor = None;
                    while Instant::now() < deadline {
                        run_with_metrics(&mut ops, &format!("{institute} "), reader, released)
                            .await;
                        cursor = sample_page(
                            ops.entry(format!("{institute} samples page ({page})"))
                                .or_default(),
                            reader,
                            released,
                            page,
                            cursor,
                        )
                        .await;
                        list_runs(
                            ops.entry(format!("{institute} list runs")).or_default(),
                            reader,
                            institute,
                            fx.exercise_id,
                        )
                        .await;
                        if institute == "UK" {
                            let recorder = ops
                                .entry("UK get unreleased US run (404 expected)".to_owned())
                                .or_default();
                            if let Some(request) = authorised(
                                recorder,
                                reader,
                                Method::GET,
                                &format!("/v1/runs/{unreleased}"),
                            )
                            .await
                            {
                                let (latency, outcome) =
                                    timed(recorder, request, StatusCode::NOT_FOUND).await;
                                if let Outcome::Ok(_) = outcome {
                                    recorder.success(latency, 0, 0);
                                }
                            }
                        }
                    }
                }
            }
            ops
        }
    })
    .await?;
    step.rss = rss::finish(sampler).await;
    // How many workers did each operation: the writers, or the readers of its institute.
    let uk_readers = config.readers / 2;
    let us_readers = config.readers - uk_readers;
    step.ops = ops
        .into_iter()
        .map(|(op, r)| {
            let workers = if op.starts_with("US harness") {
                config.writers
            } else if op.starts_with("UK") {
                uk_readers
            } else {
                us_readers
            };
            r.summary(&op, workers, elapsed)
        })
        .collect();
    println!("mixed: done");
    Ok(step)
}
