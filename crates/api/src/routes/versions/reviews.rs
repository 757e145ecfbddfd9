//! Reviews of a version in review: a verdict per participating institute.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use jointeval_domain::audit::Change as AuditChange;
use jointeval_domain::protocol::{
    Review, Verdict, VersionStateError, VersionStatus, review_outcome,
};
use jointeval_domain::{Action, choose_capacity, review_capacities};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::access::Lock;
use crate::auth::Caller;
use crate::conflicts::OnConstraint;
use crate::extract::{ApiPath, IfMatch};
use crate::idempotency::{self, IdempotencyHeader, IdempotentJson};
use crate::problem::{ApiError, Problem};
use crate::views::Codes;
use crate::work::Work;

/// A reviewer's verdict.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d30", "reviewer_id": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d31",
    "institute": "UK", "verdict": "request_changes", "comment": "Three epochs at least.",
    "created_at": "2026-11-27T16:00:00Z"
}))]
pub struct ReviewView {
    pub id: Uuid,
    pub reviewer_id: Uuid,
    /// The institute in whose capacity the reviewer reviewed.
    pub institute: String,
    pub verdict: Verdict,
    pub comment: String,
    pub created_at: DateTime<Utc>,
}

impl ReviewView {
    fn new(r: Review, codes: &Codes) -> Self {
        Self {
            id: r.id,
            reviewer_id: r.reviewer_id,
            institute: codes.of(r.institute_id),
            verdict: r.verdict,
            comment: r.comment,
            created_at: r.created_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"verdict": "request_changes", "comment": "Task ctf-easy needs a dataset hash."}))]
pub struct ReviewRequest {
    pub verdict: Verdict,
    #[serde(default)]
    pub comment: String,
    /// The participating institute (code) in whose capacity to review, when the caller
    /// reviews for more than one.
    pub institute: Option<String>,
}

/// The review recorded, and where the version stands after it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewOutcome {
    pub review: ReviewView,
    pub version_status: VersionStatus,
}

/// Reviews a version in review, bound to the content the reviewer read: `If-Match` is
/// the version's `content_sha256` as its body shows it, quoted (`"…"`; 428 without it or
/// with `*`, 412 when it is another, the version's `ETag` too: that one is for editing a
/// draft). The version is approved once every participating institute has approved it
/// and no request for changes stands; any request for changes sends it back.
#[utoipa::path(
    post, path = "/v1/protocols/{id}/versions/{number}/reviews", tag = "protocols",
    security(("bearer" = [])),
    params(IdempotencyHeader, ("id" = Uuid, Path, description = "The protocol"), ("number" = i32, Path, description = "The version number"),
           ("If-Match" = String, Header, description = "The version's `content_sha256` as read, quoted", example = json!("\"9f2b5c0e6a1d4b7f8e3c2a1b0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e\""))),
    request_body = ReviewRequest,
    responses(
        (status = 201, description = "Recorded", body = ReviewOutcome),
        (status = 403, description = "Not a reviewer of a participating institute, or an editor of this version", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such protocol or version", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not in review, or reviewed by this reviewer already", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`If-Match` is not the version's content hash", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 428, description = "If-Match is missing, or `*`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn review_version(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, number)): ApiPath<(Uuid, i32)>,
    if_match: IfMatch,
    IdempotentJson { key, request }: IdempotentJson<ReviewRequest>,
) -> Result<Response, ApiError> {
    let mut work = Work::begin(&state, &caller).await?;
    if let Some(first) = idempotency::replay(&mut work, key.as_ref()).await? {
        work.commit().await?;
        return Ok(first);
    }
    let (protocol, version) = crate::access::version(
        &mut work,
        id,
        number,
        Action::ReviewVersion,
        Lock::ForUpdate,
    )
    .await?;
    version.status.check_review()?;
    // What is reviewed is what the reviewer read.
    let read = version.content_sha256.as_deref().ok_or(VersionStateError(
        "the version in review has no content hash",
    ))?;
    if_match.check_hash(read, "the version's content_sha256")?;
    request.verdict.check_comment(&request.comment)?;
    let codes = work.codes().await?;
    let institute = choose_capacity(
        request.institute.as_deref().map(|code| codes.id_of(code)),
        &review_capacities(&caller.actor, &protocol.participants),
        "review",
    )?;
    let review = jointeval_store::protocols::insert_review(
        &mut work,
        version.id,
        caller.account.id,
        institute,
        request.verdict,
        &request.comment,
    )
    .await
    .on_constraint("protocol_reviews_once", || {
        VersionStateError("you reviewed this version already").into()
    })?;
    let reviews: Vec<(Uuid, Verdict)> =
        jointeval_store::protocols::list_reviews(&mut work, version.id)
            .await?
            .into_iter()
            .map(|r| (r.institute_id, r.verdict))
            .collect();
    let outcome = review_outcome(&protocol.participants, &reviews);
    if outcome != VersionStatus::InReview {
        jointeval_store::protocols::set_version_status(&mut work, &version, outcome).await?;
    }
    let change = AuditChange::for_version(
        "protocol_version.reviewed",
        &caller.actor,
        &protocol,
        version.id,
    )
    .by(institute)
    .summary(json!({
        "number": number, "verdict": request.verdict.as_str(), "status": outcome.as_str(),
    }));
    idempotency::remember(
        &mut work,
        key.as_ref(),
        StatusCode::CREATED,
        &ReviewOutcome {
            review: ReviewView::new(review.clone(), &codes),
            version_status: outcome,
        },
    )
    .await?;
    work.commit_audited(&change).await?;
    tracing::info!(protocol_id = %id, number, verdict = request.verdict.as_str(), status = outcome.as_str(), "version reviewed");
    Ok((
        StatusCode::CREATED,
        Json(ReviewOutcome {
            review: ReviewView::new(review, &codes),
            version_status: outcome,
        }),
    )
        .into_response())
}

/// Lists a version's reviews.
#[utoipa::path(
    get, path = "/v1/protocols/{id}/versions/{number}/reviews", tag = "protocols",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The protocol"), ("number" = i32, Path, description = "The version number")),
    responses(
        (status = 200, description = "The reviews", body = Vec<ReviewView>),
        (status = 404, description = "No such protocol or version", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_reviews(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, number)): ApiPath<(Uuid, i32)>,
) -> Result<Json<Vec<ReviewView>>, ApiError> {
    let mut work = Work::begin(&state, &caller).await?;
    let (_, version) =
        crate::access::version(&mut work, id, number, Action::ReadProtocol, Lock::No).await?;
    let reviews = jointeval_store::protocols::list_reviews(&mut work, version.id).await?;
    let codes = work.codes().await?;
    work.commit().await?;
    Ok(Json(
        reviews
            .into_iter()
            .map(|r| ReviewView::new(r, &codes))
            .collect(),
    ))
}
