use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::problem::{ApiError, Problem};

#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// Liveness: the process answers. It does not touch the database.
#[utoipa::path(
    get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is alive", body = Status,
               example = json!({"status": "ok"})))
)]
pub async fn healthz() -> Json<Status> {
    Json(Status { status: "ok" })
}

/// Readiness: the database answers and every migration of this build is applied.
#[utoipa::path(
    get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready to serve", body = Status,
         example = json!({"status": "ready"})),
        (status = 503, description = "The database is unreachable or its schema is behind this build",
         body = Problem, content_type = "application/problem+json",
         headers(("Retry-After" = u64, description = "Seconds to wait before retrying")),
         example = json!({"type": "urn:jointeval:problem:database-unavailable",
                          "title": "Database unavailable", "status": 503,
                          "detail": "the database cannot be reached right now; retry later"})),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Status>, ApiError> {
    jointeval_store::ping(&state.pool).await?;
    if !jointeval_store::migrations_current(&state.pool).await? {
        return Err(Problem::typed(
            StatusCode::SERVICE_UNAVAILABLE,
            "migrations-pending",
            "Migrations pending",
            "the database schema is behind this build; run `jointeval migrate`",
        )
        .into());
    }
    Ok(Json(Status { status: "ready" }))
}
