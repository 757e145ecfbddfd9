//! An exercise's results side by side, as the caller may see them.

use axum::Json;
use axum::extract::State;
use jointeval_domain::conformance::Deviation;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::access::{self};
use crate::auth::Caller;
use crate::extract::ApiPath;
use crate::problem::{ApiError, Problem};
use crate::work::Work;

/// One institute's result for one metric.
#[derive(Debug, Serialize, ToSchema)]
pub struct InstituteResult {
    pub institute: String,
    pub run_id: Uuid,
    pub value: f64,
    pub stderr: Option<f64>,
    pub sample_count: Option<i64>,
    /// The run's comparability verdict (as the run's `comparable`): `null` when not
    /// checked.
    pub comparable: Option<bool>,
    /// How the run deviates from the protocol version, when it does.
    pub deviations: Vec<Deviation>,
}

/// One metric of one protocol version, each institute's result side by side.
#[derive(Debug, Serialize, ToSchema)]
pub struct SummaryLine {
    pub protocol_id: Uuid,
    pub protocol_version: i32,
    pub scorer: String,
    pub metric: String,
    /// `true` when every run on the line is comparable, so that their results may be set
    /// side by side; each result's `deviations` say why one is not.
    pub comparable: bool,
    pub results: Vec<InstituteResult>,
}

/// An exercise's results as the caller may see them.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"exercise_id": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d50", "lines": [{
    "protocol_id": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d20", "protocol_version": 2,
    "scorer": "match", "metric": "accuracy", "comparable": false, "results": [
        {"institute": "UK", "run_id": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d60", "value": 0.85, "stderr": 0.08, "sample_count": 20,
         "comparable": false, "deviations": [{"field": "epochs", "protocol": "3", "run": "1"}]},
        {"institute": "US", "run_id": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d61", "value": 0.8, "stderr": 0.09, "sample_count": 20,
         "comparable": true, "deviations": []}]}]}))]
pub struct ExerciseSummary {
    pub exercise_id: Uuid,
    pub lines: Vec<SummaryLine>,
}

/// Per protocol version and metric, each institute's finished runs side by side (the
/// caller's own institutes' runs, and the partners' runs released to them), each with its
/// comparability verdict: whether it did what the protocol version says, and if not, how
/// it deviated.
#[utoipa::path(
    get, path = "/v1/exercises/{id}/summary", tag = "runs",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The exercise")),
    responses(
        (status = 200, description = "The summary", body = ExerciseSummary),
        (status = 404, description = "No such exercise", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn exercise_summary(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(exercise_id): ApiPath<Uuid>,
) -> Result<Json<ExerciseSummary>, ApiError> {
    let mut work = Work::begin(&state, &caller).await?;
    let institutes = access::exercise_runs(&mut work, exercise_id).await?;
    let rows = jointeval_store::runs::summary(&mut work, exercise_id, &institutes).await?;
    let codes = work.codes().await?;
    work.commit().await?;
    let mut lines: Vec<SummaryLine> = Vec::new();
    for r in rows {
        let result = InstituteResult {
            institute: codes.of(r.institute_id),
            run_id: r.run_id,
            value: r.value,
            stderr: r.stderr,
            sample_count: r.sample_count,
            comparable: r.comparable,
            deviations: r.deviations,
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
                comparable: false,
                results: vec![result],
            }),
        }
    }
    for line in &mut lines {
        line.comparable = line.results.iter().all(|r| r.comparable == Some(true));
    }
    Ok(Json(ExerciseSummary { exercise_id, lines }))
}
