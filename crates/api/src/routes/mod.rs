mod docs;
mod health;
mod institutes;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;

pub(crate) use docs::docs;

/// Every documented route; the contract is generated from exactly these.
pub(crate) fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(crate::openapi::base())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(institutes::list_institutes))
        .fallback(docs::not_found)
}
