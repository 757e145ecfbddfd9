//! Protocol versions: co-authored drafts with optimistic concurrency, frozen for review,
//! approved by every participating institute; their reviews, discussion and differences.

pub(crate) mod comments;
pub(crate) mod diff;
pub(crate) mod reviews;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use jointeval_domain::audit::Change as AuditChange;
use jointeval_domain::protocol::{
    ProtocolContent, ProtocolVersion, VersionStateError, VersionStatus, diff,
};
use jointeval_domain::{Action, ValidationError};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::access::Lock;
use crate::auth::Caller;
use crate::conflicts::OnConstraint;
use crate::extract::{ApiJson, ApiPath, IfMatch};
use crate::idempotency::{self, IdempotencyHeader, IdempotentJson};
use crate::problem::{ApiError, FieldError, Problem};
use crate::work::Work;

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
    /// sha256 of the canonical content, recorded when the version was submitted; a
    /// review sends it, quoted, as `If-Match`.
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
    params(IdempotencyHeader, ("id" = Uuid, Path, description = "The protocol")),
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
    IdempotentJson { key, request }: IdempotentJson<NewDraftRequest>,
) -> Result<Response, ApiError> {
    let mut work = Work::begin(&state, &caller).await?;
    if let Some(first) = idempotency::replay(&mut work, key.as_ref()).await? {
        work.commit().await?;
        return Ok(first);
    }
    jointeval_store::protocols::lock(&mut work, id).await?;
    let (protocol, joint) = crate::access::protocol(&mut work, id, Action::WriteDraft).await?;
    protocol.status.check_new_version()?;
    let latest = jointeval_store::protocols::list_versions(&mut work, id)
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
        &mut work,
        id,
        &content,
        based_on,
        caller.account.id,
    )
    .await
    .on_constraint("protocol_versions_one_open", || {
        VersionStateError("a version of this protocol is open (draft or in review) already").into()
    })?;
    let change = AuditChange::for_version(
        "protocol_version.drafted",
        &caller.actor,
        &joint,
        version.id,
    )
    .summary(json!({
        "number": version.number, "based_on": version.based_on,
        "content_sha256": version.content.sha256(),
    }));
    idempotency::remember(
        &mut work,
        key.as_ref(),
        StatusCode::CREATED,
        &VersionView::from(version.clone()),
    )
    .await?;
    work.commit_audited(&change).await?;
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
    let mut work = Work::begin(&state, &caller).await?;
    crate::access::protocol(&mut work, id, Action::ReadProtocol).await?;
    let versions = jointeval_store::protocols::list_versions(&mut work, id).await?;
    work.commit().await?;
    Ok(Json(versions.into_iter().map(VersionView::from).collect()))
}

/// Reads a version, with its `ETag`, the `If-Match` to edit a draft with; a review binds
/// instead to the body's `content_sha256`, quoted.
#[utoipa::path(
    get, path = "/v1/protocols/{id}/versions/{number}", tag = "protocols",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The protocol"), ("number" = i32, Path, description = "The version number")),
    responses(
        (status = 200, description = "The version", body = VersionView, headers(("ETag" = String, description = "Send as If-Match to edit the draft; a review sends the `content_sha256`, quoted"))),
        (status = 404, description = "No such protocol or version", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_version(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, number)): ApiPath<(Uuid, i32)>,
) -> Result<Response, ApiError> {
    let mut work = Work::begin(&state, &caller).await?;
    let (_, version) =
        crate::access::version(&mut work, id, number, Action::ReadProtocol, Lock::No).await?;
    work.commit().await?;
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
    let mut work = Work::begin(&state, &caller).await?;
    let (protocol, version) =
        crate::access::version(&mut work, id, number, Action::WriteDraft, Lock::ForUpdate).await?;
    version.status.check_edit()?;
    if_match.check(&etag(&version))?;
    invalid_content(update.content.validate())?;
    let edited = jointeval_store::protocols::update_content(
        &mut work,
        &version,
        &update.content,
        caller.account.id,
    )
    .await?;
    let changes = diff(&version.content, &edited.content);
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
    let version = edited;
    let change = AuditChange::for_version(
        "protocol_version.edited",
        &caller.actor,
        &protocol,
        version.id,
    )
    .summary(json!({
        "revision": version.revision, "changed": changed,
        "content_sha256": version.content.sha256(),
    }));
    work.commit_audited(&change).await?;
    Ok(version_response(version, StatusCode::OK))
}

/// Bytes of new values an edit's audit event holds at most.
const MAX_AUDITED_EDIT: usize = 16 * 1024;

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
    let mut work = Work::begin(&state, &caller).await?;
    let (protocol, version) =
        crate::access::version(&mut work, id, number, Action::WriteDraft, Lock::ForUpdate).await?;
    version.status.check_submit()?;
    invalid_content(version.content.validate_for_review())?;
    let version = jointeval_store::protocols::submit(
        &mut work,
        &version,
        &version.content.sha256(),
        caller.account.id,
    )
    .await?;
    let change = AuditChange::for_version(
        "protocol_version.submitted",
        &caller.actor,
        &protocol,
        version.id,
    )
    .summary(json!({"number": number, "content_sha256": version.content_sha256}));
    work.commit_audited(&change).await?;
    tracing::info!(protocol_id = %id, number, "version submitted for review");
    Ok(version_response(version, StatusCode::OK))
}
