//! Inspect logs: a harness uploads the log Inspect wrote (JSON or `.eval`), and the run
//! gets its metrics and per-sample scores exactly as Inspect computed them, a record of
//! how it deviated from the protocol, and the original log for its readers.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use jointeval_domain::Action;
use jointeval_domain::audit::Change;
use jointeval_domain::run::{RunDescription, RunStatus};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::access::Lock;
use crate::auth::Caller;
use crate::extract::{ApiPath, ApiQuery};
use crate::log_import::{
    Imported, check_importable, declared_format, import_into, receive, summary_of,
};
use crate::problem::{ApiError, FieldError, Problem};
use crate::views::RunView;
use crate::work::Work;

/// An `.eval` archive, as Inspect wrote it: in the contract, a binary body.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[expect(
    dead_code,
    reason = "describes the request body; the handler streams it"
)]
pub struct EvalArchive(Vec<u8>);

/// A JSON log, as Inspect wrote it.
#[derive(ToSchema)]
#[schema(value_type = Object)]
#[expect(
    dead_code,
    reason = "describes the request body; the handler streams it"
)]
pub struct JsonLog(serde_json::Value);

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    /// Accept a log whose status is not `success` (an eval that errored or was cancelled).
    #[serde(default)]
    pub accept_incomplete: bool,
}

/// Imports an Inspect log into a running run: the JSON log (`application/json`) or the
/// `.eval` archive (`application/zip`), streamed, up to the ingest limit. Its metrics
/// and per-sample scores are written as Inspect computed them, every deviation from the
/// protocol version is recorded on the run, and the log is kept. Importing the same log
/// again (the same eval id) changes nothing.
#[utoipa::path(
    post, path = "/v1/runs/{id}/inspect-log", tag = "runs",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The run"), ImportQuery),
    request_body(description = "The log as Inspect wrote it", content(
        (JsonLog = "application/json"), (EvalArchive = "application/zip"),
    )),
    responses(
        (status = 200, description = "Imported (or imported before)", body = Imported),
        (status = 403, description = "Not an evaluator of the executing institute", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such run", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The run is not running, is leased to another worker, holds another log, the log's model is not the exercise's model under test, or its task or model contradicts the run's config", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The log, or what its archive expands to, is over the limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Neither JSON nor a zip, or not what its Content-Type declares", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a readable Inspect log (corrupt, truncated, a zip bomb), or its status is not `success`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn import_log(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<ImportQuery>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<Json<Imported>, ApiError> {
    let declared = declared_format(&headers)?;
    // Checked before the upload, and again after it: no connection or lock is held while
    // the log arrives.
    let may_import = async {
        let mut work = Work::begin(&state, &caller).await?;
        let run = crate::access::run(&mut work, id, Action::ExecuteRun, Lock::No).await?;
        work.commit().await?;
        check_importable(&run, &caller)
    };
    may_import.await?;
    let upload = receive(&state, body, declared).await?;
    let mut work = Work::begin(&state, &caller).await?;
    let run = crate::access::run(&mut work, id, Action::ExecuteRun, Lock::ForUpdate).await?;
    check_importable(&run, &caller)?;
    if let Some(before) = &run.imported_log {
        if let Some(replayed) = upload.replay_on(&run) {
            work.commit().await?;
            return Ok(Json(replayed));
        }
        return Err(Problem::typed(
            StatusCode::CONFLICT,
            "log-imported",
            "Another log imported",
            format!(
                "the run holds the results of eval {} (sha256 {}) already; a run takes one log",
                before.eval_id, before.sha256
            ),
        )
        .into());
    }
    let imported = import_into(&mut work, &run, &upload, query.accept_incomplete).await?;
    let change = Change::for_run("run.inspect_log_imported", &run).summary(summary_of(&imported));
    work.commit_audited(&change).await?;
    tracing::info!(run_id = %id, eval_id = %imported.eval_id, scores = imported.scores, "Inspect log imported");
    Ok(Json(imported))
}

/// Where a run created from a log goes.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FromLogQuery {
    /// The protocol the log ran (one of the exercise's).
    pub protocol_id: Uuid,
    /// Its version (the exercise's).
    pub protocol_version: i32,
    /// The executing institute (code), when the caller evaluates for more than one.
    pub institute: Option<String>,
    /// Accept a log whose status is not `success`; the run then ends `failed`.
    #[serde(default)]
    pub accept_incomplete: bool,
}

/// A run created from a log, and what the import did.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedFromLog {
    pub run: RunView,
    pub import: Imported,
}

/// Registers a run from a log whose results were obtained before the run was: the run is
/// created in the exercise (harness `inspect`, the log's model, config naming its task and
/// model), the log imported as by `POST /v1/runs/{id}/inspect-log`, and the run finished
/// (`succeeded`, or `failed` for an incomplete log accepted). The same log sent again to
/// the same exercise and protocol version answers the run it made (`200`), so that a
/// harness may retry an upload whose answer it did not get.
#[utoipa::path(
    post, path = "/v1/exercises/{id}/runs/inspect-log", tag = "runs",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The exercise"), FromLogQuery),
    request_body(description = "The log as Inspect wrote it", content(
        (JsonLog = "application/json"), (EvalArchive = "application/zip"),
    )),
    responses(
        (status = 200, description = "The same log was registered in this exercise and protocol version before (a retry): the run it made, and nothing written (`import.replayed`)", body = CreatedFromLog,
         headers(("Location" = String, description = "The run"))),
        (status = 201, description = "The finished run and what the import did", body = CreatedFromLog,
         headers(("Location" = String, description = "The run"))),
        (status = 403, description = "Not an evaluator of a participating institute", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such exercise", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The exercise is not active", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The log, or what its archive expands to, is over the limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Neither JSON nor a zip, or not what its Content-Type declares", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a readable Inspect log, its status is not `success`, its model (`eval.model`) not the exercise's model under test, or the protocol version not the exercise's", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_from_log(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(exercise_id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<FromLogQuery>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let declared = declared_format(&headers)?;
    let placed = async {
        let mut work = Work::begin(&state, &caller).await?;
        let placed = crate::access::place_run(
            &mut work,
            exercise_id,
            query.institute.as_deref(),
            (query.protocol_id, query.protocol_version),
            None,
        )
        .await?;
        work.commit().await?;
        Ok::<_, ApiError>(placed)
    };
    let errors = placed.await?.errors;
    if !errors.is_empty() {
        return Err(Problem::validation(errors).into());
    }
    let upload = receive(&state, body, declared).await?;
    // Placed again, in the transaction that creates the run: the exercise may have moved.
    let mut work = Work::begin(&state, &caller).await?;
    let crate::access::Placement {
        institute,
        codes,
        errors,
    } = crate::access::place_run(
        &mut work,
        exercise_id,
        query.institute.as_deref(),
        (query.protocol_id, query.protocol_version),
        Some(("eval.model", &upload.log.header.model)),
    )
    .await?;
    if !errors.is_empty() {
        return Err(Problem::validation(errors).into());
    }
    // The same log again (a retry whose answer was lost): the run it made, not another.
    let before =
        jointeval_store::runs::with_eval(&mut work, institute, &upload.log.header.eval_id).await?;
    if let Some(before) = before.filter(|run| {
        run.exercise_id == exercise_id
            && (run.protocol_id, run.protocol_version)
                == (query.protocol_id, query.protocol_version)
    }) && let Some(import) = upload.replay_on(&before)
    {
        work.commit().await?;
        return Ok(created_from_log(StatusCode::OK, before, &codes, import));
    }
    let header = &upload.log.header;
    let config = json!({"task": header.task, "model": header.model});
    let harness_version = header
        .inspect_version
        .clone()
        .unwrap_or_else(|| "unknown".into());
    // The run's fields come from the log: its errors name the log's fields.
    let described = RunDescription::new("inspect", &harness_version, &header.model, config)
        .map_err(|errors| {
            let errors = errors.into_iter().map(|mut e| {
                e.field = match e.field.as_str() {
                    "model_version" => "eval.model".into(),
                    "harness.version" => "eval.packages.inspect_ai".into(),
                    _ => e.field,
                };
                FieldError::from(e)
            });
            Problem::validation(errors.collect())
        })?;
    let run = jointeval_store::runs::insert(
        &mut work,
        &jointeval_store::runs::NewRun {
            exercise_id,
            protocol_id: query.protocol_id,
            protocol_version: query.protocol_version,
            institute_id: institute,
            description: &described,
            created_by: caller.account.id,
        },
    )
    .await?;
    jointeval_store::runs::set_status(
        &mut work,
        run.id,
        RunStatus::Running,
        caller.account.id,
        None,
    )
    .await?;
    let imported = import_into(&mut work, &run, &upload, query.accept_incomplete).await?;
    let outcome = if upload.log.header.status == "success" {
        RunStatus::Succeeded
    } else {
        RunStatus::Failed
    };
    let digest = jointeval_store::runs::results_digest(&mut work, run.id).await?;
    let run = jointeval_store::runs::set_status(
        &mut work,
        run.id,
        outcome,
        caller.account.id,
        Some(&digest),
    )
    .await?;
    let mut summary = summary_of(&imported);
    summary["status"] = json!(run.status.as_str());
    summary["digest"] = json!(run.digest);
    let change = Change::for_run("run.created_from_log", &run).summary(summary);
    work.commit_audited(&change).await?;
    tracing::info!(run_id = %run.id, eval_id = %imported.eval_id, "run created from an Inspect log");
    Ok(created_from_log(StatusCode::CREATED, run, &codes, imported))
}

fn created_from_log(
    status: StatusCode,
    run: jointeval_domain::run::Run,
    codes: &crate::views::Codes,
    import: Imported,
) -> Response {
    let location = format!("/v1/runs/{}", run.id);
    let response = (
        status,
        Json(CreatedFromLog {
            run: RunView::new(run, codes),
            import,
        }),
    )
        .into_response();
    super::with_header(response, header::LOCATION, &location)
}

/// The original log a run's results were imported from, as uploaded.
#[utoipa::path(
    get, path = "/v1/runs/{id}/inspect-log", tag = "runs",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The run")),
    responses(
        (status = 200, description = "The log, byte for byte; `ETag` is its sha256", content(
            (JsonLog = "application/json"), (EvalArchive = "application/zip"),
        )),
        (status = 404, description = "No such run, no log imported into it, or (type `not-released`) a run whose results alone were released to the caller's institute, not its transcripts", body = Problem, content_type = "application/problem+json",
         example = json!({"type": "urn:jointeval:problem:not-released", "title": "Not released to your institute", "status": 404,
                          "detail": "the transcripts of this run (its original log, its scores' answers, explanations and metadata, and its errored samples' messages) are not released to your institute; its results are"})),
    )
)]
pub async fn download_log(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    let mut work = Work::begin(&state, &caller).await?;
    let run = crate::access::transcripts(&mut work, id).await?;
    work.commit().await?;
    let Some(log) = run.imported_log else {
        return Err(
            Problem::status(StatusCode::NOT_FOUND, "no log was imported into this run").into(),
        );
    };
    let (pool, acting) = (state.pool.clone(), caller.acting_as());
    let stream = super::paged(0, move |n: i32| {
        let (pool, acting) = (pool.clone(), acting.clone());
        async move {
            let mut tx = jointeval_store::begin(&pool, &acting).await?;
            let chunk = jointeval_store::runs::log_chunk(&mut tx, id, n).await?;
            jointeval_store::commit(tx).await?;
            Ok(match chunk {
                Some(bytes) => (Bytes::from(bytes), Some(n + 1)),
                None => (Bytes::new(), None),
            })
        }
    });
    let (content_type, extension) = match log.format.as_str() {
        "eval" => ("application/zip", "eval"),
        _ => ("application/json", "json"),
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::ETAG, format!("\"{}\"", log.sha256)),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}.{extension}\"", log.eval_id),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}
