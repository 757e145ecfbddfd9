//! Discussion of a version: comments, optionally on one field or in reply to another.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use jointeval_domain::audit::Change as AuditChange;
use jointeval_domain::protocol::{Comment, pointer_exists};
use jointeval_domain::{Action, ValidationError};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::access::Lock;
use crate::auth::Caller;
use crate::extract::ApiPath;
use crate::idempotency::{self, IdempotencyHeader, IdempotentJson};
use crate::problem::{ApiError, Problem};
use crate::work::Work;

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
    params(IdempotencyHeader, ("id" = Uuid, Path, description = "The protocol"), ("number" = i32, Path, description = "The version number")),
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
    IdempotentJson { key, request }: IdempotentJson<CommentRequest>,
) -> Result<Response, ApiError> {
    let length = request.body.trim().chars().count();
    if length == 0 || request.body.chars().count() > 10_000 {
        return Err(ValidationError::new("body", "must be 1 to 10000 characters").into());
    }
    let mut work = Work::begin(&state, &caller).await?;
    if let Some(first) = idempotency::replay(&mut work, key.as_ref()).await? {
        work.commit().await?;
        return Ok(first);
    }
    let (protocol, version) =
        crate::access::version(&mut work, id, number, Action::Comment, Lock::No).await?;
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
        let siblings = jointeval_store::protocols::list_comments(&mut work, version.id).await?;
        if !siblings.iter().any(|c| c.id == parent) {
            return Err(
                ValidationError::new("parent_id", "is not a comment on this version").into(),
            );
        }
    }
    let comment = jointeval_store::protocols::insert_comment(
        &mut work,
        version.id,
        request.parent_id,
        caller.account.id,
        request.anchor.as_deref(),
        &request.body,
    )
    .await?;
    let change = AuditChange::for_version(
        "protocol_version.commented",
        &caller.actor,
        &protocol,
        version.id,
    )
    .summary(json!({
        "comment_id": comment.id, "parent_id": comment.parent_id, "anchor": comment.anchor,
    }));
    idempotency::remember(
        &mut work,
        key.as_ref(),
        StatusCode::CREATED,
        &CommentView::from(comment.clone()),
    )
    .await?;
    work.commit_audited(&change).await?;
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
    let mut work = Work::begin(&state, &caller).await?;
    let (_, version) =
        crate::access::version(&mut work, id, number, Action::ReadProtocol, Lock::No).await?;
    let comments = jointeval_store::protocols::list_comments(&mut work, version.id).await?;
    work.commit().await?;
    Ok(Json(comments.into_iter().map(CommentView::from).collect()))
}
