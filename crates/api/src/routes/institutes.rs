use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use jointeval_domain::Institute;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;
use crate::extract::ApiQuery;
use crate::pagination::{Page, PageQuery};
use crate::problem::ApiError;
use crate::work::Work;
use jointeval_domain::{Action, Resource};

/// A party to the partnership.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d11",
    "code": "UK",
    "name": "UK AI Safety Institute",
    "created_at": "2026-11-27T14:00:00Z"
}))]
pub struct InstituteBody {
    pub id: Uuid,
    /// Short code, 2–16 upper-case letters, digits or `_`.
    pub code: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

impl From<Institute> for InstituteBody {
    fn from(i: Institute) -> Self {
        Self {
            id: i.id,
            code: i.code.to_string(),
            name: i.name,
            created_at: i.created_at,
        }
    }
}

/// Lists the institutes of the partnership, ordered by code.
#[utoipa::path(
    get, path = "/v1/institutes", tag = "institutes",
    security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "A page of institutes", body = Page<InstituteBody>),
    )
)]
pub async fn list_institutes(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<Page<InstituteBody>>, ApiError> {
    let page = query.validate()?;
    jointeval_domain::decide(
        &caller.actor,
        Action::ListInstitutes,
        &Resource::Partnership,
    )
    .map_err(|d| Caller::deny(d, "institute"))?;
    let mut work = Work::begin(&state, &caller).await?;
    let rows =
        jointeval_store::institutes::list(&mut *work, page.after.as_deref(), page.fetch()).await?;
    work.commit().await?;
    let page = Page::from_rows(rows, page.limit, |i| i.code.to_string());
    Ok(Json(page.map(InstituteBody::from)))
}
