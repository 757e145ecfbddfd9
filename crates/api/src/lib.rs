//! The HTTP API: routes, extractors, RFC 9457 problem answers, and the OpenAPI contract.

// A problem answer is the cold path of a request; boxing it would buy nothing.
#![allow(clippy::result_large_err)]

mod access;
pub mod auth;
mod comparability;
mod conflicts;
mod connections;
mod denials;
pub mod extract;
mod idempotency;
mod ingest;
mod layers;
mod log_import;
pub mod metrics;
mod openapi;
mod pagination;
mod problem;
mod routes;
mod settings;
mod views;
mod work;

use std::sync::Arc;

use axum::Router;
use jointeval_store::PgPool;

pub use auth::{AuthSettings, TokenSettings};
pub use connections::{ConnectionLimits, serve};
pub use openapi::{openapi, openapi_yaml};
pub use problem::{ApiError, FieldError, Problem};
pub use settings::{HttpSettings, MetricsAccess};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub settings: Arc<HttpSettings>,
    pub auth: Arc<AuthSettings>,
}

impl AppState {
    pub fn new(pool: PgPool, settings: HttpSettings, auth: AuthSettings) -> Self {
        Self {
            pool,
            settings: Arc::new(settings),
            auth: Arc::new(auth),
        }
    }
}

/// The whole service: every route, wrapped in the production middleware.
pub fn router(state: AppState) -> Router {
    let (api, spec) = routes::api();
    let api = api
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            denials::record_denials,
        ))
        .merge(routes::docs(&spec))
        .merge(metrics::public_route(&state.settings.metrics));
    with_middleware(api.with_state(state.clone()), &state.settings)
}

/// Wraps routes built elsewhere (a separate metrics listener, tests of an extractor)
/// in the same middleware as the service's own.
pub fn with_middleware(router: Router, settings: &HttpSettings) -> Router {
    layers::wrap(router, settings)
}
