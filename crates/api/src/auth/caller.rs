//! Authentication as an extractor: every request with a bearer token is checked in full
//! and its account and roles are read from the database *now*, so that a disabled
//! account, an ended membership or an ended exchange loses access on its next request.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode, request::Parts};
use jointeval_domain::{Account, AccountKind, AccountStatus, Actor, Denial};
use jointeval_store::{ActingAs, RequestMeta};
use uuid::Uuid;

use crate::AppState;
use crate::auth::tokens::{self, TokenError};
use crate::problem::{ApiError, Problem};

/// An authenticated account, with the roles it holds at this moment.
#[derive(Debug, Clone)]
pub struct Caller {
    pub account: Account,
    pub actor: Actor,
    pub must_change_password: bool,
    pub request: RequestMeta,
}

impl Caller {
    /// The transaction context of everything this caller does.
    pub fn acting_as(&self) -> ActingAs {
        let mut institutes: Vec<Uuid> = self.actor.roles.iter().map(|r| r.institute_id).collect();
        institutes.sort();
        institutes.dedup();
        ActingAs::Account {
            id: self.account.id,
            institutes,
            request: self.request.clone(),
        }
    }

    /// Turns a policy denial into its answer: 404 for what the caller may not know of.
    pub fn deny(denial: Denial, what: &str) -> ApiError {
        match denial {
            Denial::NotFound => not_found(what),
            Denial::Forbidden(reason) => {
                Problem::typed(StatusCode::FORBIDDEN, "forbidden", "Forbidden", reason)
                    .denied()
                    .into()
            }
            Denial::MissingScope(scope) => {
                let scope = scope.as_str();
                let challenge = format!(
                    r#"Bearer realm="jointeval", error="insufficient_scope", scope="{scope}""#
                );
                Problem::typed(
                    StatusCode::FORBIDDEN,
                    "insufficient-scope",
                    "Insufficient scope",
                    format!("this service account's token lacks the {scope} scope; an admin of its institute grants scopes"),
                )
                .with_header(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_str(&challenge).unwrap_or(HeaderValue::from_static("Bearer")),
                )
                .denied()
                .into()
            }
            Denial::Withheld(reason) => Problem::typed(
                StatusCode::NOT_FOUND,
                "not-released",
                "Not released to your institute",
                reason,
            )
            .denied()
            .into(),
        }
    }
}

/// 404 for an object the caller asked for by id. Audited as a refusal: under row-level
/// security the service cannot tell an object that does not exist from one the caller
/// may not see, and a probe for either is worth recording.
pub fn not_found(what: &str) -> ApiError {
    Problem::status(StatusCode::NOT_FOUND, format!("no such {what}"))
        .denied()
        .into()
}

/// A caller who may use only the endpoints that let a person replace a one-time password.
#[derive(Debug, Clone)]
pub struct CallerChangingPassword(pub Caller);

impl FromRequestParts<AppState> for CallerChangingPassword {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authenticate(parts, state).await.map(CallerChangingPassword)
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = authenticate(parts, state).await?;
        if caller.must_change_password {
            return Err(Problem::typed(
                StatusCode::FORBIDDEN,
                "password-change-required",
                "Password change required",
                "this account logged in with a one-time password; set a new one with POST /v1/me/password first",
            )
            .into());
        }
        Ok(caller)
    }
}

async fn authenticate(parts: &Parts, state: &AppState) -> Result<Caller, ApiError> {
    let token = bearer_token(parts)?;
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    let request = request_meta(&parts.headers, peer);
    let mut tx = jointeval_store::begin(
        &state.pool,
        &ActingAs::System {
            purpose: "authenticate",
            request: request.clone(),
        },
    )
    .await?;
    let claims = match tokens::verify(&mut tx, &state.auth.tokens, token).await {
        Ok(claims) => claims,
        Err(TokenError::Store(e)) => return Err(e.into()),
        Err(e) => return Err(unauthorized(Some(&e.to_string()))),
    };
    let account_id = Uuid::parse_str(&claims.sub)
        .map_err(|_| unauthorized(Some("the token's subject is not an account")))?;
    let account = jointeval_store::accounts::get(&mut tx, account_id, false)
        .await?
        .filter(|a| a.status == AccountStatus::Active)
        .ok_or_else(|| unauthorized(Some("the account is disabled or gone")))?;
    let generation = jointeval_store::credentials::token_generation(&mut tx, account.id).await?;
    if generation != Some(claims.generation) {
        return Err(unauthorized(Some(
            "the token was issued before the account was disabled or its credentials were reset; log in again",
        )));
    }
    let roles = jointeval_store::memberships::active_roles(&mut tx, account.id).await?;
    let (scopes, must_change_password) = match account.kind {
        AccountKind::Service => {
            let secret = jointeval_store::credentials::service_secret(&mut tx, account.id).await?;
            let granted = secret.map(|s| s.scopes).unwrap_or_default();
            // The token may carry fewer scopes than the account holds, never more.
            let asked: Vec<&str> = claims.scope.as_deref().unwrap_or("").split(' ').collect();
            let scopes = granted
                .into_iter()
                .filter(|s| asked.contains(&s.as_str()))
                .collect();
            (scopes, false)
        }
        AccountKind::Person => (
            Vec::new(),
            jointeval_store::credentials::must_change_password(&mut tx, account.id).await?,
        ),
    };
    jointeval_store::commit(tx).await?;
    let caller = Caller {
        actor: Actor {
            account_id: account.id,
            kind: account.kind,
            home_institute_id: account.home_institute_id,
            roles,
            scopes,
        },
        account,
        must_change_password,
        request,
    };
    if let Some(slot) = parts.extensions.get::<crate::denials::ActorSlot>() {
        slot.set(caller.acting_as());
    }
    Ok(caller)
}

/// The request id and the client's address, for the audit trail. A request id the client
/// sent is kept, within reason.
pub fn request_meta(headers: &HeaderMap, peer: Option<SocketAddr>) -> RequestMeta {
    RequestMeta {
        request_id: headers
            .get(crate::layers::REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(200).collect()),
        client_addr: peer.map(|addr| addr.ip().to_string()),
    }
}

fn bearer_token(parts: &Parts) -> Result<&str, ApiError> {
    let Some(value) = parts.headers.get(AUTHORIZATION) else {
        return Err(unauthorized(None));
    };
    value
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|t| !t.is_empty())
        .ok_or_else(|| unauthorized(Some("the Authorization header must be `Bearer <token>`")))
}

/// 401 for an `Authorization` header that HTTP itself cannot read (a control character
/// in it): the request carries a credential the service cannot take.
pub fn unreadable_authorization() -> Problem {
    let detail = "the Authorization header holds a character that HTTP does not allow in a header (RFC 9110, section 5.5); send `Bearer <token>`";
    Problem::typed(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized", detail).with_header(
        WWW_AUTHENTICATE,
        HeaderValue::from_static(
            r#"Bearer realm="jointeval", error="invalid_request", error_description="the Authorization header is not readable""#,
        ),
    )
}

/// 401 with `WWW-Authenticate: Bearer` (RFC 6750): without an error code when no token
/// was sent, with `invalid_token` and its reason otherwise.
pub fn unauthorized(reason: Option<&str>) -> ApiError {
    let (header, detail) = match reason {
        None => (
            r#"Bearer realm="jointeval""#.to_owned(),
            "this endpoint needs `Authorization: Bearer <token>`; get one at POST /v1/auth/token"
                .to_owned(),
        ),
        Some(reason) => (
            format!(
                r#"Bearer realm="jointeval", error="invalid_token", error_description="{}""#,
                reason.replace(['"', '\\'], "'")
            ),
            reason.to_owned(),
        ),
    };
    let value = HeaderValue::from_str(&header).unwrap_or(HeaderValue::from_static("Bearer"));
    Problem::typed(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "Unauthorized",
        detail,
    )
    .with_header(WWW_AUTHENTICATE, value)
    .into()
}
