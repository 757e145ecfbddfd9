//! The field-by-field difference between two versions of a protocol.

use axum::Json;
use axum::extract::State;
use jointeval_domain::Action;
use jointeval_domain::protocol::{Change, diff};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::access::Lock;
use crate::auth::Caller;
use crate::extract::{ApiPath, ApiQuery};
use crate::problem::{ApiError, Problem};
use crate::work::Work;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DiffQuery {
    /// The older version's number.
    pub from: i32,
    /// The newer version's number.
    pub to: i32,
}

/// The field-by-field difference between two versions of a protocol.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"from": 1, "to": 2,
    "changes": [{"path": "/tasks/0/epochs", "op": "changed", "from": 2, "to": 3}]}))]
pub struct DiffView {
    pub from: i32,
    pub to: i32,
    pub changes: Vec<Change>,
}

/// The field-by-field difference between two versions, for reviewers.
#[utoipa::path(
    get, path = "/v1/protocols/{id}/diff", tag = "protocols",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The protocol"), DiffQuery),
    responses(
        (status = 200, description = "The changes, as JSON pointers", body = DiffView),
        (status = 404, description = "No such protocol or version", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`from` or `to` is missing or not a number", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn diff_versions(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<DiffQuery>,
) -> Result<Json<DiffView>, ApiError> {
    let mut work = Work::begin(&state, &caller).await?;
    let (_, from) =
        crate::access::version(&mut work, id, query.from, Action::ReadProtocol, Lock::No).await?;
    let to = jointeval_store::protocols::get_version(&mut work, id, query.to, false)
        .await?
        .ok_or_else(|| crate::auth::not_found("version"))?;
    work.commit().await?;
    Ok(Json(DiffView {
        from: from.number,
        to: to.number,
        changes: diff(&from.content, &to.content),
    }))
}
