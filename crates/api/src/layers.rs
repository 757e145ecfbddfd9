//! The middleware every request passes through, outermost first: request id, tracing
//! span, CORS, compression, metrics, problem answers for the framework's own errors,
//! panic catching, timeout, body limit.

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;
use tracing::Span;

use crate::problem::{PROBLEM_JSON, Problem};
use crate::settings::HttpSettings;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn wrap(router: Router, settings: &HttpSettings) -> Router {
    let retry_after = HeaderValue::from(settings.retry_after.as_secs().max(1));
    let cors = cors(&settings.cors_origins);
    // Each `layer` call wraps the ones before it: the last is the outermost.
    let router = router
        .layer(DefaultBodyLimit::max(settings.body_limit))
        .layer(middleware::from_fn_with_state(
            BodyLimits {
                normal: settings.body_limit,
                ingest: settings.ingest_limit,
            },
            limit_body,
        ))
        .layer(middleware::from_fn_with_state(
            Timeouts {
                normal: settings.request_timeout,
                bulk: settings.ingest_timeout,
            },
            time_out,
        ))
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("a handler panicked");
            Problem::internal().into_response()
        }))
        .layer(middleware::map_response(move |res: Response| {
            let retry_after = retry_after.clone();
            async move { problem_for_framework_errors(res, retry_after) }
        }))
        .layer(middleware::from_fn(record_metrics))
        .layer(CompressionLayer::new());
    let router = match cors {
        Some(cors) => router.layer(cors),
        None => router,
    };
    router
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(log_response),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuidV7))
}

/// The routes whose bodies are bulk results (per-sample scores, evaluation logs), read
/// as they arrive rather than held, under the ingest limit.
pub const BULK_ROUTES: [&str; 3] = [
    "/v1/runs/{id}/samples",
    "/v1/runs/{id}/inspect-log",
    "/v1/exercises/{id}/runs/inspect-log",
];

fn is_bulk(req: &Request) -> bool {
    req.extensions()
        .get::<MatchedPath>()
        .is_some_and(|p| BULK_ROUTES.contains(&p.as_str()))
}

#[derive(Clone, Copy)]
struct Timeouts {
    normal: Duration,
    bulk: Duration,
}

/// Answers 503 for a request still running past its time: the bulk routes get longer.
async fn time_out(
    axum::extract::State(timeouts): axum::extract::State<Timeouts>,
    req: Request,
    next: Next,
) -> Response {
    let limit = if is_bulk(&req) {
        timeouts.bulk
    } else {
        timeouts.normal
    };
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

#[derive(Clone, Copy)]
struct BodyLimits {
    normal: usize,
    ingest: usize,
}

/// Bounds every request body: an announced length over the limit is refused at once,
/// a streamed one as soon as it passes the limit. Bulk ingestion gets its own, larger
/// limit; it reads its body as it arrives.
async fn limit_body(
    axum::extract::State(limits): axum::extract::State<BodyLimits>,
    req: Request,
    next: Next,
) -> Response {
    let limit = if is_bulk(&req) {
        limits.ingest
    } else {
        limits.normal
    };
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        return Problem::status(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than the {limit} bytes this endpoint accepts"),
        )
        .into_response();
    }
    let req = req.map(|body| axum::body::Body::new(http_body_util::Limited::new(body, limit)));
    next.run(req).await
}

#[derive(Clone, Copy)]
struct MakeRequestUuidV7;

impl MakeRequestId for MakeRequestUuidV7 {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&uuid::Uuid::now_v7().to_string())
            .ok()
            .map(RequestId::new)
    }
}

/// One span per request, named by the route that matched, carrying the request id so
/// that every log line of the request has it.
fn request_span(req: &Request) -> Span {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    let request_id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "request",
        otel.name = %format_args!("{} {route}", req.method()),
        method = %req.method(),
        route,
        request_id
    )
}

fn log_response<B>(res: &axum::http::Response<B>, latency: Duration, _span: &Span) {
    let status = res.status().as_u16();
    let latency_ms = latency.as_secs_f64() * 1000.0;
    if res.status().is_server_error() {
        tracing::warn!(status, latency_ms, "answered");
    } else {
        tracing::info!(status, latency_ms, "answered");
    }
}

fn cors(origins: &[HeaderValue]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins.iter().cloned()))
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PATCH,
                Method::PUT,
                Method::DELETE,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::IF_MATCH,
                HeaderName::from_static("idempotency-key"),
                REQUEST_ID,
            ])
            .expose_headers([
                header::ETAG,
                header::LOCATION,
                header::RETRY_AFTER,
                REQUEST_ID,
            ])
            .max_age(Duration::from_secs(600)),
    )
}

async fn record_metrics(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    let res = next.run(req).await;
    crate::metrics::record_request(&route, &method, res.status(), started.elapsed());
    res
}

/// Errors made by the framework and the layers (unknown route, wrong method, body too
/// large, timeout, panic) come without a body of our format; give them one, so that
/// every error this service answers is `application/problem+json`. Every 503 also
/// tells the client when to retry.
fn problem_for_framework_errors(mut res: Response, retry_after: HeaderValue) -> Response {
    let status = res.status();
    if status == StatusCode::SERVICE_UNAVAILABLE && !res.headers().contains_key(header::RETRY_AFTER)
    {
        res.headers_mut().insert(header::RETRY_AFTER, retry_after);
    }
    if !(status.is_client_error() || status.is_server_error()) || is_problem(&res) {
        return res;
    }
    let detail = match status {
        StatusCode::NOT_FOUND => "no resource at this address".to_owned(),
        StatusCode::METHOD_NOT_ALLOWED => {
            "this resource does not answer this method; the Allow header lists those it answers"
                .to_owned()
        }
        StatusCode::PAYLOAD_TOO_LARGE => {
            "the request body is larger than this service accepts".to_owned()
        }
        StatusCode::SERVICE_UNAVAILABLE => "the request took too long and was stopped".to_owned(),
        _ => status
            .canonical_reason()
            .unwrap_or("the request failed")
            .to_owned(),
    };
    let mut problem = Problem::status(status, detail).into_response();
    for (name, value) in res.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            problem.headers_mut().insert(name.clone(), value.clone());
        }
    }
    problem
}

fn is_problem(res: &Response) -> bool {
    res.headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()))
}
