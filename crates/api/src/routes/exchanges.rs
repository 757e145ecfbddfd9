//! Exchanges of personnel: an admin whose home is either side proposes, one whose home is
//! the other side approves or rejects, either side's ends it; nobody proposes or decides
//! an exchange of themselves. While active it gives the person the host roles.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use jointeval_domain::audit::Change;
use jointeval_domain::exchange::validate_proposal;
use jointeval_domain::{Action, Exchange, ExchangeStatus, Resource, Role, ValidationError, decide};
use jointeval_store::exchanges::{ExchangeFilter, NewExchange};
use serde::Deserialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;
use crate::conflicts::OnConstraint;
use crate::extract::ApiPath;
use crate::idempotency::{self, IdempotencyHeader, IdempotentJson};
use crate::pagination::{ListQuery, Page, PageQuery};
use crate::problem::{ApiError, FieldError, Problem};
use crate::views::ExchangeView;
use crate::work::Work;

/// A proposed exchange.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "account_id": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d12", "home_institute": "UK", "host_institute": "US",
    "roles": ["author", "viewer"], "starts_at": "2027-01-04T00:00:00Z", "ends_at": "2027-07-02T00:00:00Z"
}))]
pub struct ProposeRequest {
    /// The person exchanged: an account of the home institute.
    pub account_id: Uuid,
    /// Code of the person's home institute.
    pub home_institute: String,
    /// Code of the institute hosting them.
    pub host_institute: String,
    /// Their roles at the host while the exchange is active.
    pub roles: Vec<Role>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

/// Proposes an exchange; an admin whose home is the other institute approves or rejects
/// it. Admins there only through an exchange take no part in either.
#[utoipa::path(
    post, path = "/v1/exchanges", tag = "exchanges",
    security(("bearer" = [])),
    params(IdempotencyHeader),
    request_body = ProposeRequest,
    responses(
        (status = 201, description = "Proposed", body = ExchangeView,
         headers(("Location" = String, description = "The exchange"))),
        (status = 403, description = "Not an admin whose home is either institute, or an exchange of oneself", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Overlaps a live exchange of the same person to the same host", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is invalid", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn propose_exchange(
    State(state): State<AppState>,
    caller: Caller,
    IdempotentJson { key, request }: IdempotentJson<ProposeRequest>,
) -> Result<Response, ApiError> {
    let now = Utc::now();
    let mut work = Work::begin(&state, &caller).await?;
    if let Some(first) = idempotency::replay(&mut work, key.as_ref()).await? {
        work.commit().await?;
        return Ok(first);
    }
    let codes = work.codes().await?;
    let home = codes.id_of(&request.home_institute);
    let host = codes.id_of(&request.host_institute);
    let mut errors: Vec<FieldError> = Vec::new();
    if home.is_none() {
        errors.push(ValidationError::new("home_institute", "is not an institute").into());
    }
    if host.is_none() {
        errors.push(ValidationError::new("host_institute", "is not an institute").into());
    }
    let (Some(home), Some(host)) = (home, host) else {
        return Err(Problem::validation(errors).into());
    };
    errors.extend(
        validate_proposal(
            home,
            host,
            &request.roles,
            request.starts_at,
            request.ends_at,
            now,
        )
        .into_iter()
        .map(FieldError::from),
    );
    if !errors.is_empty() {
        return Err(Problem::validation(errors).into());
    }
    decide(
        &caller.actor,
        Action::ProposeExchange,
        &Resource::NewExchange {
            account_id: request.account_id,
            home_institute_id: home,
            host_institute_id: host,
        },
    )
    .map_err(|d| Caller::deny(d, "institute"))?;
    // One answer for every account that is not an active person of the home institute,
    // so that a host admin learns nothing of the home institute's other accounts.
    if !jointeval_store::accounts::is_active_person_of(&mut work, request.account_id, home).await? {
        return Err(ValidationError::new(
            "account_id",
            "is not an active person of the home institute",
        )
        .into());
    }
    let proposer_institute = if caller.actor.governs(home) {
        home
    } else {
        host
    };
    let exchange = jointeval_store::exchanges::insert(
        &mut work,
        &NewExchange {
            account_id: request.account_id,
            home_institute_id: home,
            host_institute_id: host,
            roles: &request.roles,
            starts_at: request.starts_at,
            ends_at: request.ends_at,
            proposed_by: caller.account.id,
            proposed_by_institute_id: proposer_institute,
        },
    )
    .await
    .on_constraint("exchanges_no_overlap", || {
        Problem::typed(
            StatusCode::CONFLICT,
            "exchange-overlap",
            "Overlapping exchange",
            "this person has a proposed or approved exchange to this host overlapping that window",
        )
        .into()
    })?;
    let change =
        Change::for_exchange("exchange.proposed", &exchange, proposer_institute).summary(json!({
            "account_id": exchange.account_id,
            "roles": exchange.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
            "starts_at": exchange.starts_at, "ends_at": exchange.ends_at,
        }));
    idempotency::remember(
        &mut work,
        key.as_ref(),
        StatusCode::CREATED,
        &ExchangeView::new(exchange.clone(), &codes, now),
    )
    .await?;
    work.commit_audited(&change).await?;
    tracing::info!(exchange_id = %exchange.id, "exchange proposed");
    let location = format!("/v1/exchanges/{}", exchange.id);
    let response = (
        StatusCode::CREATED,
        Json(ExchangeView::new(exchange, &codes, now)),
    )
        .into_response();
    Ok(super::with_header(response, header::LOCATION, &location))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExchangeQuery {
    /// Only this person's exchanges.
    pub account_id: Option<Uuid>,
    /// Only exchanges from or to this institute (code).
    pub institute: Option<String>,
    /// `proposed`, `approved`, `rejected` or `ended`.
    #[param(pattern = "^(proposed|approved|rejected|ended)$")]
    pub status: Option<String>,
}

/// Lists the exchanges the caller sees: those of the institutes it administers (either
/// side), and its own.
#[utoipa::path(
    get, path = "/v1/exchanges", tag = "exchanges",
    security(("bearer" = [])),
    params(ExchangeQuery, PageQuery),
    responses(
        (status = 200, description = "A page of exchanges", body = Page<ExchangeView>),
    )
)]
pub async fn list_exchanges(
    State(state): State<AppState>,
    caller: Caller,
    ListQuery {
        filter: query,
        page,
    }: ListQuery<ExchangeQuery>,
) -> Result<Json<Page<ExchangeView>>, ApiError> {
    let after = page.after_id()?;
    let status = query
        .status
        .as_deref()
        .map(|s| s.parse::<ExchangeStatus>())
        .transpose()?;
    let mut work = Work::begin(&state, &caller).await?;
    let codes = work.codes().await?;
    let institute_id = query
        .institute
        .as_deref()
        .map(|code| codes.id_of(code).unwrap_or(Uuid::nil()));
    let rows = jointeval_store::exchanges::list_visible(
        &mut work,
        &caller.actor.administered_institutes(),
        caller.account.id,
        &ExchangeFilter {
            account_id: query.account_id,
            institute_id,
            status,
        },
        after,
        page.fetch(),
    )
    .await?;
    work.commit().await?;
    let now = Utc::now();
    let page = Page::from_rows(rows, page.limit, |e| e.id.to_string());
    Ok(Json(page.map(|e| ExchangeView::new(e, &codes, now))))
}

/// Reads an exchange.
#[utoipa::path(
    get, path = "/v1/exchanges/{id}", tag = "exchanges",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The exchange")),
    responses(
        (status = 200, description = "The exchange", body = ExchangeView),
        (status = 404, description = "No such exchange, or not one the caller may see", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_exchange(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<ExchangeView>, ApiError> {
    let mut work = Work::begin(&state, &caller).await?;
    let exchange = crate::access::exchange(&mut work, id, Action::ReadExchange).await?;
    let codes = work.codes().await?;
    work.commit().await?;
    Ok(Json(ExchangeView::new(exchange, &codes, Utc::now())))
}

#[derive(Clone, Copy)]
enum Transition {
    Approve,
    Reject,
    End,
}

async fn transition(
    work: &mut Work<'_>,
    id: Uuid,
    transition: Transition,
) -> Result<Exchange, ApiError> {
    let now = Utc::now();
    let action = match transition {
        Transition::Approve | Transition::Reject => Action::DecideExchange,
        Transition::End => Action::EndExchange,
    };
    let exchange = crate::access::exchange(work, id, action).await?;
    let checked = match transition {
        Transition::Approve | Transition::Reject => exchange.check_decide(now),
        Transition::End => exchange.check_end(now),
    };
    checked?;
    let by = work.caller.account.id;
    let done = match transition {
        Transition::Approve => jointeval_store::exchanges::decide(work, id, true, by).await?,
        Transition::Reject => jointeval_store::exchanges::decide(work, id, false, by).await?,
        Transition::End => jointeval_store::exchanges::end(work, id, by).await?,
    };
    Ok(done)
}

async fn run(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    t: Transition,
) -> Result<Json<ExchangeView>, ApiError> {
    let mut work = Work::begin(state, caller).await?;
    let exchange = transition(&mut work, id, t).await?;
    let codes = work.codes().await?;
    let action = match t {
        Transition::Approve => "exchange.approved",
        Transition::Reject => "exchange.rejected",
        Transition::End => "exchange.ended",
    };
    // Decided by the institute that did not propose; ended by either.
    let capacity = [exchange.host_institute_id, exchange.home_institute_id]
        .into_iter()
        .filter(|i| caller.actor.governs(*i))
        .min_by_key(|i| *i == exchange.proposed_by_institute_id)
        .unwrap_or(exchange.host_institute_id);
    let change = Change::for_exchange(action, &exchange, capacity)
        .summary(json!({"status": exchange.status.as_str()}));
    work.commit_audited(&change).await?;
    tracing::info!(exchange_id = %id, status = exchange.status.as_str(), "exchange changed");
    Ok(Json(ExchangeView::new(exchange, &codes, Utc::now())))
}

/// Approves a proposed exchange: only an admin of the institute that did not propose it,
/// and not the person exchanged.
#[utoipa::path(
    post, path = "/v1/exchanges/{id}/approve", tag = "exchanges",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The exchange")),
    responses(
        (status = 200, description = "Approved", body = ExchangeView),
        (status = 403, description = "Not an admin whose home is the other side, or one's own proposal or exchange", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such exchange", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not a proposal any more", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn approve_exchange(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<ExchangeView>, ApiError> {
    run(&state, &caller, id, Transition::Approve).await
}

/// Rejects a proposed exchange (same rules as approving).
#[utoipa::path(
    post, path = "/v1/exchanges/{id}/reject", tag = "exchanges",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The exchange")),
    responses(
        (status = 200, description = "Rejected", body = ExchangeView),
        (status = 403, description = "Not an admin whose home is the other side, or one's own proposal or exchange", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such exchange", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not a proposal any more", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn reject_exchange(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<ExchangeView>, ApiError> {
    run(&state, &caller, id, Transition::Reject).await
}

/// Ends an exchange now (or withdraws a proposal): the host roles end with it.
#[utoipa::path(
    post, path = "/v1/exchanges/{id}/end", tag = "exchanges",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The exchange")),
    responses(
        (status = 200, description = "Ended", body = ExchangeView),
        (status = 403, description = "Not an admin whose home is either institute", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such exchange", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already over", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn end_exchange(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<ExchangeView>, ApiError> {
    run(&state, &caller, id, Transition::End).await
}
