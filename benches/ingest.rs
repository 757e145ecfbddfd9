//! Ingestion benchmark: per-sample scores through the API against `COPY` of the same rows
//! into the same database, in the same run.
//!
//!     cargo bench --bench ingest              # 1,000,000 scores
//!     cargo bench --bench ingest -- 200000    # another count
//!
//! It uses DATABASE_URL when set, else a private PostgreSQL cluster (as `cargo test`
//! does), and serves the real router in this process on 127.0.0.1:0. The API side is one
//! NDJSON request streamed in chunks, as a harness would send it.

#[path = "common/peak.rs"]
mod peak;
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use jointeval_domain::Role;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use support::TestApp;
use support::story::{active_exercise, running_run};

fn score(i: usize) -> Value {
    json!({"sample_id": format!("sample-{i:07}"), "epoch": 1 + (i % 3) as i32, "scorer": "match",
           "value": if i.is_multiple_of(2) { json!("C") } else { json!(0.5) },
           "answer": format!("{}", i % 97), "explanation": "benchmark row",
           "metadata": {"difficulty": i % 5}})
}

/// The same row in COPY's text format: its results for `run_samples`, and its
/// transcripts for `run_sample_transcripts`.
fn copy_lines(run: &str, i: usize) -> (String, String) {
    let (number, label) = if i.is_multiple_of(2) {
        ("\\N", "C")
    } else {
        ("0.5", "\\N")
    };
    let key = format!("{run}\tsample-{i:07}\t{}\tmatch", 1 + i % 3);
    (
        format!("{key}\t{number}\t{label}\n"),
        format!(
            "{key}\t{}\tbenchmark row\t{{\"difficulty\": {}}}\n",
            i % 97,
            i % 5
        ),
    )
}

#[tokio::main]
async fn main() {
    let rows: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    // The server's own account of where an ingestion spends its time.
    tracing_subscriber::fmt()
        .with_env_filter("warn,jointeval_api::routes::runs=info")
        .init();
    let app = TestApp::spawn().await;
    let (exercise, protocol) = active_exercise(&app).await;
    let evaluator = app
        .person("bench@aisi.gov.uk", "UK", &[Role::Evaluator])
        .await;
    let token = app.login(&evaluator).await;

    // Through the API: one NDJSON request, streamed in 1 MiB chunks.
    let api_run = running_run(&app, &token, &exercise, &protocol).await;
    let body: String = (0..rows).map(|i| score(i).to_string() + "\n").collect();
    let bytes = body.len();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = body
        .into_bytes()
        .chunks(1 << 20)
        .map(|c| Ok(c.to_vec()))
        .collect();
    let before_kib = peak::reset_peak();
    let started = Instant::now();
    let response = app
        .client
        .post(app.url(&format!("/v1/runs/{api_run}/samples")))
        .bearer_auth(&token)
        .header("content-type", "application/x-ndjson")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .expect("send");
    let status = response.status();
    let answer: Value = response.json().await.expect("json");
    let api_secs = started.elapsed().as_secs_f64();
    let added_mib = (peak::peak_kib().saturating_sub(before_kib)) as f64 / 1024.0;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["stored"], rows as u64);

    // The same rows with COPY, straight into the table, on the same database.
    let copy_run = running_run(&app, &token, &exercise, &protocol).await;
    let (results, transcripts): (String, String) =
        (0..rows).map(|i| copy_lines(&copy_run, i)).unzip();
    let mut conn = PgConnection::connect_with(&app.db.options)
        .await
        .expect("connect");
    let started = Instant::now();
    let mut copied = 0;
    for (table, data) in [
        (
            "run_samples (run_id, sample_id, epoch, scorer, value_number, value_label)",
            &results,
        ),
        (
            "run_sample_transcripts (run_id, sample_id, epoch, scorer, answer, explanation, \
             metadata)",
            &transcripts,
        ),
    ] {
        let mut copy = conn
            .copy_in_raw(&format!("copy {table} from stdin"))
            .await
            .expect("copy");
        for chunk in data.as_bytes().chunks(1 << 20) {
            copy.send(chunk).await.expect("send");
        }
        copied = copy.finish().await.expect("finish");
    }
    let copy_secs = started.elapsed().as_secs_f64();
    assert_eq!(copied, rows as u64);
    conn.close().await.expect("close");

    let api_rate = rows as f64 / api_secs;
    let copy_rate = rows as f64 / copy_secs;
    println!(
        "rows: {rows} ({:.1} MiB of NDJSON)",
        bytes as f64 / (1024.0 * 1024.0)
    );
    println!("API (one streamed NDJSON request): {api_secs:.2} s, {api_rate:.0} rows/s");
    println!("COPY into the two tables:          {copy_secs:.2} s, {copy_rate:.0} rows/s");
    println!("ratio API / COPY: {:.2}", api_rate / copy_rate);
    // Client and server share this process: the body was built before the peak was
    // reset, so what the request added is the server's (and the HTTP stack's) working set.
    println!("peak memory added while the API ingested: {added_mib:.1} MiB");
}
