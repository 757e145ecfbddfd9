//! A run's scores streamed whole, as NDJSON or CSV.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
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
    /// With each score's transcripts (`answer`, `explanation`, `metadata`): the run's
    /// institute, and those its transcripts were released to.
    pub transcripts: Option<bool>,
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

fn export_line(row: jointeval_store::runs::SampleRow, csv: bool, transcripts: bool) -> String {
    let mut line = if csv {
        let mut fields = vec![
            csv_field(&row.sample_id),
            row.epoch.to_string(),
            csv_field(&row.scorer),
            row.value_number.map(|v| v.to_string()).unwrap_or_default(),
            csv_field(row.value_label.as_deref().unwrap_or("")),
            csv_field(&json_text(row.sample_metadata.as_ref())),
        ];
        if transcripts {
            fields.extend([
                csv_field(row.answer.as_deref().unwrap_or("")),
                csv_field(row.explanation.as_deref().unwrap_or("")),
                csv_field(&json_text(row.metadata.as_ref())),
            ]);
        }
        fields.join(",")
    } else {
        let score = row.into_score(!transcripts);
        let line = if transcripts {
            score.transcripts_line()
        } else {
            score.results_line()
        };
        String::from_utf8(line).unwrap_or_default()
    };
    line.push('\n');
    line
}

fn json_text(value: Option<&serde_json::Value>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

/// Every per-sample score of a run, streamed as NDJSON or CSV: the server holds a few
/// rows at a time, whatever the run's size. Its results by default, the lines the
/// results digest covers; with `transcripts=true`, each score's transcripts as well, the
/// lines the transcripts digest covers (see the README's "The results digest").
#[utoipa::path(
    get, path = "/v1/runs/{id}/export", tag = "runs",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The run"), ExportQuery),
    responses(
        (status = 200, description = "The scores, one per line, by (sample id, epoch, scorer)",
         content(("application/x-ndjson"), ("text/csv"))),
        (status = 404, description = "No such run, one not released to the caller's institutes, or (type `not-released`, with `transcripts=true`) one whose results alone were released to them", body = Problem, content_type = "application/problem+json"),
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
    let transcripts = query.transcripts.unwrap_or(false);
    let mut work = Work::begin(&state, &caller).await?;
    if transcripts {
        access::transcripts(&mut work, id).await?;
    } else {
        access::run(&mut work, id, Action::ReadRun, Lock::No).await?;
    }
    work.commit().await?;
    let header = match (csv, transcripts) {
        (false, _) => "",
        (true, false) => "sample_id,epoch,scorer,value_number,value_label,sample_metadata\n",
        (true, true) => {
            "sample_id,epoch,scorer,value_number,value_label,sample_metadata,answer,explanation,metadata\n"
        }
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
                &jointeval_store::runs::SampleFilter {
                    transcripts,
                    ..Default::default()
                },
                key,
                EXPORT_PAGE,
            )
            .await?;
            jointeval_store::commit(tx).await?;
            let next = (rows.len() as i64 == EXPORT_PAGE).then(|| {
                rows.last()
                    .map(|r| (r.sample_id.clone(), r.epoch, r.scorer.clone()))
            });
            let text: String = rows
                .into_iter()
                .map(|r| export_line(r, csv, transcripts))
                .collect();
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
