//! Administration of accounts: an institute's admins manage its own accounts, and see
//! the people exchanged into it while the exchange lasts.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jointeval_domain::audit::Change;
use jointeval_domain::{
    Account, AccountKind, AccountStatus, Action, DisplayName, Email, Resource, Scope,
    ValidationError, decide,
};
use jointeval_store::accounts::{AccountFilter, NewAccount};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::auth::{Caller, secrets};
use crate::conflicts::OnConstraint;
use crate::extract::{ApiJson, ApiPath, IfMatch};
use crate::pagination::{ListQuery, Page, PageQuery};
use crate::problem::{ApiError, FieldError, Problem};
use crate::views::{AccountView, Codes};
use crate::work::Work;

/// The strong validator of an account's current version.
pub(crate) fn etag(account: &Account) -> String {
    format!("\"{}\"", account.updated_at.timestamp_micros())
}

fn with_etag(account: Account, codes: &Codes, status: StatusCode) -> Response {
    let tag = etag(&account);
    let response = (status, Json(AccountView::new(account, codes))).into_response();
    super::with_header(response, header::ETAG, &tag)
}

/// A new account. Its home is the caller's own home institute: accounts are created only
/// by admins whose home it is.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"kind": "person", "email": "grace@nist.gov", "display_name": "Grace Hopper"}))]
pub struct NewAccountRequest {
    /// `person` (logs in with a password) or `service` (a partner tool, logs in with a secret).
    pub kind: AccountKind,
    /// Persons only: their e-mail address, unique.
    pub email: Option<String>,
    /// 1 to 200 characters, without control characters.
    #[schema(min_length = 1, max_length = 200)]
    pub display_name: String,
    /// The code of the home institute: the caller's own (the default). Naming another is
    /// refused, since only an institute's own admins create its accounts.
    pub home_institute: Option<String>,
    /// Service accounts only: what the partner tool may do.
    #[schema(value_type = Option<Vec<Scope>>, example = json!(["runs:write", "results:write"]))]
    pub scopes: Option<Vec<String>>,
}

/// The new account, with its first credential: shown this once, never again.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedAccount {
    pub account: AccountView,
    #[serde(flatten)]
    pub credential: NewCredential,
}

/// Creates an account at the caller's home institute: only admins whose home it is, not
/// admins there through an exchange.
#[utoipa::path(
    post, path = "/v1/accounts", tag = "accounts",
    security(("bearer" = [])),
    request_body = NewAccountRequest,
    responses(
        (status = 201, description = "Created; the credential is shown this once", body = CreatedAccount,
         headers(("Location" = String, description = "The new account"))),
        (status = 403, description = "The caller is not an admin whose home is that institute", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The e-mail address is taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is invalid", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_account(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<NewAccountRequest>,
) -> Result<Response, ApiError> {
    let mut errors: Vec<FieldError> = Vec::new();
    let display_name = DisplayName::parse("display_name", &request.display_name)
        .map_err(|e| errors.push(e.into()))
        .ok();
    let email = match (request.kind, request.email.as_deref()) {
        (AccountKind::Person, Some(e)) => Email::parse("email", e)
            .map_err(|e| errors.push(e.into()))
            .ok(),
        (AccountKind::Person, None) => {
            errors.push(ValidationError::new("email", "is required for a person").into());
            None
        }
        (AccountKind::Service, Some(_)) => {
            errors.push(
                ValidationError::new("email", "service accounts have no e-mail address").into(),
            );
            None
        }
        (AccountKind::Service, None) => None,
    };
    let scopes = match (request.kind, request.scopes.as_deref()) {
        (AccountKind::Service, Some(scopes)) => {
            parse_scopes(scopes).map_err(|e| errors.extend(e)).ok()
        }
        (AccountKind::Service, None) => {
            errors.push(ValidationError::new("scopes", "is required for a service account").into());
            None
        }
        (AccountKind::Person, Some(_)) => {
            errors.push(ValidationError::new("scopes", "persons have roles, not scopes").into());
            None
        }
        (AccountKind::Person, None) => None,
    };

    let mut work = Work::begin(&state, &caller).await?;
    let codes = work.codes().await?;
    let home = match request.home_institute.as_deref() {
        Some(code) => match codes.id_of(code) {
            Some(id) => Some(id),
            None => {
                errors.push(ValidationError::new("home_institute", "is not an institute").into());
                None
            }
        },
        None => Some(caller.account.home_institute_id),
    };
    let (Some(display_name), Some(home), true) = (display_name, home, errors.is_empty()) else {
        return Err(Problem::validation(errors).into());
    };
    decide(
        &caller.actor,
        Action::CreateAccount,
        &Resource::NewAccount {
            home_institute_id: home,
        },
    )
    .map_err(|d| Caller::deny(d, "institute"))?;

    let account = jointeval_store::accounts::insert(
        &mut work,
        &NewAccount {
            kind: request.kind,
            email: email.as_ref(),
            display_name: &display_name,
            home_institute_id: home,
        },
    )
    .await
    .on_constraint("accounts_email_key", email_taken)?;
    let scope_names: Option<Vec<&str>> = scopes
        .as_ref()
        .map(|s| s.iter().map(|x| x.as_str()).collect());
    let credential = match scopes {
        Some(scopes) => {
            let secret = secrets::new_service_secret();
            let hash = secrets::hash_service_secret(&secret);
            jointeval_store::credentials::set_service_secret(&mut work, account.id, &hash, &scopes)
                .await?;
            NewCredential::service(account.id, secret)
        }
        None => {
            let password = secrets::one_time_password();
            let hash = secrets::hash_password(password.clone()).await;
            jointeval_store::credentials::set_password(&mut work, account.id, &hash, true).await?;
            NewCredential::password(password)
        }
    };
    let created = CreatedAccount {
        account: AccountView::new(account.clone(), &codes),
        credential,
    };
    let change = Change::for_account("account.created", &account).summary(json!({
        "kind": account.kind.as_str(), "email": account.email,
        "display_name": account.display_name,
        "scopes": scope_names,
    }));
    work.commit_audited(&change).await?;
    tracing::info!(account_id = %account.id, kind = account.kind.as_str(), "account created");
    let location = format!("/v1/accounts/{}", account.id);
    let response = (StatusCode::CREATED, no_store(), Json(created)).into_response();
    let response = super::with_header(response, header::LOCATION, &location);
    Ok(super::with_header(response, header::ETAG, &etag(&account)))
}

fn parse_scopes(given: &[String]) -> Result<Vec<Scope>, Vec<FieldError>> {
    if given.is_empty() || given.len() > Scope::ALL.len() {
        return Err(vec![
            ValidationError::new(
                "scopes",
                format!("must name 1 to {} scopes", Scope::ALL.len()),
            )
            .into(),
        ]);
    }
    let mut errors = Vec::new();
    let mut scopes = Vec::new();
    for (i, s) in given.iter().enumerate() {
        match Scope::parse(&format!("scopes[{i}]"), s) {
            Ok(scope) if !scopes.contains(&scope) => scopes.push(scope),
            Ok(_) => {
                errors.push(ValidationError::new(format!("scopes[{i}]"), "is named twice").into())
            }
            Err(e) => errors.push(e.into()),
        }
    }
    if errors.is_empty() {
        Ok(scopes)
    } else {
        Err(errors)
    }
}

fn email_taken() -> ApiError {
    Problem::typed(
        StatusCode::CONFLICT,
        "email-taken",
        "E-mail address taken",
        "an account with this e-mail address exists",
    )
    .into()
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AccountQuery {
    /// Only accounts whose home is this institute (code).
    pub institute: Option<String>,
    /// `person` or `service`.
    pub kind: Option<AccountKind>,
    /// `active` or `disabled`.
    pub status: Option<AccountStatus>,
    /// Text in the e-mail address or display name.
    pub q: Option<String>,
}

/// Lists the accounts the caller administers: those of its institutes, and the people
/// exchanged into them while the exchange lasts. Everyone else's are absent.
#[utoipa::path(
    get, path = "/v1/accounts", tag = "accounts",
    security(("bearer" = [])),
    params(AccountQuery, PageQuery),
    responses(
        (status = 200, description = "A page of accounts", body = Page<AccountView>),
    )
)]
pub async fn list_accounts(
    State(state): State<AppState>,
    caller: Caller,
    ListQuery {
        filter: query,
        page,
    }: ListQuery<AccountQuery>,
) -> Result<Json<Page<AccountView>>, ApiError> {
    let after = page.after_id()?;
    crate::extract::check_filter("q", query.q.as_deref())?;
    let mut work = Work::begin(&state, &caller).await?;
    let codes = work.codes().await?;
    // An unknown code filters everything out, like a code the caller may not see.
    let institute_id = query
        .institute
        .as_deref()
        .map(|code| codes.id_of(code).unwrap_or(Uuid::nil()));
    let rows = jointeval_store::accounts::list_visible(
        &mut work,
        &caller.actor.administered_institutes(),
        &AccountFilter {
            home_institute_id: institute_id,
            kind: query.kind,
            status: query.status,
            q: query.q,
        },
        after,
        page.fetch(),
    )
    .await?;
    work.commit().await?;
    let page = Page::from_rows(rows, page.limit, |a| a.id.to_string());
    Ok(Json(page.map(|a| AccountView::new(a, &codes))))
}

/// Reads an account.
#[utoipa::path(
    get, path = "/v1/accounts/{id}", tag = "accounts",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The account")),
    responses(
        (status = 200, description = "The account", body = AccountView,
         headers(("ETag" = String, description = "Send it back as If-Match to update"))),
        (status = 404, description = "No such account, or not one the caller may see", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_account(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    let mut work = Work::begin(&state, &caller).await?;
    let (account, _) = crate::access::account(&mut work, id, Action::ReadAccount).await?;
    let codes = work.codes().await?;
    work.commit().await?;
    Ok(with_etag(account, &codes, StatusCode::OK))
}

/// What an admin may change of an account.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"display_name": "Grace B. Hopper"}))]
pub struct AccountUpdate {
    #[schema(min_length = 1, max_length = 200)]
    pub display_name: Option<String>,
    /// Persons only.
    pub email: Option<String>,
}

/// Updates an account's name or e-mail address. Needs `If-Match`. Any admin of its home
/// institute renames it; only admins whose home it is change the e-mail address, which is
/// the login name.
#[utoipa::path(
    patch, path = "/v1/accounts/{id}", tag = "accounts",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The account"),
           ("If-Match" = String, Header, description = "The ETag of the account as read")),
    request_body = AccountUpdate,
    responses(
        (status = 200, description = "Updated", body = AccountView,
         headers(("ETag" = String, description = "The new version"))),
        (status = 403, description = "Only the home institute's admins update it, and only those whose home it is change its e-mail address", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The e-mail address is taken", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The account changed since it was read", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 428, description = "If-Match is missing", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update_account(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    if_match: IfMatch,
    ApiJson(update): ApiJson<AccountUpdate>,
) -> Result<Response, ApiError> {
    let display_name = update
        .display_name
        .as_deref()
        .map(|n| DisplayName::parse("display_name", n))
        .transpose()?;
    let email = update
        .email
        .as_deref()
        .map(|e| Email::parse("email", e))
        .transpose()?;
    let mut work = Work::begin(&state, &caller).await?;
    let (account, reference) = crate::access::account(&mut work, id, Action::UpdateAccount).await?;
    if email.is_some() {
        decide(
            &caller.actor,
            Action::ChangeLogin,
            &Resource::Account(&reference),
        )
        .map_err(|d| Caller::deny(d, "account"))?;
    }
    if_match.check(&etag(&account))?;
    if email.is_some() && account.kind == AccountKind::Service {
        return Err(
            ValidationError::new("email", "service accounts have no e-mail address").into(),
        );
    }
    let updated = jointeval_store::accounts::update(
        &mut work,
        id,
        email.as_ref(),
        display_name.as_ref(),
        None,
    )
    .await
    .on_constraint("accounts_email_key", email_taken)?;
    let codes = work.codes().await?;
    let change = Change::for_account("account.updated", &updated).summary(json!({
        "display_name": display_name.as_ref().map(DisplayName::as_str),
        "email": email.as_ref().map(Email::as_str),
    }));
    work.commit_audited(&change).await?;
    Ok(with_etag(updated, &codes, StatusCode::OK))
}

async fn set_status(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    status: AccountStatus,
) -> Result<Response, ApiError> {
    let mut work = Work::begin(state, caller).await?;
    crate::access::account(&mut work, id, Action::ChangeAccountStatus).await?;
    let updated =
        jointeval_store::accounts::update(&mut work, id, None, None, Some(status)).await?;
    // A disable ends every token the account holds, for good. An enable does too, so that
    // an account disabled by any other way does not get its old tokens back either.
    jointeval_store::credentials::revoke_tokens(&mut work, id).await?;
    let codes = work.codes().await?;
    let action = match status {
        AccountStatus::Active => "account.enabled",
        AccountStatus::Disabled => "account.disabled",
    };
    let change = Change::for_account(action, &updated).summary(json!({"status": status.as_str()}));
    work.commit_audited(&change).await?;
    tracing::info!(account_id = %id, status = status.as_str(), "account status changed");
    Ok(with_etag(updated, &codes, StatusCode::OK))
}

/// Disables an account: it loses access on its next request, and every token it holds is
/// refused for good, even after it is enabled again.
#[utoipa::path(
    post, path = "/v1/accounts/{id}/disable", tag = "accounts",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The account")),
    responses(
        (status = 200, description = "Disabled", body = AccountView),
        (status = 403, description = "Not an admin whose home is its home institute, or one's own account", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn disable_account(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    set_status(&state, &caller, id, AccountStatus::Disabled).await
}

/// Enables a disabled account again.
#[utoipa::path(
    post, path = "/v1/accounts/{id}/enable", tag = "accounts",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The account")),
    responses(
        (status = 200, description = "Enabled", body = AccountView),
        (status = 403, description = "Not an admin whose home is its home institute, or one's own account", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn enable_account(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    set_status(&state, &caller, id, AccountStatus::Active).await
}

/// A new credential, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewCredential {
    /// Persons: a one-time password, to be replaced at the next login.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub one_time_password: Option<String>,
    /// Service accounts: the client id for `client_credentials`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<Uuid>,
    /// Service accounts: the secret; a new one replaces the old, which stops working now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

impl NewCredential {
    fn password(one_time_password: String) -> Self {
        Self {
            one_time_password: Some(one_time_password),
            client_id: None,
            client_secret: None,
        }
    }

    fn service(client_id: Uuid, client_secret: String) -> Self {
        Self {
            one_time_password: None,
            client_id: Some(client_id),
            client_secret: Some(client_secret),
        }
    }
}

/// Resets a person's password to a one-time password, which must be changed at the
/// next login. Every token the person holds is refused from now on.
#[utoipa::path(
    post, path = "/v1/accounts/{id}/reset-password", tag = "accounts",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The account")),
    responses(
        (status = 200, description = "The one-time password, shown this once", body = NewCredential),
        (status = 403, description = "Not an admin whose home is its home institute, or one's own account", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A service account has a secret, not a password", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn reset_password(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<(HeaderMap, Json<NewCredential>), ApiError> {
    let mut work = Work::begin(&state, &caller).await?;
    let (account, _) = crate::access::account(&mut work, id, Action::ResetPassword).await?;
    if account.kind != AccountKind::Person {
        return Err(wrong_kind(
            "a service account has a secret: rotate it instead",
        ));
    }
    let password = secrets::one_time_password();
    let hash = secrets::hash_password(password.clone()).await;
    jointeval_store::credentials::set_password(&mut work, id, &hash, true).await?;
    // Whoever had the old password may hold tokens of it: they end here.
    jointeval_store::credentials::revoke_tokens(&mut work, id).await?;
    let change = Change::for_account("account.password_reset", &account)
        .summary(json!({"must_change_password": true}));
    work.commit_audited(&change).await?;
    tracing::info!(account_id = %id, "password reset");
    Ok((no_store(), Json(NewCredential::password(password))))
}

/// Replaces a service account's secret; the old one, and every token issued with it,
/// stop working at once.
#[utoipa::path(
    post, path = "/v1/accounts/{id}/rotate-secret", tag = "accounts",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The service account")),
    responses(
        (status = 200, description = "The new secret, shown this once", body = NewCredential),
        (status = 403, description = "Not an admin whose home is its home institute, or one's own account", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A person has a password, not a secret", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<(HeaderMap, Json<NewCredential>), ApiError> {
    let mut work = Work::begin(&state, &caller).await?;
    let (account, _) =
        crate::access::account(&mut work, id, Action::ManageServiceCredentials).await?;
    if account.kind != AccountKind::Service {
        return Err(wrong_kind("a person has a password: reset it instead"));
    }
    let scopes = jointeval_store::credentials::service_secret(&mut work, id)
        .await?
        .map(|s| s.scopes)
        .unwrap_or_default();
    let secret = secrets::new_service_secret();
    jointeval_store::credentials::set_service_secret(
        &mut work,
        id,
        &secrets::hash_service_secret(&secret),
        &scopes,
    )
    .await?;
    // The old secret's tokens end with it.
    jointeval_store::credentials::revoke_tokens(&mut work, id).await?;
    let change = Change::for_account("account.secret_rotated", &account).summary(json!({
        "scopes": scopes.iter().map(|x| x.as_str()).collect::<Vec<_>>(),
    }));
    work.commit_audited(&change).await?;
    tracing::info!(account_id = %id, "service secret rotated");
    Ok((no_store(), Json(NewCredential::service(id, secret))))
}

fn wrong_kind(detail: &str) -> ApiError {
    Problem::typed(
        StatusCode::CONFLICT,
        "wrong-account-kind",
        "Wrong kind of account",
        detail,
    )
    .into()
}

fn no_store() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers
}
