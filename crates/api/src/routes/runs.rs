//! Test runs in an exercise: created and moved by the executing institute's evaluators,
//! their metrics, and their release to the partners. Before release, a run does not
//! exist for any other institute.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use jointeval_domain::audit::Change;
use jointeval_domain::conformance::Deviation;
use jointeval_domain::exercise::ExerciseStatus;
use jointeval_domain::run::ImportedLog;
use jointeval_domain::run::{
    MAX_CONFIG_BYTES, MetricValue, ResultsDigest, Run, RunStatus, StoredScore, validate_metrics,
};
use jointeval_domain::{
    AccountKind, Action, Resource, ValidationError, decide, execution_capacities,
};
use jointeval_store::runs::{NewRun, SampleRow};
use jointeval_store::{PgConnection, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::access::Lock;
use crate::auth::Caller;
use crate::extract::{ApiJson, ApiPath, ApiQuery, json_body};
use crate::pagination::{Page, PageQuery};
use crate::problem::{ApiError, FieldError, Problem};
use crate::routes::views::Codes;

/// The harness that executed a run.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HarnessRef {
    /// e.g. `inspect`.
    pub name: String,
    pub version: String,
}

/// A test run.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d60", "exercise_id": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d50",
    "protocol_id": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d20", "protocol_version": 2, "institute": "UK",
    "harness": {"name": "inspect", "version": "0.3.285"}, "config": {"temperature": 0},
    "model_version": "example-large-2026-10-01", "status": "succeeded",
    "created_by": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d12", "created_at": "2026-12-02T09:00:00Z",
    "started_at": "2026-12-02T09:01:00Z", "finished_at": "2026-12-02T10:00:00Z",
    "updated_by": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d12", "updated_at": "2026-12-02T10:00:00Z",
    "digest": "5d41402abc4b2a76b9719d911017c592ae2b4f0f8d1b1b1c0f5e5a8c1e2f3a4b",
    "digest_formula": "jointeval-results-v1", "released_to": ["US"],
    "lease": null, "imported_log": null, "deviations": []
}))]
pub struct RunView {
    pub id: Uuid,
    pub exercise_id: Uuid,
    pub protocol_id: Uuid,
    pub protocol_version: i32,
    /// The executing institute.
    pub institute: String,
    pub harness: HarnessRef,
    pub config: serde_json::Value,
    pub model_version: String,
    pub status: RunStatus,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The account (person or service) that moved it last.
    pub updated_by: Uuid,
    pub updated_at: DateTime<Utc>,
    /// sha256 of the results (its metrics and every per-sample score), recorded when the
    /// run finished; the README gives the formula, to recompute it from `…/metrics` and
    /// `…/export`.
    pub digest: Option<String>,
    /// How `digest` was taken: `jointeval-results-v1`, or `jointeval-metrics-v0` for a
    /// run finished before the digest covered the scores (the metrics only).
    pub digest_formula: Option<String>,
    /// The institutes it has been released to.
    pub released_to: Vec<String>,
    /// The harness holding it, when one claimed it from the queue (`POST /v1/runs/claim`).
    pub lease: Option<LeaseView>,
    /// The evaluation log its results were imported from (`POST …/inspect-log`).
    pub imported_log: Option<ImportedLog>,
    /// How what was run differs from the protocol version, as the imported log says: for
    /// the reviewers who release it.
    pub deviations: Vec<Deviation>,
}

/// A harness's hold on a run it claimed.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"holder": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d70", "expires_at": "2026-12-02T09:06:00Z"}))]
pub struct LeaseView {
    /// The service account holding the run.
    pub holder: Uuid,
    /// When the run returns to the queue unless the holder sends a heartbeat.
    pub expires_at: DateTime<Utc>,
}

impl RunView {
    pub(crate) fn new(r: Run, codes: &Codes) -> Self {
        let mut released_to: Vec<String> = r.released_to.iter().map(|i| codes.of(*i)).collect();
        released_to.sort();
        Self {
            id: r.id,
            exercise_id: r.exercise_id,
            protocol_id: r.protocol_id,
            protocol_version: r.protocol_version,
            institute: codes.of(r.institute_id),
            harness: HarnessRef {
                name: r.harness_name,
                version: r.harness_version,
            },
            config: r.config,
            model_version: r.model_version,
            status: r.status,
            created_by: r.created_by,
            created_at: r.created_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            updated_by: r.updated_by,
            updated_at: r.updated_at,
            digest: r.digest,
            digest_formula: r.digest_formula,
            released_to,
            lease: r.lease.map(|l| LeaseView {
                holder: l.holder,
                expires_at: l.expires_at,
            }),
            imported_log: r.imported_log,
            deviations: r.deviations,
        }
    }
}

/// 409 when another worker holds the run under a live lease.
pub(crate) fn check_lease(run: &Run, caller: &Caller) -> Result<(), ApiError> {
    run.check_lease(caller.account.id, Utc::now())
        .map_err(|held| {
            Problem::typed(
                StatusCode::CONFLICT,
                "run-leased",
                "Leased to another worker",
                held.to_string(),
            )
            .into()
        })
}

pub(crate) fn state_conflict(detail: &'static str) -> ApiError {
    Problem::typed(
        StatusCode::CONFLICT,
        "run-state",
        "Not possible in this state",
        detail,
    )
    .into()
}

/// A new run.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "protocol_id": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d20", "protocol_version": 2,
    "harness": {"name": "inspect", "version": "0.3.285"}, "config": {"temperature": 0},
    "model_version": "example-large-2026-10-01"
}))]
pub struct NewRunRequest {
    pub protocol_id: Uuid,
    /// The version the exercise uses.
    pub protocol_version: i32,
    /// The executing institute (code), when the caller evaluates for more than one.
    pub institute: Option<String>,
    pub harness: HarnessRef,
    /// The harness configuration, at most 64 KiB of JSON.
    #[serde(default)]
    pub config: serde_json::Value,
    /// The model version actually tested.
    pub model_version: String,
}

/// Where a new run goes: the executing institute (given, or the caller's one capacity),
/// checked by the policy, in an active exercise; and whether the protocol version is one
/// of the exercise's (a field error to report with the others).
pub(crate) async fn place_run(
    conn: &mut PgConnection,
    caller: &Caller,
    exercise_id: Uuid,
    institute: Option<&str>,
    protocol_version: (Uuid, i32),
) -> Result<(Uuid, Codes, Vec<FieldError>), ApiError> {
    let exercise =
        crate::access::exercise(conn, caller, exercise_id, Action::ReadExercise, Lock::No).await?;
    let codes = Codes::new(&jointeval_store::institutes::all(&mut *conn).await?);
    let capacities = execution_capacities(&caller.actor, &exercise.participants);
    let institute = match (institute, capacities.as_slice()) {
        (Some(code), _) => codes
            .id_of(code)
            .filter(|i| exercise.participants.contains(i))
            .ok_or_else(|| {
                ValidationError::new("institute", "is not a participant of the exercise")
            })?,
        (None, [one]) => *one,
        // The policy says why the caller may not.
        (None, []) => caller.account.home_institute_id,
        (None, _) => {
            return Err(ValidationError::new(
                "institute",
                "is required: you evaluate for more than one participant",
            )
            .into());
        }
    };
    decide(
        &caller.actor,
        Action::ExecuteRun,
        &Resource::Run {
            institute_id: institute,
            released_to: &[],
        },
    )
    .map_err(|d| Caller::deny(d, "run"))?;
    if exercise.status != ExerciseStatus::Active {
        return Err(Problem::typed(
            StatusCode::CONFLICT,
            "exercise-state",
            "Exercise not active",
            "runs are created in an active exercise",
        )
        .into());
    }
    let mut errors: Vec<FieldError> = Vec::new();
    if !exercise.protocol_versions.contains(&protocol_version) {
        errors.push(
            ValidationError::new(
                "protocol_version",
                "is not a protocol version of this exercise",
            )
            .into(),
        );
    }
    Ok((institute, codes, errors))
}

/// Creates a queued run in an active exercise, executed by the caller's institute.
/// With an `Idempotency-Key`, a retry answers the first answer instead of a second run.
#[utoipa::path(
    post, path = "/v1/exercises/{id}/runs", tag = "runs",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The exercise"),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key answers the first answer")),
    request_body = NewRunRequest,
    responses(
        (status = 201, description = "Queued", body = RunView, headers(("Location" = String, description = "The run"))),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an evaluator of a participating institute", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such exercise", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The exercise is not active", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is invalid, or the key was used for another request", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_run(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(exercise_id): ApiPath<Uuid>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: NewRunRequest = json_body(&headers, &body)?;
    let key = headers
        .get("idempotency-key")
        .map(|v| v.to_str().map(str::to_owned))
        .transpose()
        .map_err(|_| ValidationError::new("Idempotency-Key", "must be visible ASCII"))?;
    if key.as_ref().is_some_and(|k| k.is_empty() || k.len() > 200) {
        return Err(ValidationError::new("Idempotency-Key", "must be 1 to 200 characters").into());
    }
    let fingerprint =
        jointeval_domain::canonical::sha256_hex([exercise_id.as_bytes().as_slice(), &body]);

    let mut tx = jointeval_store::begin(&state.pool, &caller.acting_as()).await?;
    if let Some(key) = &key
        && let Some(first) =
            jointeval_store::runs::idempotent_answer(&mut tx, caller.account.id, key).await?
    {
        if first.request_sha256 != fingerprint {
            return Err(ValidationError::new(
                "Idempotency-Key",
                "was used for a different request",
            )
            .into());
        }
        jointeval_store::commit(tx).await?;
        let status = StatusCode::from_u16(first.status as u16).unwrap_or(StatusCode::CREATED);
        let mut response = (status, Json(first.body)).into_response();
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
        return Ok(response);
    }

    let (institute, codes, mut errors) = place_run(
        &mut tx,
        &caller,
        exercise_id,
        request.institute.as_deref(),
        (request.protocol_id, request.protocol_version),
    )
    .await?;
    for (field, value, max) in [
        ("harness.name", &request.harness.name, 100),
        ("harness.version", &request.harness.version, 100),
        ("model_version", &request.model_version, 200),
    ] {
        let n = value.trim().chars().count();
        if n == 0 || n > max {
            errors
                .push(ValidationError::new(field, format!("must be 1 to {max} characters")).into());
        }
    }
    let config = if request.config.is_null() {
        serde_json::json!({})
    } else {
        request.config
    };
    if !config.is_object() || config.to_string().len() > MAX_CONFIG_BYTES {
        errors
            .push(ValidationError::new("config", "must be a JSON object of at most 64 KiB").into());
    }
    if !errors.is_empty() {
        return Err(Problem::validation(errors).into());
    }
    let run = jointeval_store::runs::insert(
        &mut tx,
        &NewRun {
            exercise_id,
            protocol_id: request.protocol_id,
            protocol_version: request.protocol_version,
            institute_id: institute,
            harness_name: request.harness.name.trim(),
            harness_version: request.harness.version.trim(),
            config: &config,
            model_version: request.model_version.trim(),
            created_by: caller.account.id,
        },
    )
    .await?;
    let location = format!("/v1/runs/{}", run.id);
    let change = Change::for_run("run.created", &run).summary(json!({
        "exercise_id": run.exercise_id, "protocol_id": run.protocol_id,
        "protocol_version": run.protocol_version, "harness_name": run.harness_name,
        "harness_version": run.harness_version, "model_version": run.model_version,
        "idempotency_key": key,
    }));
    let view = RunView::new(run, &codes);
    if let Some(key) = &key {
        let body = serde_json::to_value(&view).unwrap_or_default();
        jointeval_store::runs::remember_answer(
            &mut tx,
            caller.account.id,
            key,
            &fingerprint,
            201,
            &body,
        )
        .await?;
    }
    jointeval_store::audit::commit_audited(tx, &change).await?;
    tracing::info!(run_id = %view.id, "run queued");
    Ok(super::with_header(
        (StatusCode::CREATED, Json(view)).into_response(),
        header::LOCATION,
        &location,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RunQuery {
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// Lists the runs of an exercise the caller may see: its institutes' own, and those
/// released to them.
#[utoipa::path(
    get, path = "/v1/exercises/{id}/runs", tag = "runs",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The exercise"), RunQuery),
    responses(
        (status = 200, description = "A page of runs", body = Page<RunView>),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such exercise", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_runs(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(exercise_id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<RunQuery>,
) -> Result<Json<Page<RunView>>, ApiError> {
    let page = PageQuery {
        limit: query.limit,
        cursor: query.cursor,
    }
    .validate()?;
    let after = page.after_id()?;
    let mut tx = jointeval_store::begin(&state.pool, &caller.acting_as()).await?;
    crate::access::exercise(
        &mut tx,
        &caller,
        exercise_id,
        Action::ReadExercise,
        Lock::No,
    )
    .await?;
    let institutes = caller
        .actor
        .reading_institutes(&jointeval_domain::policy::RUN_READING)
        .map_err(|d| Caller::deny(d, "run"))?;
    let rows =
        jointeval_store::runs::list_visible(&mut tx, exercise_id, &institutes, after, page.fetch())
            .await?;
    let codes = Codes::new(&jointeval_store::institutes::all(&mut *tx).await?);
    jointeval_store::commit(tx).await?;
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
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such run, or one not released to the caller's institutes", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_run(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<RunView>, ApiError> {
    let mut tx = jointeval_store::begin(&state.pool, &caller.acting_as()).await?;
    let run = crate::access::run(&mut tx, &caller, id, Action::ReadRun, Lock::No).await?;
    let codes = Codes::new(&jointeval_store::institutes::all(&mut *tx).await?);
    jointeval_store::commit(tx).await?;
    Ok(Json(RunView::new(run, &codes)))
}

async fn move_run(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    to: RunStatus,
) -> Result<Json<RunView>, ApiError> {
    let mut tx = jointeval_store::begin(&state.pool, &caller.acting_as()).await?;
    let run = crate::access::run(&mut tx, caller, id, Action::ExecuteRun, Lock::ForUpdate).await?;
    // A person may cancel a run a harness holds (one stuck, say); nobody else moves it.
    let overrides = to == RunStatus::Cancelled && caller.account.kind == AccountKind::Person;
    if !overrides {
        check_lease(&run, caller)?;
    }
    run.status
        .check_transition(to)
        .map_err(|e| state_conflict(e.0))?;
    // Finishing freezes the results and records what they were.
    let digest = if to.is_final() {
        Some(results_digest(&mut tx, id).await?)
    } else {
        None
    };
    jointeval_store::runs::set_status(&mut tx, id, to, caller.account.id, digest.as_deref())
        .await?;
    let run = jointeval_store::runs::get(&mut tx, id, false)
        .await?
        .ok_or_else(|| crate::auth::not_found("run"))?;
    let codes = Codes::new(&jointeval_store::institutes::all(&mut *tx).await?);
    let action = match to {
        RunStatus::Running => "run.started",
        RunStatus::Cancelled => "run.cancelled",
        _ => "run.finished",
    };
    let change =
        Change::for_run(action, &run).summary(json!({"status": to.as_str(), "digest": run.digest}));
    jointeval_store::audit::commit_audited(tx, &change).await?;
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
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
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
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
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
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
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
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
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
    let mut tx = jointeval_store::begin(&state.pool, &caller.acting_as()).await?;
    let run = crate::access::run(&mut tx, &caller, id, Action::ExecuteRun, Lock::ForUpdate).await?;
    check_lease(&run, &caller)?;
    if !run.status.accepts_results() {
        return Err(state_conflict(
            "results are accepted while the run is running",
        ));
    }
    if !errors.is_empty() {
        return Err(Problem::validation(errors.into_iter().map(FieldError::from).collect()).into());
    }
    jointeval_store::runs::upsert_metrics(&mut tx, id, &batch.metrics).await?;
    let keys: Vec<String> = batch
        .metrics
        .iter()
        .map(|m| format!("{}/{}", m.scorer, m.metric))
        .collect();
    let change = Change::for_run("run.metrics_written", &run).summary(json!({"metrics": keys}));
    jointeval_store::audit::commit_audited(tx, &change).await?;
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
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such run, or one not released to the caller's institutes", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_metrics(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Vec<MetricValue>>, ApiError> {
    let mut tx = jointeval_store::begin(&state.pool, &caller.acting_as()).await?;
    crate::access::run(&mut tx, &caller, id, Action::ReadRun, Lock::No).await?;
    let metrics = jointeval_store::runs::metrics(&mut tx, id).await?;
    jointeval_store::commit(tx).await?;
    Ok(Json(metrics))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"institutes": ["US"]}))]
pub struct ReleaseRequest {
    /// Codes of the exercise's other participants to release to; all of them when absent.
    pub institutes: Option<Vec<String>>,
}

/// Releases a finished run's results to the exercise's other participants (all, or the
/// named ones). The release records who, when and the digest; it is never undone.
#[utoipa::path(
    post, path = "/v1/runs/{id}/release", tag = "runs",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The run")),
    request_body = ReleaseRequest,
    responses(
        (status = 200, description = "Released", body = RunView),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a reviewer of the executing institute", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such run", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The run has not finished", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An institute is not another participant of the exercise", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn release_run(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(request): ApiJson<ReleaseRequest>,
) -> Result<Json<RunView>, ApiError> {
    let mut tx = jointeval_store::begin(&state.pool, &caller.acting_as()).await?;
    let run = crate::access::run(&mut tx, &caller, id, Action::ReleaseRun, Lock::ForUpdate).await?;
    if !run.status.is_final() {
        return Err(state_conflict(
            "only a finished run (succeeded or failed) is released",
        ));
    }
    let exercise = jointeval_store::exercises::get(&mut tx, run.exercise_id, false)
        .await?
        .ok_or_else(|| crate::auth::not_found("exercise"))?;
    let codes = Codes::new(&jointeval_store::institutes::all(&mut *tx).await?);
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
    jointeval_store::runs::release(&mut tx, id, &targets, caller.account.id, &digest).await?;
    let run = jointeval_store::runs::get(&mut tx, id, false)
        .await?
        .ok_or_else(|| crate::auth::not_found("run"))?;
    let change = Change::for_run("run.released", &run)
        .summary(json!({"released_to": targets, "digest": digest}));
    jointeval_store::audit::commit_audited(tx, &change).await?;
    tracing::info!(run_id = %id, "run released");
    Ok(Json(RunView::new(run, &codes)))
}

/// What an ingestion wrote.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"lines": 20000, "stored": 20000}))]
pub struct Ingested {
    /// Scores read from the request.
    pub lines: u64,
    /// Scores the run holds after it: a (sample id, epoch, scorer) sent again counts once.
    pub stored: i64,
}

/// Rows written at a time while a request streams in.
pub(crate) const BATCH_ROWS: usize = 5_000;

/// Writes a batch, keeping the last line of each key within it (an earlier batch's line
/// of the same key is replaced by the upsert, so the last line wins across the request);
/// answers how many keys were new to the run. The caller adds them to the run's count.
pub(crate) async fn write_batch(
    conn: &mut PgConnection,
    run_id: Uuid,
    rows: &mut Vec<jointeval_store::runs::SampleRow>,
) -> Result<i64, ApiError> {
    // The last line of each key wins: walk back, keeping a key's first sight.
    let mut keep = vec![false; rows.len()];
    let mut seen = std::collections::HashSet::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate().rev() {
        keep[i] = seen.insert((row.sample_id.as_str(), row.epoch, row.scorer.as_str()));
    }
    drop(seen);
    let mut keep = keep.into_iter();
    rows.retain(|_| keep.next().unwrap_or(false));
    // New keys go in by COPY; a batch with a key stored before is upserted instead.
    let new = if jointeval_store::runs::copy_new_samples(conn, run_id, rows).await? {
        rows.len() as i64
    } else {
        jointeval_store::runs::upsert_samples(conn, run_id, rows).await?
    };
    rows.clear();
    Ok(new)
}
/// The longest NDJSON line accepted.
const MAX_LINE_BYTES: usize = 1024 * 1024;

fn to_row(score: jointeval_domain::run::SampleScore) -> jointeval_store::runs::SampleRow {
    use jointeval_domain::run::ScoreValue;
    let (value_number, value_label) = match score.value {
        ScoreValue::Number(n) => (Some(n), None),
        ScoreValue::Label(l) => (None, Some(l)),
    };
    jointeval_store::runs::SampleRow {
        sample_id: score.sample_id.to_text(),
        epoch: score.epoch,
        scorer: score.scorer,
        value_number,
        value_label,
        answer: score.answer,
        explanation: score.explanation,
        metadata: score.metadata,
    }
}

fn bad_line(line: u64, field: &str, message: impl std::fmt::Display) -> ApiError {
    Problem::validation(vec![FieldError {
        field: if field.is_empty() || field == "." {
            format!("line {line}")
        } else {
            format!("line {line}: {field}")
        },
        message: message.to_string(),
    }])
    .into()
}

/// Parses and checks one score; `line` names it in the error.
fn parse_score(line: u64, bytes: &[u8]) -> Result<jointeval_store::runs::SampleRow, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let score: jointeval_domain::run::SampleScore =
        serde_path_to_error::deserialize(&mut deserializer)
            .map_err(|e| bad_line(line, &e.path().to_string(), e.into_inner()))?;
    deserializer.end().map_err(|e| bad_line(line, "", e))?;
    score
        .validate()
        .map_err(|e| bad_line(line, &e.field, e.message))?;
    Ok(to_row(score))
}

/// Rows gathered into batches of [`BATCH_ROWS`] on their way to the writer.
struct Batches {
    rows: Vec<SampleRow>,
    to_writer: tokio::sync::mpsc::Sender<Vec<SampleRow>>,
}

impl Batches {
    fn new(to_writer: tokio::sync::mpsc::Sender<Vec<SampleRow>>) -> Self {
        Self {
            rows: Vec::with_capacity(BATCH_ROWS),
            to_writer,
        }
    }

    /// Adds a row, handing a full batch to the writer; `false` when the writer has
    /// stopped (on an error, which is what the request answers).
    async fn push(&mut self, row: SampleRow) -> bool {
        self.rows.push(row);
        if self.rows.len() < BATCH_ROWS {
            return true;
        }
        let full = std::mem::replace(&mut self.rows, Vec::with_capacity(BATCH_ROWS));
        self.to_writer.send(full).await.is_ok()
    }

    /// Hands over the last, partial batch; dropping the sender then ends the writer.
    async fn finish(self) {
        if !self.rows.is_empty() {
            let _ = self.to_writer.send(self.rows).await;
        }
    }
}

/// Reads scores from the body, as NDJSON read as it arrives or as one JSON array, into
/// `batches`; answers how many lines it read. A bad line ends the request, named.
async fn read_scores(
    body: axum::body::Body,
    ndjson: bool,
    array_limit: usize,
    mut batches: Batches,
) -> Result<u64, ApiError> {
    use http_body_util::BodyExt;

    let too_large = || -> ApiError {
        Problem::status(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the request body is larger than this service accepts",
        )
        .into()
    };
    let mut lines: u64 = 0;
    if ndjson {
        let mut body = body;
        let mut buffer: Vec<u8> = Vec::new();
        let mut finished = false;
        while !finished {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        buffer.extend_from_slice(&data);
                    }
                }
                Some(Err(_)) => return Err(too_large()),
                None => {
                    finished = true;
                    buffer.push(b'\n');
                }
            }
            let mut start = 0;
            while let Some(offset) = buffer[start..].iter().position(|b| *b == b'\n') {
                let line = &buffer[start..start + offset];
                start += offset + 1;
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                lines += 1;
                if !batches.push(parse_score(lines, line)?).await {
                    return Ok(lines);
                }
            }
            buffer.drain(..start);
            if buffer.len() > MAX_LINE_BYTES {
                return Err(bad_line(lines + 1, "", "is longer than 1 MiB"));
            }
        }
    } else {
        // A JSON array is held whole, so it gets the ordinary limit; streams get more.
        let bytes = http_body_util::Limited::new(body, array_limit)
            .collect()
            .await
            .map_err(|_| too_large())?
            .to_bytes();
        let values: Vec<Box<serde_json::value::RawValue>> = crate::extract::parse_json(&bytes)?;
        for value in values {
            lines += 1;
            if !batches
                .push(parse_score(lines, value.get().as_bytes())?)
                .await
            {
                return Ok(lines);
            }
        }
    }
    batches.finish().await;
    Ok(lines)
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
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
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
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let ndjson = match content_type.as_str() {
        "application/x-ndjson" | "application/jsonl" => true,
        "application/json" => false,
        _ => {
            return Err(Problem::status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send scores as application/json (an array) or application/x-ndjson (one per line)",
            )
            .into());
        }
    };
    let mut tx = jointeval_store::begin(&state.pool, &caller.acting_as()).await?;
    let run = crate::access::run(&mut tx, &caller, id, Action::ExecuteRun, Lock::ForUpdate).await?;
    check_lease(&run, &caller)?;
    if !run.status.accepts_results() {
        return Err(state_conflict(
            "results are accepted while the run is running",
        ));
    }
    let started = std::time::Instant::now();
    // Reading and parsing overlap with writing: full batches go through a channel to
    // the writer, so PostgreSQL works on one batch while the next is parsed.
    let (batches, incoming) = tokio::sync::mpsc::channel(1);
    let write = async {
        // The writer owns the receiver: when it stops on an error, the channel closes
        // and the reader's next hand-over fails, so the reader stops too.
        let mut incoming = incoming;
        let (mut new, mut writing) = (0, std::time::Duration::ZERO);
        while let Some(mut batch) = incoming.recv().await {
            let t = std::time::Instant::now();
            new += write_batch(&mut tx, id, &mut batch).await?;
            writing += t.elapsed();
        }
        Ok::<_, ApiError>((new, writing))
    };
    let read = read_scores(
        body,
        ndjson,
        state.settings.body_limit,
        Batches::new(batches),
    );
    // Both run to their end: a reader's error closes the channel and the writer stops
    // after its batch, never cut off in the middle of a statement.
    let (lines, writing) = tokio::join!(read, write);
    let (lines, (new, writing)) = (lines?, writing?);
    let read = started.elapsed();
    let stored = jointeval_store::runs::count_new_samples(&mut tx, id, new).await?;
    let change = Change::for_run("run.samples_ingested", &run)
        .summary(json!({"lines": lines, "stored": stored}));
    jointeval_store::audit::commit_audited(tx, &change).await?;
    // Where an ingestion spends its time: reading and parsing the body (overlapping the
    // writes), writing its rows, and the count with the commit.
    tracing::info!(
        run_id = %id,
        lines,
        stored,
        read_ms = read.as_millis() as u64,
        write_ms = writing.as_millis() as u64,
        commit_ms = (started.elapsed() - read).as_millis() as u64,
        "samples ingested"
    );
    Ok(Json(Ingested { lines, stored }))
}

/// The digest of a run's results as they stand, to record when it finishes: its metrics
/// and every score, read in the digest's order a few rows at a time.
pub(crate) async fn results_digest(
    conn: &mut PgConnection,
    run_id: Uuid,
) -> Result<String, StoreError> {
    let metrics = jointeval_store::runs::metrics(&mut *conn, run_id).await?;
    let mut digest = ResultsDigest::new(&metrics);
    let mut scores = jointeval_store::runs::samples_in_digest_order(conn, run_id);
    while let Some(row) = futures_util::TryStreamExt::try_next(&mut scores).await? {
        digest.score(&StoredScore::from(row).line());
    }
    Ok(digest.finish())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SampleQuery {
    pub scorer: Option<String>,
    pub epoch: Option<i32>,
    /// Numeric values at least this (labels are left out).
    pub value_min: Option<f64>,
    /// Numeric values at most this (labels are left out).
    pub value_max: Option<f64>,
    /// 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// The most sample scores one page holds.
const MAX_SAMPLE_PAGE: u32 = 1_000;

/// Reads a run's per-sample scores, ordered by (sample id, epoch, scorer).
#[utoipa::path(
    get, path = "/v1/runs/{id}/samples", tag = "runs",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The run"), SampleQuery),
    responses(
        (status = 200, description = "A page of scores", body = Page<StoredScore>),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such run, or one not released to the caller's institutes", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A query parameter is invalid", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_samples(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<SampleQuery>,
) -> Result<Json<Page<StoredScore>>, ApiError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=MAX_SAMPLE_PAGE).contains(&limit) {
        return Err(ValidationError::new(
            "limit",
            format!("must be between 1 and {MAX_SAMPLE_PAGE}"),
        )
        .into());
    }
    let page = PageQuery {
        limit: Some(1),
        cursor: query.cursor,
    }
    .validate()?;
    let after = match page.after.as_deref() {
        None => None,
        Some(cursor) => {
            let mut parts = cursor.splitn(3, '\u{1f}');
            match (
                parts.next(),
                parts.next().and_then(|e| e.parse::<i32>().ok()),
                parts.next(),
            ) {
                (Some(sample), Some(epoch), Some(scorer)) => {
                    Some((sample.to_owned(), epoch, scorer.to_owned()))
                }
                _ => {
                    return Err(ValidationError::new(
                        "cursor",
                        "is not a cursor this service gave out",
                    )
                    .into());
                }
            }
        }
    };
    let mut tx = jointeval_store::begin(&state.pool, &caller.acting_as()).await?;
    crate::access::run(&mut tx, &caller, id, Action::ReadRun, Lock::No).await?;
    if query.value_min.is_some_and(|v| !v.is_finite())
        || query.value_max.is_some_and(|v| !v.is_finite())
    {
        return Err(
            ValidationError::new("value_min", "value bounds must be finite numbers").into(),
        );
    }
    let rows = jointeval_store::runs::samples(
        &mut tx,
        id,
        &jointeval_store::runs::SampleFilter {
            scorer: query.scorer.as_deref(),
            epoch: query.epoch,
            value_min: query.value_min,
            value_max: query.value_max,
        },
        after.as_ref().map(|(s, e, c)| (s.as_str(), *e, c.as_str())),
        i64::from(limit) + 1,
    )
    .await?;
    jointeval_store::commit(tx).await?;
    let page = Page::from_rows(rows, limit, |r| {
        format!("{}\u{1f}{}\u{1f}{}", r.sample_id, r.epoch, r.scorer)
    });
    Ok(Json(page.map(StoredScore::from)))
}

/// One institute's result for one metric.
#[derive(Debug, Serialize, ToSchema)]
pub struct InstituteResult {
    pub institute: String,
    pub run_id: Uuid,
    pub value: f64,
    pub stderr: Option<f64>,
    pub sample_count: Option<i64>,
}

/// One metric of one protocol version, each institute's result side by side.
#[derive(Debug, Serialize, ToSchema)]
pub struct SummaryLine {
    pub protocol_id: Uuid,
    pub protocol_version: i32,
    pub scorer: String,
    pub metric: String,
    pub results: Vec<InstituteResult>,
}

/// An exercise's results as the caller may see them.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"exercise_id": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d50", "lines": [{
    "protocol_id": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d20", "protocol_version": 2,
    "scorer": "match", "metric": "accuracy", "results": [
        {"institute": "UK", "run_id": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d60", "value": 0.85, "stderr": 0.08, "sample_count": 20},
        {"institute": "US", "run_id": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d61", "value": 0.8, "stderr": 0.09, "sample_count": 20}]}]}))]
pub struct ExerciseSummary {
    pub exercise_id: Uuid,
    pub lines: Vec<SummaryLine>,
}

/// Per protocol version and metric, each institute's finished runs side by side: the
/// caller's own institutes' runs, and the partners' runs released to them.
#[utoipa::path(
    get, path = "/v1/exercises/{id}/summary", tag = "runs",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The exercise")),
    responses(
        (status = 200, description = "The summary", body = ExerciseSummary),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such exercise", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn exercise_summary(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(exercise_id): ApiPath<Uuid>,
) -> Result<Json<ExerciseSummary>, ApiError> {
    let mut tx = jointeval_store::begin(&state.pool, &caller.acting_as()).await?;
    crate::access::exercise(
        &mut tx,
        &caller,
        exercise_id,
        Action::ReadExercise,
        Lock::No,
    )
    .await?;
    let institutes = caller
        .actor
        .reading_institutes(&jointeval_domain::policy::RUN_READING)
        .map_err(|d| Caller::deny(d, "run"))?;
    let rows = jointeval_store::runs::summary(&mut tx, exercise_id, &institutes).await?;
    let codes = Codes::new(&jointeval_store::institutes::all(&mut *tx).await?);
    jointeval_store::commit(tx).await?;
    let mut lines: Vec<SummaryLine> = Vec::new();
    for r in rows {
        let result = InstituteResult {
            institute: codes.of(r.institute_id),
            run_id: r.run_id,
            value: r.value,
            stderr: r.stderr,
            sample_count: r.sample_count,
        };
        match lines.last_mut() {
            Some(line)
                if line.protocol_id == r.protocol_id
                    && line.protocol_version == r.protocol_version
                    && line.scorer == r.scorer
                    && line.metric == r.metric =>
            {
                line.results.push(result)
            }
            _ => lines.push(SummaryLine {
                protocol_id: r.protocol_id,
                protocol_version: r.protocol_version,
                scorer: r.scorer,
                metric: r.metric,
                results: vec![result],
            }),
        }
    }
    Ok(Json(ExerciseSummary { exercise_id, lines }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// `ndjson` (default) or `csv`.
    #[param(pattern = "^(ndjson|csv)$")]
    pub format: Option<String>,
}

/// Rows formatted ahead of the client, at most; beyond that the database waits.
/// Samples read per query of an export.
const EXPORT_PAGE: i64 = 5_000;

/// A CSV field, quoted when it must be.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

fn export_line(row: jointeval_store::runs::SampleRow, csv: bool) -> String {
    if csv {
        let fields = [
            csv_field(&row.sample_id),
            row.epoch.to_string(),
            csv_field(&row.scorer),
            row.value_number.map(|v| v.to_string()).unwrap_or_default(),
            csv_field(row.value_label.as_deref().unwrap_or("")),
            csv_field(row.answer.as_deref().unwrap_or("")),
            csv_field(row.explanation.as_deref().unwrap_or("")),
            csv_field(&row.metadata.map(|m| m.to_string()).unwrap_or_default()),
        ];
        fields.join(",") + "\n"
    } else {
        let mut line = StoredScore::from(row).line();
        line.push(b'\n');
        String::from_utf8(line).unwrap_or_default()
    }
}

/// Every per-sample score of a run, streamed as NDJSON or CSV: the server holds a few
/// rows at a time, whatever the run's size.
#[utoipa::path(
    get, path = "/v1/runs/{id}/export", tag = "runs",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The run"), ExportQuery),
    responses(
        (status = 200, description = "The scores, one per line, by (sample id, epoch, scorer)",
         content(("application/x-ndjson"), ("text/csv"))),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such run, or one not released to the caller's institutes", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`format` is neither `ndjson` nor `csv`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn export_samples(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<ExportQuery>,
) -> Result<Response, ApiError> {
    let csv = match query.format.as_deref() {
        None | Some("ndjson") => false,
        Some("csv") => true,
        Some(_) => return Err(ValidationError::new("format", "must be `ndjson` or `csv`").into()),
    };
    let mut tx = jointeval_store::begin(&state.pool, &caller.acting_as()).await?;
    crate::access::run(&mut tx, &caller, id, Action::ReadRun, Lock::No).await?;
    jointeval_store::commit(tx).await?;
    let header = if csv {
        "sample_id,epoch,scorer,value_number,value_label,answer,explanation,metadata\n"
    } else {
        ""
    };
    let (pool, acting) = (state.pool.clone(), caller.acting_as());
    // In key order, a page at a time: the cursor is the last key sent.
    let pages = super::paged(None, move |after: Option<(String, i32, String)>| {
        let (pool, acting) = (pool.clone(), acting.clone());
        async move {
            let mut tx = jointeval_store::begin(&pool, &acting).await?;
            let key = after.as_ref().map(|(s, e, c)| (s.as_str(), *e, c.as_str()));
            let rows = jointeval_store::runs::samples(
                &mut tx,
                id,
                &jointeval_store::runs::SampleFilter::default(),
                key,
                EXPORT_PAGE,
            )
            .await?;
            jointeval_store::commit(tx).await?;
            let next = (rows.len() as i64 == EXPORT_PAGE).then(|| {
                rows.last()
                    .map(|r| (r.sample_id.clone(), r.epoch, r.scorer.clone()))
            });
            let text: String = rows.into_iter().map(|r| export_line(r, csv)).collect();
            Ok((Bytes::from(text), next))
        }
    });
    let stream = futures_util::StreamExt::chain(
        futures_util::stream::once(async move {
            Ok::<_, std::io::Error>(Bytes::from_static(header.as_bytes()))
        }),
        pages,
    );
    let (content_type, extension) = if csv {
        ("text/csv", "csv")
    } else {
        ("application/x-ndjson", "ndjson")
    };
    let response = (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"run-{id}.{extension}\""),
            ),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response();
    Ok(response)
}
