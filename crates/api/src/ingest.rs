//! Per-sample scores on their way in: read from a request body (NDJSON as it arrives, or
//! one JSON array), checked one by one, gathered into batches and handed to the writer
//! while the next batch is read. The HTTP handlers and the Inspect import both write
//! through here; what a batch does in the database is the store's `write_samples`.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use jointeval_domain::run::SampleScore;
use jointeval_store::PgConnection;
use uuid::Uuid;

use crate::problem::{ApiError, FieldError, Problem};

/// Scores written at a time.
pub(crate) const BATCH_ROWS: usize = 5_000;

/// The longest NDJSON line accepted.
const MAX_LINE_BYTES: usize = 1024 * 1024;

/// How a body of scores is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// `application/x-ndjson` (or `application/jsonl`): one score per line, read as it
    /// arrives.
    Ndjson,
    /// `application/json`: one array, read whole.
    Array,
}

impl Format {
    /// The format the `Content-Type` names, or 415.
    pub(crate) fn of(headers: &HeaderMap) -> Result<Self, ApiError> {
        let content_type = crate::extract::media_type(headers);
        match content_type.as_str() {
            "application/x-ndjson" | "application/jsonl" => Ok(Format::Ndjson),
            "application/json" => Ok(Format::Array),
            _ => Err(Problem::status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send scores as application/json (an array) or application/x-ndjson (one per line)",
            )
            .into()),
        }
    }
}

/// What a body wrote, and where the time went.
#[derive(Debug)]
pub(crate) struct Ingestion {
    /// Scores read.
    pub(crate) lines: u64,
    /// Keys new to the run.
    pub(crate) new: i64,
    /// Reading and parsing the body, overlapping the writes.
    pub(crate) read: Duration,
    /// Writing its rows.
    pub(crate) writing: Duration,
}

/// Reads every score of `body` into the run through `conn`: all or nothing as the
/// transaction is, the error naming the first bad line. Reading and parsing overlap with
/// writing: full batches go through a channel to the writer, so PostgreSQL works on one
/// batch while the next is parsed.
pub(crate) async fn from_body(
    conn: &mut PgConnection,
    run_id: Uuid,
    body: Body,
    format: Format,
    array_limit: usize,
) -> Result<Ingestion, ApiError> {
    let started = Instant::now();
    let (batches, incoming) = tokio::sync::mpsc::channel(1);
    let write = async {
        // The writer owns the receiver: when it stops on an error, the channel closes
        // and the reader's next hand-over fails, so the reader stops too.
        let mut incoming = incoming;
        let (mut new, mut writing) = (0, Duration::ZERO);
        while let Some(batch) = incoming.recv().await {
            let t = Instant::now();
            new += jointeval_store::runs::write_samples(&mut *conn, run_id, batch).await?;
            writing += t.elapsed();
        }
        Ok::<_, ApiError>((new, writing))
    };
    let read = read_scores(body, format, array_limit, Batches::new(batches));
    // Both run to their end: a reader's error closes the channel and the writer stops
    // after its batch, never cut off in the middle of a statement.
    let (lines, written) = tokio::join!(read, write);
    let (lines, (new, writing)) = (lines?, written?);
    Ok(Ingestion {
        lines,
        new,
        read: started.elapsed(),
        writing,
    })
}

/// Writes scores already checked, a batch at a time; answers how many keys were new.
pub(crate) async fn from_scores(
    conn: &mut PgConnection,
    run_id: Uuid,
    scores: impl IntoIterator<Item = SampleScore>,
) -> Result<i64, ApiError> {
    let mut scores = scores.into_iter().peekable();
    let mut new = 0;
    while scores.peek().is_some() {
        let batch: Vec<SampleScore> = scores.by_ref().take(BATCH_ROWS).collect();
        new += jointeval_store::runs::write_samples(&mut *conn, run_id, batch).await?;
    }
    Ok(new)
}

fn bad_line(line: u64, field: &str, message: impl std::fmt::Display) -> ApiError {
    Problem::validation(vec![FieldError {
        field: if field.is_empty() || field == "." {
            format!("line {line}")
        } else {
            format!("line {line}: {field}")
        },
        message: message.to_string(),
    }])
    .into()
}

/// Parses and checks one score; `line` names it in the error.
fn parse_score(line: u64, bytes: &[u8]) -> Result<SampleScore, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let score: SampleScore = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|e| bad_line(line, &e.path().to_string(), e.into_inner()))?;
    deserializer.end().map_err(|e| bad_line(line, "", e))?;
    score
        .validate()
        .map_err(|e| bad_line(line, &e.field, e.message))?;
    Ok(score)
}

/// Scores gathered into batches of [`BATCH_ROWS`] on their way to the writer.
struct Batches {
    rows: Vec<SampleScore>,
    to_writer: tokio::sync::mpsc::Sender<Vec<SampleScore>>,
}

impl Batches {
    fn new(to_writer: tokio::sync::mpsc::Sender<Vec<SampleScore>>) -> Self {
        Self {
            rows: Vec::with_capacity(BATCH_ROWS),
            to_writer,
        }
    }

    /// Adds a score, handing a full batch to the writer; `false` when the writer has
    /// stopped (on an error, which is what the request answers).
    async fn push(&mut self, score: SampleScore) -> bool {
        self.rows.push(score);
        if self.rows.len() < BATCH_ROWS {
            return true;
        }
        let full = std::mem::replace(&mut self.rows, Vec::with_capacity(BATCH_ROWS));
        self.to_writer.send(full).await.is_ok()
    }

    /// Hands over the last, partial batch; dropping the sender then ends the writer.
    async fn finish(self) {
        if !self.rows.is_empty() {
            let _ = self.to_writer.send(self.rows).await;
        }
    }
}

/// Reads scores from the body, as NDJSON read as it arrives or as one JSON array, into
/// `batches`; answers how many lines it read. A bad line ends the request, named.
async fn read_scores(
    body: Body,
    format: Format,
    array_limit: usize,
    mut batches: Batches,
) -> Result<u64, ApiError> {
    use http_body_util::BodyExt;

    let too_large = || -> ApiError {
        Problem::status(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the request body is larger than this service accepts",
        )
        .into()
    };
    let mut lines: u64 = 0;
    if format == Format::Ndjson {
        let mut body = body;
        let mut buffer: Vec<u8> = Vec::new();
        let mut finished = false;
        while !finished {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        buffer.extend_from_slice(&data);
                    }
                }
                Some(Err(_)) => return Err(too_large()),
                None => {
                    finished = true;
                    buffer.push(b'\n');
                }
            }
            let mut start = 0;
            while let Some(offset) = buffer[start..].iter().position(|b| *b == b'\n') {
                let line = &buffer[start..start + offset];
                start += offset + 1;
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                lines += 1;
                if !batches.push(parse_score(lines, line)?).await {
                    return Ok(lines);
                }
            }
            buffer.drain(..start);
            if buffer.len() > MAX_LINE_BYTES {
                return Err(bad_line(lines + 1, "", "is longer than 1 MiB"));
            }
        }
    } else {
        // A JSON array is held whole, so it gets the ordinary limit; streams get more.
        let bytes = http_body_util::Limited::new(body, array_limit)
            .collect()
            .await
            .map_err(|_| too_large())?
            .to_bytes();
        let values: Vec<Box<serde_json::value::RawValue>> = crate::extract::parse_json(&bytes)?;
        for value in values {
            lines += 1;
            if !batches
                .push(parse_score(lines, value.get().as_bytes())?)
                .await
            {
                return Ok(lines);
            }
        }
    }
    batches.finish().await;
    Ok(lines)
}
