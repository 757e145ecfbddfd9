//! A run's scores streamed whole, as NDJSON or CSV.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use jointeval_domain::run::StoredScore;
use jointeval_domain::{Action, ValidationError};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::AppState;
use crate::access::{self, Lock};
use crate::auth::Caller;
use crate::extract::{ApiPath, ApiQuery};
use crate::problem::{ApiError, Problem};
use crate::work::Work;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// `ndjson` (default) or `csv`.
    #[param(pattern = "^(ndjson|csv)$")]
    pub format: Option<String>,
}

/// Rows formatted ahead of the client, at most; beyond that the database waits.
/// Samples read per query of an export.
const EXPORT_PAGE: i64 = 5_000;

/// A CSV field, quoted when it must be.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

fn export_line(row: jointeval_store::runs::SampleRow, csv: bool) -> String {
    if csv {
        let fields = [
            csv_field(&row.sample_id),
            row.epoch.to_string(),
            csv_field(&row.scorer),
            row.value_number.map(|v| v.to_string()).unwrap_or_default(),
            csv_field(row.value_label.as_deref().unwrap_or("")),
            csv_field(row.answer.as_deref().unwrap_or("")),
            csv_field(row.explanation.as_deref().unwrap_or("")),
            csv_field(&row.metadata.map(|m| m.to_string()).unwrap_or_default()),
        ];
        fields.join(",") + "\n"
    } else {
        let mut line = StoredScore::from(row).line();
        line.push(b'\n');
        String::from_utf8(line).unwrap_or_default()
    }
}

/// Every per-sample score of a run, streamed as NDJSON or CSV: the server holds a few
/// rows at a time, whatever the run's size.
#[utoipa::path(
    get, path = "/v1/runs/{id}/export", tag = "runs",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The run"), ExportQuery),
    responses(
        (status = 200, description = "The scores, one per line, by (sample id, epoch, scorer)",
         content(("application/x-ndjson"), ("text/csv"))),
        (status = 404, description = "No such run, or one not released to the caller's institutes", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`format` is neither `ndjson` nor `csv`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn export_samples(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<ExportQuery>,
) -> Result<Response, ApiError> {
    let csv = match query.format.as_deref() {
        None | Some("ndjson") => false,
        Some("csv") => true,
        Some(_) => return Err(ValidationError::new("format", "must be `ndjson` or `csv`").into()),
    };
    let mut work = Work::begin(&state, &caller).await?;
    access::run(&mut work, id, Action::ReadRun, Lock::No).await?;
    work.commit().await?;
    let header = if csv {
        "sample_id,epoch,scorer,value_number,value_label,answer,explanation,metadata\n"
    } else {
        ""
    };
    let (pool, acting) = (state.pool.clone(), caller.acting_as());
    // In key order, a page at a time: the cursor is the last key sent.
    let pages = crate::routes::paged(None, move |after: Option<(String, i32, String)>| {
        let (pool, acting) = (pool.clone(), acting.clone());
        async move {
            let mut tx = jointeval_store::begin(&pool, &acting).await?;
            let key = after.as_ref().map(|(s, e, c)| (s.as_str(), *e, c.as_str()));
            let rows = jointeval_store::runs::samples(
                &mut tx,
                id,
                &jointeval_store::runs::SampleFilter::default(),
                key,
                EXPORT_PAGE,
            )
            .await?;
            jointeval_store::commit(tx).await?;
            let next = (rows.len() as i64 == EXPORT_PAGE).then(|| {
                rows.last()
                    .map(|r| (r.sample_id.clone(), r.epoch, r.scorer.clone()))
            });
            let text: String = rows.into_iter().map(|r| export_line(r, csv)).collect();
            Ok((Bytes::from(text), next))
        }
    });
    let stream = futures_util::StreamExt::chain(
        futures_util::stream::once(async move {
            Ok::<_, std::io::Error>(Bytes::from_static(header.as_bytes()))
        }),
        pages,
    );
    let (content_type, extension) = if csv {
        ("text/csv", "csv")
    } else {
        ("application/x-ndjson", "ndjson")
    };
    let response = (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"run-{id}.{extension}\""),
            ),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response();
    Ok(response)
}
