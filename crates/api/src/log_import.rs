//! Taking an Inspect log into a run: the upload spooled to disk as it arrives and its
//! sha256 taken, the log read, checked against the run (its model, task and state) and
//! the protocol version (its deviations), its metrics and scores written through
//! `ingest`, and the original kept for its readers. The handlers are in
//! `routes::inspect`.

use std::io::Write;
use std::path::PathBuf;

use axum::body::Body;
use axum::http::StatusCode;
use chrono::Utc;
use http_body_util::BodyExt;
use jointeval_domain::ValidationError;
use jointeval_domain::conformance::{Deviation, Ran, deviations, task_ran};
use jointeval_domain::exercise::ModelUnderTest;
use jointeval_domain::run::{ImportedLog, MetricValue, Reduction, SampleError, validate_metrics};
use jointeval_domain::run::{Run, SampleId, SampleScore, ScoreValue as Value};
use jointeval_inspect::{Format, Item, Limits, Log, LogError, ScoreValue};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;
use crate::conflicts::OnConstraint;
use crate::problem::{ApiError, FieldError, Problem};
use crate::work::Work;

/// Bytes of the original log kept per row.
const CHUNK: usize = 1 << 20;

/// What an import did.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "eval_id": "EhgJfVRgXrUb5PLSNFgkD9", "format": "eval",
    "sha256": "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
    "metrics": 4, "scores": 40, "reductions": 40, "samples": 20, "unscored_scores": 0, "errored_samples": 0,
    "replayed": false,
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
    /// Reductions written (one per sample, scorer and reducer).
    pub reductions: usize,
    /// Samples in the log (each epoch counts), errored ones among them.
    pub samples: i64,
    /// Scores the log left unscored (Inspect's `NaN`): not written, as Inspect's metrics
    /// leave them out.
    pub unscored_scores: usize,
    /// Samples that ended in an error instead of a score.
    pub errored_samples: usize,
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

/// The format the sender declares: `application/json` a JSON log, `application/zip` an
/// `.eval` archive; `application/octet-stream` leaves it to the bytes.
pub(crate) fn declared_format(headers: &axum::http::HeaderMap) -> Result<Option<Format>, ApiError> {
    match crate::extract::media_type(headers).as_str() {
        "application/json" => Ok(Some(Format::Json)),
        "application/zip" => Ok(Some(Format::Eval)),
        "application/octet-stream" => Ok(None),
        _ => Err(Problem::status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the log as application/json (a JSON log) or application/zip (an .eval archive)",
        )
        .into()),
    }
}

/// An uploaded log: kept on disk while it is imported, and read.
pub(crate) struct Upload {
    spooled: Spooled,
    pub(crate) sha256: String,
    size: usize,
    /// The log as read once, without its scores, errors and reductions (see `write_items`).
    pub(crate) log: Log,
    declared: Option<Format>,
    limits: Limits,
}

impl Upload {
    /// What importing this upload answers when `run` holds it already (the same eval,
    /// byte for byte); `None` when the run holds no log or another.
    pub(crate) fn replay_on(&self, run: &Run) -> Option<Imported> {
        let before = run.imported_log.as_ref()?;
        (before.eval_id == self.log.header.eval_id && before.sha256 == self.sha256).then(|| {
            Imported {
                eval_id: before.eval_id.clone(),
                format: before.format.clone(),
                sha256: before.sha256.clone(),
                metrics: self.log.metrics.len(),
                scores: self.log.score_count,
                reductions: self.log.reduction_count,
                samples: before.samples,
                unscored_scores: before.unscored_scores as usize,
                errored_samples: before.errored_samples as usize,
                replayed: true,
                deviations: run.deviations.clone(),
            }
        })
    }
}

pub(crate) async fn receive(
    state: &AppState,
    body: Body,
    declared: Option<Format>,
) -> Result<Upload, ApiError> {
    let (spooled, sha256, size) = spool(body).await?;
    let limit = state.settings.ingest_limit as u64;
    let path = spooled.0.clone();
    let limits = Limits {
        max_expanded: limit.saturating_mul(4),
        ..Limits::default()
    };
    // Read whole once, its scores counted and let go, so that the log is known good and
    // its header checked before anything is written; they are read again to be written.
    let log = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path).map_err(|e| LogError::Corrupt(e.to_string()))?;
        jointeval_inspect::read_each(file, declared, limits, &mut |_| Ok(()))
    })
    .await
    .map_err(reader_panicked)?
    .map_err(unreadable)?;
    Ok(Upload {
        spooled,
        sha256,
        size,
        log,
        declared,
        limits,
    })
}

fn reader_panicked(e: tokio::task::JoinError) -> ApiError {
    tracing::error!(error = %e, "reading an Inspect log");
    ApiError::from(Problem::internal())
}

/// What the reader hands the writer: items of one kind, a batch at a time.
enum Batch {
    Scores(Vec<jointeval_inspect::Score>),
    Errors(Vec<jointeval_inspect::SampleError>),
    Reductions(Vec<jointeval_inspect::Reduction>),
}

/// The reader's side of [`write_items`]: each kind of item gathered into its batch, and a
/// batch sent when it is full.
#[derive(Default)]
struct Batches {
    scores: Vec<jointeval_inspect::Score>,
    errors: Vec<jointeval_inspect::SampleError>,
    reductions: Vec<jointeval_inspect::Reduction>,
}

impl Batches {
    /// The batch `item` filled, if it did.
    fn add(&mut self, item: Item) -> Option<Batch> {
        fn full<T>(batch: &mut Vec<T>) -> Option<Vec<T>> {
            (batch.len() == crate::ingest::BATCH_ROWS).then(|| std::mem::take(batch))
        }
        match item {
            Item::Score(score) => {
                self.scores.push(score);
                full(&mut self.scores).map(Batch::Scores)
            }
            Item::Error(error) => {
                self.errors.push(error);
                full(&mut self.errors).map(Batch::Errors)
            }
            Item::Reduction(reduction) => {
                self.reductions.push(reduction);
                full(&mut self.reductions).map(Batch::Reductions)
            }
        }
    }

    /// What is left, at the end of the log.
    fn rest(self) -> impl Iterator<Item = Batch> {
        [
            (!self.scores.is_empty()).then_some(Batch::Scores(self.scores)),
            (!self.errors.is_empty()).then_some(Batch::Errors(self.errors)),
            (!self.reductions.is_empty()).then_some(Batch::Reductions(self.reductions)),
        ]
        .into_iter()
        .flatten()
    }
}

/// Writes the log's scores, errored samples and reductions into the run, read again from
/// the spooled upload a batch at a time and written as they come: memory holds a few
/// batches, whatever the log's size. Answers how many score keys were new to the run.
async fn write_items(
    work: &mut Work<'_>,
    run_id: Uuid,
    upload: &Upload,
    cluster: Option<&str>,
) -> Result<i64, ApiError> {
    let (sender, mut batches) = tokio::sync::mpsc::channel::<Batch>(2);
    let path = upload.spooled.0.clone();
    let (declared, limits) = (upload.declared, upload.limits);
    let reader =
        tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(&path).map_err(|e| LogError::Corrupt(e.to_string()))?;
            let stopped = || LogError::Corrupt("the writer stopped".into());
            let mut gathered = Batches::default();
            jointeval_inspect::read_each(file, declared, limits, &mut |item| match gathered
                .add(item)
            {
                Some(batch) => sender.blocking_send(batch).map_err(|_| stopped()),
                None => Ok(()),
            })?;
            for batch in gathered.rest() {
                sender.blocking_send(batch).map_err(|_| stopped())?;
            }
            Ok(())
        });
    let mut new = 0;
    while let Some(batch) = batches.recv().await {
        match batch {
            Batch::Scores(scores) => {
                let scores = scores
                    .iter()
                    .map(|s| score_of(s, cluster))
                    .collect::<Result<Vec<_>, _>>()?;
                new += crate::ingest::from_scores(work, run_id, scores).await?;
            }
            Batch::Errors(errors) => {
                let errors: Vec<SampleError> = errors
                    .iter()
                    .map(|e| SampleError::new(e.sample_id.clone(), e.epoch, &e.message))
                    .collect();
                jointeval_store::runs::insert_sample_errors(work, run_id, &errors)
                    .await
                    .on_constraint("run_sample_errors_pkey", || {
                        ValidationError::new("samples", "names an errored (sample, epoch) twice")
                            .into()
                    })?;
            }
            Batch::Reductions(reductions) => {
                let reductions = reductions
                    .iter()
                    .map(reduction_of)
                    .collect::<Result<Vec<_>, _>>()?;
                jointeval_store::runs::insert_reductions(work, run_id, &reductions)
                    .await
                    .on_constraint("run_reductions_pkey", || {
                        ValidationError::new(
                            "reductions",
                            "names a (scorer, reducer, sample) twice",
                        )
                        .into()
                    })?;
            }
        }
    }
    reader.await.map_err(reader_panicked)?.map_err(unreadable)?;
    Ok(new)
}

/// Writes a log's results into a running run, records what it says and how it deviates
/// from the protocol version, and keeps the original; the caller commits.
pub(crate) async fn import_into(
    work: &mut Work<'_>,
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
    let (content, model) = crate::comparability::standard(work, run).await?;
    contradictions(run, &model, log)?;
    // The samples actually run (errored ones too), not the dataset's size: a run on part
    // of the dataset (Inspect's --limit) deviates. What a log does not say is stated as
    // missing (`""`): a log says all of it.
    let header = &log.header;
    let ran = Ran {
        task: Some(header.task.clone()),
        task_version: Some(header.task_version.clone()),
        dataset_name: Some(header.dataset_name.clone().unwrap_or_default()),
        dataset_samples: Some(log.distinct_samples as i64),
        // Inspect leaves `epochs` out for one.
        epochs: Some(header.epochs.unwrap_or(1)),
        scorers: Some(header.scorers.clone()),
        errored_samples: log.error_count as i64,
        model: Some(header.model.clone()),
        generation: Some(header.generate_config.clone()),
        solver: header.solver.clone(),
        limits: Some(header.config.as_object().cloned().unwrap_or_default()),
    };
    let found = deviations(&content, &model, &ran);
    let task = task_ran(&content, &ran).map(|t| t.name.clone());
    let metrics: Vec<MetricValue> = log
        .metrics
        .iter()
        .map(|m| MetricValue {
            scorer: m.scorer.clone(),
            metric: m.metric.clone(),
            value: m.value,
            stderr: m.stderr,
            sample_count: m.sample_count,
            name: Some(m.name.clone()),
            unscored_count: m.unscored_count,
        })
        .collect();
    if !metrics.is_empty() {
        let errors = validate_metrics(&metrics);
        if !errors.is_empty() {
            return Err(
                Problem::validation(errors.into_iter().map(FieldError::from).collect()).into(),
            );
        }
        jointeval_store::runs::upsert_metrics(work, run.id, &metrics).await?;
    }
    let new = write_items(work, run.id, upload, content.cluster()).await?;
    jointeval_store::runs::count_new_samples(work, run.id, new).await?;
    keep_original(work, run.id, &upload.spooled).await?;
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
        unscored_scores: log.unscored as i64,
        errored_samples: log.error_count as i64,
        epochs: log.header.epochs,
        config: log.header.config.clone(),
        imported_by: work.caller.account.id,
        imported_at: Utc::now(),
    };
    jointeval_store::runs::record_imported_log(work, run.id, &imported, &found, task.as_deref())
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
        scores: log.score_count,
        reductions: log.reduction_count,
        samples: imported.samples,
        unscored_scores: log.unscored,
        errored_samples: log.error_count,
        replayed: false,
        deviations: found,
    })
}

pub(crate) fn summary_of(imported: &Imported) -> serde_json::Value {
    json!({
        "eval_id": imported.eval_id, "sha256": imported.sha256, "format": imported.format,
        "metrics": imported.metrics, "scores": imported.scores,
        "reductions": imported.reductions, "errored_samples": imported.errored_samples,
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
pub(crate) fn check_importable(run: &Run, caller: &Caller) -> Result<(), ApiError> {
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
        LogError::NotAsDeclared { declared, found } => Problem::status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "the body is {found}, sent as {declared}: send a JSON log as application/json and an .eval archive as application/zip"
            ),
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

/// A run takes only logs of its exercise's model under test (see
/// `ModelUnderTest::is_named_by`), which its own `model_version` names too. A run that
/// names a task or model in its config takes only logs of those.
fn contradictions(run: &Run, model: &ModelUnderTest, log: &Log) -> Result<(), ApiError> {
    let ran = &log.header.model;
    if !model.is_named_by(ran) {
        return Err(Problem::typed(
            StatusCode::CONFLICT,
            "log-contradicts-run",
            "The log contradicts the run",
            format!(
                "eval.model: the log ran {ran:?}, the run is of the exercise's model under test, {} {} version {} ({:?})",
                model.provider, model.name, model.version, run.model_version
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

/// A reduction of the log, held to a score's rules.
fn reduction_of(reduction: &jointeval_inspect::Reduction) -> Result<Reduction, ApiError> {
    let checked = Reduction {
        scorer: reduction.scorer.clone(),
        reducer: reduction.reducer.clone(),
        sample_id: reduction.sample_id.clone(),
        value: value_of(&reduction.value),
    };
    checked.validate().map_err(|e| {
        ValidationError::new(
            format!(
                "reductions[{}/{}, {}].{}",
                reduction.scorer,
                reduction.reducer.as_deref().unwrap_or(""),
                reduction.sample_id,
                e.field
            ),
            e.message,
        )
    })?;
    Ok(checked)
}

fn value_of(value: &ScoreValue) -> Value {
    match value {
        ScoreValue::Number(n) => Value::Number(*n),
        ScoreValue::Label(l) => Value::Label(l.clone()),
    }
}

/// A score of the log as the results API takes it, held to the same rules. Of the
/// sample's metadata it keeps the protocol version's cluster field alone: the field both
/// institutes agreed to cluster by, released with the results. The rest of it, which the
/// dataset or a solver may have filled with anything, stays in the log, a transcript.
fn score_of(
    score: &jointeval_inspect::Score,
    cluster: Option<&str>,
) -> Result<SampleScore, ApiError> {
    let sample_metadata = cluster.and_then(|field| {
        let value = score.sample_metadata.as_ref()?.get(field)?;
        Some(serde_json::json!({ field: value }))
    });
    let checked = SampleScore {
        sample_id: SampleId::Text(score.sample_id.clone()),
        epoch: score.epoch,
        scorer: score.scorer.clone(),
        value: value_of(&score.value),
        answer: score.answer.clone(),
        explanation: score.explanation.clone(),
        metadata: score.metadata.clone(),
        sample_metadata,
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
