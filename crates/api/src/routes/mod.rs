mod accounts;
mod audit;
mod auth;
mod comparisons;
mod docs;
mod exchanges;
mod exercises;
mod health;
mod inspect;
mod institutes;
mod me;
mod memberships;
mod protocols;
mod queue;
mod runs;
mod versions;

use axum::Router;
use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;
use utoipa::openapi::OpenApi as Spec;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;

pub(crate) use docs::docs;

/// Every documented route, and the contract generated from exactly these.
pub(crate) fn api() -> (Router<AppState>, Spec) {
    let (router, mut spec) = documented().split_for_parts();
    crate::openapi::add_common_answers(&mut spec);
    crate::openapi::add_links(&mut spec);
    (router, spec)
}

fn documented() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(crate::openapi::base())
        .routes(routes!(health::healthz))
        .routes(routes!(inspect::import_log, inspect::download_log))
        .routes(routes!(inspect::create_from_log))
        .routes(routes!(queue::claim_run))
        .routes(routes!(queue::heartbeat))
        .routes(routes!(audit::list_audit))
        .routes(routes!(audit::object_history))
        .routes(routes!(audit::checkpoint))
        .routes(routes!(health::readyz))
        .routes(routes!(auth::token))
        .routes(routes!(auth::jwks))
        .routes(routes!(me::me))
        .routes(routes!(me::change_password))
        .routes(routes!(institutes::list_institutes))
        .routes(routes!(accounts::create_account, accounts::list_accounts))
        .routes(routes!(accounts::get_account, accounts::update_account))
        .routes(routes!(accounts::disable_account))
        .routes(routes!(accounts::enable_account))
        .routes(routes!(accounts::reset_password))
        .routes(routes!(accounts::rotate_secret))
        .routes(routes!(
            memberships::list_memberships,
            memberships::grant_membership
        ))
        .routes(routes!(memberships::revoke_membership))
        .routes(routes!(
            exchanges::propose_exchange,
            exchanges::list_exchanges
        ))
        .routes(routes!(exchanges::get_exchange))
        .routes(routes!(exchanges::approve_exchange))
        .routes(routes!(exchanges::reject_exchange))
        .routes(routes!(exchanges::end_exchange))
        .routes(routes!(
            protocols::create_protocol,
            protocols::list_protocols
        ))
        .routes(routes!(protocols::get_protocol))
        .routes(routes!(protocols::retire_protocol))
        .routes(routes!(protocols::set_participants))
        .routes(routes!(versions::create_draft, versions::list_versions))
        .routes(routes!(versions::get_version, versions::update_draft))
        .routes(routes!(versions::submit_version))
        .routes(routes!(
            versions::reviews::review_version,
            versions::reviews::list_reviews
        ))
        .routes(routes!(
            versions::comments::post_comment,
            versions::comments::list_comments
        ))
        .routes(routes!(versions::diff::diff_versions))
        .routes(routes!(
            exercises::create_exercise,
            exercises::list_exercises
        ))
        .routes(routes!(exercises::get_exercise, exercises::change_plan))
        .routes(routes!(exercises::agree))
        .routes(routes!(exercises::complete_exercise))
        .routes(routes!(exercises::cancel_exercise))
        .routes(routes!(runs::create_run, runs::list_runs))
        .routes(routes!(runs::get_run))
        .routes(routes!(runs::start_run))
        .routes(routes!(runs::finish_run))
        .routes(routes!(runs::cancel_run))
        .routes(routes!(runs::upsert_metrics, runs::get_metrics))
        .routes(routes!(runs::release_run))
        .routes(routes!(
            runs::samples::ingest_samples,
            runs::samples::list_samples
        ))
        .routes(routes!(runs::reductions::list_reductions))
        .routes(routes!(runs::reductions::list_sample_errors))
        .routes(routes!(runs::summary::exercise_summary))
        .routes(routes!(runs::export::export_samples))
        .routes(routes!(comparisons::compare_runs))
        .routes(routes!(comparisons::compare_exercise))
        .routes(routes!(comparisons::list_disagreements))
        .fallback(docs::not_found)
}

/// Adds a header whose value the service built itself: a path or an ETag, always valid.
pub(crate) fn with_header(mut response: Response, name: HeaderName, value: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
    response
}

/// A response body read page by page as the client takes it, each page read by
/// `next(cursor)` in a short transaction of its own: a client that stops reading holds no
/// connection, and memory holds one page. `next` answers a page and the cursor after it,
/// or `None` after the last.
pub(crate) fn paged<C, F, Fut>(
    first: C,
    next: F,
) -> impl futures_util::Stream<Item = Result<axum::body::Bytes, std::io::Error>> + Send + 'static
where
    C: Send + 'static,
    F: Fn(C) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(axum::body::Bytes, Option<C>), jointeval_store::StoreError>>
        + Send
        + 'static,
{
    // Fused: a body may be polled again after its end (the gzip encoder of the
    // compression layer does), and an unfused `unfold` panics then, which cut every
    // compressed export and log download short.
    let pages = futures_util::stream::unfold(Some(first), move |cursor| {
        let page = cursor.map(&next);
        async move {
            match page?.await {
                Ok((bytes, after)) => Some((Ok(bytes), after)),
                Err(e) => {
                    // The status and the first pages are gone already: the client sees the
                    // body cut short. Say why here, where it can be read.
                    tracing::error!(error = %e, "a paged response body failed; it ends cut short");
                    Some((Err(std::io::Error::other(e.to_string())), None))
                }
            }
        }
    });
    futures_util::StreamExt::fuse(pages)
}
