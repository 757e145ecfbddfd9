//! Inspect log import, end to end: logs of SCORES scores (default 20,000, 100,000 and
//! 1,000,000), generated to files as a JSON log and an `.eval` archive, each streamed
//! from its file through `POST /v1/runs/{id}/inspect-log` into a running run. For each:
//! the time until the answer, scores a second, and the process's resident memory before
//! the import and at its peak during it.
//!
//!     cargo bench --bench inspect_import              # 20,000, 100,000 and 1,000,000
//!     cargo bench --bench inspect_import -- 50000     # one count
//!
//! Like the ingest benchmark, it uses DATABASE_URL or a private cluster, and serves the
//! real router in this process: the upload is read from its file a chunk at a time, so
//! what the peak adds is the server's (and the HTTP stack's). Memory freed by an import
//! stays resident for the next, so the peak is the figure to read, not what it adds.

#[path = "common/logs.rs"]
mod logs;
#[path = "common/peak.rs"]
mod peak;
#[path = "../tests/support/mod.rs"]
mod support;

use std::io::Read;
use std::path::Path;
use std::time::Instant;

use jointeval_domain::Role;
use serde_json::{Value, json};
use support::TestApp;
use support::story::{active_exercise_with, new_run};

/// The file, 1 MiB at a time, read as the request is sent.
fn chunks(path: &Path) -> reqwest::Body {
    let mut file = std::fs::File::open(path).expect("open");
    let chunks = std::iter::from_fn(move || {
        let mut chunk = vec![0u8; 1 << 20];
        match file.read(&mut chunk) {
            Ok(0) => None,
            Ok(n) => {
                chunk.truncate(n);
                Some(Ok::<_, std::io::Error>(chunk))
            }
            Err(e) => Some(Err(e)),
        }
    });
    reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
}

async fn import(app: &TestApp, token: &str, exercise: &str, protocol: &str, path: &Path) {
    let mut body = new_run(protocol);
    body["model_version"] = json!("mockllm/model");
    let run: Value = app
        .post_as(token, &format!("/v1/exercises/{exercise}/runs"), &body)
        .await
        .json()
        .await
        .expect("json");
    let run = run["id"].as_str().expect("id").to_owned();
    let started = app
        .post_as(token, &format!("/v1/runs/{run}/start"), &json!({}))
        .await;
    assert_eq!(started.status(), 200);
    let name = path.file_name().and_then(|n| n.to_str()).expect("name");
    let content_type = if name.ends_with(".json") {
        "application/json"
    } else {
        "application/zip"
    };
    let size = std::fs::metadata(path).expect("size").len();
    let before_kib = peak::reset_peak();
    let started = Instant::now();
    let response = app
        .client
        .post(app.url(&format!("/v1/runs/{run}/inspect-log")))
        .bearer_auth(token)
        .header("content-type", content_type)
        .header("content-length", size)
        .body(chunks(path))
        .send()
        .await
        .expect("send");
    let status = response.status();
    let answer: Value = response.json().await.expect("json");
    let secs = started.elapsed().as_secs_f64();
    let (before_mib, peak_mib) = (before_kib as f64 / 1024.0, peak::peak_kib() as f64 / 1024.0);
    assert_eq!(status, 200, "{answer}");
    let scores = answer["scores"].as_u64().expect("scores");
    println!(
        "{name} ({:.0} MiB): {} samples, {scores} scores in {secs:.2} s, {:.0} scores/s, \
         resident {before_mib:.1} MiB before, {peak_mib:.1} MiB at the peak",
        size as f64 / (1024.0 * 1024.0),
        answer["samples"],
        scores as f64 / secs
    );
}

#[tokio::main]
async fn main() {
    let counts: Vec<usize> = match std::env::args().skip(1).find_map(|a| a.parse().ok()) {
        Some(n) => vec![n],
        None => vec![20_000, 100_000, 1_000_000],
    };
    let app = TestApp::spawn().await;
    let (exercise, protocol) = active_exercise_with(&app, support::story::default_content()).await;
    let evaluator = app
        .login(&app.person("bench@nist.gov", "US", &[Role::Evaluator]).await)
        .await;
    let dir = std::env::temp_dir().join(format!("jointeval-inspect-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    for n in counts {
        let started = Instant::now();
        let generated = logs::generate(&dir, n);
        println!(
            "generated logs of {} samples in {:.1} s",
            generated.samples,
            started.elapsed().as_secs_f64()
        );
        for path in [&generated.json, &generated.eval] {
            import(&app, &evaluator, &exercise, &protocol, path).await;
            std::fs::remove_file(path).ok();
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}
