//! Inspect logs: a harness uploads the log Inspect wrote (JSON or `.eval`), and the run
//! gets its metrics and per-sample scores exactly as Inspect computed them, a record of
//! how it deviated from the protocol, and the original log for its readers.

use std::io::Write;
use std::path::PathBuf;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use http_body_util::BodyExt;
use jointeval_domain::audit::Change;
use jointeval_domain::conformance::{Deviation, Ran, deviations};
use jointeval_domain::run::{ImportedLog, MetricValue, validate_metrics};
use jointeval_domain::run::{Run, RunStatus, SampleId, SampleScore, ScoreValue as Value};
use jointeval_domain::{Action, ValidationError};
use jointeval_inspect::{Limits, Log, LogError, ScoreValue};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::access::Lock;
use crate::auth::Caller;
use crate::conflicts::OnConstraint;
use crate::extract::{ApiPath, ApiQuery};
use crate::problem::{ApiError, FieldError, Problem};
use crate::views::RunView;

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

/// Bytes of the original log kept per row.
const CHUNK: usize = 1 << 20;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    /// Accept a log whose status is not `success` (an eval that errored or was cancelled).
    #[serde(default)]
    pub accept_incomplete: bool,
}

/// What an import did.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "eval_id": "EhgJfVRgXrUb5PLSNFgkD9", "format": "eval",
    "sha256": "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
    "metrics": 4, "scores": 40, "samples": 20, "replayed": false,
    "deviations": [{"field": "epochs", "protocol": "3", "run": "1"}]
}))]
pub struct Imported {
    pub eval_id: String,
    /// `json` or `eval`.
    pub format: String,
    pub sha256: String,
    /// Aggregate metrics written.
    pub metrics: usize,
    /// Per-sample scores written (one per sample, epoch and scorer).
    pub scores: usize,
    /// Samples in the log (each epoch counts).
    pub samples: i64,
    /// `true` when this log had been imported before: nothing was written again.
    pub replayed: bool,
    /// How what the log says was run differs from the protocol version.
    pub deviations: Vec<Deviation>,
}

/// A spooled upload, removed when dropped.
struct Spooled(PathBuf);

impl Drop for Spooled {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
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
        (status = 409, description = "The run is not running, is leased to another worker, holds another log, or the log's task or model contradicts the run's config", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The log, or what its archive expands to, is over the limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Neither JSON nor a zip", body = Problem, content_type = "application/problem+json"),
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
    check_content_type(&headers)?;
    // Checked before the upload, and again after it: no connection or lock is held while
    // the log arrives.
    let may_import = async {
        let mut tx = jointeval_store::begin(&state.pool, &caller.acting_as()).await?;
        let run = crate::access::run(&mut tx, &caller, id, Action::ExecuteRun, Lock::No).await?;
        jointeval_store::commit(tx).await?;
        check_importable(&run, &caller)
    };
    may_import.await?;
    let upload = receive(&state, body).await?;
    let mut tx = jointeval_store::begin(&state.pool, &caller.acting_as()).await?;
    let run = crate::access::run(&mut tx, &caller, id, Action::ExecuteRun, Lock::ForUpdate).await?;
    check_importable(&run, &caller)?;
    if let Some(before) = &run.imported_log {
        if before.eval_id == upload.log.header.eval_id && before.sha256 == upload.sha256 {
            jointeval_store::commit(tx).await?;
            return Ok(Json(Imported {
                eval_id: before.eval_id.clone(),
                format: before.format.clone(),
                sha256: before.sha256.clone(),
                metrics: upload.log.metrics.len(),
                scores: upload.log.scores.len(),
                samples: before.samples,
                replayed: true,
                deviations: run.deviations,
            }));
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
    let imported = import_into(&mut tx, &caller, &run, &upload, query.accept_incomplete).await?;
    let change = Change::for_run("run.inspect_log_imported", &run).summary(summary_of(&imported));
    jointeval_store::audit::commit_audited(tx, &change).await?;
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
/// (`succeeded`, or `failed` for an incomplete log accepted).
#[utoipa::path(
    post, path = "/v1/exercises/{id}/runs/inspect-log", tag = "runs",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The exercise"), FromLogQuery),
    request_body(description = "The log as Inspect wrote it", content(
        (JsonLog = "application/json"), (EvalArchive = "application/zip"),
    )),
    responses(
        (status = 201, description = "The finished run and what the import did", body = CreatedFromLog,
         headers(("Location" = String, description = "The run"))),
        (status = 403, description = "Not an evaluator of a participating institute", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such exercise", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The exercise is not active", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The log, or what its archive expands to, is over the limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Neither JSON nor a zip", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a readable Inspect log, its status is not `success`, or the protocol version is not the exercise's", body = Problem, content_type = "application/problem+json"),
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
    check_content_type(&headers)?;
    let placed = async {
        let mut tx = jointeval_store::begin(&state.pool, &caller.acting_as()).await?;
        let placed = crate::access::place_run(
            &mut tx,
            &caller,
            exercise_id,
            query.institute.as_deref(),
            (query.protocol_id, query.protocol_version),
        )
        .await?;
        jointeval_store::commit(tx).await?;
        Ok::<_, ApiError>(placed)
    };
    let (_, _, errors) = placed.await?;
    if !errors.is_empty() {
        return Err(Problem::validation(errors).into());
    }
    let upload = receive(&state, body).await?;
    // Placed again, in the transaction that creates the run: the exercise may have moved.
    let mut tx = jointeval_store::begin(&state.pool, &caller.acting_as()).await?;
    let (institute, codes, _) = crate::access::place_run(
        &mut tx,
        &caller,
        exercise_id,
        query.institute.as_deref(),
        (query.protocol_id, query.protocol_version),
    )
    .await?;
    let header = &upload.log.header;
    let config = json!({"task": header.task, "model": header.model});
    let harness_version = header
        .inspect_version
        .clone()
        .unwrap_or_else(|| "unknown".into());
    let text_errors: Vec<FieldError> = [
        ("eval.model", header.model.as_str(), 200),
        ("eval.packages.inspect_ai", harness_version.as_str(), 100),
    ]
    .into_iter()
    .filter(|(_, v, max)| v.trim().is_empty() || v.chars().count() > *max)
    .map(|(field, _, max)| {
        ValidationError::new(field, format!("must be 1 to {max} characters")).into()
    })
    .collect();
    if !text_errors.is_empty() {
        return Err(Problem::validation(text_errors).into());
    }
    let run = jointeval_store::runs::insert(
        &mut tx,
        &jointeval_store::runs::NewRun {
            exercise_id,
            protocol_id: query.protocol_id,
            protocol_version: query.protocol_version,
            institute_id: institute,
            harness_name: "inspect",
            harness_version: &harness_version,
            config: &config,
            model_version: &header.model,
            created_by: caller.account.id,
        },
    )
    .await?;
    jointeval_store::runs::set_status(&mut tx, run.id, RunStatus::Running, caller.account.id, None)
        .await?;
    let imported = import_into(&mut tx, &caller, &run, &upload, query.accept_incomplete).await?;
    let outcome = if upload.log.header.status == "success" {
        RunStatus::Succeeded
    } else {
        RunStatus::Failed
    };
    let digest = jointeval_store::runs::results_digest(&mut tx, run.id).await?;
    jointeval_store::runs::set_status(&mut tx, run.id, outcome, caller.account.id, Some(&digest))
        .await?;
    let run = jointeval_store::runs::get(&mut tx, run.id, false)
        .await?
        .ok_or_else(|| crate::auth::not_found("run"))?;
    let mut summary = summary_of(&imported);
    summary["status"] = json!(run.status.as_str());
    summary["digest"] = json!(run.digest);
    let change = Change::for_run("run.created_from_log", &run).summary(summary);
    jointeval_store::audit::commit_audited(tx, &change).await?;
    tracing::info!(run_id = %run.id, eval_id = %imported.eval_id, "run created from an Inspect log");
    let location = format!("/v1/runs/{}", run.id);
    let response = (
        StatusCode::CREATED,
        Json(CreatedFromLog {
            run: RunView::new(run, &codes),
            import: imported,
        }),
    )
        .into_response();
    Ok(super::with_header(response, header::LOCATION, &location))
}

fn check_content_type(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .unwrap_or("");
    if matches!(
        content_type,
        "application/json" | "application/zip" | "application/octet-stream"
    ) {
        return Ok(());
    }
    Err(Problem::status(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "send the log as application/json (a JSON log) or application/zip (an .eval archive)",
    )
    .into())
}

/// An uploaded log: kept on disk while it is imported, and read.
struct Upload {
    spooled: Spooled,
    sha256: String,
    size: usize,
    log: Log,
}

async fn receive(state: &AppState, body: Body) -> Result<Upload, ApiError> {
    let (spooled, sha256, size) = spool(body).await?;
    let limit = state.settings.ingest_limit as u64;
    let path = spooled.0.clone();
    let log = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path).map_err(|e| LogError::Corrupt(e.to_string()))?;
        jointeval_inspect::read(
            file,
            Limits {
                max_expanded: limit.saturating_mul(4),
                ..Limits::default()
            },
        )
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "reading an Inspect log");
        ApiError::from(Problem::internal())
    })?
    .map_err(unreadable)?;
    Ok(Upload {
        spooled,
        sha256,
        size,
        log,
    })
}

/// Writes a log's results into a running run, records what it says and how it deviates
/// from the protocol version, and keeps the original; the caller commits.
async fn import_into(
    tx: &mut jointeval_store::Tx,
    caller: &Caller,
    run: &Run,
    upload: &Upload,
    accept_incomplete: bool,
) -> Result<Imported, ApiError> {
    let log = &upload.log;
    let id_ok = (1..=64).contains(&log.header.eval_id.len())
        && log
            .header
            .eval_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !id_ok {
        return Err(ValidationError::new(
            "eval.eval_id",
            "must be 1 to 64 letters, digits, `-` or `_`",
        )
        .into());
    }
    if log.header.status != "success" && !accept_incomplete {
        return Err(Problem::validation(vec![FieldError {
            field: "status".into(),
            message: format!(
                "the log's status is {:?}, not \"success\"; pass accept_incomplete=true to import it anyway",
                log.header.status
            ),
        }])
        .into());
    }
    contradictions(run, log)?;
    let version =
        jointeval_store::protocols::get_version(tx, run.protocol_id, run.protocol_version, false)
            .await?
            .ok_or_else(|| crate::auth::not_found("protocol version"))?;
    // The samples actually run, not the dataset's size: a run on part of the dataset
    // (Inspect's --limit) deviates.
    let run_samples: std::collections::HashSet<&str> =
        log.scores.iter().map(|s| s.sample_id.as_str()).collect();
    let found = deviations(
        &version.content,
        &Ran {
            task: log.header.task.clone(),
            task_version: log.header.task_version.clone(),
            dataset_name: log.header.dataset_name.clone(),
            dataset_samples: Some(run_samples.len() as i64),
            epochs: log.header.epochs,
            scorers: log.header.scorers.clone(),
        },
    );
    let metrics: Vec<MetricValue> = log
        .metrics
        .iter()
        .map(|m| MetricValue {
            scorer: m.scorer.clone(),
            metric: m.metric.clone(),
            value: m.value,
            stderr: m.stderr,
            sample_count: m.sample_count,
        })
        .collect();
    if !metrics.is_empty() {
        let errors = validate_metrics(&metrics);
        if !errors.is_empty() {
            return Err(
                Problem::validation(errors.into_iter().map(FieldError::from).collect()).into(),
            );
        }
        jointeval_store::runs::upsert_metrics(tx, run.id, &metrics).await?;
    }
    let scores = log
        .scores
        .iter()
        .map(score_of)
        .collect::<Result<Vec<_>, _>>()?;
    let new = crate::ingest::from_scores(tx, run.id, scores).await?;
    jointeval_store::runs::count_new_samples(tx, run.id, new).await?;
    keep_original(tx, run.id, &upload.spooled).await?;
    let imported = ImportedLog {
        harness: "inspect".into(),
        format: log.format.as_str().into(),
        eval_id: log.header.eval_id.clone(),
        sha256: upload.sha256.clone(),
        size: upload.size as i64,
        status: log.header.status.clone(),
        task: log.header.task.clone(),
        task_version: log.header.task_version.clone(),
        model: log.header.model.clone(),
        created: log.header.created.clone(),
        inspect_version: log.header.inspect_version.clone(),
        dataset: log.header.dataset_name.clone(),
        samples: log.samples as i64,
        epochs: log.header.epochs,
        config: log.header.config.clone(),
        imported_by: caller.account.id,
        imported_at: Utc::now(),
    };
    jointeval_store::runs::record_imported_log(tx, run.id, &imported, &found)
        .await
        .on_constraint("runs_inspect_eval_once", || {
            Problem::typed(
                StatusCode::CONFLICT,
                "log-imported",
                "Log imported before",
                format!(
                    "eval {} is imported into another run of this institute already",
                    imported.eval_id
                ),
            )
            .into()
        })?;
    Ok(Imported {
        eval_id: imported.eval_id,
        format: imported.format,
        sha256: imported.sha256,
        metrics: metrics.len(),
        scores: log.scores.len(),
        samples: imported.samples,
        replayed: false,
        deviations: found,
    })
}

fn summary_of(imported: &Imported) -> serde_json::Value {
    json!({
        "eval_id": imported.eval_id, "sha256": imported.sha256, "format": imported.format,
        "metrics": imported.metrics, "scores": imported.scores,
        "deviations": imported.deviations.len(),
    })
}

/// The body, written to a temporary file as it arrives, with its sha256 and size.
async fn spool(body: Body) -> Result<(Spooled, String, usize), ApiError> {
    let path = std::env::temp_dir().join(format!("jointeval-log-{}", Uuid::now_v7()));
    let spooled = Spooled(path);
    let mut file = std::fs::File::create(&spooled.0).map_err(|e| {
        tracing::error!(error = %e, "spooling an upload");
        ApiError::from(Problem::internal())
    })?;
    let mut hasher = Sha256::new();
    let mut size = 0usize;
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| {
            ApiError::from(Problem::status(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the log is larger than this service accepts (--ingest-limit)",
            ))
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        hasher.update(&data);
        size += data.len();
        file.write_all(&data).map_err(|e| {
            tracing::error!(error = %e, "spooling an upload");
            ApiError::from(Problem::internal())
        })?;
    }
    file.flush()
        .map_err(|_| ApiError::from(Problem::internal()))?;
    Ok((
        spooled,
        jointeval_domain::canonical::hex(&hasher.finalize()),
        size,
    ))
}

async fn keep_original(
    conn: &mut jointeval_store::PgConnection,
    id: Uuid,
    spooled: &Spooled,
) -> Result<(), ApiError> {
    use std::io::Read;
    let mut file =
        std::fs::File::open(&spooled.0).map_err(|_| ApiError::from(Problem::internal()))?;
    let mut buffer = vec![0u8; CHUNK];
    for n in 0.. {
        let mut filled = 0;
        while filled < CHUNK {
            match file.read(&mut buffer[filled..]) {
                Ok(0) => break,
                Ok(k) => filled += k,
                Err(_) => return Err(Problem::internal().into()),
            }
        }
        if filled == 0 {
            break;
        }
        jointeval_store::runs::insert_log_chunk(conn, id, n, &buffer[..filled]).await?;
        if filled < CHUNK {
            break;
        }
    }
    Ok(())
}

/// A log goes into a running run, held by the caller if it is leased.
fn check_importable(run: &Run, caller: &Caller) -> Result<(), ApiError> {
    run.check_lease(caller.account.id, Utc::now())?;
    run.status.check_import()?;
    Ok(())
}

fn unreadable(e: LogError) -> ApiError {
    match e {
        LogError::TooLarge(limit) => Problem::status(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the archive expands beyond {limit} bytes, more than this service accepts"),
        )
        .into(),
        LogError::NotALog => Problem::status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "neither an Inspect JSON log nor an .eval archive",
        )
        .into(),
        other => Problem::typed(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-inspect-log",
            "Not a readable Inspect log",
            other.to_string(),
        )
        .into(),
    }
}

/// A run takes only logs of its own model: its `model_version` is the log's model, or
/// the model's name after the provider (`openai/gpt-4o` ran `gpt-4o`). A run that names
/// a task or model in its config takes only logs of those.
fn contradictions(run: &Run, log: &Log) -> Result<(), ApiError> {
    let model = &log.header.model;
    let short = model.rsplit('/').next().unwrap_or(model);
    if run.model_version != *model && run.model_version != short {
        return Err(Problem::typed(
            StatusCode::CONFLICT,
            "log-contradicts-run",
            "The log contradicts the run",
            format!(
                "eval.model: the log ran {model:?}, the run is of model version {:?}",
                run.model_version
            ),
        )
        .into());
    }
    for (key, field, found) in [
        ("task", "eval.task", &log.header.task),
        ("model", "eval.model", &log.header.model),
    ] {
        if let Some(expected) = run.config.get(key).and_then(|v| v.as_str())
            && expected != found
        {
            return Err(Problem::typed(
                StatusCode::CONFLICT,
                "log-contradicts-run",
                "The log contradicts the run",
                format!("{field}: the log ran {found:?}, the run's config says {key} {expected:?}"),
            )
            .into());
        }
    }
    Ok(())
}

/// A score of the log as the results API takes it, held to the same rules.
fn score_of(score: &jointeval_inspect::Score) -> Result<SampleScore, ApiError> {
    let checked = SampleScore {
        sample_id: SampleId::Text(score.sample_id.clone()),
        epoch: score.epoch,
        scorer: score.scorer.clone(),
        value: match &score.value {
            ScoreValue::Number(n) => Value::Number(*n),
            ScoreValue::Label(l) => Value::Label(l.clone()),
        },
        answer: score.answer.clone(),
        explanation: score.explanation.clone(),
        metadata: score.metadata.clone(),
    };
    checked.validate().map_err(|e| {
        ValidationError::new(
            format!(
                "samples[{}, epoch {}, {}].{}",
                score.sample_id, score.epoch, score.scorer, e.field
            ),
            e.message,
        )
    })?;
    Ok(checked)
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
        (status = 404, description = "No such run, or no log imported into it", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn download_log(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    let mut tx = jointeval_store::begin(&state.pool, &caller.acting_as()).await?;
    let run = crate::access::run(&mut tx, &caller, id, Action::ReadRun, Lock::No).await?;
    jointeval_store::commit(tx).await?;
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
