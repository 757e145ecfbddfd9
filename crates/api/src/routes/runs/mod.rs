//! Test runs in an exercise: created and moved by the executing institute's evaluators,
//! their metrics, and their release to the partners. Before release, a run does not
//! exist for any other institute.

pub(crate) mod export;
pub(crate) mod reductions;
pub(crate) mod samples;
pub(crate) mod summary;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use jointeval_domain::audit::Change;
use jointeval_domain::run::{MetricValue, RunDescription, RunStatus, validate_metrics};
use jointeval_domain::{AccountKind, Action, ValidationError};
use jointeval_store::runs::NewRun;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::access::{self, Lock};
use crate::auth::Caller;
use crate::extract::{ApiJson, ApiPath, ApiQuery, IfMatch, OptionalJson};
use crate::idempotency::{self, IdempotencyHeader, IdempotentJson};
use crate::pagination::{Page, PageQuery};
use crate::problem::{ApiError, FieldError, Problem};
use crate::views::{HarnessRef, RunView};
use crate::work::Work;

/// A new run.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "protocol_id": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d20", "protocol_version": 2,
    "harness": {"name": "inspect", "version": "0.3.285"}, "config": {"temperature": 0},
    "model_version": "example-large-2026-10-01-release"
}))]
pub struct NewRunRequest {
    pub protocol_id: Uuid,
    /// The version the exercise uses.
    pub protocol_version: i32,
    /// The executing institute (code), when the caller evaluates for more than one.
    pub institute: Option<String>,
    pub harness: HarnessRef,
    /// The harness configuration, at most 64 KiB of JSON. What it states by Inspect's
    /// names (`task`, `dataset`, `solver`, generation settings and limits at its top
    /// level) is held to the protocol version when the run finishes.
    #[serde(default)]
    pub config: serde_json::Value,
    /// The model version actually tested: the exercise's model under test, named by its
    /// `version`, or its `name` and `version` joined by `-`, `/`, `@` or `:`, after any
    /// provider prefix (`openai/gpt-4o-2024-08-06`).
    pub model_version: String,
}

/// Creates a queued run in an active exercise, executed by the caller's institute.
/// With an `Idempotency-Key`, a retry answers the first answer instead of a second run.
#[utoipa::path(
    post, path = "/v1/exercises/{id}/runs", tag = "runs",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The exercise"), IdempotencyHeader),
    request_body = NewRunRequest,
    responses(
        (status = 201, description = "Queued", body = RunView, headers(("Location" = String, description = "The run"))),
        (status = 403, description = "Not an evaluator of a participating institute", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such exercise", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The exercise is not active", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is invalid (the model not the exercise's model under test, the protocol version not the exercise's …), or the key was used for another request", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_run(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(exercise_id): ApiPath<Uuid>,
    IdempotentJson { key, request }: IdempotentJson<NewRunRequest>,
) -> Result<Response, ApiError> {
    let mut work = Work::begin(&state, &caller).await?;
    if let Some(first) = idempotency::replay(&mut work, key.as_ref()).await? {
        work.commit().await?;
        return Ok(first);
    }
    let access::Placement {
        institute,
        codes,
        mut errors,
    } = access::place_run(
        &mut work,
        exercise_id,
        request.institute.as_deref(),
        (request.protocol_id, request.protocol_version),
        Some(("model_version", &request.model_version)),
    )
    .await?;
    let described = RunDescription::new(
        &request.harness.name,
        &request.harness.version,
        &request.model_version,
        request.config,
    );
    if let Err(invalid) = &described {
        errors.extend(invalid.iter().cloned().map(FieldError::from));
    }
    let described = match described {
        Ok(described) if errors.is_empty() => described,
        _ => return Err(Problem::validation(errors).into()),
    };
    let run = jointeval_store::runs::insert(
        &mut work,
        &NewRun {
            exercise_id,
            protocol_id: request.protocol_id,
            protocol_version: request.protocol_version,
            institute_id: institute,
            description: &described,
            created_by: caller.account.id,
        },
    )
    .await?;
    let location = format!("/v1/runs/{}", run.id);
    let change = Change::for_run("run.created", &run).summary(json!({
        "exercise_id": run.exercise_id, "protocol_id": run.protocol_id,
        "protocol_version": run.protocol_version, "harness_name": run.harness_name,
        "harness_version": run.harness_version, "model_version": run.model_version,
        "idempotency_key": key.as_ref().map(|k| k.as_str()),
    }));
    let view = RunView::new(run, &codes);
    idempotency::remember(&mut work, key.as_ref(), StatusCode::CREATED, &view).await?;
    work.commit_audited(&change).await?;
    tracing::info!(run_id = %view.id, "run queued");
    Ok(super::with_header(
        (StatusCode::CREATED, Json(view)).into_response(),
        header::LOCATION,
        &location,
    ))
}

/// Lists the runs of an exercise the caller may see: its institutes' own, and those
/// released to them.
#[utoipa::path(
    get, path = "/v1/exercises/{id}/runs", tag = "runs",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The exercise"), PageQuery),
    responses(
        (status = 200, description = "A page of runs", body = Page<RunView>),
        (status = 404, description = "No such exercise", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_runs(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(exercise_id): ApiPath<Uuid>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<Page<RunView>>, ApiError> {
    let page = page.validate()?;
    let after = page.after_id()?;
    let mut work = Work::begin(&state, &caller).await?;
    let institutes = access::exercise_runs(&mut work, exercise_id).await?;
    let rows = jointeval_store::runs::list_visible(
        &mut work,
        exercise_id,
        &institutes,
        after,
        page.fetch(),
    )
    .await?;
    let codes = work.codes().await?;
    work.commit().await?;
    let page = Page::from_rows(rows, page.limit, |r| r.id.to_string());
    Ok(Json(page.map(|r| RunView::new(r, &codes))))
}

/// Reads a run.
#[utoipa::path(
    get, path = "/v1/runs/{id}", tag = "runs",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The run")),
    responses(
        (status = 200, description = "The run", body = RunView),
        (status = 404, description = "No such run, or one not released to the caller's institutes", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_run(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<RunView>, ApiError> {
    let mut work = Work::begin(&state, &caller).await?;
    let run = access::run(&mut work, id, Action::ReadRun, Lock::No).await?;
    let codes = work.codes().await?;
    work.commit().await?;
    Ok(Json(RunView::new(run, &codes)))
}

async fn move_run(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    to: RunStatus,
) -> Result<Json<RunView>, ApiError> {
    let mut work = Work::begin(state, caller).await?;
    let run = access::run(&mut work, id, Action::ExecuteRun, Lock::ForUpdate).await?;
    // A person may cancel a run a harness holds (one stuck, say); nobody else moves it.
    let overrides = to == RunStatus::Cancelled && caller.account.kind == AccountKind::Person;
    if !overrides {
        run.check_lease(caller.account.id, Utc::now())?;
    }
    run.status.check_transition(to)?;
    // Finishing freezes the results and records what they were.
    let digest = if to.is_final() {
        Some(jointeval_store::runs::results_digest(&mut work, id).await?)
    } else {
        None
    };
    let run =
        jointeval_store::runs::set_status(&mut work, id, to, caller.account.id, digest.as_ref())
            .await?;
    let run = if matches!(to, RunStatus::Succeeded | RunStatus::Failed) {
        crate::comparability::record_on_finish(&mut work, &run).await?;
        access::run(&mut work, id, Action::ReadRun, Lock::No).await?
    } else {
        run
    };
    let codes = work.codes().await?;
    let action = match to {
        RunStatus::Running => "run.started",
        RunStatus::Cancelled => "run.cancelled",
        _ => "run.finished",
    };
    let change =
        Change::for_run(action, &run).summary(json!({"status": to.as_str(), "digest": run.digest}));
    work.commit_audited(&change).await?;
    tracing::info!(run_id = %id, status = to.as_str(), "run moved");
    Ok(Json(RunView::new(run, &codes)))
}

/// Starts a queued run.
#[utoipa::path(
    post, path = "/v1/runs/{id}/start", tag = "runs",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The run")),
    responses(
        (status = 200, description = "Running", body = RunView),
        (status = 403, description = "Not an evaluator of the executing institute", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such run", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not queued", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn start_run(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<RunView>, ApiError> {
    move_run(&state, &caller, id, RunStatus::Running).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"outcome": "succeeded"}))]
pub struct FinishRequest {
    /// `succeeded` or `failed`.
    #[schema(value_type = String, pattern = "^(succeeded|failed)$")]
    pub outcome: RunStatus,
}

/// Finishes a running run: its results are frozen and their digest recorded.
#[utoipa::path(
    post, path = "/v1/runs/{id}/finish", tag = "runs",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The run")),
    request_body = FinishRequest,
    responses(
        (status = 200, description = "Finished, with its digest", body = RunView),
        (status = 403, description = "Not an evaluator of the executing institute", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such run", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not running", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`outcome` is neither `succeeded` nor `failed`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn finish_run(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(request): ApiJson<FinishRequest>,
) -> Result<Json<RunView>, ApiError> {
    if !request.outcome.is_final() {
        return Err(ValidationError::new("outcome", "must be `succeeded` or `failed`").into());
    }
    move_run(&state, &caller, id, request.outcome).await
}

/// Cancels a queued or running run.
#[utoipa::path(
    post, path = "/v1/runs/{id}/cancel", tag = "runs",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The run")),
    responses(
        (status = 200, description = "Cancelled", body = RunView),
        (status = 403, description = "Not an evaluator of the executing institute", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such run", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Over already", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn cancel_run(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<RunView>, ApiError> {
    move_run(&state, &caller, id, RunStatus::Cancelled).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricsBatch {
    /// 1 to 10000 metrics; each (scorer, metric) once. A metric sent again replaces the
    /// value stored before.
    pub metrics: Vec<MetricValue>,
}

/// How many metrics a batch wrote.
#[derive(Debug, Serialize, ToSchema)]
pub struct Written {
    pub written: usize,
}

/// Upserts a batch of aggregate metrics while the run is running: all or nothing.
#[utoipa::path(
    post, path = "/v1/runs/{id}/metrics", tag = "runs",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The run")),
    request_body = MetricsBatch,
    responses(
        (status = 200, description = "Written", body = Written),
        (status = 403, description = "Not an evaluator of the executing institute", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such run", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The run is not running: its results are frozen or not begun", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A metric is invalid (NaN, a duplicate key …)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn upsert_metrics(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(batch): ApiJson<MetricsBatch>,
) -> Result<Json<Written>, ApiError> {
    let errors = validate_metrics(&batch.metrics);
    let mut work = Work::begin(&state, &caller).await?;
    let run = access::run(&mut work, id, Action::ExecuteRun, Lock::ForUpdate).await?;
    run.check_lease(caller.account.id, Utc::now())?;
    run.status.check_results()?;
    if !errors.is_empty() {
        return Err(Problem::validation(errors.into_iter().map(FieldError::from).collect()).into());
    }
    jointeval_store::runs::upsert_metrics(&mut work, id, &batch.metrics).await?;
    let keys: Vec<String> = batch
        .metrics
        .iter()
        .map(|m| format!("{}/{}", m.scorer, m.metric))
        .collect();
    let change = Change::for_run("run.metrics_written", &run).summary(json!({"metrics": keys}));
    work.commit_audited(&change).await?;
    Ok(Json(Written {
        written: batch.metrics.len(),
    }))
}

/// Reads a run's aggregate metrics.
#[utoipa::path(
    get, path = "/v1/runs/{id}/metrics", tag = "runs",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The run")),
    responses(
        (status = 200, description = "The metrics, by scorer and metric", body = Vec<MetricValue>),
        (status = 404, description = "No such run, or one not released to the caller's institutes", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_metrics(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Vec<MetricValue>>, ApiError> {
    let mut work = Work::begin(&state, &caller).await?;
    access::run(&mut work, id, Action::ReadRun, Lock::No).await?;
    let metrics = jointeval_store::runs::metrics(&mut work, id).await?;
    work.commit().await?;
    Ok(Json(metrics))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"institutes": ["US"], "transcripts": false}))]
pub struct ReleaseRequest {
    /// Codes of the exercise's other participants to release to; all of them when absent.
    pub institutes: Option<Vec<String>>,
    /// Release the transcripts too: the original log (`GET …/inspect-log`), and the
    /// answers and explanations beside the scores in `GET /v1/comparisons/disagreements`.
    /// A log can hold hazardous content, so they are released only when asked for.
    #[serde(default)]
    #[schema(default = false)]
    pub transcripts: bool,
}

/// Releases a finished run's results (its metrics and per-sample scores) to the
/// exercise's other participants (all, or the named ones), and its transcripts with
/// `"transcripts": true`, bound to the results the reviewer read: `If-Match` is the run's
/// `digest` as read, quoted (`"…"`; 428 without it or with `*`, 412 when it is another).
/// The release records who, when, the digest and whether the transcripts went with it;
/// it is never undone. What an institute holds already stays as it was: releasing the
/// results again changes nothing (200, the run as it is), and releasing the transcripts
/// of a run whose results alone were released adds the transcripts.
#[utoipa::path(
    post, path = "/v1/runs/{id}/release", tag = "runs",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The run"),
           ("If-Match" = String, Header, description = "The run's `digest` as read, quoted", example = json!("\"2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae\""))),
    request_body(content = Option<ReleaseRequest>, description = "Optional: an empty body asks for the defaults"),
    responses(
        (status = 200, description = "Released", body = RunView),
        (status = 403, description = "Not a reviewer of the executing institute", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such run", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The run has not finished", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`If-Match` is not the run's digest", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An institute is not another participant of the exercise", body = Problem, content_type = "application/problem+json"),
        (status = 428, description = "If-Match is missing, or `*`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn release_run(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    if_match: IfMatch,
    OptionalJson(request): OptionalJson<ReleaseRequest>,
) -> Result<Json<RunView>, ApiError> {
    let mut work = Work::begin(&state, &caller).await?;
    let run = access::run(&mut work, id, Action::ReleaseRun, Lock::ForUpdate).await?;
    run.status.check_release()?;
    // What is released is what the reviewer read.
    if_match.check_hash(
        run.digest.as_deref().unwrap_or_default(),
        "the run's digest",
    )?;
    let exercise = jointeval_store::exercises::get(&mut work, run.exercise_id, false)
        .await?
        .ok_or_else(|| crate::auth::not_found("exercise"))?;
    let codes = work.codes().await?;
    let partners: Vec<Uuid> = exercise
        .participants
        .iter()
        .copied()
        .filter(|i| *i != run.institute_id)
        .collect();
    let targets = match &request.institutes {
        None => partners,
        Some(given) => {
            let mut ids = Vec::new();
            for (i, code) in given.iter().enumerate() {
                match codes.id_of(code).filter(|id| partners.contains(id)) {
                    Some(id) => ids.push(id),
                    None => {
                        return Err(ValidationError::new(
                            format!("institutes[{i}]"),
                            "is not another participant of the exercise",
                        )
                        .into());
                    }
                }
            }
            if ids.is_empty() {
                return Err(
                    ValidationError::new("institutes", "must name at least one institute").into(),
                );
            }
            ids
        }
    };
    let digest = run.digest.clone().unwrap_or_default();
    let (run, reached) = jointeval_store::runs::release(
        &mut work,
        id,
        &targets,
        request.transcripts,
        caller.account.id,
        &digest,
    )
    .await?;
    let change = Change::for_run("run.released", &run).summary(json!({
        "released_to": targets, "transcripts": request.transcripts, "digest": digest,
        "newly_released_to": reached,
    }));
    work.commit_audited(&change).await?;
    tracing::info!(run_id = %id, "run released");
    Ok(Json(RunView::new(run, &codes)))
}
