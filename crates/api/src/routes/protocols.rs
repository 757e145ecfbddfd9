//! Evaluation protocols: created by an author of the lead institute, seen only by staff
//! of the participating institutes.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use jointeval_domain::audit::Change;
use jointeval_domain::protocol::{Protocol, ProtocolSlug, ProtocolStatus, RiskArea};
use jointeval_domain::{Action, Resource, ValidationError, decide};
use jointeval_store::protocols::{NewProtocol, ProtocolFilter};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;
use crate::conflicts::OnConstraint;
use crate::extract::{ApiJson, ApiPath};
use crate::idempotency::{self, IdempotencyHeader, IdempotentJson};
use crate::pagination::{ListQuery, Page, PageQuery};
use crate::problem::{ApiError, FieldError, Problem};
use crate::views::Codes;
use crate::work::Work;

/// A protocol.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d20", "slug": "cyber-ctf-uplift", "title": "Cyber CTF uplift",
    "risk_area": "cyber", "summary": "Capture-the-flag challenges with and without tools",
    "lead_institute": "UK", "participants": ["UK", "US"], "status": "active",
    "created_by": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d12",
    "created_at": "2026-11-27T14:00:00Z", "updated_at": "2026-11-27T14:00:00Z"
}))]
pub struct ProtocolView {
    pub id: Uuid,
    pub slug: String,
    pub title: String,
    pub risk_area: RiskArea,
    pub summary: String,
    pub lead_institute: String,
    /// Codes of the participating institutes.
    pub participants: Vec<String>,
    pub status: ProtocolStatus,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl ProtocolView {
    pub fn new(p: Protocol, codes: &Codes) -> Self {
        let mut participants: Vec<String> = p.participants.iter().map(|i| codes.of(*i)).collect();
        participants.sort();
        Self {
            id: p.id,
            slug: p.slug,
            title: p.title,
            risk_area: p.risk_area,
            summary: p.summary,
            lead_institute: codes.of(p.lead_institute_id),
            participants,
            status: p.status,
            created_by: p.created_by,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "slug": "cyber-ctf-uplift", "title": "Cyber CTF uplift", "risk_area": "cyber",
    "summary": "Capture-the-flag challenges with and without tools", "participants": ["UK", "US"]
}))]
pub struct NewProtocolRequest {
    /// Unique, URL-safe: 3–64 lower-case letters, digits and single hyphens.
    pub slug: String,
    pub title: String,
    pub risk_area: RiskArea,
    #[serde(default)]
    pub summary: String,
    /// The lead institute (code); default: the one where the caller is an author, if only one.
    pub lead_institute: Option<String>,
    /// Codes of the participating institutes, two or more, the lead among them.
    pub participants: Vec<String>,
}

/// Resolves institute codes, naming the field of any unknown one.
fn resolve(
    codes: &Codes,
    field: &str,
    given: &[String],
    errors: &mut Vec<FieldError>,
) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for (i, code) in given.iter().enumerate() {
        match codes.id_of(code) {
            Some(id) if !ids.contains(&id) => ids.push(id),
            Some(_) => errors.push(
                ValidationError::new(format!("{field}[{i}]"), "names an institute twice").into(),
            ),
            None => errors
                .push(ValidationError::new(format!("{field}[{i}]"), "is not an institute").into()),
        }
    }
    if given.len() < 2 {
        errors.push(ValidationError::new(field, "must name at least two institutes").into());
    }
    ids
}

/// Creates a protocol; the caller must be an author of its lead institute.
#[utoipa::path(
    post, path = "/v1/protocols", tag = "protocols",
    security(("bearer" = [])),
    params(IdempotencyHeader),
    request_body = NewProtocolRequest,
    responses(
        (status = 201, description = "Created", body = ProtocolView, headers(("Location" = String, description = "The protocol"))),
        (status = 403, description = "Not an author of the lead institute", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The slug is taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is invalid", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_protocol(
    State(state): State<AppState>,
    caller: Caller,
    IdempotentJson { key, request }: IdempotentJson<NewProtocolRequest>,
) -> Result<Response, ApiError> {
    let mut errors: Vec<FieldError> = Vec::new();
    let slug = ProtocolSlug::parse("slug", &request.slug)
        .map_err(|e| errors.push(e.into()))
        .ok();
    let title = request.title.trim();
    if title.is_empty() || title.chars().count() > 200 {
        errors.push(ValidationError::new("title", "must be 1 to 200 characters").into());
    }
    if request.summary.chars().count() > 10_000 {
        errors.push(ValidationError::new("summary", "must be at most 10000 characters").into());
    }
    let mut work = Work::begin(&state, &caller).await?;
    if let Some(first) = idempotency::replay(&mut work, key.as_ref()).await? {
        work.commit().await?;
        return Ok(first);
    }
    let codes = work.codes().await?;
    let participants = resolve(&codes, "participants", &request.participants, &mut errors);
    let lead = match request.lead_institute.as_deref() {
        Some(code) => codes.id_of(code).or_else(|| {
            errors.push(ValidationError::new("lead_institute", "is not an institute").into());
            None
        }),
        None => {
            let authored: Vec<Uuid> = caller
                .actor
                .roles
                .iter()
                .filter(|r| r.role == jointeval_domain::Role::Author)
                .map(|r| r.institute_id)
                .collect();
            match authored.as_slice() {
                [one] => Some(*one),
                // The policy will say why the caller may not.
                [] => Some(caller.account.home_institute_id),
                _ => {
                    errors.push(
                        ValidationError::new(
                            "lead_institute",
                            "is required: name the lead institute",
                        )
                        .into(),
                    );
                    None
                }
            }
        }
    };
    if let Some(lead) = lead
        && !participants.contains(&lead)
        && errors.is_empty()
    {
        errors.push(ValidationError::new("participants", "must include the lead institute").into());
    }
    let (Some(slug), Some(lead), true) = (slug, lead, errors.is_empty()) else {
        return Err(Problem::validation(errors).into());
    };
    decide(
        &caller.actor,
        Action::CreateProtocol,
        &Resource::NewProtocol {
            lead_institute_id: lead,
        },
    )
    .map_err(|d| Caller::deny(d, "institute"))?;
    let protocol = jointeval_store::protocols::insert(
        &mut work,
        &NewProtocol {
            slug: slug.as_str(),
            title,
            risk_area: request.risk_area,
            summary: &request.summary,
            lead_institute_id: lead,
            participants: &participants,
            created_by: caller.account.id,
        },
    )
    .await
    .on_constraint("protocols_slug_key", || {
        Problem::typed(
            StatusCode::CONFLICT,
            "slug-taken",
            "Slug taken",
            "the lead institute has a protocol with this slug",
        )
        .into()
    })?;
    let change = Change::for_protocol("protocol.created", &protocol).summary(json!({
        "slug": protocol.slug, "title": protocol.title, "risk_area": protocol.risk_area,
        "participants": protocol.participants,
    }));
    idempotency::remember(
        &mut work,
        key.as_ref(),
        StatusCode::CREATED,
        &ProtocolView::new(protocol.clone(), &codes),
    )
    .await?;
    work.commit_audited(&change).await?;
    tracing::info!(protocol_id = %protocol.id, "protocol created");
    let location = format!("/v1/protocols/{}", protocol.id);
    let response = (
        StatusCode::CREATED,
        Json(ProtocolView::new(protocol, &codes)),
    )
        .into_response();
    Ok(super::with_header(response, header::LOCATION, &location))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ProtocolQuery {
    pub risk_area: Option<RiskArea>,
    pub status: Option<ProtocolStatus>,
    /// Protocols this institute (code) participates in.
    pub institute: Option<String>,
    /// Text in the title or summary.
    pub q: Option<String>,
}

/// Lists the protocols the caller's institutes participate in.
#[utoipa::path(
    get, path = "/v1/protocols", tag = "protocols",
    security(("bearer" = [])),
    params(ProtocolQuery, PageQuery),
    responses(
        (status = 200, description = "A page of protocols", body = Page<ProtocolView>),
    )
)]
pub async fn list_protocols(
    State(state): State<AppState>,
    caller: Caller,
    ListQuery {
        filter: query,
        page,
    }: ListQuery<ProtocolQuery>,
) -> Result<Json<Page<ProtocolView>>, ApiError> {
    let after = page.after_id()?;
    crate::extract::check_filter("q", query.q.as_deref())?;
    let visible = caller
        .actor
        .reading_institutes(&[jointeval_domain::Scope::ProtocolsRead])
        .map_err(|d| Caller::deny(d, "protocol"))?;
    let mut work = Work::begin(&state, &caller).await?;
    let codes = work.codes().await?;
    let institute_id = query
        .institute
        .as_deref()
        .map(|code| codes.id_of(code).unwrap_or(Uuid::nil()));
    let rows = jointeval_store::protocols::list_visible(
        &mut work,
        &visible,
        &ProtocolFilter {
            risk_area: query.risk_area,
            status: query.status,
            institute_id,
            q: query.q,
        },
        after,
        page.fetch(),
    )
    .await?;
    work.commit().await?;
    let page = Page::from_rows(rows, page.limit, |p| p.id.to_string());
    Ok(Json(page.map(|p| ProtocolView::new(p, &codes))))
}

/// Reads a protocol.
#[utoipa::path(
    get, path = "/v1/protocols/{id}", tag = "protocols",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The protocol")),
    responses(
        (status = 200, description = "The protocol", body = ProtocolView),
        (status = 404, description = "No such protocol, or not one the caller's institutes take part in", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_protocol(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<ProtocolView>, ApiError> {
    let mut work = Work::begin(&state, &caller).await?;
    let (protocol, _) = crate::access::protocol(&mut work, id, Action::ReadProtocol).await?;
    let codes = work.codes().await?;
    work.commit().await?;
    Ok(Json(ProtocolView::new(protocol, &codes)))
}

/// Retires a protocol: no new versions; its history stays readable.
#[utoipa::path(
    post, path = "/v1/protocols/{id}/retire", tag = "protocols",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The protocol")),
    responses(
        (status = 200, description = "Retired", body = ProtocolView),
        (status = 403, description = "Not an admin of the lead institute", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such protocol", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already retired", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn retire_protocol(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<ProtocolView>, ApiError> {
    let mut work = Work::begin(&state, &caller).await?;
    jointeval_store::protocols::lock(&mut work, id).await?;
    let (protocol, _) = crate::access::protocol(&mut work, id, Action::RetireProtocol).await?;
    if protocol.status == ProtocolStatus::Retired {
        return Err(Problem::typed(
            StatusCode::CONFLICT,
            "protocol-retired",
            "Retired",
            "the protocol is retired already",
        )
        .into());
    }
    let protocol = jointeval_store::protocols::retire(&mut work, id).await?;
    let codes = work.codes().await?;
    let change = Change::for_protocol("protocol.retired", &protocol);
    work.commit_audited(&change).await?;
    Ok(Json(ProtocolView::new(protocol, &codes)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"participants": ["UK", "US", "JP"]}))]
pub struct ParticipantsRequest {
    /// Codes of the participating institutes, two or more, the lead among them.
    pub participants: Vec<String>,
}

/// Sets the participating institutes, while no version is approved.
#[utoipa::path(
    put, path = "/v1/protocols/{id}/participants", tag = "protocols",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The protocol")),
    request_body = ParticipantsRequest,
    responses(
        (status = 200, description = "Set", body = ProtocolView),
        (status = 403, description = "Not an admin of the lead institute", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such protocol", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A version is approved: the participants are fixed", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A code is invalid, or the lead is missing", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn set_participants(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(request): ApiJson<ParticipantsRequest>,
) -> Result<Json<ProtocolView>, ApiError> {
    let mut work = Work::begin(&state, &caller).await?;
    jointeval_store::protocols::lock(&mut work, id).await?;
    let (protocol, _) = crate::access::protocol(&mut work, id, Action::ManageParticipants).await?;
    let codes = work.codes().await?;
    let mut errors = Vec::new();
    let participants = resolve(&codes, "participants", &request.participants, &mut errors);
    if errors.is_empty() && !participants.contains(&protocol.lead_institute_id) {
        errors.push(ValidationError::new("participants", "must include the lead institute").into());
    }
    if !errors.is_empty() {
        return Err(Problem::validation(errors).into());
    }
    if jointeval_store::protocols::has_approved_version(&mut work, id).await? {
        return Err(Problem::typed(
            StatusCode::CONFLICT,
            "participants-fixed",
            "Participants fixed",
            "a version is approved: its participants approved it, so they can no longer change",
        )
        .into());
    }
    let before = protocol.participants;
    let protocol =
        jointeval_store::protocols::set_participants(&mut work, id, &participants).await?;
    // An institute taken off the list sees that it was.
    let change = Change::for_protocol("protocol.participants_set", &protocol)
        .visible_to(before.iter().copied())
        .summary(json!({"participants": protocol.participants, "before": before}));
    work.commit_audited(&change).await?;
    Ok(Json(ProtocolView::new(protocol, &codes)))
}
