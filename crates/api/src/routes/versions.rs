//! Protocol versions: co-authored drafts with optimistic concurrency, frozen for review,
//! approved by every participating institute; their reviews, discussion and differences.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use jointeval_domain::audit::Change as AuditChange;
use jointeval_domain::protocol::{
    Change, Comment, ProtocolContent, ProtocolVersion, Review, Verdict, VersionStateError,
    VersionStatus, diff, pointer_exists, review_outcome,
};
use jointeval_domain::{Action, JointRef, Role, ValidationError, review_capacities};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::access::Lock;
use crate::auth::Caller;
use crate::conflicts::OnConstraint;
use crate::extract::{ApiJson, ApiPath, ApiQuery, IfMatch};
use crate::problem::{ApiError, FieldError, Problem};
use crate::views::Codes;

/// A version of a protocol.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d31",
    "protocol_id": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d20", "number": 2, "status": "in_review",
    "content": {"objective": "Measure uplift on capture-the-flag tasks", "tasks": [], "metrics": [],
                "model_requirements": "", "notes": ""},
    "content_sha256": "9f2b5c0e6a1d4b7f8e3c2a1b0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e",
    "based_on": 1, "editors": ["0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d12"],
    "created_by": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d12",
    "created_at": "2026-11-27T14:00:00Z", "updated_at": "2026-11-27T15:00:00Z",
    "submitted_by": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d12", "submitted_at": "2026-11-27T15:00:00Z",
    "decided_at": null
}))]
pub struct VersionView {
    /// The version's own id: what the audit trail names it by
    /// (`GET /v1/audit/objects/protocol_version/{id}`).
    pub id: Uuid,
    pub protocol_id: Uuid,
    pub number: i32,
    pub status: VersionStatus,
    pub content: ProtocolContent,
    /// sha256 of the canonical content, recorded when the version was submitted.
    pub content_sha256: Option<String>,
    /// The version this one was copied from.
    pub based_on: Option<i32>,
    /// Everyone who edited it (its co-authors); none of them may review it.
    pub editors: Vec<Uuid>,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub submitted_by: Option<Uuid>,
    pub submitted_at: Option<DateTime<Utc>>,
    pub decided_at: Option<DateTime<Utc>>,
}

impl From<ProtocolVersion> for VersionView {
    fn from(v: ProtocolVersion) -> Self {
        Self {
            id: v.id,
            protocol_id: v.protocol_id,
            number: v.number,
            status: v.status,
            content: v.content,
            content_sha256: v.content_sha256,
            based_on: v.based_on,
            editors: v.editors,
            created_by: v.created_by,
            created_at: v.created_at,
            updated_at: v.updated_at,
            submitted_by: v.submitted_by,
            submitted_at: v.submitted_at,
            decided_at: v.decided_at,
        }
    }
}

fn etag(v: &ProtocolVersion) -> String {
    format!("\"{}.{}\"", v.number, v.revision)
}

fn version_response(v: ProtocolVersion, status: StatusCode) -> Response {
    let tag = etag(&v);
    let location = format!("/v1/protocols/{}/versions/{}", v.protocol_id, v.number);
    let response = (status, Json(VersionView::from(v))).into_response();
    let response = super::with_header(response, header::ETAG, &tag);
    if status == StatusCode::CREATED {
        super::with_header(response, header::LOCATION, &location)
    } else {
        response
    }
}

fn invalid_content(errors: Vec<ValidationError>) -> Result<(), ApiError> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Problem::validation(errors.into_iter().map(FieldError::from).collect()).into())
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"from": "latest"}))]
pub struct NewDraftRequest {
    /// `latest` copies the newest version's content; absent, the draft starts from `content`
    /// (or empty).
    pub from: Option<String>,
    pub content: Option<ProtocolContent>,
}

/// Starts a draft: the protocol's next version, from scratch or as a copy of the latest.
/// One version is open (draft or in review) at a time.
#[utoipa::path(
    post, path = "/v1/protocols/{id}/versions", tag = "protocols",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The protocol")),
    request_body = NewDraftRequest,
    responses(
        (status = 201, description = "The new draft", body = VersionView,
         headers(("ETag" = String, description = "Send as If-Match to edit"), ("Location" = String, description = "The version"))),
        (status = 403, description = "Not an author of a participating institute", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such protocol", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A version is open already, or the protocol is retired", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The content is invalid", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_draft(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(request): ApiJson<NewDraftRequest>,
) -> Result<Response, ApiError> {
    let mut tx = jointeval_store::begin(&state.pool, &caller.acting_as()).await?;
    jointeval_store::protocols::lock(&mut tx, id).await?;
    let (protocol, joint) =
        crate::access::protocol(&mut tx, &caller, id, Action::WriteDraft).await?;
    protocol.status.check_new_version()?;
    let latest = jointeval_store::protocols::list_versions(&mut tx, id)
        .await?
        .into_iter()
        .next();
    let (content, based_on) = match (request.from.as_deref(), request.content) {
        (Some("latest"), None) => match latest {
            Some(v) => (v.content, Some(v.number)),
            None => {
                return Err(
                    ValidationError::new("from", "the protocol has no version to copy").into(),
                );
            }
        },
        (Some("latest"), Some(_)) => {
            return Err(ValidationError::new("content", "give either `from` or `content`").into());
        }
        (Some(_), _) => return Err(ValidationError::new("from", "must be `latest`").into()),
        (None, content) => (content.unwrap_or_default(), None),
    };
    invalid_content(content.validate())?;
    let version = jointeval_store::protocols::insert_version(
        &mut tx,
        id,
        &content,
        based_on,
        caller.account.id,
    )
    .await
    .on_constraint("protocol_versions_one_open", || {
        VersionStateError("a version of this protocol is open (draft or in review) already").into()
    })?;
    let change =
        version_change("protocol_version.drafted", &caller, &joint, &version).summary(json!({
            "number": version.number, "based_on": version.based_on,
            "content_sha256": version.content.sha256(),
        }));
    jointeval_store::audit::commit_audited(tx, &change).await?;
    tracing::info!(protocol_id = %id, number = version.number, "draft started");
    Ok(version_response(version, StatusCode::CREATED))
}

/// Lists a protocol's versions, newest first.
#[utoipa::path(
    get, path = "/v1/protocols/{id}/versions", tag = "protocols",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The protocol")),
    responses(
        (status = 200, description = "The versions", body = Vec<VersionView>),
        (status = 404, description = "No such protocol", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_versions(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Vec<VersionView>>, ApiError> {
    let mut tx = jointeval_store::begin(&state.pool, &caller.acting_as()).await?;
    crate::access::protocol(&mut tx, &caller, id, Action::ReadProtocol).await?;
    let versions = jointeval_store::protocols::list_versions(&mut tx, id).await?;
    jointeval_store::commit(tx).await?;
    Ok(Json(versions.into_iter().map(VersionView::from).collect()))
}

/// Reads a version, with its `ETag`.
#[utoipa::path(
    get, path = "/v1/protocols/{id}/versions/{number}", tag = "protocols",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The protocol"), ("number" = i32, Path, description = "The version number")),
    responses(
        (status = 200, description = "The version", body = VersionView, headers(("ETag" = String, description = "Send as If-Match to edit"))),
        (status = 404, description = "No such protocol or version", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_version(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, number)): ApiPath<(Uuid, i32)>,
) -> Result<Response, ApiError> {
    let mut tx = jointeval_store::begin(&state.pool, &caller.acting_as()).await?;
    let (_, version) =
        crate::access::version(&mut tx, &caller, id, number, Action::ReadProtocol, Lock::No)
            .await?;
    jointeval_store::commit(tx).await?;
    Ok(version_response(version, StatusCode::OK))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DraftUpdate {
    /// The draft's whole new content.
    pub content: ProtocolContent,
}

/// Replaces a draft's content. Needs `If-Match` with the current `ETag` (428 without,
/// 412 when another edit came first); the caller becomes one of its co-authors.
#[utoipa::path(
    patch, path = "/v1/protocols/{id}/versions/{number}", tag = "protocols",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The protocol"), ("number" = i32, Path, description = "The version number"),
           ("If-Match" = String, Header, description = "The ETag of the draft as read")),
    request_body = DraftUpdate,
    responses(
        (status = 200, description = "Updated", body = VersionView, headers(("ETag" = String, description = "The new version"))),
        (status = 403, description = "Not an author of a participating institute", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such protocol or version", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The version is frozen or approved", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Another edit came first", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The content is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 428, description = "If-Match is missing", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update_draft(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, number)): ApiPath<(Uuid, i32)>,
    if_match: IfMatch,
    ApiJson(update): ApiJson<DraftUpdate>,
) -> Result<Response, ApiError> {
    let mut tx = jointeval_store::begin(&state.pool, &caller.acting_as()).await?;
    let (protocol, version) = crate::access::version(
        &mut tx,
        &caller,
        id,
        number,
        Action::WriteDraft,
        Lock::ForUpdate,
    )
    .await?;
    version.status.check_edit()?;
    if_match.check(&etag(&version))?;
    invalid_content(update.content.validate())?;
    jointeval_store::protocols::update_content(
        &mut tx,
        version.id,
        &update.content,
        caller.account.id,
    )
    .await?;
    let changes = diff(&version.content, &update.content);
    let mut changed = json!(
        changes
            .iter()
            .map(|c| json!({"path": c.path, "to": c.to}))
            .collect::<Vec<_>>()
    );
    // The trail can never be cleaned: a large edit is recorded by its paths, and the new
    // content by its digest.
    if changed.to_string().len() > MAX_AUDITED_EDIT {
        changed = json!(changes.iter().map(|c| &c.path).collect::<Vec<_>>());
    }
    let version = jointeval_store::protocols::get_version(&mut tx, id, number, false)
        .await?
        .ok_or_else(|| crate::auth::not_found("version"))?;
    let change =
        version_change("protocol_version.edited", &caller, &protocol, &version).summary(json!({
            "revision": version.revision, "changed": changed,
            "content_sha256": version.content.sha256(),
        }));
    jointeval_store::audit::commit_audited(tx, &change).await?;
    Ok(version_response(version, StatusCode::OK))
}

/// Bytes of new values an edit's audit event holds at most.
const MAX_AUDITED_EDIT: usize = 16 * 1024;

/// A version's history is its protocol's participants'.
fn version_change(
    action: &'static str,
    caller: &Caller,
    protocol: &JointRef,
    version: &ProtocolVersion,
) -> AuditChange {
    let capacity = caller
        .actor
        .capacity_among(&protocol.participants, Some(Role::Author))
        .or_else(|| caller.actor.capacity_among(&protocol.participants, None));
    let change =
        AuditChange::new(action, version.id).visible_to(protocol.participants.iter().copied());
    match capacity {
        Some(institute) => change.by(institute),
        None => change,
    }
}

/// Submits a draft for review: it is frozen and the sha256 of its canonical content recorded.
#[utoipa::path(
    post, path = "/v1/protocols/{id}/versions/{number}/submit", tag = "protocols",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The protocol"), ("number" = i32, Path, description = "The version number")),
    responses(
        (status = 200, description = "In review", body = VersionView),
        (status = 403, description = "Not an author of a participating institute", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such protocol or version", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not a draft", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The draft is incomplete (objective, a task and a metric are needed)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn submit_version(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, number)): ApiPath<(Uuid, i32)>,
) -> Result<Response, ApiError> {
    let mut tx = jointeval_store::begin(&state.pool, &caller.acting_as()).await?;
    let (protocol, version) = crate::access::version(
        &mut tx,
        &caller,
        id,
        number,
        Action::WriteDraft,
        Lock::ForUpdate,
    )
    .await?;
    version.status.check_submit()?;
    invalid_content(version.content.validate_for_review())?;
    jointeval_store::protocols::submit(
        &mut tx,
        version.id,
        &version.content.sha256(),
        caller.account.id,
    )
    .await?;
    let version = jointeval_store::protocols::get_version(&mut tx, id, number, false)
        .await?
        .ok_or_else(|| crate::auth::not_found("version"))?;
    let change = version_change("protocol_version.submitted", &caller, &protocol, &version)
        .summary(json!({"number": number, "content_sha256": version.content_sha256}));
    jointeval_store::audit::commit_audited(tx, &change).await?;
    tracing::info!(protocol_id = %id, number, "version submitted for review");
    Ok(version_response(version, StatusCode::OK))
}

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

/// Reviews a version in review. The version is approved once every participating
/// institute has approved it and no request for changes stands; any request for
/// changes sends it back.
#[utoipa::path(
    post, path = "/v1/protocols/{id}/versions/{number}/reviews", tag = "protocols",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The protocol"), ("number" = i32, Path, description = "The version number")),
    request_body = ReviewRequest,
    responses(
        (status = 201, description = "Recorded", body = ReviewOutcome),
        (status = 403, description = "Not a reviewer of a participating institute, or an editor of this version", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such protocol or version", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not in review, or reviewed by this reviewer already", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is invalid", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn review_version(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, number)): ApiPath<(Uuid, i32)>,
    ApiJson(request): ApiJson<ReviewRequest>,
) -> Result<Response, ApiError> {
    if request.comment.chars().count() > 10_000 {
        return Err(ValidationError::new("comment", "must be at most 10000 characters").into());
    }
    let mut tx = jointeval_store::begin(&state.pool, &caller.acting_as()).await?;
    let (protocol, version) = crate::access::version(
        &mut tx,
        &caller,
        id,
        number,
        Action::ReviewVersion,
        Lock::ForUpdate,
    )
    .await?;
    version.status.check_review()?;
    if request.verdict == Verdict::RequestChanges && request.comment.trim().is_empty() {
        return Err(ValidationError::new("comment", "say what should change").into());
    }
    let codes = Codes::new(&jointeval_store::institutes::all(&mut *tx).await?);
    let capacities = review_capacities(&caller.actor, &protocol.participants);
    let institute = match (request.institute.as_deref(), capacities.as_slice()) {
        (Some(code), _) => codes
            .id_of(code)
            .filter(|i| capacities.contains(i))
            .ok_or_else(|| {
                ValidationError::new("institute", "is not a participant you review for")
            })?,
        (None, [one]) => *one,
        (None, _) => {
            return Err(ValidationError::new(
                "institute",
                "is required: you review for more than one participant",
            )
            .into());
        }
    };
    let review = jointeval_store::protocols::insert_review(
        &mut tx,
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
        jointeval_store::protocols::list_reviews(&mut tx, version.id)
            .await?
            .into_iter()
            .map(|r| (r.institute_id, r.verdict))
            .collect();
    let outcome = review_outcome(&protocol.participants, &reviews);
    if outcome != VersionStatus::InReview {
        jointeval_store::protocols::set_version_status(&mut tx, version.id, outcome).await?;
    }
    let change = version_change("protocol_version.reviewed", &caller, &protocol, &version)
        .by(institute)
        .summary(json!({
            "number": number, "verdict": request.verdict.as_str(), "status": outcome.as_str(),
        }));
    jointeval_store::audit::commit_audited(tx, &change).await?;
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
    let mut tx = jointeval_store::begin(&state.pool, &caller.acting_as()).await?;
    let (_, version) =
        crate::access::version(&mut tx, &caller, id, number, Action::ReadProtocol, Lock::No)
            .await?;
    let reviews = jointeval_store::protocols::list_reviews(&mut tx, version.id).await?;
    let codes = Codes::new(&jointeval_store::institutes::all(&mut *tx).await?);
    jointeval_store::commit(tx).await?;
    Ok(Json(
        reviews
            .into_iter()
            .map(|r| ReviewView::new(r, &codes))
            .collect(),
    ))
}

/// A comment on a version.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d40", "parent_id": null,
    "author_id": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d31", "anchor": "/tasks/0/epochs",
    "body": "Is 3 enough?", "created_at": "2026-11-27T16:00:00Z"
}))]
pub struct CommentView {
    pub id: Uuid,
    /// The comment this one replies to.
    pub parent_id: Option<Uuid>,
    pub author_id: Uuid,
    /// A JSON pointer into the version's content, when the comment is about one field.
    pub anchor: Option<String>,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

impl From<Comment> for CommentView {
    fn from(c: Comment) -> Self {
        Self {
            id: c.id,
            parent_id: c.parent_id,
            author_id: c.author_id,
            anchor: c.anchor,
            body: c.body,
            created_at: c.created_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"body": "Three epochs are not enough for this variance.", "anchor": "/tasks/0/epochs"}))]
pub struct CommentRequest {
    /// 1 to 10000 characters.
    #[schema(min_length = 1, max_length = 10000)]
    pub body: String,
    /// A JSON pointer into the version's content.
    pub anchor: Option<String>,
    /// The comment this one replies to.
    pub parent_id: Option<Uuid>,
}

/// Comments on a version, optionally about one field, or in reply to another comment.
#[utoipa::path(
    post, path = "/v1/protocols/{id}/versions/{number}/comments", tag = "protocols",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The protocol"), ("number" = i32, Path, description = "The version number")),
    request_body = CommentRequest,
    responses(
        (status = 201, description = "Posted", body = CommentView),
        (status = 403, description = "Viewers read the discussion but do not post", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such protocol or version", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Empty or oversized body, an anchor that names nothing, or an unknown parent", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn post_comment(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, number)): ApiPath<(Uuid, i32)>,
    ApiJson(request): ApiJson<CommentRequest>,
) -> Result<Response, ApiError> {
    let length = request.body.trim().chars().count();
    if length == 0 || request.body.chars().count() > 10_000 {
        return Err(ValidationError::new("body", "must be 1 to 10000 characters").into());
    }
    let mut tx = jointeval_store::begin(&state.pool, &caller.acting_as()).await?;
    let (protocol, version) =
        crate::access::version(&mut tx, &caller, id, number, Action::Comment, Lock::No).await?;
    if let Some(anchor) = &request.anchor
        && (anchor.len() > 500
            || !anchor.starts_with('/')
            || !pointer_exists(&version.content, anchor))
    {
        return Err(ValidationError::new(
            "anchor",
            "must be a JSON pointer to a field of this version",
        )
        .into());
    }
    if let Some(parent) = request.parent_id {
        let siblings = jointeval_store::protocols::list_comments(&mut tx, version.id).await?;
        if !siblings.iter().any(|c| c.id == parent) {
            return Err(
                ValidationError::new("parent_id", "is not a comment on this version").into(),
            );
        }
    }
    let comment = jointeval_store::protocols::insert_comment(
        &mut tx,
        version.id,
        request.parent_id,
        caller.account.id,
        request.anchor.as_deref(),
        &request.body,
    )
    .await?;
    let change = version_change("protocol_version.commented", &caller, &protocol, &version)
        .summary(json!({
            "comment_id": comment.id, "parent_id": comment.parent_id, "anchor": comment.anchor,
        }));
    jointeval_store::audit::commit_audited(tx, &change).await?;
    Ok((StatusCode::CREATED, Json(CommentView::from(comment))).into_response())
}

/// Lists a version's comments, oldest first.
#[utoipa::path(
    get, path = "/v1/protocols/{id}/versions/{number}/comments", tag = "protocols",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The protocol"), ("number" = i32, Path, description = "The version number")),
    responses(
        (status = 200, description = "The comments", body = Vec<CommentView>),
        (status = 404, description = "No such protocol or version", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_comments(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, number)): ApiPath<(Uuid, i32)>,
) -> Result<Json<Vec<CommentView>>, ApiError> {
    let mut tx = jointeval_store::begin(&state.pool, &caller.acting_as()).await?;
    let (_, version) =
        crate::access::version(&mut tx, &caller, id, number, Action::ReadProtocol, Lock::No)
            .await?;
    let comments = jointeval_store::protocols::list_comments(&mut tx, version.id).await?;
    jointeval_store::commit(tx).await?;
    Ok(Json(comments.into_iter().map(CommentView::from).collect()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DiffQuery {
    /// The older version's number.
    pub from: i32,
    /// The newer version's number.
    pub to: i32,
}

/// The field-by-field difference between two versions of a protocol.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"from": 1, "to": 2,
    "changes": [{"path": "/tasks/0/epochs", "op": "changed", "from": 2, "to": 3}]}))]
pub struct DiffView {
    pub from: i32,
    pub to: i32,
    pub changes: Vec<Change>,
}

/// The field-by-field difference between two versions, for reviewers.
#[utoipa::path(
    get, path = "/v1/protocols/{id}/diff", tag = "protocols",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The protocol"), DiffQuery),
    responses(
        (status = 200, description = "The changes, as JSON pointers", body = DiffView),
        (status = 404, description = "No such protocol or version", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`from` or `to` is missing or not a number", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn diff_versions(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<DiffQuery>,
) -> Result<Json<DiffView>, ApiError> {
    let mut tx = jointeval_store::begin(&state.pool, &caller.acting_as()).await?;
    let (_, from) = crate::access::version(
        &mut tx,
        &caller,
        id,
        query.from,
        Action::ReadProtocol,
        Lock::No,
    )
    .await?;
    let to = jointeval_store::protocols::get_version(&mut tx, id, query.to, false)
        .await?
        .ok_or_else(|| crate::auth::not_found("version"))?;
    jointeval_store::commit(tx).await?;
    Ok(Json(DiffView {
        from: from.number,
        to: to.number,
        changes: diff(&from.content, &to.content),
    }))
}
