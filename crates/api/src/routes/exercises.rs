//! Joint testing exercises: planned by the lead institute, started by the agreement of
//! every participating institute, completed or cancelled by the lead.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use jointeval_domain::audit::Change;
use jointeval_domain::exercise::{
    Exercise, ExerciseStatus, ModelUnderTest, all_agreed, validate_plan,
};
use jointeval_domain::{
    Action, JointRef, Resource, ValidationError, agreement_capacities, choose_capacity, decide,
};
use jointeval_store::PgConnection;
use jointeval_store::exercises::Plan;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::access::Lock;
use crate::auth::Caller;
use crate::extract::{ApiJson, ApiPath, IfMatch, OptionalJson};
use crate::idempotency::{self, IdempotencyHeader, IdempotentJson};
use crate::pagination::{ListQuery, Page, PageQuery};
use crate::problem::{ApiError, FieldError, Problem};
use crate::views::Codes;
use crate::work::Work;

/// A protocol version used by an exercise.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProtocolVersionRef {
    pub protocol_id: Uuid,
    pub number: i32,
}

/// An exercise.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d50", "title": "Autumn 2026 joint test",
    "model": {"provider": "ExampleAI", "name": "example-large", "version": "2026-10-01-release", "access": "public_api"},
    "lead_institute": "US", "participants": ["UK", "US"],
    "protocol_versions": [{"protocol_id": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d20", "number": 2}],
    "starts_at": "2026-12-01T00:00:00Z", "ends_at": "2026-12-15T00:00:00Z",
    "status": "planned", "plan_revision": 1, "agreed": ["US"],
    "created_by": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d12",
    "created_at": "2026-11-27T14:00:00Z", "updated_at": "2026-11-27T14:00:00Z"
}))]
pub struct ExerciseView {
    pub id: Uuid,
    pub title: String,
    pub model: ModelUnderTest,
    pub lead_institute: String,
    pub participants: Vec<String>,
    pub protocol_versions: Vec<ProtocolVersionRef>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub status: ExerciseStatus,
    /// Bumped by every change of the plan; agreements are to the current revision.
    pub plan_revision: i32,
    /// Institutes that agreed to the current plan.
    pub agreed: Vec<String>,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl ExerciseView {
    fn new(e: Exercise, codes: &Codes) -> Self {
        let sorted = |ids: &[Uuid]| {
            let mut c: Vec<String> = ids.iter().map(|i| codes.of(*i)).collect();
            c.sort();
            c
        };
        Self {
            id: e.id,
            title: e.title,
            model: e.model,
            lead_institute: codes.of(e.lead_institute_id),
            participants: sorted(&e.participants),
            protocol_versions: e
                .protocol_versions
                .iter()
                .map(|(protocol_id, number)| ProtocolVersionRef {
                    protocol_id: *protocol_id,
                    number: *number,
                })
                .collect(),
            starts_at: e.starts_at,
            ends_at: e.ends_at,
            status: e.status,
            plan_revision: e.plan_revision,
            agreed: sorted(&e.agreed),
            created_by: e.created_by,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

fn etag(e: &Exercise) -> String {
    format!(
        "\"{}.{}\"",
        e.plan_revision,
        e.updated_at.timestamp_micros()
    )
}

fn respond(e: Exercise, codes: &Codes, status: StatusCode) -> Response {
    let tag = etag(&e);
    let location = format!("/v1/exercises/{}", e.id);
    let response = super::with_header(
        (status, Json(ExerciseView::new(e, codes))).into_response(),
        header::ETAG,
        &tag,
    );
    if status == StatusCode::CREATED {
        super::with_header(response, header::LOCATION, &location)
    } else {
        response
    }
}

fn plan_summary(exercise: &Exercise) -> serde_json::Value {
    json!({
        "title": exercise.title, "model": exercise.model, "participants": exercise.participants,
        "protocol_versions": exercise.protocol_versions, "starts_at": exercise.starts_at,
        "ends_at": exercise.ends_at, "plan_revision": exercise.plan_revision,
    })
}

/// An exercise's plan.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "title": "Autumn 2026 joint test",
    "model": {"provider": "ExampleAI", "name": "example-large", "version": "2026-10-01-release", "access": "public_api"},
    "protocol_versions": [{"protocol_id": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d20", "number": 2}],
    "participants": ["US", "UK"], "starts_at": "2026-12-01T00:00:00Z", "ends_at": "2026-12-15T00:00:00Z"
}))]
pub struct PlanRequest {
    pub title: String,
    pub model: ModelUnderTest,
    /// Approved versions only; every participant must take part in each protocol.
    pub protocol_versions: Vec<ProtocolVersionRef>,
    /// Codes of the participating institutes, two or more, the lead among them.
    pub participants: Vec<String>,
    /// Creation only: the lead institute's code; default, the caller's only institute
    /// where it is an admin or author.
    pub lead_institute: Option<String>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

/// Checks a plan against the rules and the database; answers the participants' ids.
async fn check_plan(
    conn: &mut PgConnection,
    codes: &Codes,
    request: &PlanRequest,
    lead: Uuid,
) -> Result<Vec<Uuid>, ApiError> {
    let mut errors: Vec<FieldError> = request
        .model
        .validate()
        .into_iter()
        .map(FieldError::from)
        .collect();
    let mut participants = Vec::new();
    for (i, code) in request.participants.iter().enumerate() {
        match codes.id_of(code) {
            Some(id) => participants.push(id),
            None => errors.push(
                ValidationError::new(format!("participants[{i}]"), "is not an institute").into(),
            ),
        }
    }
    if request.protocol_versions.len() > 50 {
        errors.push(
            ValidationError::new("protocol_versions", "must name at most 50 versions").into(),
        );
        return Err(Problem::validation(errors).into());
    }
    let versions: Vec<(Uuid, i32)> = request
        .protocol_versions
        .iter()
        .map(|v| (v.protocol_id, v.number))
        .collect();
    let found = jointeval_store::exercises::planned_protocols(conn, &versions).await?;
    let mut planned = Vec::new();
    for (i, found) in found.into_iter().enumerate() {
        match found {
            // A protocol the caller's institute does not take part in is as unknown as
            // one that does not exist.
            Some(p) if p.participants.iter().any(|i| participants.contains(i)) => planned.push(p),
            _ => errors.push(
                ValidationError::new(
                    format!("protocol_versions[{i}]"),
                    "is not a protocol version you can see",
                )
                .into(),
            ),
        }
    }
    if errors.is_empty() {
        errors.extend(
            validate_plan(
                &request.title,
                lead,
                &participants,
                &planned,
                request.starts_at,
                request.ends_at,
            )
            .into_iter()
            .map(FieldError::from),
        );
    }
    if errors.is_empty() {
        Ok(participants)
    } else {
        Err(Problem::validation(errors).into())
    }
}

fn plan<'a>(
    request: &'a PlanRequest,
    participants: &'a [Uuid],
    versions: &'a [(Uuid, i32)],
) -> Plan<'a> {
    Plan {
        title: request.title.trim(),
        model: &request.model,
        participants,
        protocol_versions: versions,
        starts_at: request.starts_at,
        ends_at: request.ends_at,
    }
}

/// Plans an exercise; the caller must be an admin or author of its lead institute.
#[utoipa::path(
    post, path = "/v1/exercises", tag = "exercises",
    security(("bearer" = [])),
    params(IdempotencyHeader),
    request_body = PlanRequest,
    responses(
        (status = 201, description = "Planned", body = ExerciseView,
         headers(("ETag" = String, description = "Send as If-Match to change the plan, or to agree to it as read"), ("Location" = String, description = "The exercise"))),
        (status = 403, description = "Not an admin or author of the lead institute", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The plan breaks a rule (unapproved version, a participant outside a protocol …)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_exercise(
    State(state): State<AppState>,
    caller: Caller,
    IdempotentJson { key, request }: IdempotentJson<PlanRequest>,
) -> Result<Response, ApiError> {
    let mut work = Work::begin(&state, &caller).await?;
    if let Some(first) = idempotency::replay(&mut work, key.as_ref()).await? {
        work.commit().await?;
        return Ok(first);
    }
    let codes = work.codes().await?;
    let lead = match request.lead_institute.as_deref() {
        Some(code) => codes
            .id_of(code)
            .ok_or_else(|| ValidationError::new("lead_institute", "is not an institute"))?,
        None => {
            let mut leads: Vec<Uuid> = caller
                .actor
                .roles
                .iter()
                .filter(|r| {
                    matches!(
                        r.role,
                        jointeval_domain::Role::Admin | jointeval_domain::Role::Author
                    )
                })
                .map(|r| r.institute_id)
                .collect();
            leads.sort();
            leads.dedup();
            match leads.as_slice() {
                [one] => *one,
                [] => caller.account.home_institute_id,
                _ => {
                    return Err(ValidationError::new(
                        "lead_institute",
                        "is required: name the lead institute",
                    )
                    .into());
                }
            }
        }
    };
    let participants = check_plan(&mut work, &codes, &request, lead).await?;
    decide(
        &caller.actor,
        Action::ManageExercise,
        &Resource::Exercise(&JointRef {
            lead_institute_id: lead,
            participants: participants.clone(),
        }),
    )
    .map_err(|d| Caller::deny(d, "exercise"))?;
    let versions: Vec<(Uuid, i32)> = request
        .protocol_versions
        .iter()
        .map(|v| (v.protocol_id, v.number))
        .collect();
    let exercise = jointeval_store::exercises::insert(
        &mut work,
        &plan(&request, &participants, &versions),
        lead,
        caller.account.id,
    )
    .await?;
    let change =
        Change::for_exercise("exercise.planned", &exercise).summary(plan_summary(&exercise));
    idempotency::remember(
        &mut work,
        key.as_ref(),
        StatusCode::CREATED,
        &ExerciseView::new(exercise.clone(), &codes),
    )
    .await?;
    work.commit_audited(&change).await?;
    tracing::info!(exercise_id = %exercise.id, "exercise planned");
    Ok(respond(exercise, &codes, StatusCode::CREATED))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExerciseQuery {
    pub status: Option<ExerciseStatus>,
    /// Exercises this institute (code) takes part in.
    pub institute: Option<String>,
}

/// Lists the exercises the caller's institutes take part in.
#[utoipa::path(
    get, path = "/v1/exercises", tag = "exercises",
    security(("bearer" = [])),
    params(ExerciseQuery, PageQuery),
    responses(
        (status = 200, description = "A page of exercises", body = Page<ExerciseView>),
    )
)]
pub async fn list_exercises(
    State(state): State<AppState>,
    caller: Caller,
    ListQuery {
        filter: query,
        page,
    }: ListQuery<ExerciseQuery>,
) -> Result<Json<Page<ExerciseView>>, ApiError> {
    let after = page.after_id()?;
    let visible = caller
        .actor
        .reading_institutes(&[jointeval_domain::Scope::ExercisesRead])
        .map_err(|d| Caller::deny(d, "exercise"))?;
    let mut work = Work::begin(&state, &caller).await?;
    let codes = work.codes().await?;
    let institute_id = query
        .institute
        .as_deref()
        .map(|code| codes.id_of(code).unwrap_or(Uuid::nil()));
    let rows = jointeval_store::exercises::list_visible(
        &mut work,
        &visible,
        query.status,
        institute_id,
        after,
        page.fetch(),
    )
    .await?;
    work.commit().await?;
    let page = Page::from_rows(rows, page.limit, |e| e.id.to_string());
    Ok(Json(page.map(|e| ExerciseView::new(e, &codes))))
}

/// Reads an exercise.
#[utoipa::path(
    get, path = "/v1/exercises/{id}", tag = "exercises",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The exercise")),
    responses(
        (status = 200, description = "The exercise", body = ExerciseView, headers(("ETag" = String, description = "Send as If-Match to change the plan, or to agree to it as read"))),
        (status = 404, description = "No such exercise, or not one the caller's institutes take part in", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_exercise(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    let mut work = Work::begin(&state, &caller).await?;
    let exercise = crate::access::exercise(&mut work, id, Action::ReadExercise, Lock::No).await?;
    let codes = work.codes().await?;
    work.commit().await?;
    Ok(respond(exercise, &codes, StatusCode::OK))
}

/// Changes the plan of a planned exercise: every agreement is withdrawn. Needs `If-Match`.
#[utoipa::path(
    patch, path = "/v1/exercises/{id}", tag = "exercises",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The exercise"), ("If-Match" = String, Header, description = "The ETag as read")),
    request_body = PlanRequest,
    responses(
        (status = 200, description = "The new plan, awaiting agreement again", body = ExerciseView),
        (status = 403, description = "Not an admin or author of the lead institute", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such exercise", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not planned any more", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Changed since it was read", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The plan breaks a rule", body = Problem, content_type = "application/problem+json"),
        (status = 428, description = "If-Match is missing", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn change_plan(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    if_match: IfMatch,
    ApiJson(request): ApiJson<PlanRequest>,
) -> Result<Response, ApiError> {
    let mut work = Work::begin(&state, &caller).await?;
    let exercise =
        crate::access::exercise(&mut work, id, Action::ManageExercise, Lock::ForUpdate).await?;
    exercise.status.check_change_plan()?;
    if_match.check(&etag(&exercise))?;
    let codes = work.codes().await?;
    if request
        .lead_institute
        .as_deref()
        .is_some_and(|code| codes.id_of(code) != Some(exercise.lead_institute_id))
    {
        return Err(
            ValidationError::new("lead_institute", "the lead institute does not change").into(),
        );
    }
    let participants = check_plan(&mut work, &codes, &request, exercise.lead_institute_id).await?;
    let versions: Vec<(Uuid, i32)> = request
        .protocol_versions
        .iter()
        .map(|v| (v.protocol_id, v.number))
        .collect();
    let exercise = jointeval_store::exercises::change_plan(
        &mut work,
        id,
        &plan(&request, &participants, &versions),
    )
    .await?;
    // Seen by the participants of the new plan only: the plan names protocol versions an
    // institute taken off it may not know.
    let change =
        Change::for_exercise("exercise.plan_changed", &exercise).summary(plan_summary(&exercise));
    work.commit_audited(&change).await?;
    tracing::info!(exercise_id = %id, revision = exercise.plan_revision, "exercise plan changed");
    Ok(respond(exercise, &codes, StatusCode::OK))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgreeRequest {
    /// The participating institute (code) in whose capacity to agree, when the caller
    /// is an admin or reviewer of more than one.
    pub institute: Option<String>,
}

/// Agrees, for one participating institute, to the plan as read: `If-Match` must be the
/// exercise's current `ETag` (428 without it or with `*`, 412 when the exercise changed
/// since it was read, a new plan or another agreement). Once every participant has agreed,
/// the exercise is active.
#[utoipa::path(
    post, path = "/v1/exercises/{id}/agree", tag = "exercises",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The exercise"),
           ("If-Match" = String, Header, description = "The ETag of the exercise as read")),
    request_body(content = Option<AgreeRequest>, description = "Optional: an empty body asks for the defaults"),
    responses(
        (status = 200, description = "Agreed; `status` says whether the exercise started", body = ExerciseView,
         headers(("ETag" = String, description = "The exercise's new ETag"))),
        (status = 403, description = "Not an admin or reviewer of a participating institute", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such exercise", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not planned any more", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The exercise changed since it was read", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`institute` is needed or wrong", body = Problem, content_type = "application/problem+json"),
        (status = 428, description = "If-Match is missing, or `*`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn agree(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    if_match: IfMatch,
    OptionalJson(request): OptionalJson<AgreeRequest>,
) -> Result<Response, ApiError> {
    let mut work = Work::begin(&state, &caller).await?;
    let exercise =
        crate::access::exercise(&mut work, id, Action::AgreeExercise, Lock::ForUpdate).await?;
    exercise.status.check_agree()?;
    // Under the row's lock: the plan agreed to is the plan read.
    if_match.check_read(&etag(&exercise))?;
    let codes = work.codes().await?;
    let institute = choose_capacity(
        request.institute.as_deref().map(|code| codes.id_of(code)),
        &agreement_capacities(&caller.actor, &exercise.participants),
        "agree",
    )?;
    let mut exercise = jointeval_store::exercises::agree(
        &mut work,
        id,
        institute,
        exercise.plan_revision,
        caller.account.id,
    )
    .await?;
    if all_agreed(&exercise.participants, &exercise.agreed) {
        exercise =
            jointeval_store::exercises::set_status(&mut work, id, ExerciseStatus::Active).await?;
        tracing::info!(exercise_id = %id, "exercise active: every participant agreed");
    }
    let change = Change::for_exercise("exercise.agreed", &exercise)
        .by(institute)
        .summary(json!({
            "plan_revision": exercise.plan_revision, "status": exercise.status.as_str(),
        }));
    work.commit_audited(&change).await?;
    Ok(respond(exercise, &codes, StatusCode::OK))
}

async fn finish(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    to: ExerciseStatus,
) -> Result<Response, ApiError> {
    let mut work = Work::begin(state, caller).await?;
    let exercise =
        crate::access::exercise(&mut work, id, Action::ManageExercise, Lock::ForUpdate).await?;
    let checked = match to {
        ExerciseStatus::Completed => exercise.status.check_complete(),
        _ => exercise.status.check_cancel(),
    };
    checked?;
    let exercise = jointeval_store::exercises::set_status(&mut work, id, to).await?;
    let codes = work.codes().await?;
    let action = match to {
        ExerciseStatus::Completed => "exercise.completed",
        _ => "exercise.cancelled",
    };
    let change = Change::for_exercise(action, &exercise).summary(json!({"status": to.as_str()}));
    work.commit_audited(&change).await?;
    tracing::info!(exercise_id = %id, status = to.as_str(), "exercise finished");
    Ok(respond(exercise, &codes, StatusCode::OK))
}

/// Completes an active exercise (admins and authors of the lead institute).
#[utoipa::path(
    post, path = "/v1/exercises/{id}/complete", tag = "exercises",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The exercise")),
    responses(
        (status = 200, description = "Completed", body = ExerciseView),
        (status = 403, description = "Not an admin or author of the lead institute", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such exercise", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not active", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn complete_exercise(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    finish(&state, &caller, id, ExerciseStatus::Completed).await
}

/// Cancels a planned or active exercise (admins and authors of the lead institute).
#[utoipa::path(
    post, path = "/v1/exercises/{id}/cancel", tag = "exercises",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The exercise")),
    responses(
        (status = 200, description = "Cancelled", body = ExerciseView),
        (status = 403, description = "Not an admin or author of the lead institute", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such exercise", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Over already", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn cancel_exercise(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    finish(&state, &caller, id, ExerciseStatus::Cancelled).await
}
