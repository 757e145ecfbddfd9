mod auth;
mod docs;
mod health;
mod institutes;
mod me;
mod views;

use axum::Router;
use utoipa::openapi::OpenApi as Spec;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;

pub(crate) use docs::docs;

/// Every documented route, and the contract generated from exactly these.
pub(crate) fn api() -> (Router<AppState>, Spec) {
    let (router, mut spec) = documented().split_for_parts();
    crate::openapi::add_internal_error(&mut spec);
    (router, spec)
}

fn documented() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(crate::openapi::base())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(auth::token))
        .routes(routes!(auth::jwks))
        .routes(routes!(me::me))
        .routes(routes!(me::change_password))
        .routes(routes!(institutes::list_institutes))
        .fallback(docs::not_found)
}
