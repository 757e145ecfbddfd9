//! A run's per-sample scores: ingested while it runs, and read a page at a time.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use chrono::Utc;
use jointeval_domain::audit::Change;
use jointeval_domain::run::StoredScore;
use jointeval_domain::{Action, ValidationError};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::access::{self, Lock};
use crate::auth::Caller;
use crate::extract::{ApiPath, ApiQuery};
use crate::ingest;
use crate::pagination::{Page, PageQuery, key_text};
use crate::problem::{ApiError, Problem};
use crate::work::Work;

/// What an ingestion wrote.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"lines": 20000, "stored": 20000}))]
pub struct Ingested {
    /// Scores read from the request.
    pub lines: u64,
    /// Scores the run holds after it: a (sample id, epoch, scorer) sent again counts once.
    pub stored: i64,
}

/// Ingests per-sample scores while the run is running, as a JSON array or as an NDJSON
/// stream (`application/x-ndjson`, one score per line), read as it arrives. All or
/// nothing per request; the error names the first bad line (for a JSON array, its
/// 1-based position). Idempotent on (sample id, epoch, scorer): within a request the
/// last line of a key wins, and a key sent again replaces what was stored.
#[utoipa::path(
    post, path = "/v1/runs/{id}/samples", tag = "runs",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The run")),
    request_body(content(
        (Vec<jointeval_domain::run::SampleScore> = "application/json"),
        (jointeval_domain::run::SampleScore = "application/x-ndjson"),
    ), description = "Scores: a JSON array, or one JSON object per line"),
    responses(
        (status = 200, description = "Ingested", body = Ingested),
        (status = 403, description = "Not an evaluator of the executing institute", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such run", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The run is not running", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is over the limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Neither JSON nor NDJSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A line is invalid; `errors[0].field` names it (`line 12: value`)", body = Problem, content_type = "application/problem+json",
         example = json!({"type": "urn:jointeval:problem:validation", "title": "Invalid request", "status": 422,
                          "detail": "line 12: value: must be a finite number or a label",
                          "errors": [{"field": "line 12: value", "message": "must be a finite number or a label"}]})),
    )
)]
pub async fn ingest_samples(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Json<Ingested>, ApiError> {
    let format = ingest::Format::of(&headers)?;
    let mut work = Work::begin(&state, &caller).await?;
    // Access and state first, without holding the run: an upload lasts as long as its
    // body takes to arrive, and the run's heartbeats and readers must not wait for it.
    let run = access::run(&mut work, id, Action::ExecuteRun, Lock::No).await?;
    run.check_lease(caller.account.id, Utc::now())?;
    run.status.check_results()?;
    let started = std::time::Instant::now();
    let ingestion =
        ingest::from_body(&mut work, id, body, format, state.settings.body_limit).await?;
    // The run is held only for the count and the commit, and judged again: it may have
    // finished, or passed to another worker, while the body came in.
    let run = access::run(&mut work, id, Action::ExecuteRun, Lock::ForUpdate).await?;
    run.check_lease(caller.account.id, Utc::now())?;
    run.status.check_results()?;
    let stored = jointeval_store::runs::count_new_samples(&mut work, id, ingestion.new).await?;
    let lines = ingestion.lines;
    let change = Change::for_run("run.samples_ingested", &run)
        .summary(json!({"lines": lines, "stored": stored}));
    work.commit_audited(&change).await?;
    // Where an ingestion spends its time: reading and parsing the body (overlapping the
    // writes), writing its rows, and the count with the commit.
    tracing::info!(
        run_id = %id,
        lines,
        stored,
        read_ms = ingestion.read.as_millis() as u64,
        write_ms = ingestion.writing.as_millis() as u64,
        commit_ms = (started.elapsed().saturating_sub(ingestion.read)).as_millis() as u64,
        "samples ingested"
    );
    Ok(Json(Ingested { lines, stored }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SampleQuery {
    pub scorer: Option<String>,
    pub epoch: Option<i32>,
    /// Scores whose `number` is at least this (a label without a number is left out).
    pub value_min: Option<f64>,
    /// Scores whose `number` is at most this (a label without a number is left out).
    pub value_max: Option<f64>,
    /// 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// The most sample scores one page holds.
const MAX_SAMPLE_PAGE: u32 = 1_000;

/// Reads a run's per-sample scores, ordered by (sample id, epoch, scorer): their results,
/// and their transcripts where the caller may read them (the run's institute, and those
/// its transcripts were released to); `transcripts_withheld` says where not.
#[utoipa::path(
    get, path = "/v1/runs/{id}/samples", tag = "runs",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The run"), SampleQuery),
    responses(
        (status = 200, description = "A page of scores", body = Page<StoredScore>),
        (status = 404, description = "No such run, or one not released to the caller's institutes", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_samples(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<SampleQuery>,
) -> Result<Json<Page<StoredScore>>, ApiError> {
    let page = PageQuery {
        limit: query.limit,
        cursor: query.cursor,
    }
    .validate_up_to(MAX_SAMPLE_PAGE)?;
    let after: Option<(String, i32, String)> = page.after_key()?;
    let mut work = Work::begin(&state, &caller).await?;
    let run = access::run(&mut work, id, Action::ReadRun, Lock::No).await?;
    let transcripts = access::reads_transcripts(&work, &run);
    if query.value_min.is_some_and(|v| !v.is_finite())
        || query.value_max.is_some_and(|v| !v.is_finite())
    {
        return Err(
            ValidationError::new("value_min", "value bounds must be finite numbers").into(),
        );
    }
    let rows = jointeval_store::runs::samples(
        &mut work,
        id,
        &jointeval_store::runs::SampleFilter {
            scorer: query.scorer.as_deref(),
            epoch: query.epoch,
            value_min: query.value_min,
            value_max: query.value_max,
            transcripts,
        },
        after.as_ref().map(|(s, e, c)| (s.as_str(), *e, c.as_str())),
        page.fetch(),
    )
    .await?;
    work.commit().await?;
    let page = Page::from_rows(rows, page.limit, |r| {
        key_text(&(&r.sample_id, r.epoch, &r.scorer))
    });
    Ok(Json(page.map(|r| r.into_score(!transcripts))))
}
