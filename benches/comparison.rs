//! Comparison benchmark: `GET /v1/comparisons` of two finished runs of ROWS per-sample
//! scores each (default 1,000,000: 500,000 samples of 2 epochs), two pages of their
//! disagreements, and the exercise's every-pair comparison, each timed over a few
//! requests.
//!
//!     cargo bench --bench comparison              # 1,000,000 scores a run
//!     cargo bench --bench comparison -- 100000    # another count
//!
//! It uses DATABASE_URL when set, else a private PostgreSQL cluster (as `cargo test`
//! does), and serves the real router in this process on 127.0.0.1:0. The scores go in by
//! `COPY`, straight into the table: what is measured is the comparison, not the ingestion
//! (`benches/ingest.rs` measures that).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use jointeval_domain::Role;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use support::TestApp;
use support::story::{active_exercise_with, running_run};

/// Requests timed per pairing.
const REPEATS: usize = 3;

/// A deterministic value in [0, 1) of the row and run: the two runs agree on most samples.
fn value(i: usize, seed: usize) -> f64 {
    let mut x = (i as u64 ^ 0x9e37_79b9_7f4a_7c15).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 31;
    let shared = (x % 1000) as f64 / 1000.0;
    if (x >> 20).is_multiple_of(5) {
        (shared + 0.1 * seed as f64) % 1.0
    } else {
        shared
    }
}

/// A run of `rows` scores, loaded by `COPY` and finished: its id.
async fn finished_run(
    app: &TestApp,
    token: &str,
    exercise: &str,
    protocol: &str,
    rows: usize,
    seed: usize,
) -> String {
    let id = running_run(app, token, exercise, protocol).await;
    let mut data = String::with_capacity(rows * 80);
    for i in 0..rows {
        data.push_str(&format!(
            "{id}\tsample-{:07}\t{}\tmatch\t{}\t\\N\t{{\"topic\": \"t{}\"}}\n",
            i / 2,
            1 + i % 2,
            value(i, seed),
            (i / 2) % 50
        ));
    }
    let mut conn = PgConnection::connect_with(&app.db.options)
        .await
        .expect("connect");
    let mut copy = conn
        .copy_in_raw(
            "copy run_samples (run_id, sample_id, epoch, scorer, value_number, value_label, \
             sample_metadata) from stdin",
        )
        .await
        .expect("copy");
    for chunk in data.as_bytes().chunks(1 << 20) {
        copy.send(chunk).await.expect("send");
    }
    assert_eq!(copy.finish().await.expect("finish"), rows as u64);
    sqlx::query("analyze run_samples")
        .execute(&mut conn)
        .await
        .expect("analyze");
    conn.close().await.expect("close");
    let finished = app
        .post_as(
            token,
            &format!("/v1/runs/{id}/finish"),
            &json!({"outcome": "succeeded"}),
        )
        .await;
    assert_eq!(finished.status(), 200);
    id
}

/// The fastest and the slowest of REPEATS requests of `path`, in seconds, and the last
/// answer.
async fn timed(app: &TestApp, token: &str, path: &str) -> (f64, f64, Value) {
    let mut times = Vec::with_capacity(REPEATS);
    let mut last = Value::Null;
    for _ in 0..REPEATS {
        let started = Instant::now();
        let response = app.get_as(token, path).await;
        let status = response.status();
        last = response.json().await.expect("json");
        times.push(started.elapsed().as_secs_f64());
        assert_eq!(status, 200, "{path}: {last}");
    }
    times.sort_by(f64::total_cmp);
    (times[0], times[REPEATS - 1], last)
}

#[tokio::main]
async fn main() {
    let rows: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    // The statements of a comparison of a million pairs take seconds: sqlx would warn of each.
    tracing_subscriber::fmt()
        .with_env_filter("warn,sqlx=error")
        .init();
    let app = TestApp::spawn().await;
    let content = json!({
        "objective": "Comparison benchmark",
        "tasks": [{"name": "t", "dataset": {"name": "d", "version": "1", "sha256": null,
                                             "sample_count": rows.div_ceil(2)},
                   "harness": {"name": "inspect", "task_ref": "arith"}, "scorers": ["match"],
                   "metrics": ["accuracy"], "epochs": 2}],
        "metrics": [{"name": "accuracy", "higher_is_better": true, "threshold": null}]
    });
    let (exercise, protocol) = active_exercise_with(&app, content).await;
    let evaluator = app.person("bench@nist.gov", "US", &[Role::Evaluator]).await;
    let token = app.login(&evaluator).await;
    let seeding = Instant::now();
    let a = finished_run(&app, &token, &exercise, &protocol, rows, 0).await;
    let b = finished_run(&app, &token, &exercise, &protocol, rows, 1).await;
    println!(
        "two runs of {rows} scores each ({} samples of 2 epochs), seeded and finished in {:.1} s",
        rows.div_ceil(2),
        seeding.elapsed().as_secs_f64()
    );
    let base = format!("/v1/comparisons?a={a}&b={b}&scorer=match");
    for (label, query) in [
        ("by sample and epoch", String::new()),
        ("epoch=1", "&epoch=1".to_owned()),
        ("reducer=mean", "&reducer=mean".to_owned()),
        ("reducer=median", "&reducer=median".to_owned()),
        ("cluster=topic", "&cluster=topic".to_owned()),
        (
            "reducer=mean&cluster=topic",
            "&reducer=mean&cluster=topic".to_owned(),
        ),
    ] {
        let (fastest, slowest, answer) = timed(&app, &token, &format!("{base}{query}")).await;
        println!(
            "GET /v1/comparisons {label:<28} {fastest:.2}–{slowest:.2} s  ({} pairs, {} categories)",
            answer["matched"],
            answer["agreement"]["categories"]
                .as_array()
                .map_or(0, Vec::len)
        );
    }
    let pages = format!("/v1/comparisons/disagreements?a={a}&b={b}&scorer=match&limit=100");
    let (fastest, slowest, first) = timed(&app, &token, &pages).await;
    println!(
        "GET /v1/comparisons/disagreements, first page of 100  {fastest:.2}–{slowest:.2} s  (largest |a − b| {})",
        first["items"][0]["difference"]
    );
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let (fastest, slowest, _) = timed(&app, &token, &format!("{pages}&cursor={cursor}")).await;
    println!("GET /v1/comparisons/disagreements, second page      {fastest:.2}–{slowest:.2} s");
    let (fastest, slowest, answer) = timed(
        &app,
        &token,
        &format!("/v1/exercises/{exercise}/comparisons?scorer=match"),
    )
    .await;
    println!(
        "GET /v1/exercises/{{id}}/comparisons (one pair)  {fastest:.2}–{slowest:.2} s  ({} comparisons)",
        answer["comparisons"].as_array().map_or(0, Vec::len)
    );
}
