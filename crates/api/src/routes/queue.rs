//! The run queue: a harness claims the oldest queued run of its institute, holds it under
//! a lease it renews with heartbeats, and finishes it; a lease left to expire puts the run
//! back in the queue for the next claim.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jointeval_domain::audit::Change;
use jointeval_domain::run::{DEFAULT_LEASE_SECONDS, LEASE_SECONDS};
use jointeval_domain::{Action, Resource, ValidationError, claim_capacities, decide};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::access::Lock;
use crate::auth::Caller;
use crate::extract::{ApiPath, OptionalJson};
use crate::problem::{ApiError, Problem};
use crate::views::RunView;
use crate::work::Work;

/// What a harness asks of the queue.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"harness": "inspect", "lease_seconds": 300}))]
pub struct ClaimRequest {
    /// Only runs registered for this harness (its `harness.name`), 1 to 100 characters,
    /// not all blank.
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    pub harness: Option<String>,
    /// How long the lease lasts without a heartbeat, 10 to 3600 seconds (default 300).
    #[schema(minimum = 10, maximum = 3600)]
    pub lease_seconds: Option<i64>,
}

/// A lease renewal.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"lease_seconds": 300}))]
pub struct HeartbeatRequest {
    /// The new lease, from now, 10 to 3600 seconds (default 300).
    #[schema(minimum = 10, maximum = 3600)]
    pub lease_seconds: Option<i64>,
}

fn lease_seconds(asked: Option<i64>) -> Result<i64, ApiError> {
    let secs = asked.unwrap_or(DEFAULT_LEASE_SECONDS);
    if !LEASE_SECONDS.contains(&secs) {
        return Err(ValidationError::new(
            "lease_seconds",
            format!(
                "must be between {} and {}",
                LEASE_SECONDS.start(),
                LEASE_SECONDS.end()
            ),
        )
        .into());
    }
    Ok(secs)
}

/// Claims the oldest queued run of the caller's institutes (or one whose lease expired),
/// moving it to `running` under a lease held by the caller. Two claims never get the same
/// run, whichever service instance they reach.
#[utoipa::path(
    post, path = "/v1/runs/claim", tag = "runs",
    security(("bearer" = [])),
    request_body(content = Option<ClaimRequest>, description = "Optional: an empty body asks for the defaults"),
    responses(
        (status = 200, description = "The claimed run, running, with the caller's lease", body = RunView),
        (status = 204, description = "No run is waiting"),
        (status = 403, description = "Not a service account with runs:execute and the evaluator role", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is invalid", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn claim_run(
    State(state): State<AppState>,
    caller: Caller,
    OptionalJson(request): OptionalJson<ClaimRequest>,
) -> Result<Response, ApiError> {
    let secs = lease_seconds(request.lease_seconds)?;
    if request
        .harness
        .as_ref()
        .is_some_and(|h| h.trim().is_empty() || h.chars().count() > 100)
    {
        return Err(ValidationError::new("harness", "must be 1 to 100 characters").into());
    }
    decide(&caller.actor, Action::ClaimRuns, &Resource::Partnership)
        .map_err(|d| Caller::deny(d, "queue"))?;
    let mut work = Work::begin(&state, &caller).await?;
    let claimed = jointeval_store::runs::claim(
        &mut work,
        &claim_capacities(&caller.actor),
        request.harness.as_deref(),
        caller.account.id,
        secs,
    )
    .await?;
    let Some(run) = claimed else {
        work.commit().await?;
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let codes = work.codes().await?;
    let change = Change::for_run("run.claimed", &run).summary(json!({
        "status": run.status.as_str(),
        "lease_expires_at": run.lease.as_ref().map(|l| l.expires_at),
    }));
    work.commit_audited(&change).await?;
    tracing::info!(run_id = %run.id, "run claimed");
    Ok(Json(RunView::new(run, &codes)).into_response())
}

/// Renews the caller's lease on a run it claimed.
#[utoipa::path(
    post, path = "/v1/runs/{id}/heartbeat", tag = "runs",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The run")),
    request_body(content = Option<HeartbeatRequest>, description = "Optional: an empty body asks for the defaults"),
    responses(
        (status = 200, description = "The run, with the renewed lease", body = RunView),
        (status = 403, description = "Not an evaluator of the executing institute", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such run", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not running, not claimed, or claimed by another worker since the lease expired", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is invalid", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn heartbeat(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    OptionalJson(request): OptionalJson<HeartbeatRequest>,
) -> Result<Json<RunView>, ApiError> {
    let secs = lease_seconds(request.lease_seconds)?;
    let mut work = Work::begin(&state, &caller).await?;
    let run = crate::access::run(&mut work, id, Action::ExecuteRun, Lock::ForUpdate).await?;
    run.check_heartbeat(caller.account.id)?;
    let run = jointeval_store::runs::renew_lease(&mut work, id, caller.account.id, secs).await?;
    let codes = work.codes().await?;
    let change = Change::for_run("run.heartbeat", &run).summary(json!({
        "lease_expires_at": run.lease.as_ref().map(|l| l.expires_at),
    }));
    work.commit_audited(&change).await?;
    Ok(Json(RunView::new(run, &codes)))
}
