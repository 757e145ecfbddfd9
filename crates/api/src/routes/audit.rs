//! The audit trail, read: events an admin's institutes (or a reviewer's, for the objects
//! they review) may see, one object's history, and signed checkpoints of the chain.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use jointeval_domain::audit::Event;
use jointeval_domain::{Action, Resource, ValidationError, decide};
use jointeval_store::audit::{EventFilter, EventReader};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::auth::{Caller, tokens};
use crate::extract::{ApiPath, ApiQuery};
use crate::pagination::{ListQuery, Page, PageQuery, PageRequest};
use crate::problem::{ApiError, FieldError, Problem};
use crate::work::Work;

/// The object types a reviewer reads the history of, for the institutes it reviews for.
const REVIEWED_TYPES: [&str; 4] = ["protocol", "protocol_version", "exercise", "run"];

/// One audit event. `hash` is `sha256(prev_hash ‖ canonical JSON of the other fields)`:
/// keys sorted, no whitespace, `at` with six decimals, `visible_to` sorted, and `summary`
/// as its canonical JSON text; `jointeval audit verify` recomputes it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "seq": 42, "at": "2026-11-27T16:28:29.123456Z",
    "actor": "0192f0c4-8a5e-7b61-a1c3-4d2b9e8f7a10",
    "institute_id": "0192f0c4-1111-7b61-a1c3-4d2b9e8f7a10",
    "action": "protocol_version.submitted", "object_type": "protocol_version",
    "object_id": "0192f0c4-2222-7b61-a1c3-4d2b9e8f7a10",
    "visible_to": ["0192f0c4-1111-7b61-a1c3-4d2b9e8f7a10", "0192f0c4-3333-7b61-a1c3-4d2b9e8f7a10"],
    "summary": {"content_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "number": 2},
    "request_id": "0192f0c4-4444-7b61-a1c3-4d2b9e8f7a10", "client_addr": "192.0.2.10",
    "prev_hash": "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8",
    "hash": "6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b"
}))]
pub struct AuditEventView {
    /// Position in the chain, from 1, without gaps.
    pub seq: i64,
    pub at: DateTime<Utc>,
    /// The acting account's id, or `system:<purpose>` for the service's own work
    /// (`system:login` for failed logins).
    pub actor: String,
    /// The institute in whose capacity the actor acted.
    pub institute_id: Option<Uuid>,
    /// `<object_type>.<verb>`, such as `run.released` or `access.denied`.
    pub action: String,
    pub object_type: String,
    pub object_id: String,
    /// The institutes that may read this event.
    pub visible_to: Vec<Uuid>,
    /// What changed: field names and new values, never a password, secret or token.
    pub summary: serde_json::Value,
    pub request_id: Option<String>,
    pub client_addr: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

impl From<Event> for AuditEventView {
    fn from(e: Event) -> Self {
        Self {
            summary: serde_json::from_str(&e.summary).unwrap_or(serde_json::Value::Null),
            seq: e.seq,
            at: e.at,
            actor: e.actor,
            institute_id: e.institute_id,
            action: e.action,
            object_type: e.object_type,
            object_id: e.object_id,
            visible_to: e.visible_to,
            request_id: e.request_id,
            client_addr: e.client_addr,
            prev_hash: e.prev_hash,
            hash: e.hash,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only events of this actor (an account id, or `system:login` …).
    pub actor: Option<String>,
    /// Only events about objects of this type (`account`, `run` …).
    pub object_type: Option<String>,
    /// Only events about this object (with `object_type`, its history).
    pub object_id: Option<String>,
    /// Only this action, such as `run.released`.
    pub action: Option<String>,
    /// Only events at or after this time (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Only events before this time (RFC 3339).
    pub until: Option<DateTime<Utc>>,
}

/// Lists audit events in chain order: for admins, those visible to the institutes they
/// administer; for reviewers, those about protocols, versions, exercises and runs
/// visible to the institutes they review for.
#[utoipa::path(
    get, path = "/v1/audit", tag = "audit",
    security(("bearer" = [])),
    params(AuditQuery, PageQuery),
    responses(
        (status = 200, description = "A page of events, oldest first", body = Page<AuditEventView>),
        (status = 403, description = "Neither an admin nor a reviewer", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_audit(
    State(state): State<AppState>,
    caller: Caller,
    ListQuery {
        filter: query,
        page,
    }: ListQuery<AuditQuery>,
) -> Result<Json<Page<AuditEventView>>, ApiError> {
    let filter = EventFilter {
        actor: query.actor,
        object_type: query.object_type,
        object_id: query.object_id,
        action: query.action,
        since: query.since,
        until: query.until,
    };
    events(&state, &caller, filter, &page).await
}

/// The history of one object, oldest first, as `GET /v1/audit` would list it. An object
/// the caller may not see, and one that does not exist, both have an empty history: the
/// answer is 200 with no events for either, so that it tells nothing of the other's
/// objects.
#[utoipa::path(
    get, path = "/v1/audit/objects/{object_type}/{object_id}", tag = "audit",
    security(("bearer" = [])),
    params(("object_type" = String, Path, description = "`account`, `protocol`, `run` …", example = "run"),
           ("object_id" = String, Path, description = "The object's id"),
           PageQuery),
    responses(
        (status = 200, description = "A page of the object's events: empty alike for an object the caller may not see and for one that does not exist", body = Page<AuditEventView>),
        (status = 403, description = "Neither an admin nor a reviewer", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn object_history(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((object_type, object_id)): ApiPath<(String, String)>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<Page<AuditEventView>>, ApiError> {
    let filter = EventFilter {
        object_type: Some(object_type),
        object_id: Some(object_id),
        ..EventFilter::default()
    };
    events(&state, &caller, filter, &page.validate()?).await
}

async fn events(
    state: &AppState,
    caller: &Caller,
    filter: EventFilter,
    page: &PageRequest,
) -> Result<Json<Page<AuditEventView>>, ApiError> {
    let mut errors: Vec<FieldError> = [
        ("actor", &filter.actor),
        ("object_type", &filter.object_type),
        ("object_id", &filter.object_id),
        ("action", &filter.action),
    ]
    .into_iter()
    .filter_map(|(field, v)| crate::extract::check_filter(field, v.as_deref()).err())
    .map(FieldError::from)
    .collect();
    let after = match page.after.as_deref().map(str::parse::<i64>) {
        None => 0,
        Some(Ok(seq)) => seq,
        Some(Err(_)) => {
            errors.push(
                ValidationError::new("cursor", "is not a cursor this service gave out").into(),
            );
            0
        }
    };
    if !errors.is_empty() {
        return Err(Problem::validation(errors).into());
    }
    decide(&caller.actor, Action::ReadAudit, &Resource::Partnership)
        .map_err(|d| Caller::deny(d, "audit trail"))?;
    let reader = EventReader {
        admin_of: caller.actor.administered_institutes(),
        reviewer_of: caller.actor.reviewed_institutes(),
        reviewed_types: REVIEWED_TYPES.map(str::to_owned).to_vec(),
    };
    let mut work = Work::begin(state, caller).await?;
    let rows =
        jointeval_store::audit::list(&mut work, &reader, &filter, after, page.fetch()).await?;
    work.commit().await?;
    let page = Page::from_rows(rows, page.limit, |e| e.seq.to_string());
    Ok(Json(page.map(AuditEventView::from)))
}

/// The audit chain's head, signed by the service.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "seq": 42,
    "hash": "6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b",
    "signed": "eyJ0eXAiOiJhdWRpdC1jaGVja3BvaW50K2p3dCIsImFsZyI6IkVkRFNBIiwia2lkIjoiazEifQ.eyJpc3MiOiJqb2ludGV2YWwiLCJpYXQiOjE3OTUwMDAwMDAsInNlcSI6NDIsImhhc2giOiI2Yjg2In0.c2lnbmF0dXJl"
}))]
pub struct Checkpoint {
    /// The number of events in the chain.
    pub seq: i64,
    /// The hash of event `seq` (64 zeros for an empty chain).
    pub hash: String,
    /// A JWS (EdDSA, `typ` `audit-checkpoint+jwt`, key in the JWKS) over `iss`, `iat`,
    /// `seq` and `hash`. Keep it: `jointeval audit verify --from-checkpoint FILE`
    /// proves later that the chain still extends it.
    pub signed: String,
}

/// Signs the chain's current head, so that an institute can keep its own copy and later
/// prove that the history up to it was not rewritten.
#[utoipa::path(
    get, path = "/v1/audit/checkpoint", tag = "audit",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The signed head", body = Checkpoint),
        (status = 403, description = "Neither an admin nor a reviewer", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn checkpoint(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Checkpoint>, ApiError> {
    decide(&caller.actor, Action::ReadAudit, &Resource::Partnership)
        .map_err(|d| Caller::deny(d, "audit trail"))?;
    let mut work = Work::begin(&state, &caller).await?;
    let head = jointeval_store::audit::head(&mut work).await?;
    let signed = tokens::sign_checkpoint(&mut work, &state.auth.tokens, &head).await?;
    work.commit().await?;
    Ok(Json(Checkpoint {
        seq: head.seq,
        hash: head.hash,
        signed,
    }))
}
