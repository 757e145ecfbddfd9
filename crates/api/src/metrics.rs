//! Prometheus metrics: requests by route and status, latency histograms, pool use.

use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::AppState;
use crate::problem::Problem;
use crate::settings::MetricsAccess;

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process-wide recorder: metrics are global to a process, whatever the number
/// of routers in it.
fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("http_request_duration_seconds".into()),
                LATENCY_BUCKETS,
            )
            .map(PrometheusBuilder::build_recorder);
        match recorder {
            Ok(recorder) => {
                let handle = recorder.handle();
                if metrics::set_global_recorder(recorder).is_err() {
                    tracing::warn!("a metrics recorder was already installed");
                }
                handle
            }
            Err(e) => {
                tracing::error!(error = %e, "metrics disabled");
                PrometheusBuilder::new().build_recorder().handle()
            }
        }
    })
}

pub(crate) fn record_request(route: &str, method: &str, status: StatusCode, elapsed: Duration) {
    handle();
    let labels = [
        ("route", route.to_owned()),
        ("method", method.to_owned()),
        ("status", status.as_str().to_owned()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels[..2])
        .record(elapsed.as_secs_f64());
}

/// `/metrics` on the API's address, when a token opens it.
pub(crate) fn public_route(access: &MetricsAccess) -> Router<AppState> {
    match access {
        MetricsAccess::Closed => Router::new(),
        MetricsAccess::Token(_) => Router::new().route("/metrics", get(metrics_with_token)),
    }
}

/// `/metrics` alone, for a separate listen address that only operators reach.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .with_state(state)
}

async fn metrics_with_token(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let MetricsAccess::Token(token) = &state.settings.metrics else {
        return Problem::status(StatusCode::NOT_FOUND, "no resource at this address")
            .into_response();
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !given.is_some_and(|given| constant_time_eq(given.as_bytes(), token.as_bytes())) {
        return Problem::status(
            StatusCode::UNAUTHORIZED,
            "the metrics token is missing or wrong",
        )
        .with_header(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        )
        .into_response();
    }
    render(State(state)).await
}

async fn render(State(state): State<AppState>) -> Response {
    let pool = &state.pool;
    let idle = pool.num_idle() as f64;
    metrics::gauge!("db_pool_connections", "state" => "idle").set(idle);
    metrics::gauge!("db_pool_connections", "state" => "in_use").set(f64::from(pool.size()) - idle);
    metrics::gauge!("db_pool_max_connections").set(f64::from(pool.options().get_max_connections()));
    let handle = handle();
    handle.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
