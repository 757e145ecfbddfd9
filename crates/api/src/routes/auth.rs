//! Logging in: `POST /v1/auth/token` (OAuth 2 style) and the public keys that verify tokens.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use jointeval_domain::audit::Change;
use jointeval_domain::{AccountKind, AccountStatus, Scope};
use jointeval_store::ActingAs;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::auth::{secrets, tokens};
use crate::extract::parse_json;
use crate::problem::{ApiError, FieldError, Problem};

/// A token request, as a form (`application/x-www-form-urlencoded`) or as JSON.
#[derive(Debug, Deserialize, ToSchema, IntoParams)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"grant_type": "password", "username": "ada@aisi.gov.uk", "password": "a long passphrase"}))]
pub struct TokenRequest {
    /// `password` for persons, `client_credentials` for service accounts.
    #[schema(pattern = "^(password|client_credentials)$")]
    pub grant_type: String,
    /// The person's e-mail address (`password` grant).
    pub username: Option<String>,
    /// The person's password (`password` grant).
    pub password: Option<String>,
    /// The service account's id (`client_credentials` grant).
    pub client_id: Option<String>,
    /// The service account's secret (`client_credentials` grant).
    pub client_secret: Option<String>,
    /// Space-separated scopes to ask for (`client_credentials`): at most those the
    /// account holds; all of them when absent.
    pub scope: Option<String>,
}

impl<S: Send + Sync> FromRequest<S> for TokenRequest {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let content_type = crate::extract::media_type(req.headers());
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| Problem::status(e.status(), "the request body could not be read"))?;
        match content_type.as_str() {
            "application/json" => parse_json(&bytes),
            "application/x-www-form-urlencoded" => {
                let deserializer =
                    serde_urlencoded::Deserializer::new(form_urlencoded::parse(&bytes));
                serde_path_to_error::deserialize(deserializer).map_err(|e| {
                    Problem::validation(vec![FieldError {
                        field: e.path().to_string(),
                        message: e.into_inner().to_string(),
                    }])
                })
            }
            _ => Err(Problem::status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the token request as application/x-www-form-urlencoded or application/json",
            )),
        }
    }
}

/// A bearer token.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"access_token": "eyJhbGciOiJFZERTQSIsInR5cCI6ImF0K2p3dCIsImtpZCI6Ii4uLiJ9...", "token_type": "Bearer", "expires_in": 900}))]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the token expires.
    pub expires_in: u64,
    /// The scopes granted (service accounts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// Exchanges credentials for an access token.
///
/// Unknown accounts, wrong passwords and disabled accounts get the same answer. Repeated
/// failures for one login or from one address are throttled with 429 and `Retry-After`.
#[utoipa::path(
    post, path = "/v1/auth/token", tag = "auth",
    request_body(content(
        (TokenRequest = "application/x-www-form-urlencoded"),
        (TokenRequest = "application/json"),
    )),
    responses(
        (status = 200, description = "A token", body = TokenResponse,
         headers(("Cache-Control" = String, description = "`no-store`"))),
        (status = 400, description = "Unsupported grant type, or malformed JSON", body = Problem,
         content_type = "application/problem+json",
         example = json!({"type": "urn:jointeval:problem:unsupported-grant-type", "title": "Unsupported grant type",
                          "status": 400, "detail": "grant_type must be `password` or `client_credentials`"})),
        (status = 401, description = "The credentials are not valid", body = Problem,
         content_type = "application/problem+json",
         example = json!({"type": "urn:jointeval:problem:invalid-credentials", "title": "Invalid credentials",
                          "status": 401, "detail": "the credentials are not valid"})),
        (status = 415, description = "Neither a form nor JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is missing or invalid", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed logins", body = Problem, content_type = "application/problem+json",
         headers(("Retry-After" = u64, description = "Seconds until the next attempt is accepted"))),
    )
)]
pub async fn token(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    request: TokenRequest,
) -> Result<Response, ApiError> {
    let client_addr = peer.ip().to_string();
    let (login, secret) = match request.grant_type.as_str() {
        "password" => (
            required(request.username, "username")?,
            required(request.password, "password")?,
        ),
        "client_credentials" => (
            required(request.client_id, "client_id")?,
            required(request.client_secret, "client_secret")?,
        ),
        _ => {
            return Err(Problem::typed(
                StatusCode::BAD_REQUEST,
                "unsupported-grant-type",
                "Unsupported grant type",
                "grant_type must be `password` or `client_credentials`",
            )
            .into());
        }
    };
    // Nothing longer than a valid credential is worth hashing.
    if login.len() > 254 || secret.len() > 512 {
        return Err(invalid_credentials());
    }

    let meta = crate::auth::request_meta(&headers, Some(peer));
    let login_context = ActingAs::System {
        purpose: "login",
        request: meta.clone(),
    };
    let mut tx = jointeval_store::begin(&state.pool, &login_context).await?;
    let window = state.auth.throttle_window.as_secs_f64();
    let failures =
        jointeval_store::login_failures::recent(&mut tx, &login, &client_addr, window).await?;
    if failures.for_login >= state.auth.max_failures_per_login
        || failures.from_addr >= state.auth.max_failures_per_addr
    {
        return Err(Problem::typed(
            StatusCode::TOO_MANY_REQUESTS,
            "login-throttled",
            "Too many failed logins",
            "too many failed logins for this account or from this address; retry later",
        )
        .with_header(
            header::RETRY_AFTER,
            HeaderValue::from(failures.retry_after_secs),
        )
        .into());
    }

    let verified = if request.grant_type == "password" {
        let found = jointeval_store::accounts::find_person_login(&mut tx, &login).await?;
        jointeval_store::commit(tx).await?;
        let (hash, account) = match found {
            Some(f) => (Some(f.password_hash), Some((f.account, f.token_generation))),
            None => (None, None),
        };
        let ok = secrets::verify_password(hash, secret).await;
        match account {
            Some((a, generation)) if ok && a.status == AccountStatus::Active => {
                Ok((a, generation, None))
            }
            other => Err(other.map(|(a, _)| (a.id, a.home_institute_id))),
        }
    } else {
        let id = Uuid::parse_str(&login).ok();
        let account = match id {
            Some(id) => jointeval_store::accounts::get(&mut tx, id, false).await?,
            None => None,
        }
        .filter(|a| a.kind == AccountKind::Service);
        let (stored, generation) = match &account {
            Some(a) => (
                jointeval_store::credentials::service_secret(&mut tx, a.id).await?,
                jointeval_store::credentials::token_generation(&mut tx, a.id).await?,
            ),
            None => (None, None),
        };
        jointeval_store::commit(tx).await?;
        let ok = secrets::verify_service_secret(
            stored.as_ref().map(|s| s.secret_hash.as_str()),
            &secret,
        );
        match (account, stored) {
            (Some(a), Some(s)) if ok && a.status == AccountStatus::Active => {
                let scopes = granted_scopes(&s.scopes, request.scope.as_deref())?;
                Ok((a, generation.unwrap_or_default(), Some(scopes)))
            }
            (other, _) => Err(other.map(|a| (a.id, a.home_institute_id))),
        }
    };

    let (account, generation, scopes) = match verified {
        Ok(verified) => verified,
        Err(home) => {
            let mut tx = jointeval_store::begin(&state.pool, &login_context).await?;
            jointeval_store::login_failures::record(&mut tx, &login, &client_addr).await?;
            // The login is recorded only when it names an account: a password typed
            // into the wrong field must not end up in the trail.
            let change = match home {
                Some((id, home)) => Change::new("login.failed", id)
                    .visible_to([home])
                    .summary(json!({"grant_type": request.grant_type, "login": login})),
                None => Change::new("login.failed", "unknown")
                    .summary(json!({"grant_type": request.grant_type})),
            };
            jointeval_store::audit::commit_audited(tx, &change).await?;
            tracing::info!(client_addr, "failed login");
            return Err(invalid_credentials());
        }
    };
    let account_context = ActingAs::Account {
        id: account.id,
        institutes: Vec::new(),
        request: meta,
    };
    let mut tx = jointeval_store::begin(&state.pool, &account_context).await?;
    jointeval_store::login_failures::clear(&mut tx, &login).await?;
    let issued = tokens::issue(
        &mut tx,
        &state.auth.tokens,
        account.id,
        generation,
        scopes.as_deref(),
    )
    .await?;
    let change = Change::new("token.issued", account.id)
        .by(account.home_institute_id)
        .visible_to([account.home_institute_id])
        .summary(json!({
            "grant_type": request.grant_type, "jti": issued.jti, "expires_in": issued.expires_in,
            "scope": scopes.as_ref().map(|s| s.iter().map(|x| x.as_str()).collect::<Vec<_>>()),
        }));
    jointeval_store::audit::commit_audited(tx, &change).await?;
    tracing::info!(account_id = %account.id, "token issued");
    let body = TokenResponse {
        access_token: issued.token,
        token_type: "Bearer",
        expires_in: issued.expires_in,
        scope: scopes.map(|s| s.iter().map(|x| x.as_str()).collect::<Vec<_>>().join(" ")),
    };
    Ok((
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        Json(body),
    )
        .into_response())
}

fn required(value: Option<String>, field: &str) -> Result<String, ApiError> {
    value.filter(|v| !v.is_empty()).ok_or_else(|| {
        Problem::validation(vec![FieldError {
            field: field.into(),
            message: "is required for this grant type".into(),
        }])
        .into()
    })
}

fn granted_scopes(held: &[Scope], asked: Option<&str>) -> Result<Vec<Scope>, ApiError> {
    let Some(asked) = asked.filter(|a| !a.trim().is_empty()) else {
        return Ok(held.to_vec());
    };
    asked
        .split_whitespace()
        .map(|s| {
            Scope::parse("scope", s)
                .ok()
                .filter(|scope| held.contains(scope))
                .ok_or_else(|| {
                    Problem::typed(
                        StatusCode::BAD_REQUEST,
                        "invalid-scope",
                        "Invalid scope",
                        format!("the account does not hold the scope {s:?}"),
                    )
                    .into()
                })
        })
        .collect()
}

fn invalid_credentials() -> ApiError {
    Problem::typed(
        StatusCode::UNAUTHORIZED,
        "invalid-credentials",
        "Invalid credentials",
        "the credentials are not valid",
    )
    .into()
}

/// The public keys that verify this service's tokens (JWKS).
#[utoipa::path(
    get, path = "/.well-known/jwks.json", tag = "auth",
    responses(
        (status = 200, description = "The JSON Web Key Set", body = serde_json::Value,
         example = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k", "alg": "EdDSA", "use": "sig"}]})),
    )
)]
pub async fn jwks(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let mut tx = jointeval_store::begin(&state.pool, &ActingAs::system("jwks")).await?;
    let keys = tokens::jwks(&mut tx, &state.auth.tokens).await?;
    jointeval_store::commit(tx).await?;
    Ok(Json(keys))
}
