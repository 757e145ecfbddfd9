//! Roles of an account at its home institute, granted and revoked by that institute's
//! admins. Roles at another institute come through an exchange, never directly.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use jointeval_domain::audit::Change;
use jointeval_domain::{Action, Resource, Role, ValidationError, decide};
use jointeval_store::memberships::NewMembership;
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;
use crate::conflicts::OnConstraint;
use crate::extract::ApiPath;
use crate::idempotency::{self, IdempotencyHeader, IdempotentJson};
use crate::problem::{ApiError, Problem};
use crate::views::MembershipView;
use crate::work::Work;

/// Lists an account's direct memberships, past, present and future.
#[utoipa::path(
    get, path = "/v1/accounts/{id}/memberships", tag = "accounts",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The account")),
    responses(
        (status = 200, description = "The memberships", body = Vec<MembershipView>),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_memberships(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Vec<MembershipView>>, ApiError> {
    let mut work = Work::begin(&state, &caller).await?;
    crate::access::account(&mut work, id, Action::ReadAccount).await?;
    let memberships = jointeval_store::memberships::list_for_account(&mut work, id).await?;
    let codes = work.codes().await?;
    work.commit().await?;
    let now = Utc::now();
    Ok(Json(
        memberships
            .into_iter()
            .map(|m| MembershipView::new(m, &codes, now))
            .collect(),
    ))
}

/// A role to grant at the account's home institute.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"role": "reviewer", "valid_from": "2026-12-01T00:00:00Z", "valid_until": "2027-06-01T00:00:00Z"}))]
pub struct GrantRequest {
    /// `admin`, `author`, `reviewer`, `evaluator` or `viewer`.
    pub role: Role,
    /// Default: now.
    pub valid_from: Option<DateTime<Utc>>,
    /// Default: open-ended.
    pub valid_until: Option<DateTime<Utc>>,
}

/// Grants a role at the account's home institute for a window of time.
#[utoipa::path(
    post, path = "/v1/accounts/{id}/memberships", tag = "accounts",
    security(("bearer" = [])),
    params(IdempotencyHeader, ("id" = Uuid, Path, description = "The account")),
    request_body = GrantRequest,
    responses(
        (status = 201, description = "Granted", body = MembershipView),
        (status = 403, description = "Not an admin there, one's own account, or the admin role by an admin who is one only through an exchange", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The window overlaps one of the same role", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The window is inverted or over", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn grant_membership(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    IdempotentJson { key, request }: IdempotentJson<GrantRequest>,
) -> Result<Response, ApiError> {
    let now = Utc::now();
    let valid_from = request.valid_from.unwrap_or(now);
    if let Some(until) = request.valid_until {
        if until <= valid_from {
            return Err(ValidationError::new("valid_until", "must be after valid_from").into());
        }
        if until <= now {
            return Err(ValidationError::new("valid_until", "must be in the future").into());
        }
    }
    let mut work = Work::begin(&state, &caller).await?;
    if let Some(first) = idempotency::replay(&mut work, key.as_ref()).await? {
        work.commit().await?;
        return Ok(first);
    }
    let (account, reference) = crate::access::account(&mut work, id, Action::ReadAccount).await?;
    decide(
        &caller.actor,
        Action::GrantMembership,
        &Resource::Membership {
            account: &reference,
            institute_id: account.home_institute_id,
            role: request.role,
        },
    )
    .map_err(|d| Caller::deny(d, "account"))?;
    let membership = jointeval_store::memberships::grant(
        &mut work,
        &NewMembership {
            account_id: id,
            institute_id: account.home_institute_id,
            role: request.role,
            valid_from,
            valid_until: request.valid_until,
            granted_by: Some(caller.account.id),
        },
    )
    .await
    .on_constraint("memberships_no_overlap", || {
        Problem::typed(
            StatusCode::CONFLICT,
            "membership-overlap",
            "Overlapping membership",
            "the account holds this role for part of that window already",
        )
        .into()
    })?;
    let codes = work.codes().await?;
    let change =
        Change::for_membership("membership.granted", &membership, account.home_institute_id)
            .summary(json!({
                "account_id": id, "role": request.role.as_str(), "valid_from": valid_from,
                "valid_until": request.valid_until,
            }));
    idempotency::remember(
        &mut work,
        key.as_ref(),
        StatusCode::CREATED,
        &MembershipView::new(membership.clone(), &codes, now),
    )
    .await?;
    work.commit_audited(&change).await?;
    tracing::info!(account_id = %id, role = request.role.as_str(), "role granted");
    let response = (
        StatusCode::CREATED,
        Json(MembershipView::new(membership, &codes, now)),
    )
        .into_response();
    Ok(super::with_header(
        response,
        header::LOCATION,
        &format!("/v1/accounts/{id}/memberships"),
    ))
}

/// Revokes a membership now; it stays in the history.
#[utoipa::path(
    post, path = "/v1/accounts/{id}/memberships/{membership_id}/revoke", tag = "accounts",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The account"),
           ("membership_id" = Uuid, Path, description = "The membership")),
    responses(
        (status = 200, description = "Revoked", body = MembershipView),
        (status = 403, description = "Not an admin there, one's own role, or the admin role by an admin who is one only through an exchange", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account or membership", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already revoked", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn revoke_membership(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, membership_id)): ApiPath<(Uuid, Uuid)>,
) -> Result<Json<MembershipView>, ApiError> {
    let mut work = Work::begin(&state, &caller).await?;
    let (_, reference) = crate::access::account(&mut work, id, Action::ReadAccount).await?;
    let membership = jointeval_store::memberships::get_for_update(&mut work, membership_id)
        .await?
        .filter(|m| m.account_id == id)
        .ok_or_else(|| crate::auth::not_found("membership"))?;
    decide(
        &caller.actor,
        Action::RevokeMembership,
        &Resource::Membership {
            account: &reference,
            institute_id: membership.institute_id,
            role: membership.role,
        },
    )
    .map_err(|d| Caller::deny(d, "membership"))?;
    if membership.revoked_at.is_some() {
        return Err(Problem::typed(
            StatusCode::CONFLICT,
            "already-revoked",
            "Already revoked",
            "this membership was revoked before",
        )
        .into());
    }
    let revoked =
        jointeval_store::memberships::revoke(&mut work, membership_id, caller.account.id).await?;
    let codes = work.codes().await?;
    let change =
        Change::for_membership("membership.revoked", &revoked, reference.home_institute_id)
            .summary(json!({"account_id": id, "role": revoked.role.as_str()}));
    work.commit_audited(&change).await?;
    tracing::info!(account_id = %id, %membership_id, "role revoked");
    Ok(Json(MembershipView::new(revoked, &codes, Utc::now())))
}
