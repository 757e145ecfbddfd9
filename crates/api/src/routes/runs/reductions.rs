//! What an imported Inspect log says beyond its per-epoch scores, for the run's readers:
//! each sample's value reduced over its epochs, and the samples that ended in an error.

use axum::Json;
use axum::extract::State;
use jointeval_domain::Action;
use jointeval_domain::run::{SampleError, StoredReduction};
use uuid::Uuid;

use crate::AppState;
use crate::access::{self, Lock};
use crate::auth::Caller;
use crate::extract::{ApiPath, ApiQuery};
use crate::pagination::{Page, PageQuery, key_text};
use crate::problem::{ApiError, Problem};
use crate::work::Work;

/// Reads a run's reductions: each sample's value reduced over its epochs, per scorer and
/// reducer, as Inspect computed them. Ordered by (scorer, reducer, sample id).
#[utoipa::path(
    get, path = "/v1/runs/{id}/reductions", tag = "runs",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The run"), PageQuery),
    responses(
        (status = 200, description = "A page of reductions; none for a run whose results came without", body = Page<StoredReduction>),
        (status = 404, description = "No such run, or one not released to the caller's institutes", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_reductions(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<Page<StoredReduction>>, ApiError> {
    let page = page.validate()?;
    let after: Option<(String, String, String)> = page.after_key()?;
    let mut work = Work::begin(&state, &caller).await?;
    access::run(&mut work, id, Action::ReadRun, Lock::No).await?;
    let rows = jointeval_store::runs::reductions(
        &mut work,
        id,
        after
            .as_ref()
            .map(|(s, r, i)| (s.as_str(), r.as_str(), i.as_str())),
        page.fetch(),
    )
    .await?;
    work.commit().await?;
    Ok(Json(Page::from_rows(rows, page.limit, |r| {
        key_text(&(&r.scorer, r.reducer.as_deref().unwrap_or(""), &r.sample_id))
    })))
}

/// Reads the samples of a run that ended in an error instead of a score, with the
/// harness's message. Ordered by (sample id, epoch). The messages are transcripts (a
/// traceback can quote the model): the run's institute reads them, and those its
/// transcripts were released to; the run's `deviations` count them for every reader.
#[utoipa::path(
    get, path = "/v1/runs/{id}/sample-errors", tag = "runs",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The run"), PageQuery),
    responses(
        (status = 200, description = "A page of errored samples", body = Page<SampleError>),
        (status = 404, description = "No such run, one not released to the caller's institutes, or (type `not-released`) one whose results alone were released to them", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_sample_errors(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<Page<SampleError>>, ApiError> {
    let page = page.validate()?;
    let after: Option<(String, i32)> = page.after_key()?;
    let mut work = Work::begin(&state, &caller).await?;
    access::transcripts(&mut work, id).await?;
    let rows = jointeval_store::runs::sample_errors(
        &mut work,
        id,
        after.as_ref().map(|(s, e)| (s.as_str(), *e)),
        page.fetch(),
    )
    .await?;
    work.commit().await?;
    Ok(Json(Page::from_rows(rows, page.limit, |e| {
        key_text(&(&e.sample_id, e.epoch))
    })))
}
