//! Reads as a partner dashboard makes them: a run with its metrics, the runs of an
//! exercise, a page of scores, and the streamed export of a small and a large run, whose
//! server memory must be the same.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;
use uuid::Uuid;

use super::{Ops, drive, only};
use crate::client::{Outcome, Session, timed, timed_stream};
use crate::report::Step;
use crate::rss::{self, Sampler};
use crate::setup::Fixture;
use crate::stats::Recorder;

pub struct Config {
    pub concurrency: Vec<usize>,
    pub duration: Duration,
    pub export_rows: u64,
    pub export_small_rows: u64,
    /// Runs the exercise holds at least, for the list.
    pub list_runs: usize,
    pub page: u32,
}

/// The runs a reader reads: released, finished, with metrics.
pub struct Targets {
    pub small: Uuid,
    pub large: Uuid,
}

pub async fn prepare(
    fx: &Fixture,
    config: &Config,
    pid: Option<u32>,
) -> anyhow::Result<(Targets, Vec<Step>)> {
    for _ in 0..config.list_runs {
        fx.queued_run(&fx.us_author).await?;
    }
    let mut targets = Vec::new();
    let mut steps = Vec::new();
    for rows in [config.export_small_rows, config.export_rows] {
        // The runs to export are written the way a harness streams a large run: their
        // server memory is a figure too.
        let mut step = Step::new(
            "read",
            format!("setup: {rows} scores in one streamed NDJSON request"),
        );
        step.params = serde_json::json!({"setup_rows": rows});
        let sampler = Sampler::start(pid);
        let started = Instant::now();
        let run = fx.finished_run(rows, true).await?;
        step.rss = rss::finish(sampler).await;
        let mut recorder = Recorder::default();
        recorder.success(started.elapsed(), rows, 0);
        step.ops
            .push(recorder.summary("ingest, metrics, finish, release", 1, started.elapsed()));
        steps.push(step);
        targets.push(run);
    }
    println!("read: setup done");
    Ok((
        Targets {
            small: targets[0],
            large: targets[1],
        },
        steps,
    ))
}

pub async fn run(
    fx: &Arc<Fixture>,
    config: &Config,
    targets: &Targets,
    pid: Option<u32>,
) -> anyhow::Result<Vec<Step>> {
    let mut steps = Vec::new();
    // Exports first, while the server's heap is smallest: memory the allocator kept
    // from earlier steps would hide an export's growth.
    for (rows, run) in [
        (config.export_small_rows, targets.small),
        (config.export_rows, targets.large),
    ] {
        let mut step = Step::new("read", format!("export of a {rows}-row run, concurrency 1"));
        step.params = serde_json::json!({"export_rows": rows});
        let sampler = Sampler::start(pid);
        let deadline = Instant::now() + config.duration;
        let (ops, elapsed) = drive(vec![()], |_, ()| {
            let fx = fx.clone();
            async move {
                let mut recorder = Recorder::default();
                // At least once, however long one export takes.
                loop {
                    export(&mut recorder, &fx.us_viewer, run, rows).await;
                    if Instant::now() >= deadline {
                        break;
                    }
                }
                only("export (ndjson)", recorder)
            }
        })
        .await?;
        step.rss = rss::finish(sampler).await;
        step.ops = ops
            .into_iter()
            .map(|(op, r)| r.summary(&op, 1, elapsed))
            .collect();
        println!("read: export of {rows} rows done");
        steps.push(step);
    }
    for &concurrency in &config.concurrency {
        for what in [Read::RunWithMetrics, Read::ListRuns, Read::SamplePage] {
            let mut step = Step::new(
                "read",
                format!("{}, concurrency {concurrency}", what.name()),
            );
            step.params = serde_json::json!({"read": what.name(), "concurrency": concurrency});
            let sampler = Sampler::start(pid);
            let deadline = Instant::now() + config.duration;
            let (ops, elapsed) = drive(vec![(); concurrency], |_, ()| {
                let fx = fx.clone();
                let (exercise, run, page) = (fx.exercise_id, targets.large, config.page);
                async move {
                    let mut ops = Ops::new();
                    let mut cursor: Option<String> = None;
                    while Instant::now() < deadline {
                        let reader = &fx.us_viewer;
                        match what {
                            Read::RunWithMetrics => {
                                run_with_metrics(&mut ops, "", reader, run).await
                            }
                            Read::ListRuns => {
                                list_runs(
                                    ops.entry("list runs".into()).or_default(),
                                    reader,
                                    "US",
                                    exercise,
                                )
                                .await;
                            }
                            Read::SamplePage => {
                                cursor = sample_page(
                                    ops.entry(format!("samples page ({page})")).or_default(),
                                    reader,
                                    run,
                                    page,
                                    cursor.take(),
                                )
                                .await;
                            }
                        }
                    }
                    ops
                }
            })
            .await?;
            step.rss = rss::finish(sampler).await;
            step.ops = ops
                .into_iter()
                .map(|(op, r)| r.summary(&op, concurrency, elapsed))
                .collect();
            steps.push(step);
        }
    }
    Ok(steps)
}

#[derive(Debug, Clone, Copy)]
enum Read {
    RunWithMetrics,
    ListRuns,
    SamplePage,
}

impl Read {
    fn name(self) -> &'static str {
        match self {
            Read::RunWithMetrics => "one run with its metrics",
            Read::ListRuns => "the runs of an exercise",
            Read::SamplePage => "a page of sample scores",
        }
    }
}

/// GET the run, then its metrics: what a reader needs to show one run. Each request is
/// recorded on its own, and the pair as a third figure (MLflow's runs/get answers both).
pub async fn run_with_metrics(ops: &mut Ops, prefix: &str, reader: &Session, run: Uuid) {
    let started = Instant::now();
    let mut both_ok = true;
    for (op, path) in [
        ("get run", format!("/v1/runs/{run}")),
        ("get run metrics", format!("/v1/runs/{run}/metrics")),
    ] {
        let recorder = ops.entry(format!("{prefix}{op}")).or_default();
        let Some(request) = authorised(recorder, reader, Method::GET, &path).await else {
            both_ok = false;
            continue;
        };
        let (latency, outcome) = timed(recorder, request, StatusCode::OK).await;
        match outcome {
            Outcome::Ok(_) => recorder.success(latency, 0, 0),
            Outcome::Failed => both_ok = false,
        }
    }
    let pair = ops.entry(format!("{prefix}run + metrics")).or_default();
    if both_ok {
        pair.success(started.elapsed(), 0, 0);
    } else {
        pair.failure(started.elapsed(), "one-failed", "see the single requests");
    }
}

/// The first page of the exercise's runs, checked against what the reader may see:
/// another institute's run that was not released to the reader's is a leak.
pub async fn list_runs(recorder: &mut Recorder, reader: &Session, institute: &str, exercise: Uuid) {
    let path = format!("/v1/exercises/{exercise}/runs?limit=100");
    let Some(request) = authorised(recorder, reader, Method::GET, &path).await else {
        return;
    };
    let (latency, outcome) = timed(recorder, request, StatusCode::OK).await;
    let Outcome::Ok(body) = outcome else { return };
    let page: Value = serde_json::from_slice(&body).unwrap_or_default();
    let Some(items) = page["items"].as_array() else {
        recorder.failure(latency, "bad-body", &String::from_utf8_lossy(&body));
        return;
    };
    let leaked = items.iter().find(|run| {
        run["institute"] != institute
            && !run["released_to"]
                .as_array()
                .is_some_and(|to| to.iter().any(|i| *i == institute))
    });
    match leaked {
        Some(run) => recorder.failure(latency, "leak", &run.to_string()),
        None => recorder.success(latency, items.len() as u64, body.len() as u64),
    }
}

/// One page of scores after `cursor`; answers the next cursor, none at the end (the
/// reader starts again from the first page).
pub async fn sample_page(
    recorder: &mut Recorder,
    reader: &Session,
    run: Uuid,
    limit: u32,
    cursor: Option<String>,
) -> Option<String> {
    let mut request = authorised(
        recorder,
        reader,
        Method::GET,
        &format!("/v1/runs/{run}/samples"),
    )
    .await?;
    request = request.query(&[("limit", limit.to_string())]);
    if let Some(cursor) = &cursor {
        request = request.query(&[("cursor", cursor)]);
    }
    let (latency, outcome) = timed(recorder, request, StatusCode::OK).await;
    let Outcome::Ok(body) = outcome else {
        return None;
    };
    let page: Value = serde_json::from_slice(&body).unwrap_or_default();
    let items = page["items"].as_array().map_or(0, Vec::len) as u64;
    let next = page["next_cursor"].as_str().map(str::to_owned);
    // A full page, unless it is the last one.
    if items == u64::from(limit) || (next.is_none() && items > 0) {
        recorder.success(latency, items, body.len() as u64);
    } else {
        recorder.failure(
            latency,
            "short-page",
            &format!("{items} scores, next cursor {next:?}"),
        );
    }
    next
}

async fn export(recorder: &mut Recorder, reader: &Session, run: Uuid, rows: u64) {
    let Some(request) = authorised(
        recorder,
        reader,
        Method::GET,
        &format!("/v1/runs/{run}/export"),
    )
    .await
    else {
        return;
    };
    if let Some((latency, lines, bytes)) = timed_stream(recorder, request).await {
        if lines == rows {
            recorder.success(latency, lines, bytes);
        } else {
            recorder.failure(
                latency,
                "wrong-count",
                &format!("{lines} lines exported of {rows}"),
            );
        }
    }
}

/// The request with the reader's current token; a failed renewal is recorded.
pub async fn authorised(
    recorder: &mut Recorder,
    session: &Session,
    method: Method,
    path: &str,
) -> Option<reqwest::RequestBuilder> {
    match session.request(method, path).await {
        Ok(r) => Some(r),
        Err(e) => {
            recorder.failure(Duration::ZERO, "token", &format!("{e:#}"));
            None
        }
    }
}
