//! Self-service: who am I, and changing my own password.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use jointeval_domain::audit::Change;
use jointeval_domain::{AccountKind, Password};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::auth::{CallerChangingPassword, secrets};
use crate::extract::ApiJson;
use crate::problem::{ApiError, FieldError, Problem};
use crate::views::{AccountView, ExchangeView, MembershipView};
use crate::work::Work;

/// A role the caller holds now, and where it comes from.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActiveRoleView {
    pub institute: String,
    pub institute_id: Uuid,
    pub role: &'static str,
    /// The exchange granting it, for a host role of exchanged personnel.
    pub exchange_id: Option<Uuid>,
}

/// What the caller may do at one institute.
#[derive(Debug, Serialize, ToSchema)]
pub struct PermissionsView {
    pub institute: String,
    pub actions: Vec<&'static str>,
}

/// The caller: account, roles in force now, and what they allow.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub account: AccountView,
    pub home_institute: String,
    /// Roles in force now: direct memberships and host roles of active exchanges.
    pub roles: Vec<ActiveRoleView>,
    /// Direct memberships in force now.
    pub memberships: Vec<MembershipView>,
    /// The caller's exchanges that are proposed, upcoming or active.
    pub exchanges: Vec<ExchangeView>,
    /// What the roles allow, by institute.
    pub permissions: Vec<PermissionsView>,
    /// Scopes of a service account's token.
    pub scopes: Vec<&'static str>,
    /// A one-time password is in use: change it before anything else.
    pub must_change_password: bool,
}

/// The caller, as the service sees them now.
#[utoipa::path(
    get, path = "/v1/me", tag = "me",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = Me),
    )
)]
pub async fn me(
    State(state): State<AppState>,
    CallerChangingPassword(caller): CallerChangingPassword,
) -> Result<Json<Me>, ApiError> {
    let mut work = Work::begin(&state, &caller).await?;
    let codes = work.codes().await?;
    let memberships =
        jointeval_store::memberships::list_for_account(&mut work, caller.account.id).await?;
    let exchanges = jointeval_store::exchanges::list_visible(
        &mut work,
        &[],
        caller.account.id,
        &jointeval_store::exchanges::ExchangeFilter {
            account_id: Some(caller.account.id),
            ..Default::default()
        },
        None,
        100,
    )
    .await?;
    work.commit().await?;

    let now = Utc::now();
    let permissions: BTreeMap<String, Vec<&'static str>> = caller
        .actor
        .roles
        .iter()
        .map(|r| {
            (
                codes.of(r.institute_id),
                caller.actor.permissions_at(r.institute_id),
            )
        })
        .collect();
    Ok(Json(Me {
        home_institute: codes.of(caller.account.home_institute_id),
        roles: caller
            .actor
            .roles
            .iter()
            .map(|r| ActiveRoleView {
                institute: codes.of(r.institute_id),
                institute_id: r.institute_id,
                role: r.role.as_str(),
                exchange_id: r.exchange_id,
            })
            .collect(),
        memberships: memberships
            .into_iter()
            .filter(|m| m.is_active_at(now))
            .map(|m| MembershipView::new(m, &codes, now))
            .collect(),
        exchanges: exchanges
            .into_iter()
            .map(|e| ExchangeView::new(e, &codes, now))
            .filter(|e| matches!(e.phase, "proposed" | "upcoming" | "active"))
            .collect(),
        permissions: permissions
            .into_iter()
            .map(|(institute, actions)| PermissionsView { institute, actions })
            .collect(),
        scopes: caller.actor.scopes.iter().map(|s| s.as_str()).collect(),
        must_change_password: caller.must_change_password,
        account: AccountView::new(caller.account, &codes),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"current_password": "the one-time password", "new_password": "a long new passphrase"}))]
pub struct PasswordChange {
    pub current_password: String,
    /// 12 to 128 characters.
    pub new_password: String,
}

/// Changes the caller's own password; the current one is required.
#[utoipa::path(
    post, path = "/v1/me/password", tag = "me",
    security(("bearer" = [])),
    request_body = PasswordChange,
    responses(
        (status = 204, description = "Changed"),
        (status = 403, description = "Service accounts have no password", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The current password is wrong, or the new one is invalid", body = Problem,
         content_type = "application/problem+json",
         example = json!({"type": "urn:jointeval:problem:validation", "title": "Invalid request", "status": 422,
                          "detail": "new_password: must be 12 to 128 characters",
                          "errors": [{"field": "new_password", "message": "must be 12 to 128 characters"}]})),
    )
)]
pub async fn change_password(
    State(state): State<AppState>,
    CallerChangingPassword(caller): CallerChangingPassword,
    ApiJson(change): ApiJson<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    if caller.account.kind != AccountKind::Person {
        return Err(Problem::typed(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Forbidden",
            "service accounts have a secret, not a password",
        )
        .into());
    }
    let new = Password::parse("new_password", &change.new_password)?;
    if change.new_password == change.current_password {
        return Err(Problem::validation(vec![FieldError {
            field: "new_password".into(),
            message: "must differ from the current password".into(),
        }])
        .into());
    }
    let mut work = Work::begin(&state, &caller).await?;
    let hash = jointeval_store::credentials::password_hash(&mut work, caller.account.id).await?;
    work.commit().await?;
    if !secrets::verify_password(hash, change.current_password).await {
        return Err(Problem::validation(vec![FieldError {
            field: "current_password".into(),
            message: "is not the current password".into(),
        }])
        .into());
    }
    let new_hash = secrets::hash_password(new.expose().to_owned()).await;
    let mut work = Work::begin(&state, &caller).await?;
    jointeval_store::credentials::set_password(&mut work, caller.account.id, &new_hash, false)
        .await?;
    let home = caller.account.home_institute_id;
    let change = Change::new("account.password_changed", caller.account.id)
        .by(home)
        .visible_to([home]);
    work.commit_audited(&change).await?;
    tracing::info!(account_id = %caller.account.id, "password changed");
    Ok(StatusCode::NO_CONTENT)
}
